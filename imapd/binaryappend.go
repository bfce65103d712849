package imapd

import (
	"bytes"
	"encoding/base64"
	"slices"

	"github.com/roostmail/roost/backend"
)

// encodeBinaryParts rewrites the parts of a message appended as literal8
// (RFC 3516 §4.4) whose content holds NUL octets, which no IMAP string can
// carry: each becomes base64 with its Content-Transfer-Encoding changed,
// so BODY[] shows text while BINARY[] gives the octets back. It returns
// raw itself when nothing needs it.
func encodeBinaryParts(raw []byte) []byte {
	if bytes.IndexByte(raw, 0) < 0 {
		return raw
	}
	type edit struct {
		start, end int64
		with       []byte
	}
	var edits []edit
	var walk func(p *backend.Part)
	walk = func(p *backend.Part) {
		switch {
		case p.IsMultipart() && len(p.Parts) > 0:
			for i := range p.Parts {
				walk(&p.Parts[i])
			}
			return
		case p.IsMessage() && len(p.Parts) == 1:
			walk(&p.Parts[0])
			return
		}
		body := raw[p.BodyStart:p.End]
		if bytes.IndexByte(body, 0) < 0 {
			return
		}
		edits = append(edits,
			edit{p.HeaderStart, p.BodyStart, withBase64CTE(raw[p.HeaderStart:p.BodyStart])},
			edit{p.BodyStart, p.End, wrappedBase64(body)})
	}
	walk(&backend.ParseMessage(raw).Root)
	slices.SortFunc(edits, func(a, b edit) int { return int(a.start - b.start) })
	var out bytes.Buffer
	pos := int64(0)
	for _, e := range edits {
		if e.start < pos {
			continue
		}
		out.Write(raw[pos:e.start])
		out.Write(e.with)
		pos = e.end
	}
	out.Write(raw[pos:])
	return out.Bytes()
}

// withBase64CTE returns a part header with Content-Transfer-Encoding:
// base64 in place of any it had.
func withBase64CTE(h []byte) []byte {
	var out bytes.Buffer
	skipping := false
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line = h[:i+1]
		}
		h = h[len(line):]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			out.WriteString("Content-Transfer-Encoding: base64\r\n")
			out.Write(line)
			out.Write(h)
			return out.Bytes()
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !skipping {
				out.Write(line)
			}
			continue
		}
		name, _, _ := bytes.Cut(trimmed, []byte(":"))
		skipping = bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Transfer-Encoding"))
		if !skipping {
			out.Write(line)
		}
	}
	out.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	return out.Bytes()
}

func wrappedBase64(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	var out bytes.Buffer
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc)
	return out.Bytes()
}
