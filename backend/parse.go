package backend

import (
	"bytes"
	"strings"
	"time"
)

// Address is one entry of an address list (RFC 5322 §3.4): a mailbox, or
// a marker of group syntax. A group is sent in ENVELOPE as RFC 3501
// §7.4.2 says: a start marker (GroupStart, the group's name in Mailbox,
// everything else empty: NIL NIL "name" NIL), the members, and an end
// marker (GroupEnd, all empty: NIL NIL NIL NIL).
type Address struct {
	// Name is the display name as written: unquoted, whitespace collapsed,
	// RFC 2047 words not decoded (ENVELOPE sends it so; DisplayName
	// decodes it). A bare addr-spec's comment is its name.
	Name string `json:"n,omitempty"`
	// Route is the obsolete source route (RFC 5322 §4.4), e.g. "@a,@b":
	// ENVELOPE's addr-adl.
	Route   string `json:"r,omitempty"`
	Mailbox string `json:"m,omitempty"`
	// Host is the domain. A malformed address gets MissingMailbox or
	// MissingDomain rather than an empty part.
	Host       string `json:"h,omitempty"`
	GroupStart bool   `json:"gs,omitempty"`
	GroupEnd   bool   `json:"ge,omitempty"`
}

// DisplayName returns Name with RFC 2047 words decoded.
func (a *Address) DisplayName() string { return decodeWords(a.Name) }

// Addr returns "mailbox@host", or "" for a group marker.
func (a *Address) Addr() string {
	if a.GroupStart || a.GroupEnd {
		return ""
	}
	return a.Mailbox + "@" + a.Host
}

// Envelope is the summary of a message header that IMAP's ENVELOPE
// (RFC 3501 §7.4.2), SORT, THREAD and SEARCH need. It is computed once, at
// delivery. Address lists are as in the header: ENVELOPE's defaults
// (Sender and Reply-To from From) are the front end's.
type Envelope struct {
	// Date is the parsed Date: field (zero if missing or unparsable).
	Date time.Time `json:"d,omitzero"`
	// Subject is decoded (RFC 2047).
	Subject string    `json:"s,omitempty"`
	From    []Address `json:"f,omitempty"`
	Sender  []Address `json:"se,omitempty"`
	ReplyTo []Address `json:"rt,omitempty"`
	To      []Address `json:"t,omitempty"`
	Cc      []Address `json:"c,omitempty"`
	Bcc     []Address `json:"b,omitempty"`
	// InReplyTo, MessageID and References hold message IDs without the
	// angle brackets; References oldest first (RFC 5322 §3.6.4).
	InReplyTo  []string `json:"irt,omitempty"`
	MessageID  string   `json:"mid,omitempty"`
	References []string `json:"ref,omitempty"`
	// The fields as written (unfolded, first occurrence): ENVELOPE sends
	// date, subject, in-reply-to and message-id verbatim.
	RawDate      string `json:"rd,omitempty"`
	RawSubject   string `json:"rs,omitempty"`
	RawInReplyTo string `json:"rirt,omitempty"`
	RawMessageID string `json:"rmid,omitempty"`
}

// Part is one node of a message's MIME structure, with byte offsets into the
// raw message so that any section can be served by reading a range, without
// parsing the message again.
type Part struct {
	Type        string            `json:"t"` // lower case, e.g. "text"
	Subtype     string            `json:"st"`
	Params      map[string]string `json:"p,omitempty"` // keys lower case
	ID          string            `json:"id,omitempty"`
	Description string            `json:"ds,omitempty"`
	Encoding    string            `json:"e,omitempty"`

	Disposition       string            `json:"dp,omitempty"`
	DispositionParams map[string]string `json:"dpp,omitempty"`
	Language          []string          `json:"l,omitempty"`
	Location          string            `json:"lo,omitempty"`
	MD5               string            `json:"md5,omitempty"`

	// HeaderStart is where the part's header begins, BodyStart where its
	// body begins (after the blank line), End where the body ends.
	HeaderStart int64 `json:"hs"`
	BodyStart   int64 `json:"bs"`
	End         int64 `json:"en"`
	// Lines is the body's line count (text/* and message/* parts).
	Lines int64 `json:"ln,omitempty"`

	// Envelope of an encapsulated message/rfc822 (or message/global).
	Envelope *Envelope `json:"env,omitempty"`
	// Parts are the children of a multipart, or the single encapsulated
	// message of a message/rfc822 part.
	Parts []Part `json:"c,omitempty"`
}

