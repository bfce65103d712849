package backend

import (
	"bufio"
	"bytes"
	"encoding/json"
	"mime"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Address is one mailbox of an address list (RFC 5322 §3.4).
type Address struct {
	Name    string `json:"n,omitempty"`
	Mailbox string `json:"m,omitempty"`
	Host    string `json:"h,omitempty"`
}

// Envelope is the summary of a message header that IMAP's ENVELOPE
// (RFC 9051 §7.5.2) and search need. It is computed once, at delivery.
type Envelope struct {
	Date      time.Time `json:"d,omitzero"`
	Subject   string    `json:"s,omitempty"`
	From      []Address `json:"f,omitempty"`
	Sender    []Address `json:"se,omitempty"`
	ReplyTo   []Address `json:"rt,omitempty"`
	To        []Address `json:"t,omitempty"`
	Cc        []Address `json:"c,omitempty"`
	Bcc       []Address `json:"b,omitempty"`
	InReplyTo []string  `json:"irt,omitempty"`
	MessageID string    `json:"mid,omitempty"`
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

// Parsed is what Roost stores beside each raw message.
type Parsed struct {
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

func (p *Parsed) marshal() []byte {
	b, _ := json.Marshal(p)
	return b
}

// ParseMessage computes the envelope and MIME structure of a raw message.
// It never fails: malformed input gets the most sensible structure, as a
// reader would see it.
func ParseMessage(raw []byte) *Parsed {
	root, h := parsePart(raw, 0, int64(len(raw)), false, 0)
	p := &Parsed{Envelope: envelopeOf(h), Root: root}
	p.BareLF = int64(bytes.Count(raw, []byte("\n")) - bytes.Count(raw, []byte("\r\n")))
	p.Unterminated = len(raw) > 0 && raw[len(raw)-1] != '\n'
	return p
}

// maxDepth bounds MIME nesting, against hostile messages.
const maxDepth = 50

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

func parseHeader(b []byte) textproto.Header {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
	return h
}

func parsePart(raw []byte, start, end int64, inDigest bool, depth int) (Part, textproto.Header) {
	bodyStart := headerEnd(raw, start, end)
	th := parseHeader(raw[start:bodyStart])
	h := gomessage.Header{Header: th}
	p := Part{HeaderStart: start, BodyStart: bodyStart, End: end}

	mediaType, params, err := h.ContentType()
	if th.Get("Content-Type") == "" || err != nil || !strings.Contains(mediaType, "/") {
		// RFC 2045 §5.2: default, except in a multipart/digest (RFC 2046 §5.1.5).
		mediaType, params = "text/plain", map[string]string{"charset": "us-ascii"}
		if inDigest {
			mediaType, params = "message/rfc822", nil
		}
	}
	p.Type, p.Subtype, _ = strings.Cut(strings.ToLower(mediaType), "/")
	if len(params) > 0 {
		p.Params = params
	}
	p.ID = th.Get("Content-Id")
	p.Description = th.Get("Content-Description")
	p.Encoding = th.Get("Content-Transfer-Encoding")
	p.MD5 = th.Get("Content-Md5")
	p.Location = th.Get("Content-Location")
	if v := th.Get("Content-Disposition"); v != "" {
		if d, dp, err := mime.ParseMediaType(v); err == nil {
			p.Disposition = d
			if len(dp) > 0 {
				p.DispositionParams = dp
			}
		} else {
			p.Disposition = strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
		}
	}
	if v := th.Get("Content-Language"); v != "" {
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
	if depth >= maxDepth {
		return p, th
	}
	switch {
	case p.Type == "multipart":
		boundary := params["boundary"]
		if boundary == "" {
			break
		}
		for _, r := range splitMultipart(raw, bodyStart, end, boundary) {
			child, _ := parsePart(raw, r[0], r[1], p.Subtype == "digest", depth+1)
			p.Parts = append(p.Parts, child)
		}
	case p.IsMessage():
		child, ch := parsePart(raw, bodyStart, end, false, depth+1)
		env := envelopeOf(ch)
		p.Envelope = &env
		p.Parts = []Part{child}
	}
	return p, th
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

func envelopeOf(th textproto.Header) Envelope {
	mh := mail.Header{Header: gomessage.Header{Header: th}}
	var env Envelope
	env.Date, _ = mh.Date()
	if s, err := mh.Subject(); err == nil {
		env.Subject = s
	} else {
		env.Subject = th.Get("Subject")
	}
	env.From = addressList(mh, "From")
	env.Sender = addressList(mh, "Sender")
	env.ReplyTo = addressList(mh, "Reply-To")
	env.To = addressList(mh, "To")
	env.Cc = addressList(mh, "Cc")
	env.Bcc = addressList(mh, "Bcc")
	env.InReplyTo, _ = mh.MsgIDList("In-Reply-To")
	env.MessageID, _ = mh.MessageID()
	return env
}

func addressList(mh mail.Header, key string) []Address {
	list, err := mh.AddressList(key)
	if err != nil || len(list) == 0 {
		return nil
	}
	out := make([]Address, 0, len(list))
	for _, a := range list {
		mbox, host, _ := strings.Cut(a.Address, "@")
		out = append(out, Address{Name: a.Name, Mailbox: mbox, Host: host})
	}
	return out
}
