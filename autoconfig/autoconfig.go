// Package autoconfig lets mail clients set up a Roost account from nothing
// but an email address and a password, and prints the DNS records that make
// them find Roost.
//
// It answers the three autoconfiguration mechanisms clients use:
//   - Thunderbird (and K-9/Thunderbird for Android, Evolution, …): the
//     clientConfig v1.1 file at /.well-known/autoconfig/mail/config-v1.1.xml
//     and at autoconfig.<domain>/mail/config-v1.1.xml
//     (https://www.ietf.org/archive/id/draft-bucksch-autoconfig-02.html).
//   - Outlook: the "POX" Autodiscover protocol at /autodiscover/autodiscover.xml
//     ([MS-OXDISCO], [MS-OXDSCLI]).
//   - Apple Mail on iOS, iPadOS and macOS: a configuration profile with a
//     com.apple.mail.managed payload, offered from a small web page.
//
// DNSRecords prints the MX, RFC 6186 SRV and CNAME records an administrator
// publishes so that clients find these endpoints and the servers.
package autoconfig

import (
	"log/slog"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Default ports, used where Options leaves a port 0.
const (
	DefaultIMAPSPort      = 993 // RFC 8314 §7.2
	DefaultIMAPPort       = 143 // RFC 9051 §1.4, STARTTLS per §6.2.1
	DefaultPOP3SPort      = 995 // RFC 8314 §7.2
	DefaultPOP3Port       = 110 // RFC 1939 §3, STLS per RFC 2595 §4
	DefaultSubmissionPort = 587 // RFC 6409 §3.1
	// DefaultMaxRequestBytes bounds request bodies (the Autodiscover POST).
	DefaultMaxRequestBytes = 64 << 10
)

// Options describe the servers that clients are told to use.
type Options struct {
	// Hostname is the public host name of the mail server, as it appears
	// in its TLS certificate (required).
	Hostname string
	// Ports of the IMAP and POP3 listeners; 0 means the default port.
	IMAPSPort, IMAPPort, POP3SPort, POP3Port int
	// SubmissionHost is the message submission server (RFC 6409) users send
	// through: Roost's own, or another MTA; empty means none is announced.
	// SubmissionPort 0 means 587 (STARTTLS); 465 is announced as implicit
	// TLS (RFC 8314 §3.3).
	SubmissionHost string
	SubmissionPort int
	// Submission, when not empty, lists the submission ports on
	// SubmissionHost instead of SubmissionPort (Roost's own submission may
	// offer both implicit TLS and STARTTLS). Implicit TLS is preferred
	// where only one can be announced (RFC 8314 §3.3).
	Submission []SubmissionPort
	// DisplayName names the service in clients and on the web page; empty
	// means Hostname.
	DisplayName string
	// Domains returns the mail domains Roost serves. Addresses in other
	// domains get 404. Nil means no domain is served.
	Domains func() []string
	// MaxRequestBytes bounds a request body; 0 means DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// Logger receives one line per answered request; nil means slog.Default().
	Logger *slog.Logger
}

// SubmissionPort is one submission port to announce.
type SubmissionPort struct {
	Port        int
	ImplicitTLS bool // TLS from the first byte (465) rather than STARTTLS
}

// withDefaults returns a copy of o with defaults filled in and host names
// normalised (no trailing dot).
func (o Options) withDefaults() Options {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.IMAPSPort, DefaultIMAPSPort)
	def(&o.IMAPPort, DefaultIMAPPort)
	def(&o.POP3SPort, DefaultPOP3SPort)
	def(&o.POP3Port, DefaultPOP3Port)
	o.Hostname = normaliseHost(o.Hostname)
	o.SubmissionHost = normaliseHost(o.SubmissionHost)
	if o.SubmissionHost != "" {
		def(&o.SubmissionPort, DefaultSubmissionPort)
		if len(o.Submission) == 0 {
			o.Submission = []SubmissionPort{{Port: o.SubmissionPort, ImplicitTLS: o.SubmissionPort == 465}}
		}
		// Implicit TLS first.
		ports := make([]SubmissionPort, 0, len(o.Submission))
		for _, implicit := range []bool{true, false} {
			for _, p := range o.Submission {
				if p.ImplicitTLS == implicit {
					ports = append(ports, p)
				}
			}
		}
		o.Submission = ports
		o.SubmissionPort = ports[0].Port
	} else {
		o.SubmissionPort = 0
		o.Submission = nil
	}
	if o.DisplayName == "" {
		o.DisplayName = o.Hostname
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func (o Options) hasSubmission() bool { return o.SubmissionHost != "" }

// submissionImplicitTLS reports whether the preferred submission port
// speaks TLS from the first byte (465, RFC 8314 §3.3) rather than
// STARTTLS (RFC 3207).
func (o Options) submissionImplicitTLS() bool {
	return len(o.Submission) > 0 && o.Submission[0].ImplicitTLS
}

func normaliseHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
}

// handler serves every endpoint; it holds only immutable configuration.
type handler struct {
	opts Options
	log  *slog.Logger
}

// NewHandler returns the HTTP handler for all autoconfiguration endpoints.
// The URL paths are contracts with the clients and must not change:
//
//	GET  /.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=…  Thunderbird
//	GET  /mail/config-v1.1.xml[?emailaddress=…]                       Thunderbird, autoconfig.<domain> host
//	POST /autodiscover/autodiscover.xml (any case, e.g. /Autodiscover/Autodiscover.xml)  Outlook
//	GET  /apple/profile.mobileconfig?emailaddress=…                   Apple profile
//	GET  /                                                            web page with the profile form
//
// Other methods on these paths get 405, other paths 404.
func NewHandler(opts Options) http.Handler {
	o := opts.withDefaults()
	h := &handler{opts: o, log: o.Logger}
	mux := http.NewServeMux()
	// Method patterns make ServeMux answer 405 with an Allow header for
	// other methods ("GET" also admits HEAD).
	mux.HandleFunc("GET /.well-known/autoconfig/mail/config-v1.1.xml", h.thunderbird)
	mux.HandleFunc("GET /mail/config-v1.1.xml", h.thunderbird)
	mux.HandleFunc("POST "+autodiscoverPath, h.autodiscover)
	mux.HandleFunc("GET /apple/profile.mobileconfig", h.mobileconfig)
	mux.HandleFunc("GET /{$}", h.index)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, o.MaxRequestBytes)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Outlook asks for /autodiscover/autodiscover.xml, other clients
		// for /Autodiscover/Autodiscover.xml and further spellings: the
		// Autodiscover path is matched without regard to case.
		if r.URL.Path != autodiscoverPath && strings.EqualFold(r.URL.Path, autodiscoverPath) {
			r = withPath(r, autodiscoverPath)
		}
		mux.ServeHTTP(w, r)
	})
}