// Size is the size of the part's body in octets, as sent (RFC 9051 §7.5.2).
func (p *Part) Size() int64 { return p.End - p.BodyStart }

// IsMultipart reports whether p is a multipart/*.
func (p *Part) IsMultipart() bool { return p.Type == "multipart" }

// IsMessage reports whether p encapsulates a message.
func (p *Part) IsMessage() bool {
	return p.Type == "message" && (p.Subtype == "rfc822" || p.Subtype == "global")
}

// parsedVersion is the version of the parsed form that ParseMessage
// writes. Records stored by an older Roost (version 0: no groups, raw
// fields or References) still decode; User.Parsed parses those messages
// again rather than serve them incomplete.
const parsedVersion = 1

// Parsed is what Roost stores beside each raw message.
type Parsed struct {
	Version  int      `json:"v,omitempty"`
	Envelope Envelope `json:"env"`
	Root     Part     `json:"root"`
	// BareLF counts line feeds not preceded by a carriage return, and
	// Unterminated says the (non-empty) message does not end with a line
	// feed. Both are zero for a clean CRLF message. POP3 sends every line
	// with CRLF (RFC 1939 §3) and must announce the exact octet count in
	// LIST/STAT, which is Size + BareLF + 2 if Unterminated (CRLFSize).
	BareLF       int64 `json:"blf,omitempty"`
	Unterminated bool  `json:"unt,omitempty"`
}

// CRLFSize returns the size of a message of size octets once every bare LF
// is sent as CRLF and a missing final line break is added: what POP3 RETR
// sends, before byte-stuffing.
func (p *Parsed) CRLFSize(size int64) int64 {
	n := size + p.BareLF
	if p.Unterminated {
		n += 2
	}
	return n
}

// ParseMessage computes the envelope and MIME structure of a raw message.
// It never fails: malformed input gets the most sensible structure, as a
// reader would see it. It runs in time linear in the message (each part's
// header and body are scanned a bounded number of times, nesting is
// bounded by maxDepth, and the parts by maxParts).
func ParseMessage(raw []byte) *Parsed {
	budget := maxParts
	root, h := parsePart(raw, 0, int64(len(raw)), false, 0, &budget)
	p := &Parsed{Version: parsedVersion, Envelope: envelopeOf(h), Root: root}
	p.BareLF = int64(bytes.Count(raw, []byte("\n")) - bytes.Count(raw, []byte("\r\n")))
	p.Unterminated = len(raw) > 0 && raw[len(raw)-1] != '\n'
	return p
}

// maxDepth bounds MIME nesting, against hostile messages.
const maxDepth = 50

// maxParts bounds the parts of one message: a hostile message of empty
// parts ("--b\r\n" repeated) would otherwise store a structure many times
// its own size. Parts beyond it are left inside their parent's body.
const maxParts = 10000

// headerEnd returns the offset where the header starting at start ends (just
// after the blank line) and where the body starts.
func headerEnd(raw []byte, start, end int64) (body int64) {
	region := raw[start:end]
	if len(region) >= 2 && region[0] == '\r' && region[1] == '\n' {
		return start + 2
	}
	if len(region) >= 1 && region[0] == '\n' {
		return start + 1
	}
	if i := bytes.Index(region, []byte("\r\n\r\n")); i >= 0 {
		if j := bytes.Index(region[:i+2], []byte("\n\n")); j >= 0 {
			return start + int64(j) + 2
		}
		return start + int64(i) + 4
	}
	if j := bytes.Index(region, []byte("\n\n")); j >= 0 {
		return start + int64(j) + 2
	}
	return end
}

