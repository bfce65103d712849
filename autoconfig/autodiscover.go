package autoconfig

import (
	"bytes"
	"encoding/xml"
	"errors"
	"net/http"
	"strings"
)

// autodiscoverRequest is the client's POST body:
//
//	<Autodiscover xmlns="…/outlook/requestschema/2006">
//	  <Request><EMailAddress>user@example.org</EMailAddress>
//	    <AcceptableResponseSchema>…/outlook/responseschema/2006a</AcceptableResponseSchema>
//	  </Request>
//	</Autodiscover>
//
// The root's namespace is not enforced: clients other than Outlook omit or
// vary it, and the element names are unambiguous. Only the Outlook response
// schema is answered; a client asking for another (e.g. ActiveSync's
// mobilesync) gets it anyway and will move on to its next method.
type autodiscoverRequest struct {
	XMLName xml.Name `xml:"Autodiscover"`
	Request struct {
		EMailAddress             string `xml:"EMailAddress"`
		AcceptableResponseSchema string `xml:"AcceptableResponseSchema"`
	} `xml:"Request"`
}

// autodiscoverResponse is the answer in the Outlook response schema 2006a
// ([MS-OXDSCLI] §2.2.4), wrapped in the generic 2006 Autodiscover element.
type autodiscoverResponse struct {
	XMLName  xml.Name            `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response autodiscoverOutlook `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
}

type autodiscoverOutlook struct {
	Account autodiscoverAccount `xml:"Account"`
}

type autodiscoverAccount struct {
	AccountType string                 `xml:"AccountType"` // "email": POP3/IMAP/SMTP settings, not Exchange
	Action      string                 `xml:"Action"`      // "settings": the settings follow
	Protocols   []autodiscoverProtocol `xml:"Protocol"`
}

// autodiscoverProtocol is one server ([MS-OXDSCLI] §2.2.4.1.1.2.1.3).
type autodiscoverProtocol struct {
	Type           string `xml:"Type"` // IMAP, POP3, SMTP
	Server         string `xml:"Server"`
	Port           int    `xml:"Port"`
	DomainRequired string `xml:"DomainRequired"` // off: the login name is not DOMAIN\user
	LoginName      string `xml:"LoginName"`
	SPA            string `xml:"SPA"` // off: no NTLM "secure password authentication"
	SSL            string `xml:"SSL"`
	// Encryption, when present, overrides SSL in Outlook 2010 and later:
	// "SSL" is implicit TLS, "TLS" is STARTTLS.
	Encryption   string `xml:"Encryption,omitempty"`
	AuthRequired string `xml:"AuthRequired"`
}

// autodiscover serves POST /autodiscover/autodiscover.xml.
func (h *handler) autodiscover(w http.ResponseWriter, r *http.Request) {
	var req autodiscoverRequest
	if err := xml.NewDecoder(r.Body).Decode(&req); err != nil {
		if maxErr := (*http.MaxBytesError)(nil); errors.As(err, &maxErr) {
			h.fail(w, r, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		h.fail(w, r, http.StatusBadRequest, "request body is not an Autodiscover request")
		return
	}
	addr, domain, ok := parseAddress(strings.TrimSpace(req.Request.EMailAddress))
	if !ok {
		h.fail(w, r, http.StatusBadRequest, "EMailAddress is missing or not a valid email address")
		return
	}
	if h.servedDomain(domain) == "" {
		h.fail(w, r, http.StatusNotFound, "this server does not serve that domain")
		return
	}

	o := h.opts
	proto := func(typ, host string, port int, encryption string) autodiscoverProtocol {
		return autodiscoverProtocol{Type: typ, Server: host, Port: port, DomainRequired: "off",
			LoginName: addr, SPA: "off", SSL: "on", Encryption: encryption, AuthRequired: "on"}
	}
	resp := autodiscoverResponse{Response: autodiscoverOutlook{Account: autodiscoverAccount{
		AccountType: "email",
		Action:      "settings",
		Protocols: []autodiscoverProtocol{
			// Implicit TLS ports only: the POX schema has no per-protocol
			// fallback list, and RFC 8314 §4.1 prefers implicit TLS.
			proto("IMAP", o.Hostname, o.IMAPSPort, "SSL"),
			proto("POP3", o.Hostname, o.POP3SPort, "SSL"),
		},
	}}}
	// The POX schema does not require an SMTP entry; without configured
	// submission the user sets the outgoing server by hand.
	if o.hasSubmission() {
		enc := "TLS"
		if o.submissionImplicitTLS() {
			enc = "SSL"
		}
		resp.Response.Account.Protocols = append(resp.Response.Account.Protocols,
			proto("SMTP", o.SubmissionHost, o.SubmissionPort, enc))
	}

	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(resp); err != nil {
		h.log.Error("autoconfig: encode Autodiscover response", "err", err)
		http.Error(w, "500 internal server error", http.StatusInternalServerError)
		return
	}
	buf.WriteByte('\n')
	h.log.Info("autoconfig: served Autodiscover settings", "remote", r.RemoteAddr, "domain", domain)
	w.Header().Set("Content-Type", "application/xml")
	w.Write(buf.Bytes())
}
