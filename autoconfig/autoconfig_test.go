package autoconfig_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/roostmail/roost/autoconfig"
	"github.com/roostmail/roost/internal/testutil"
)

// baseOptions has no submission server; withSubmission adds one.
func baseOptions(t *testing.T) autoconfig.Options {
	return autoconfig.Options{
		Hostname:    "mail.example.org",
		IMAPSPort:   10993,
		IMAPPort:    10143,
		POP3SPort:   10995,
		POP3Port:    10110,
		DisplayName: "Roost mail",
		Domains:     func() []string { return []string{"example.org", "Example.NET"} },
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func withSubmission(o autoconfig.Options, host string, port int) autoconfig.Options {
	o.SubmissionHost, o.SubmissionPort = host, port
	return o
}

// start serves opts on a loopback httptest server and returns its URL.
func start(t *testing.T, opts autoconfig.Options) string {
	t.Helper()
	srv := httptest.NewServer(autoconfig.NewHandler(opts))
	t.Cleanup(srv.Close)
	return srv.URL
}

type response struct {
	status      int
	contentType string
	header      http.Header
	body        []byte
}

func do(t *testing.T, method, rawURL, host string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), header: resp.Header, body: b}
}

func get(t *testing.T, rawURL string) response { return do(t, http.MethodGet, rawURL, "", nil) }

// Thunderbird clientConfig, as a client reads it.
type tbConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID       string     `xml:"id,attr"`
		Domains  []string   `xml:"domain"`
		Display  string     `xml:"displayName"`
		Incoming []tbServer `xml:"incomingServer"`
		Outgoing []tbServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
}

