package autoconfig

import (
	"bytes"
	"encoding/xml"
	"net"
	"net/http"
	"strings"
)

// clientConfig is Thunderbird's configuration file, version 1.1
// (draft-bucksch-autoconfig §4; the format Thunderbird's readFromXML reads).
type clientConfig struct {
	XMLName  xml.Name      `xml:"clientConfig"`
	Version  string        `xml:"version,attr"`
	Provider emailProvider `xml:"emailProvider"`
}

type emailProvider struct {
	ID               string   `xml:"id,attr"`
	Domains          []string `xml:"domain"`
	DisplayName      string   `xml:"displayName"`
	DisplayShortName string   `xml:"displayShortName"`
	// Thunderbird tries incoming servers in document order: implicit TLS
	// first (RFC 8314 §4.1 prefers it), then STARTTLS.
	Incoming []tbServer `xml:"incomingServer"`
	// NoOutgoing explains an absent outgoingServer to whoever reads the file.
	NoOutgoing xml.Comment `xml:",comment"`
	Outgoing   []tbServer  `xml:"outgoingServer"`
}

type tbServer struct {
	Type       string `xml:"type,attr"`
	Hostname   string `xml:"hostname"`
	Port       int    `xml:"port"`
	SocketType string `xml:"socketType"` // "SSL" = implicit TLS, "STARTTLS"
	// %EMAILADDRESS% is a placeholder Thunderbird replaces with the address
	// the user typed: Roost logs users in with their full address.
	Username       string `xml:"username"`
	Authentication string `xml:"authentication"` // password-cleartext: PLAIN/LOGIN inside TLS
}

// thunderbird serves GET /.well-known/autoconfig/mail/config-v1.1.xml and
// GET /mail/config-v1.1.xml (the latter on the autoconfig.<domain> host).
func (h *handler) thunderbird(w http.ResponseWriter, r *http.Request) {
	domain, status, reason := h.configDomain(r)
	if status != http.StatusOK {
		h.fail(w, r, status, reason)
		return
	}
	o := h.opts
	server := func(typ string, port int, socketType string) tbServer {
		return tbServer{Type: typ, Hostname: o.Hostname, Port: port, SocketType: socketType,
			Username: "%EMAILADDRESS%", Authentication: "password-cleartext"}
	}
	cfg := clientConfig{
		Version: "1.1",
		Provider: emailProvider{
			ID:               domain,
			Domains:          []string{domain},
			DisplayName:      o.DisplayName,
			DisplayShortName: o.DisplayName,
			Incoming: []tbServer{
				server("imap", o.IMAPSPort, "SSL"),
				server("imap", o.IMAPPort, "STARTTLS"),
				server("pop3", o.POP3SPort, "SSL"),
				server("pop3", o.POP3Port, "STARTTLS"),
			},
		},
	}
	if o.hasSubmission() {
		for _, p := range o.Submission {
			socketType := "STARTTLS"
			if p.ImplicitTLS {
				socketType = "SSL"
			}
			s := server("smtp", p.Port, socketType)
			s.Hostname = o.SubmissionHost
			cfg.Provider.Outgoing = append(cfg.Provider.Outgoing, s)
		}
	} else {
		// Thunderbird's readFromXML refuses a file without a usable
		// <outgoingServer> ("Need proper <outgoingServer> in XML file") and
		// then falls back to guessing the servers. Announcing a server that
		// does not exist would be worse, so the outgoing server is only
		// announced when there is one.
		cfg.Provider.NoOutgoing = xml.Comment(" No outgoing (submission) server is configured in Roost; set one up in the client by hand. ")
	}

	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		h.log.Error("autoconfig: encode Thunderbird config", "err", err)
		http.Error(w, "500 internal server error", http.StatusInternalServerError)
		return
	}
	buf.WriteByte('\n')
	h.log.Info("autoconfig: served Thunderbird config", "remote", r.RemoteAddr, "domain", domain)
	w.Header().Set("Content-Type", "application/xml")
	w.Write(buf.Bytes())
}

// configDomain picks the domain a Thunderbird request is about: the domain of
// the emailaddress parameter when given (Thunderbird always sends it);
// otherwise the host the request was sent to (autoconfig.<domain> or the
// domain itself) when Roost serves it; otherwise the first served domain.
func (h *handler) configDomain(r *http.Request) (domain string, status int, reason string) {
	if q := r.URL.Query().Get("emailaddress"); q != "" {
		_, d, ok := parseAddress(q)
		if !ok {
			return "", http.StatusBadRequest, "emailaddress is not a valid email address"
		}
		if h.servedDomain(d) == "" {
			return "", http.StatusNotFound, "this server does not serve that domain"
		}
		return d, http.StatusOK, ""
	}
	host := r.Host
	if hp, _, err := net.SplitHostPort(host); err == nil {
		host = hp
	}
	host = normaliseHost(host)
	if d := h.servedDomain(strings.TrimPrefix(host, "autoconfig.")); d != "" {
		return d, http.StatusOK, ""
	}
	if d := h.firstDomain(); d != "" {
		return d, http.StatusOK, ""
	}
	return "", http.StatusBadRequest, "no emailaddress given and no mail domain configured"
}
