package autoconfig

import (
	"bytes"
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
)

// mobileconfig serves GET /apple/profile.mobileconfig?emailaddress=…: an
// unsigned Apple configuration profile (Apple "Configuration Profile
// Reference", payload type com.apple.mail.managed) that sets up the IMAP
// account on iOS, iPadOS and macOS. The user is asked for the password on
// installation, so the profile holds no secret.
func (h *handler) mobileconfig(w http.ResponseWriter, r *http.Request) {
	addr, domain, ok := parseAddress(r.URL.Query().Get("emailaddress"))
	if !ok {
		h.fail(w, r, http.StatusBadRequest, "emailaddress is missing or not a valid email address")
		return
	}
	if h.servedDomain(domain) == "" {
		h.fail(w, r, http.StatusNotFound, "this server does not serve that domain")
		return
	}
	var buf bytes.Buffer
	writePlist(&buf, h.profile(addr))
	h.log.Info("autoconfig: served Apple profile", "remote", r.RemoteAddr, "domain", domain)
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment",
		map[string]string{"filename": domain + ".mobileconfig"}))
	w.Write(buf.Bytes())
}

// profile builds the configuration profile for addr.
func (h *handler) profile(addr string) plistDict {
	o := h.opts
	// Apple's mail payload requires the outgoing server keys: a profile
	// without OutgoingMailServerHostName does not install. Without a
	// submission server this points at Hostname on the submission port 587
	// (RFC 6409 §3.1), where an MTA on the mail host usually listens; the
	// user can change it in Settings.
	outHost, outPort := o.SubmissionHost, o.SubmissionPort
	if !o.hasSubmission() {
		outHost, outPort = o.Hostname, DefaultSubmissionPort
	}
	// Identifiers are stable per server and address, so downloading the
	// profile again replaces the installed one instead of adding a second
	// account, while two addresses on one device do not replace each other.
	key := strings.ToLower(addr)
	profileUUID := stableUUID("roost profile", o.Hostname, key)
	accountUUID := stableUUID("roost mail account", o.Hostname, key)
	prefix := reverseHost(o.Hostname)

	account := plistDict{
		{"EmailAccountDescription", o.DisplayName},
		{"EmailAccountType", "EmailTypeIMAP"},
		{"EmailAddress", addr},
		{"IncomingMailServerAuthentication", "EmailAuthPassword"},
		{"IncomingMailServerHostName", o.Hostname},
		{"IncomingMailServerPortNumber", o.IMAPSPort},
		{"IncomingMailServerUseSSL", true}, // implicit TLS, RFC 8314 §3
		{"IncomingMailServerUsername", addr},
		{"OutgoingMailServerAuthentication", "EmailAuthPassword"},
		{"OutgoingMailServerHostName", outHost},
		{"OutgoingMailServerPortNumber", outPort},
		// UseSSL is TLS on 465 and STARTTLS on 587 for Apple Mail.
		{"OutgoingMailServerUseSSL", true},
		{"OutgoingMailServerUsername", addr},
		{"OutgoingPasswordSameAsIncomingPassword", true},
		{"PayloadDescription", "Mail account " + addr},
		{"PayloadDisplayName", o.DisplayName + " (" + addr + ")"},
		{"PayloadIdentifier", prefix + ".account." + accountUUID},
		{"PayloadType", "com.apple.mail.managed"},
		{"PayloadUUID", accountUUID},
		{"PayloadVersion", 1},
	}
	return plistDict{
		{"PayloadContent", []any{account}},
		{"PayloadDescription", "Sets up the mail account " + addr + " on " + o.Hostname + "."},
		{"PayloadDisplayName", o.DisplayName},
		{"PayloadIdentifier", prefix + "." + profileUUID},
		{"PayloadRemovalDisallowed", false},
		{"PayloadType", "Configuration"},
		{"PayloadUUID", profileUUID},
		{"PayloadVersion", 1},
	}
}

// stableUUID derives a UUID from parts: the first 128 bits of their SHA-256
// with the version and variant bits of a version 8 UUID (RFC 9562 §5.8).
func stableUUID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // variant 10
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// reverseHost turns mail.example.org into org.example.mail, the reverse-DNS
// style Apple expects for PayloadIdentifier.
func reverseHost(host string) string {
	labels := strings.Split(strings.ToLower(host), ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".")
}

// plistDict is an ordered property-list dictionary.
type plistDict []plistEntry

type plistEntry struct {
	Key   string
	Value any // string, int, bool, plistDict or []any
}

// writePlist writes root as an XML property list (Apple DTD PLIST 1.0). All
// text goes through xml.EscapeText; booleans use the empty-element form
// <true/> that every plist parser accepts.
func writePlist(buf *bytes.Buffer, root plistDict) {
	buf.WriteString(xml.Header)
	buf.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	buf.WriteString(`<plist version="1.0">` + "\n")
	writePlistValue(buf, root, 0)
	buf.WriteString("</plist>\n")
}

func writePlistValue(buf *bytes.Buffer, v any, depth int) {
	indent := strings.Repeat("\t", depth)
	text := func(tag, s string) {
		buf.WriteString(indent + "<" + tag + ">")
		xml.EscapeText(buf, []byte(s)) // writes to a bytes.Buffer cannot fail
		buf.WriteString("</" + tag + ">\n")
	}
	switch v := v.(type) {
	case string:
		text("string", v)
	case int:
		text("integer", fmt.Sprint(v))
	case bool:
		if v {
			buf.WriteString(indent + "<true/>\n")
		} else {
			buf.WriteString(indent + "<false/>\n")
		}
	case plistDict:
		buf.WriteString(indent + "<dict>\n")
		for _, e := range v {
			writePlistValue(buf, plistKey(e.Key), depth+1)
			writePlistValue(buf, e.Value, depth+1)
		}
		buf.WriteString(indent + "</dict>\n")
	case plistKey:
		text("key", string(v))
	case []any:
		buf.WriteString(indent + "<array>\n")
		for _, e := range v {
			writePlistValue(buf, e, depth+1)
		}
		buf.WriteString(indent + "</array>\n")
	default:
		// Programming error: profile only builds the types above.
		panic(fmt.Sprintf("autoconfig: no plist encoding for %T", v))
	}
}

type plistKey string