type tbServer struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`
	Username       string `xml:"username"`
	Authentication string `xml:"authentication"`
}

func TestThunderbirdConfig(t *testing.T) {
	wantIncoming := []tbServer{
		{"imap", "mail.example.org", 10993, "SSL", "%EMAILADDRESS%", "password-cleartext"},
		{"imap", "mail.example.org", 10143, "STARTTLS", "%EMAILADDRESS%", "password-cleartext"},
		{"pop3", "mail.example.org", 10995, "SSL", "%EMAILADDRESS%", "password-cleartext"},
		{"pop3", "mail.example.org", 10110, "STARTTLS", "%EMAILADDRESS%", "password-cleartext"},
	}
	tests := []struct {
		name         string
		opts         func(autoconfig.Options) autoconfig.Options
		path         string
		host         string // Host header; "" means the test server's
		wantDomain   string
		wantOutgoing []tbServer
	}{
		{
			name:       "well-known with address, no submission",
			path:       "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=" + url.QueryEscape("alice@example.org"),
			wantDomain: "example.org",
		},
		{
			name:       "address domain matched case-insensitively",
			path:       "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=" + url.QueryEscape("bob@EXAMPLE.net"),
			wantDomain: "example.net",
		},
		{
			name: "submission on 587 is STARTTLS",
			opts: func(o autoconfig.Options) autoconfig.Options { return withSubmission(o, "smtp.example.org", 587) },
			path: "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.org",
			wantOutgoing: []tbServer{
				{"smtp", "smtp.example.org", 587, "STARTTLS", "%EMAILADDRESS%", "password-cleartext"},
			},
			wantDomain: "example.org",
		},
		{
			name: "submission on 465 is implicit TLS",
			opts: func(o autoconfig.Options) autoconfig.Options { return withSubmission(o, "smtp.example.org.", 465) },
			path: "/mail/config-v1.1.xml?emailaddress=alice@example.org",
			wantOutgoing: []tbServer{
				{"smtp", "smtp.example.org", 465, "SSL", "%EMAILADDRESS%", "password-cleartext"},
			},
			wantDomain: "example.org",
		},
		{
			name:       "autoconfig host form without address uses the first domain",
			path:       "/mail/config-v1.1.xml",
			wantDomain: "example.org",
		},
		{
			name:       "autoconfig host form without address uses the autoconfig host's domain",
			path:       "/mail/config-v1.1.xml",
			host:       "autoconfig.example.net",
			wantDomain: "example.net",
		},
		{
			name:       "well-known without address uses the first domain",
			path:       "/.well-known/autoconfig/mail/config-v1.1.xml",
			wantDomain: "example.org",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := baseOptions(t)
			if tt.opts != nil {
				opts = tt.opts(opts)
			}
			base := start(t, opts)
			resp := do(t, http.MethodGet, base+tt.path, tt.host, nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status %d: %s", resp.status, resp.body)
			}
			if resp.contentType != "application/xml" {
				t.Errorf("Content-Type = %q, want application/xml", resp.contentType)
			}
			var cfg tbConfig
			if err := xml.Unmarshal(resp.body, &cfg); err != nil {
				t.Fatalf("parse: %v\n%s", err, resp.body)
			}
			if cfg.Version != "1.1" || cfg.Provider.ID != tt.wantDomain || len(cfg.Provider.Domains) != 1 || cfg.Provider.Domains[0] != tt.wantDomain {
				t.Errorf("version %q, provider id %q, domains %q; want 1.1 and %s", cfg.Version, cfg.Provider.ID, cfg.Provider.Domains, tt.wantDomain)
			}
			if cfg.Provider.Display != "Roost mail" {
				t.Errorf("displayName = %q", cfg.Provider.Display)
			}
			if fmt.Sprint(cfg.Provider.Incoming) != fmt.Sprint(wantIncoming) {
				t.Errorf("incoming servers\n got %v\nwant %v", cfg.Provider.Incoming, wantIncoming)
			}
			if fmt.Sprint(cfg.Provider.Outgoing) != fmt.Sprint(tt.wantOutgoing) {
				t.Errorf("outgoing servers\n got %v\nwant %v", cfg.Provider.Outgoing, tt.wantOutgoing)
			}
			if tt.wantOutgoing == nil && !bytes.Contains(resp.body, []byte("<!-- No outgoing")) {
				t.Errorf("no comment explaining the missing outgoing server:\n%s", resp.body)
			}
			if tt.wantOutgoing != nil && bytes.Contains(resp.body, []byte("<!--")) {
				t.Errorf("unexpected comment with a configured outgoing server:\n%s", resp.body)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	const wellKnown = "/.well-known/autoconfig/mail/config-v1.1.xml"
	autodiscoverBody := func(addr string) string {
		return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
<Request><EMailAddress>` + addr + `</EMailAddress>
<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
</Request></Autodiscover>`
	}
	noDomains := func(o autoconfig.Options) autoconfig.Options { o.Domains = nil; return o }
	tests := []struct {
		name       string
		opts       func(autoconfig.Options) autoconfig.Options
		method     string
		path       string
		body       string
		wantStatus int
	}{
		{name: "Thunderbird: unknown domain", method: "GET", path: wellKnown + "?emailaddress=alice@example.com", wantStatus: 404},
		{name: "Thunderbird: invalid address", method: "GET", path: wellKnown + "?emailaddress=not-an-address", wantStatus: 400},
		{name: "Thunderbird: no address, no domains", opts: noDomains, method: "GET", path: "/mail/config-v1.1.xml", wantStatus: 400},
		{name: "Thunderbird: address, no domains", opts: noDomains, method: "GET", path: wellKnown + "?emailaddress=alice@example.org", wantStatus: 404},
		{name: "Thunderbird: POST", method: "POST", path: wellKnown, wantStatus: 405},
		{name: "Autodiscover: unknown domain", method: "POST", path: "/autodiscover/autodiscover.xml", body: autodiscoverBody("alice@example.com"), wantStatus: 404},
		{name: "Autodiscover: malformed XML", method: "POST", path: "/autodiscover/autodiscover.xml", body: "<Autodiscover><Request><EMailAddress>alice@example.org</Request>", wantStatus: 400},
		{name: "Autodiscover: not XML", method: "POST", path: "/autodiscover/autodiscover.xml", body: "emailaddress=alice@example.org", wantStatus: 400},
		{name: "Autodiscover: empty body", method: "POST", path: "/autodiscover/autodiscover.xml", wantStatus: 400},
		{name: "Autodiscover: wrong root element", method: "POST", path: "/autodiscover/autodiscover.xml", body: "<Other><Request><EMailAddress>alice@example.org</EMailAddress></Request></Other>", wantStatus: 400},
		{name: "Autodiscover: no address", method: "POST", path: "/autodiscover/autodiscover.xml", body: autodiscoverBody(""), wantStatus: 400},
		{name: "Autodiscover: GET", method: "GET", path: "/autodiscover/autodiscover.xml", wantStatus: 405},
		{name: "Autodiscover: path in any case", method: "POST", path: "/AUTODISCOVER/AutoDiscover.XML", body: autodiscoverBody("alice@example.org"), wantStatus: 200},
		{name: "Autodiscover: GET in another case", method: "GET", path: "/Autodiscover/Autodiscover.xml", wantStatus: 405},
		{name: "Apple: no address", method: "GET", path: "/apple/profile.mobileconfig", wantStatus: 400},
		{name: "Apple: invalid address", method: "GET", path: "/apple/profile.mobileconfig?emailaddress=alice", wantStatus: 400},
		{name: "Apple: unknown domain", method: "GET", path: "/apple/profile.mobileconfig?emailaddress=alice@example.com", wantStatus: 404},
		{name: "Apple: POST", method: "POST", path: "/apple/profile.mobileconfig?emailaddress=alice@example.org", wantStatus: 405},
		{name: "index: DELETE", method: "DELETE", path: "/", wantStatus: 405},
		{name: "unknown path", method: "GET", path: "/nothing-here", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := baseOptions(t)
			if tt.opts != nil {
				opts = tt.opts(opts)
			}
			base := start(t, opts)
			resp := do(t, tt.method, base+tt.path, "", strings.NewReader(tt.body))
			if resp.status != tt.wantStatus {
				t.Errorf("status %d, want %d: %s", resp.status, tt.wantStatus, resp.body)
			}
		})
	}
}