// autodiscoverPath is the Outlook Autodiscover URL path ([MS-OXDISCO] §3.1.5).
const autodiscoverPath = "/autodiscover/autodiscover.xml"

// withPath returns a shallow copy of r with another URL path; the original
// request is not modified, as net/http requires of handlers.
func withPath(r *http.Request, path string) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = path, ""
	r2.URL = &u
	return r2
}

// servedDomain returns the served domain equal to d (case-insensitively),
// or "" when Roost does not serve d.
func (h *handler) servedDomain(d string) string {
	d = normaliseHost(d)
	if d == "" || h.opts.Domains == nil {
		return ""
	}
	for _, served := range h.opts.Domains() {
		if normaliseHost(served) == d {
			return d
		}
	}
	return ""
}

// firstDomain returns the first served domain, or "".
func (h *handler) firstDomain() string {
	if h.opts.Domains == nil {
		return ""
	}
	for _, d := range h.opts.Domains() {
		if d = normaliseHost(d); d != "" {
			return d
		}
	}
	return ""
}

// fail answers a client error with a fixed text: the input is never
// reflected.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h.log.Debug("autoconfig request refused", "remote", r.RemoteAddr, "method", r.Method,
		"path", r.URL.Path, "status", status, "reason", reason)
	http.Error(w, http.StatusText(status)+": "+reason, status)
}

// parseAddress checks that s is a plain addr-spec whose local part is a
// dot-atom (RFC 5322 §3.4.1, §3.2.3; UTF-8 allowed per RFC 6532 §3.2) and
// returns it with the domain lowercased. Quoted local parts, comments,
// display names and angle brackets are refused: mailbox names in Roost are
// dot-atoms, and refusing the rest keeps markup out of every answer.
func parseAddress(s string) (addr, domain string, ok bool) {
	// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including "<>".
	if len(s) > 254 || !utf8.ValidString(s) {
		return "", "", false
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return "", "", false
	}
	local, domain := s[:at], normaliseHost(s[at+1:])
	// RFC 5321 §4.5.3.1.1: local part at most 64 octets.
	if len(local) > 64 || !isDotAtom(local) || !ValidDomain(domain) || s[at+1:] != strings.TrimSpace(s[at+1:]) {
		return "", "", false
	}
	return local + "@" + domain, domain, true
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r >= utf8.RuneSelf {
			// RFC 6532 §3.2: UTF8-non-ascii is atext; spaces, controls and
			// invisible formatting characters are still refused.
			if r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r) {
				return false
			}
			continue
		}
		if !isAtext(byte(r)) && r != '.' {
			return false
		}
	}
	return true
}

// isAtext reports RFC 5322 §3.2.3 atext for ASCII.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// ValidDomain reports whether name (without trailing dot) is a syntactically
// valid domain name of at least two labels: letters, digits and hyphens, or
// UTF-8 (U-labels), 1–63 octets per label, 253 in all (RFC 1035 §2.3.4,
// RFC 5890). cmd/roost can use it to check a domain before DNSRecords.
func ValidDomain(name string) bool {
	if name == "" || len(name) > 253 || !utf8.ValidString(name) {
		return false
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			switch {
			case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)):
			case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-':
			default:
				return false
			}
		}
	}
	return true
}
