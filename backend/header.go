package backend

import (
	"bytes"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // RFC 2047 words in any charset
)

// header is a message or part header as a list of fields, read by hand
// rather than with net/textproto or go-message's textproto because those
// stop at the first malformed line (a line without a colon, a first line
// that starts with a space), losing every field after it, where a mail
// reader (and Dovecot) skips the bad line and reads on.
type header []headerField

type headerField struct {
	name  string // as written, trimmed
	value []byte // raw: after the colon up to the field's final line break, folding kept
}

// maxHeaderFields bounds the fields kept of one header.
const maxHeaderFields = 10000

// readHeader splits a header block (up to and including the blank line,
// or the whole of a header-only message) into fields.
func readHeader(b []byte) header {
	var h header
	for len(b) > 0 && len(h) < maxHeaderFields {
		// One field: its first line and every continuation line.
		end := 0
		for {
			nl := bytes.IndexByte(b[end:], '\n')
			if nl < 0 {
				end = len(b)
				break
			}
			end += nl + 1
			if end >= len(b) || (b[end] != ' ' && b[end] != '\t') {
				break
			}
		}
		field := b[:end]
		b = b[end:]
		line := bytes.TrimRight(field, "\r\n")
		if len(line) == 0 {
			break // the blank line ending the header
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			continue // not a field (RFC 5322 §2.2): skip it, keep reading
		}
		name := strings.TrimRight(string(line[:colon]), " \t")
		if name == "" {
			continue
		}
		h = append(h, headerField{name: name, value: line[colon+1:]})
	}
	return h
}

// get returns the first field called name (case-insensitively), unfolded
// and trimmed, or "".
func (h header) get(name string) string {
	for i := range h {
		if strings.EqualFold(h[i].name, name) {
			return unfold(h[i].value)
		}
	}
	return ""
}

// has reports whether a field called name exists.
func (h header) has(name string) bool {
	for i := range h {
		if strings.EqualFold(h[i].name, name) {
			return true
		}
	}
	return false
}

// unfold removes the line breaks of folding (RFC 5322 §2.2.3), keeping the
// whitespace that follows them, and trims the value.
func unfold(v []byte) string {
	if bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\r') < 0 {
		return strings.TrimSpace(string(v))
	}
	out := make([]byte, 0, len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			out = append(out, c)
		}
	}
	return strings.TrimSpace(string(out))
}

var wordDecoder = mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
	return gomessage.CharsetReader(charset, input)
}}

// decodeWords decodes the RFC 2047 encoded words of a header value; a
// value without any is returned as is, and a word that does not decode
// stays as written.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// parseContentType returns the media type ("type/subtype", lower case) and
// parameters (names lower case) of a Content-Type value, and whether it
// named a valid type. Parameters mime.ParseMediaType refuses (duplicates,
// stray characters) are read leniently instead, as readers do.
func parseContentType(v string) (string, map[string]string, bool) {
	if v == "" {
		return "", nil, false
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		mt, params = parseParamsLeniently(v)
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || !isToken(typ) || !isToken(sub) {
		return "", nil, false
	}
	return mt, params, true
}

// parseDisposition returns a Content-Disposition's value (lower case) and
// parameters.
func parseDisposition(v string) (string, map[string]string) {
	d, params, err := mime.ParseMediaType(v)
	if err != nil {
		d, params = parseParamsLeniently(v)
	}
	if len(params) == 0 {
		params = nil
	}
	return d, params
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// parseParamsLeniently splits "value; a=b; c="d"" by hand: comments are
// dropped, quoted strings unquoted, a later duplicate is ignored, and a
// piece without "=" is skipped.
func parseParamsLeniently(v string) (string, map[string]string) {
	var pieces []string
	var cur strings.Builder
	inQuote, depth := false, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(v):
			cur.WriteByte(c)
			cur.WriteByte(v[i+1])
			i++
		case inQuote:
			if c == '"' {
				inQuote = false
			}
			cur.WriteByte(c)
		case depth > 0:
			if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case c == '(':
			depth++
		case c == '"':
			inQuote = true
			cur.WriteByte(c)
		case c == ';':
			pieces = append(pieces, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	pieces = append(pieces, cur.String())
	value := strings.ToLower(strings.Join(strings.Fields(pieces[0]), ""))
	params := make(map[string]string)
	for _, p := range pieces[1:] {
		name, val, ok := strings.Cut(p, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = unquote(val[1 : len(val)-1])
		}
		if _, dup := params[name]; !dup {
			params[name] = val
		}
	}
	return value, params
}

func unquote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// dateLayouts are forms of Date: seen in the wild that net/mail refuses.
var dateLayouts = []string{
	"Mon, 2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 -0700",
	"2 Jan 2006 15:04 -0700",
	"Mon, 2 Jan 06 15:04:05 -0700",
	"2 Jan 06 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05",
	"2 Jan 2006 15:04:05",
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 -0700 2006",
	"Mon Jan 2 15:04:05 MST 2006",
}

// parseDate parses a Date: value (RFC 5322 §3.3, with its obsolete forms
// and common errors); zero if it cannot.
func parseDate(v string) time.Time {
	if t, err := mail.ParseDate(v); err == nil {
		return t
	}
	// Drop comments ("(CET)"), a trailing period, repeated spaces.
	var sb strings.Builder
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			sb.WriteByte(c)
		}
	}
	clean := strings.Join(strings.Fields(strings.TrimSuffix(strings.TrimSpace(sb.String()), ".")), " ")
	if t, err := mail.ParseDate(clean); err == nil {
		return t
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, clean); err == nil {
			return t
		}
	}
	return time.Time{}
}

// maxMessageIDs bounds the IDs taken from one References field.
const maxMessageIDs = 1000

// messageIDs returns the message IDs of a Message-ID, In-Reply-To or
// References value, without angle brackets and whitespace, in order. A
// value without brackets that looks like one ID (local@domain) is taken
// whole, as many readers do.
func messageIDs(v string) []string {
	var out []string
	rest := v
	for len(out) < maxMessageIDs {
		open := strings.IndexByte(rest, '<')
		if open < 0 {
			break
		}
		closing := strings.IndexByte(rest[open:], '>')
		if closing < 0 {
			break
		}
		id := strings.Join(strings.Fields(rest[open+1:open+closing]), "")
		if id != "" {
			out = append(out, id)
		}
		rest = rest[open+closing+1:]
	}
	if len(out) == 0 {
		if v = strings.TrimSpace(v); v != "" && strings.Contains(v, "@") && !strings.ContainsAny(v, " \t<>()") {
			out = append(out, v)
		}
	}
	return out
}