func TestRequestBodyLimit(t *testing.T) {
	opts := baseOptions(t)
	opts.MaxRequestBytes = 512
	base := start(t, opts)
	small := `<Autodiscover><Request><EMailAddress>alice@example.org</EMailAddress></Request></Autodiscover>`
	big := `<Autodiscover><Request>` + strings.Repeat("<X>padding</X>", 100) + `<EMailAddress>alice@example.org</EMailAddress></Request></Autodiscover>`
	for _, tc := range []struct {
		name string
		body string
		want int
	}{{"under the limit", small, 200}, {"over the limit", big, http.StatusRequestEntityTooLarge}} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, http.MethodPost, base+"/autodiscover/autodiscover.xml", "", strings.NewReader(tc.body))
			if resp.status != tc.want {
				t.Errorf("status %d, want %d", resp.status, tc.want)
			}
		})
	}
}

// Outlook POX response, as a client reads it.
type adResponse struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		Account struct {
			AccountType string       `xml:"AccountType"`
			Action      string       `xml:"Action"`
			Protocols   []adProtocol `xml:"Protocol"`
		} `xml:"Account"`
	} `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
}

type adProtocol struct {
	Type, Server string
	Port         int
	LoginName    string
	SPA, SSL     string
	Encryption   string
}

func postAutodiscover(t *testing.T, base, path, addr string) response {
	t.Helper()
	var body bytes.Buffer
	body.WriteString(`<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>`)
	xml.EscapeText(&body, []byte(addr))
	body.WriteString(`</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`)
	return do(t, http.MethodPost, base+path, "", &body)
}

func TestAutodiscover(t *testing.T) {
	tests := []struct {
		name string
		opts func(autoconfig.Options) autoconfig.Options
		path string
		want []adProtocol
	}{
		{
			name: "no submission",
			path: "/autodiscover/autodiscover.xml",
			want: []adProtocol{
				{"IMAP", "mail.example.org", 10993, "alice@example.org", "off", "on", "SSL"},
				{"POP3", "mail.example.org", 10995, "alice@example.org", "off", "on", "SSL"},
			},
		},
		{
			name: "capitalised path, submission on 587",
			opts: func(o autoconfig.Options) autoconfig.Options { return withSubmission(o, "smtp.example.org", 0) },
			path: "/Autodiscover/Autodiscover.xml",
			want: []adProtocol{
				{"IMAP", "mail.example.org", 10993, "alice@example.org", "off", "on", "SSL"},
				{"POP3", "mail.example.org", 10995, "alice@example.org", "off", "on", "SSL"},
				{"SMTP", "smtp.example.org", 587, "alice@example.org", "off", "on", "TLS"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := baseOptions(t)
			if tt.opts != nil {
				opts = tt.opts(opts)
			}
			resp := postAutodiscover(t, start(t, opts), tt.path, "alice@example.org")
			if resp.status != http.StatusOK {
				t.Fatalf("status %d: %s", resp.status, resp.body)
			}
			if resp.contentType != "application/xml" {
				t.Errorf("Content-Type = %q", resp.contentType)
			}
			var r adResponse
			if err := xml.Unmarshal(resp.body, &r); err != nil {
				t.Fatalf("parse: %v\n%s", err, resp.body)
			}
			acc := r.Response.Account
			if acc.AccountType != "email" || acc.Action != "settings" {
				t.Errorf("AccountType %q Action %q", acc.AccountType, acc.Action)
			}
			if fmt.Sprint(acc.Protocols) != fmt.Sprint(tt.want) {
				t.Errorf("protocols\n got %v\nwant %v", acc.Protocols, tt.want)
			}
		})
	}
}

// plistValue decodes an XML property list into Go values (map[string]any,
// []any, string, int64, bool), failing on anything outside the plist DTD
// elements the profile uses.
func decodePlist(t *testing.T, data []byte) map[string]any {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	var parse func(start xml.StartElement) any
	parse = func(start xml.StartElement) any {
		switch start.Name.Local {
		case "dict":
			m := map[string]any{}
			var key string
			for {
				tok, err := dec.Token()
				if err != nil {
					t.Fatalf("plist: %v", err)
				}
				switch tok := tok.(type) {
				case xml.StartElement:
					if tok.Name.Local == "key" {
						var k string
						if err := dec.DecodeElement(&k, &tok); err != nil {
							t.Fatalf("plist key: %v", err)
						}
						key = k
						continue
					}
					if _, dup := m[key]; dup || key == "" {
						t.Fatalf("plist: value without key or duplicate key %q", key)
					}
					m[key] = parse(tok)
					key = ""
				case xml.EndElement:
					return m
				}
			}
		case "array":
			var a []any
			for {
				tok, err := dec.Token()
				if err != nil {
					t.Fatalf("plist: %v", err)
				}
				switch tok := tok.(type) {
				case xml.StartElement:
					a = append(a, parse(tok))
				case xml.EndElement:
					return a
				}
			}
		case "string", "integer", "true", "false":
			var s string
			if err := dec.DecodeElement(&s, &start); err != nil {
				t.Fatalf("plist %s: %v", start.Name.Local, err)
			}
			switch start.Name.Local {
			case "integer":
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					t.Fatalf("plist integer %q: %v", s, err)
				}
				return n
			case "true":
				return true
			case "false":
				return false
			}
			return s
		}
		t.Fatalf("plist: unexpected element <%s>", start.Name.Local)
		return nil
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("plist: no root dict: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "dict" {
			return parse(se).(map[string]any)
		}
	}
}

func getProfile(t *testing.T, base, addr string) response {
	t.Helper()
	resp := get(t, base+"/apple/profile.mobileconfig?emailaddress="+url.QueryEscape(addr))
	if resp.status != http.StatusOK {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	if resp.contentType != "application/x-apple-aspen-config" {
		t.Errorf("Content-Type = %q", resp.contentType)
	}
	return resp
}

func TestMobileconfig(t *testing.T) {
	tests := []struct {
		name        string
		opts        func(autoconfig.Options) autoconfig.Options
		wantOutHost string
		wantOutPort int64
	}{
		{name: "no submission: Hostname on 587", wantOutHost: "mail.example.org", wantOutPort: 587},
		{name: "submission configured", opts: func(o autoconfig.Options) autoconfig.Options { return withSubmission(o, "smtp.example.org", 465) },
			wantOutHost: "smtp.example.org", wantOutPort: 465},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := baseOptions(t)
			if tt.opts != nil {
				opts = tt.opts(opts)
			}
			base := start(t, opts)
			resp := getProfile(t, base, "alice@example.org")
			if cd := resp.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || !strings.Contains(cd, "example.org.mobileconfig") {
				t.Errorf("Content-Disposition = %q", cd)
			}
			p := decodePlist(t, resp.body)
			if p["PayloadType"] != "Configuration" || p["PayloadVersion"] != int64(1) {
				t.Errorf("top level PayloadType %v PayloadVersion %v", p["PayloadType"], p["PayloadVersion"])
			}
			id, _ := p["PayloadIdentifier"].(string)
			if !strings.HasPrefix(id, "org.example.mail.") {
				t.Errorf("PayloadIdentifier %q does not start with the reversed host name", id)
			}
			content, _ := p["PayloadContent"].([]any)
			if len(content) != 1 {
				t.Fatalf("PayloadContent = %v, want one payload", p["PayloadContent"])
			}
			mail := content[0].(map[string]any)
			want := map[string]any{
				"PayloadType":                            "com.apple.mail.managed",
				"EmailAccountType":                       "EmailTypeIMAP",
				"EmailAddress":                           "alice@example.org",
				"IncomingMailServerHostName":             "mail.example.org",
				"IncomingMailServerPortNumber":           int64(10993),
				"IncomingMailServerUseSSL":               true,
				"IncomingMailServerUsername":             "alice@example.org",
				"IncomingMailServerAuthentication":       "EmailAuthPassword",
				"OutgoingMailServerHostName":             tt.wantOutHost,
				"OutgoingMailServerPortNumber":           tt.wantOutPort,
				"OutgoingMailServerUseSSL":               true,
				"OutgoingMailServerUsername":             "alice@example.org",
				"OutgoingMailServerAuthentication":       "EmailAuthPassword",
				"OutgoingPasswordSameAsIncomingPassword": true,
				"PayloadVersion":                         int64(1),
			}
			for k, v := range want {
				if mail[k] != v {
					t.Errorf("%s = %#v, want %#v", k, mail[k], v)
				}
			}
			for _, k := range []string{"PayloadUUID", "PayloadIdentifier"} {
				if mail[k] == "" || mail[k] == p[k] {
					t.Errorf("mail payload %s %q empty or equal to the profile's", k, mail[k])
				}
			}

			// Stable identifiers: the same address gets the same UUIDs
			// (re-installing replaces the profile); another address differs.
			again := decodePlist(t, getProfile(t, base, "Alice@EXAMPLE.org").body)
			other := decodePlist(t, getProfile(t, base, "bob@example.org").body)
			if again["PayloadUUID"] != p["PayloadUUID"] {
				t.Errorf("PayloadUUID changed between downloads: %v, %v", p["PayloadUUID"], again["PayloadUUID"])
			}
			if other["PayloadUUID"] == p["PayloadUUID"] || other["PayloadIdentifier"] == p["PayloadIdentifier"] {
				t.Errorf("two addresses share PayloadUUID/PayloadIdentifier %v", p["PayloadUUID"])
			}
			uuid, _ := p["PayloadUUID"].(string)
			if len(uuid) != 36 || strings.Count(uuid, "-") != 4 {
				t.Errorf("PayloadUUID %q is not a UUID", uuid)
			}
		})
	}
}

// TestMobileconfigPlistlib checks the profile with an independent plist
// parser, Python's plistlib.
func TestMobileconfigPlistlib(t *testing.T) {
	python := testutil.RequireBinary(t, "python3")
	base := start(t, withSubmission(baseOptions(t), "smtp.example.org", 587))
	const addr = "o'neil&co+{x}@example.org"
	resp := getProfile(t, base, addr)
	file := filepath.Join(t.TempDir(), "profile.mobileconfig")
	if err := os.WriteFile(file, resp.body, 0o600); err != nil {
		t.Fatal(err)
	}
	const script = `