func parsePart(raw []byte, start, end int64, inDigest bool, depth int, budget *int) (Part, header) {
	bodyStart := headerEnd(raw, start, end)
	h := readHeader(raw[start:bodyStart])
	p := Part{HeaderStart: start, BodyStart: bodyStart, End: end}

	mediaType, params, ok := parseContentType(h.get("Content-Type"))
	if !ok {
		// RFC 2045 §5.2: default, except in a multipart/digest (RFC 2046 §5.1.5).
		mediaType, params = "text/plain", map[string]string{"charset": "us-ascii"}
		if inDigest {
			mediaType, params = "message/rfc822", nil
		}
	}
	p.Type, p.Subtype, _ = strings.Cut(mediaType, "/")
	if len(params) > 0 {
		p.Params = params
	}
	p.ID = h.get("Content-Id")
	p.Description = h.get("Content-Description")
	p.Encoding = h.get("Content-Transfer-Encoding")
	p.MD5 = h.get("Content-Md5")
	p.Location = h.get("Content-Location")
	if v := h.get("Content-Disposition"); v != "" {
		p.Disposition, p.DispositionParams = parseDisposition(v)
	}
	if v := h.get("Content-Language"); v != "" {
		for _, l := range strings.Split(v, ",") {
			if l = strings.TrimSpace(l); l != "" {
				p.Language = append(p.Language, l)
			}
		}
	}
	body := raw[bodyStart:end]
	if p.Type == "text" || p.Type == "message" {
		p.Lines = int64(bytes.Count(body, []byte("\n")))
		if len(body) > 0 && body[len(body)-1] != '\n' {
			p.Lines++
		}
	}
	if depth >= maxDepth || *budget <= 0 {
		return p, h
	}
	switch {
	case p.Type == "multipart":
		boundary := params["boundary"]
		if boundary == "" {
			break
		}
		for _, r := range splitMultipart(raw, bodyStart, end, boundary) {
			if *budget <= 0 {
				break
			}
			*budget--
			child, _ := parsePart(raw, r[0], r[1], p.Subtype == "digest", depth+1, budget)
			p.Parts = append(p.Parts, child)
		}
	case p.IsMessage():
		*budget--
		child, ch := parsePart(raw, bodyStart, end, false, depth+1, budget)
		env := envelopeOf(ch)
		p.Envelope = &env
		p.Parts = []Part{child}
	}
	return p, h
}

// splitMultipart returns the [start,end) ranges of the body parts of a
// multipart body (RFC 2046 §5.1.1). The CRLF before a delimiter belongs to
// the delimiter, not to the preceding part.
func splitMultipart(raw []byte, start, end int64, boundary string) [][2]int64 {
	delim := []byte("--" + boundary)
	var out [][2]int64
	partStart := int64(-1)
	for pos := start; pos < end; {
		lineEnd := pos + int64(bytes.IndexByte(raw[pos:end], '\n'))
		next := lineEnd + 1
		if lineEnd < pos {
			lineEnd, next = end, end
		}
		line := bytes.TrimRight(raw[pos:lineEnd], "\r")
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t")
			closing := bytes.Equal(rest, []byte("--"))
			if len(rest) == 0 || closing {
				if partStart >= 0 {
					// Drop the line break preceding the delimiter.
					e := pos
					if e > partStart && raw[e-1] == '\n' {
						e--
						if e > partStart && raw[e-1] == '\r' {
							e--
						}
					}
					out = append(out, [2]int64{partStart, e})
				}
				if closing {
					return out
				}
				partStart = next
			}
		}
		pos = next
	}
	if partStart >= 0 && partStart <= end {
		// No closing delimiter: the last part runs to the end.
		out = append(out, [2]int64{partStart, end})
	}
	return out
}

func envelopeOf(h header) Envelope {
	var env Envelope
	env.RawDate = h.get("Date")
	if env.RawDate != "" {
		env.Date = parseDate(env.RawDate)
	}
	env.RawSubject = h.get("Subject")
	env.Subject = decodeWords(env.RawSubject)
	env.From = ParseAddressList(h.get("From"))
	env.Sender = ParseAddressList(h.get("Sender"))
	env.ReplyTo = ParseAddressList(h.get("Reply-To"))
	env.To = ParseAddressList(h.get("To"))
	env.Cc = ParseAddressList(h.get("Cc"))
	env.Bcc = ParseAddressList(h.get("Bcc"))
	env.RawInReplyTo = h.get("In-Reply-To")
	env.InReplyTo = messageIDs(env.RawInReplyTo)
	env.RawMessageID = h.get("Message-Id")
	if ids := messageIDs(env.RawMessageID); len(ids) > 0 {
		env.MessageID = ids[0]
	}
	env.References = messageIDs(h.get("References"))
	return env
}