import json, plistlib, sys
with open(sys.argv[1], "rb") as f:
    p = plistlib.load(f, fmt=plistlib.FMT_XML)
m = [c for c in p["PayloadContent"] if c["PayloadType"] == "com.apple.mail.managed"][0]
json.dump({k: m[k] for k in ("PayloadType", "EmailAddress", "IncomingMailServerHostName",
    "IncomingMailServerPortNumber", "IncomingMailServerUseSSL", "IncomingMailServerUsername",
    "OutgoingMailServerHostName", "OutgoingMailServerPortNumber")} | {"Top": p["PayloadType"]}, sys.stdout)
`
	out, err := exec.Command(python, "-c", script, file).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("plistlib: %v\n%s\nprofile:\n%s", err, stderr, resp.body)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	want := map[string]any{
		"Top":                          "Configuration",
		"PayloadType":                  "com.apple.mail.managed",
		"EmailAddress":                 addr,
		"IncomingMailServerHostName":   "mail.example.org",
		"IncomingMailServerPortNumber": float64(10993),
		"IncomingMailServerUseSSL":     true,
		"IncomingMailServerUsername":   addr,
		"OutgoingMailServerHostName":   "smtp.example.org",
		"OutgoingMailServerPortNumber": float64(587),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("plistlib %s = %#v, want %#v", k, got[k], v)
		}
	}
}

func TestHostileInput(t *testing.T) {
	opts := baseOptions(t)
	opts.DisplayName = `<b>"Roost" & co</b>`
	base := start(t, opts)

	t.Run("valid address with XML specials is escaped", func(t *testing.T) {
		// & ' { } are atext (RFC 5322 §3.2.3): a legal address that breaks
		// naive XML templating.
		const addr = "o'neil&co+{x}@example.org"
		profile := getProfile(t, base, addr)
		if bytes.Contains(profile.body, []byte("neil&co")) || bytes.Contains(profile.body, []byte("<b>")) {
			t.Errorf("unescaped input in profile:\n%s", profile.body)
		}
		p := decodePlist(t, profile.body)
		mail := p["PayloadContent"].([]any)[0].(map[string]any)
		if mail["EmailAddress"] != addr || p["PayloadDisplayName"] != opts.DisplayName {
			t.Errorf("round trip: EmailAddress %q, PayloadDisplayName %q", mail["EmailAddress"], p["PayloadDisplayName"])
		}

		ad := postAutodiscover(t, base, "/autodiscover/autodiscover.xml", addr)
		if ad.status != http.StatusOK || bytes.Contains(ad.body, []byte("neil&co")) {
			t.Fatalf("status %d, body:\n%s", ad.status, ad.body)
		}
		var r adResponse
		if err := xml.Unmarshal(ad.body, &r); err != nil {
			t.Fatal(err)
		}
		if got := r.Response.Account.Protocols[0].LoginName; got != addr {
			t.Errorf("LoginName = %q, want %q", got, addr)
		}

		tb := get(t, base+"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress="+url.QueryEscape(addr))
		var cfg tbConfig
		if err := xml.Unmarshal(tb.body, &cfg); err != nil || cfg.Provider.Display != opts.DisplayName {
			t.Errorf("Thunderbird config: %v, displayName %q\n%s", err, cfg.Provider.Display, tb.body)
		}
	})

	hostile := []string{
		`"><script>alert(1)</script>"@example.org`,
		`alice@example.org<script>alert(1)</script>`,
		`<script>alert(1)</script>@example.org`,
		"alice@example.org\r\nX-Injected: 1",
		"Alice <alice@example.org>",
		`"quoted local"@example.org`,
		"alice@example.org]]><x/>",
		"alice@@example.org",
		"alice@-example.org",
		strings.Repeat("a", 65) + "@example.org",
		"alice\u202e@example.org",
	}
	for _, addr := range hostile {
		t.Run("refused "+strconv.Quote(addr), func(t *testing.T) {
			for _, path := range []string{"/apple/profile.mobileconfig", "/.well-known/autoconfig/mail/config-v1.1.xml"} {
				resp := get(t, base+path+"?emailaddress="+url.QueryEscape(addr))
				if resp.status != http.StatusBadRequest {
					t.Errorf("%s: status %d, want 400", path, resp.status)
				}
				if bytes.Contains(resp.body, []byte("<script>")) || bytes.Contains(resp.body, []byte("Injected")) {
					t.Errorf("%s: input reflected: %s", path, resp.body)
				}
			}
			ad := postAutodiscover(t, base, "/autodiscover/autodiscover.xml", addr)
			if ad.status != http.StatusBadRequest {
				t.Errorf("autodiscover: status %d, want 400", ad.status)
			}
		})
	}
}

func TestIndexPage(t *testing.T) {
	opts := withSubmission(baseOptions(t), "smtp.example.org", 587)
	opts.DisplayName = `<script>alert("x")</script>`
	resp := get(t, start(t, opts)+"/")
	if resp.status != http.StatusOK || !strings.HasPrefix(resp.contentType, "text/html") {
		t.Fatalf("status %d, Content-Type %q", resp.status, resp.contentType)
	}
	body := string(resp.body)
	for _, want := range []string{
		`<form method="get" action="/apple/profile.mobileconfig">`,
		`name="emailaddress"`,
		"Thunderbird",
		"<code>mail.example.org</code>",
		"<code>10993</code>",
		"<code>smtp.example.org</code>",
		"&lt;script&gt;",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("unescaped DisplayName in page:\n%s", body)
	}
}

func TestDNSRecords(t *testing.T) {
	common := []string{
		"example.org.\t3600\tIN\tMX\t10 mail.example.org.",
		"_imaps._tcp.example.org.\t3600\tIN\tSRV\t0 1 10993 mail.example.org.",
		"_imap._tcp.example.org.\t3600\tIN\tSRV\t5 1 10143 mail.example.org.",
		"_pop3s._tcp.example.org.\t3600\tIN\tSRV\t10 1 10995 mail.example.org.",
		"_pop3._tcp.example.org.\t3600\tIN\tSRV\t15 1 10110 mail.example.org.",
		"autoconfig.example.org.\t3600\tIN\tCNAME\tmail.example.org.",
		"autodiscover.example.org.\t3600\tIN\tCNAME\tmail.example.org.",
	}
	tests := []struct {
		name   string
		domain string
		opts   func(autoconfig.Options) autoconfig.Options
		want   []string
	}{
		{
			name:   "no submission",
			domain: "example.org",
			want: []string{
				"_submissions._tcp.example.org.\t3600\tIN\tSRV\t0 0 0 .",
				"_submission._tcp.example.org.\t3600\tIN\tSRV\t0 0 0 .",
			},
		},
		{
			name:   "submission on 587, domain with trailing dot and capitals",
			domain: "Example.ORG.",
			opts:   func(o autoconfig.Options) autoconfig.Options { return withSubmission(o, "smtp.example.org", 587) },
			want: []string{
				"_submissions._tcp.example.org.\t3600\tIN\tSRV\t0 0 0 .",
				"_submission._tcp.example.org.\t3600\tIN\tSRV\t0 1 587 smtp.example.org.",
			},
		},
		{
			name:   "submission on 465",
			domain: "example.org",
			opts:   func(o autoconfig.Options) autoconfig.Options { return withSubmission(o, "smtp.example.org", 465) },
			want: []string{
				"_submissions._tcp.example.org.\t3600\tIN\tSRV\t0 1 465 smtp.example.org.",
				"_submission._tcp.example.org.\t3600\tIN\tSRV\t0 0 0 .",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := baseOptions(t)
			if tt.opts != nil {
				opts = tt.opts(opts)
			}
			out := autoconfig.DNSRecords(tt.domain, opts)
			if !strings.HasPrefix(out, "; ") {
				t.Errorf("no comment header:\n%s", out)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			var records []string
			for _, l := range lines {
				if strings.HasPrefix(l, ";") {
					continue
				}
				f := strings.Split(l, "\t")
				if len(f) != 5 || !strings.HasSuffix(f[0], ".") || f[1] != "3600" || f[2] != "IN" {
					t.Errorf("not a zone-file record: %q", l)
				}
				records = append(records, l)
			}
			want := append(append([]string{}, common...), tt.want...)
			if len(records) != len(want) {
				t.Errorf("%d records, want %d:\n%s", len(records), len(want), out)
			}
			for _, w := range want {
				if !strings.Contains(out, w+"\n") {
					t.Errorf("missing record %q in:\n%s", w, out)
				}
			}
		})
	}
}

func TestValidDomain(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"example.org", true},
		{"mail.example.co.uk", true},
		{"xn--bcher-kva.example", true},
		{"bücher.example", true},
		{"localhost", false},
		{"", false},
		{"-bad.example", false},
		{"bad-.example", false},
		{"a..example", false},
		{"exa mple.org", false},
		{"example.org\n", false},
		{strings.Repeat("a", 64) + ".example", false},
		{"under_score.example", false},
	}
	for _, tt := range tests {
		if got := autoconfig.ValidDomain(tt.name); got != tt.want {
			t.Errorf("ValidDomain(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
