package imapd

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"io"
	"math"
	"mime/quotedprintable"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/roostmail/roost/backend"
)

// fetchBatch is how many message records FETCH reads per store call.
const fetchBatch = 1024

// Fetch implements imapserver.Session (RFC 9051 §6.4.5, RFC 3516 BINARY).
// Sections are served from the byte offsets of the MIME structure stored
// at delivery: a section is a range of the raw message, read chunk by
// chunk; nothing is parsed again.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if s.sel == nil {
		return errNotSelected
	}
	ts, err := s.resolve(numSet)
	if err != nil {
		return err
	}
	// A non-PEEK body fetch sets \Seen, but never in EXAMINE (RFC 9051
	// §6.3.3: no change to the mailbox, per-user state included).
	markSeen := false
	if !s.sel.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	var seenSet map[uint32]bool
	if len(ts) > 1 {
		s.w.beginBatch()
		defer s.w.endBatch()
	}
	for i := 0; i < len(ts); i += fetchBatch {
		chunk := ts[i:min(i+fetchBatch, len(ts))]
		msgs, err := s.fetchRecords(chunk)
		if err != nil {
			return s.mapErr("fetch", err, false)
		}
		if markSeen {
			var unseen []uint32
			for _, m := range msgs {
				if !m.Has(backend.FlagSeen) {
					unseen = append(unseen, m.UID)
				}
			}
			if len(unseen) > 0 {
				updated, _, err := s.user.StoreFlags(s.sel.id, unseen, backend.FlagsAdd, []string{backend.FlagSeen}, 0)
				if err != nil {
					return s.mapErr("fetch", err, false)
				}
				if seenSet == nil {
					seenSet = make(map[uint32]bool, len(updated))
				}
				for _, m := range updated {
					s.sel.own[m.UID] = m.ModSeq
					if j, ok := slices.BinarySearchFunc(msgs, m.UID, byUID); ok {
						msgs[j] = m
					}
					seenSet[m.UID] = true
				}
			}
		}
		// Both chunk and msgs ascend by UID: walk them together. msgs may
		// hold records the chunk does not name (see fetchRecords); a
		// message of the chunk missing from msgs was expunged meanwhile
		// and its EXPUNGE comes later.
		j := 0
		for _, t := range chunk {
			for j < len(msgs) && msgs[j].UID < t.uid {
				j++
			}
			if j == len(msgs) || msgs[j].UID != t.uid {
				continue
			}
			if err := s.fetchOne(w, t.seq, &msgs[j], options, seenSet[t.uid]); err != nil {
				return err
			}
		}
	}
	return nil
}

func byUID(m backend.Message, uid uint32) int { return cmp.Compare(m.UID, uid) }

// fetchRecords returns the records of the messages of chunk (ascending by
// UID) that exist, ascending by UID. A dense chunk (1:* and the like) is
// read as one range scan, far cheaper than a lookup per UID; the result may
// then include messages between them that the chunk does not name.
func (s *session) fetchRecords(chunk []target) ([]backend.Message, error) {
	first, last := chunk[0].uid, chunk[len(chunk)-1].uid
	if span := uint64(last-first) + 1; span > 2*uint64(len(chunk)) {
		return s.user.MessagesByUID(s.sel.id, targetUIDs(chunk))
	}
	msgs := make([]backend.Message, 0, len(chunk))
	err := s.user.Messages(s.sel.id, first, last, func(m backend.Message) error {
		msgs = append(msgs, m)
		return nil
	})
	return msgs, err
}

// item is one prepared body or binary section.
type item struct {
	body   *imap.FetchItemBodySection
	binary *imap.FetchItemBinarySection
	// The data: a range of the raw message, or bytes.
	start, n int64
	data     []byte
	isRange  bool
}

// fetchOne writes the FETCH response of one message. Everything that can
// fail is prepared before the response starts.
func (s *session) fetchOne(w *imapserver.FetchWriter, seq uint32, m *backend.Message, options *imap.FetchOptions, flagsChanged bool) error {
	var parsed *backend.Parsed
	getParsed := func() (*backend.Parsed, error) {
		if parsed == nil {
			p, err := s.user.Parsed(m)
			if err != nil {
				return nil, err
			}
			parsed = p
		}
		return parsed, nil
	}
	// Only sections read the raw message.
	var body io.ReaderAt
	if len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0 {
		body = s.user.OpenBody(m)
	}
	var items []item
	for _, bs := range options.BodySection {
		it, err := s.bodySection(m, body, getParsed, bs)
		if err != nil {
			return err
		}
		items = append(items, it)
	}
	for _, bs := range options.BinarySection {
		it, err := s.binarySection(m, body, getParsed, bs.Part)
		if err != nil {
			return err
		}
		it.binary = bs
		applyPartial(&it, bs.Partial)
		items = append(items, it)
	}
	binarySizes := make([]uint32, len(options.BinarySectionSize))
	for i, bss := range options.BinarySectionSize {
		it, err := s.binarySection(m, body, getParsed, bss.Part)
		if err != nil {
			return err
		}
		binarySizes[i] = uint32(min(it.n, math.MaxUint32))
	}
	var env *imap.Envelope
	var bstruct imap.BodyStructure
	if options.Envelope || options.BodyStructure != nil {
		p, err := getParsed()
		if err != nil {
			return s.mapErr("fetch", err, false)
		}
		if options.Envelope {
			env = envelope(&p.Envelope)
		}
		if options.BodyStructure != nil {
			bstruct = bodyStructure(&p.Root)
		}
	}

	rw := w.CreateMessage(seq)
	if options.UID {
		rw.WriteUID(imap.UID(m.UID))
	}
	if options.Flags || flagsChanged {
		rw.WriteFlags(imapFlags(m.Flags))
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if env != nil {
		rw.WriteEnvelope(env)
	}
	if bstruct != nil {
		rw.WriteBodyStructure(bstruct)
	}
	for i, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, binarySizes[i])
	}
	var werr error
	for _, it := range items {
		var lw io.WriteCloser
		if it.body != nil {
			lw = rw.WriteBodySection(it.body, it.n)
		} else {
			lw = rw.WriteBinarySection(it.binary, it.n)
		}
		var err error
		switch {
		case it.isRange:
			_, err = io.Copy(lw, io.NewSectionReader(body, it.start, it.n))
		default:
			_, err = lw.Write(it.data)
		}
		if cerr := lw.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			// The response is broken mid-literal: the connection cannot go
			// on. Close it; the rest of the output is dropped.
			s.log.Error("fetch: reading message failed", "uid", m.UID, "err", err)
			s.w.closeWithBye("Internal error")
			werr = err
			break
		}
	}
	if err := rw.Close(); err != nil && werr == nil {
		werr = err
	}
	return werr
}

// bodySection prepares BODY[section]<partial> (RFC 9051 §6.4.5).
func (s *session) bodySection(m *backend.Message, body io.ReaderAt, getParsed func() (*backend.Parsed, error), sec *imap.FetchItemBodySection) (item, error) {
	it := item{body: sec}
	if len(sec.Part) == 0 && sec.Specifier == imap.PartSpecifierNone {
		// The whole message: no need for the structure.
		it.isRange, it.start, it.n = true, 0, m.Size
		applyPartial(&it, sec.Partial)
		return it, nil
	}
	p, err := getParsed()
	if err != nil {
		return it, s.mapErr("fetch", err, false)
	}
	node, top, ok := locatePart(&p.Root, sec.Part)
	if !ok {
		// A part that does not exist is empty (as Dovecot answers).
		return it, nil
	}
	var hs, bs, end int64 // the header and body of the section's message or part
	switch {
	case len(sec.Part) == 0:
		hs, bs, end = node.HeaderStart, node.BodyStart, node.End
	case sec.Specifier == imap.PartSpecifierNone:
		it.isRange, it.start, it.n = true, node.BodyStart, node.Size()
		applyPartial(&it, sec.Partial)
		return it, nil
	case sec.Specifier == imap.PartSpecifierMIME:
		hs, bs, end = node.HeaderStart, node.BodyStart, node.End
		if top {
			// The "MIME header" of the body of a non-multipart message is
			// the message's header.
			hs, bs = node.HeaderStart, node.BodyStart
		}
	case node.IsMessage() && len(node.Parts) == 1:
		// HEADER and TEXT of an encapsulated message (message/rfc822).
		inner := &node.Parts[0]
		hs, bs, end = inner.HeaderStart, inner.BodyStart, inner.End
	default:
		// HEADER/TEXT of a part that is not a message: its own MIME header
		// and body, the most useful reading of a request RFC 9051 leaves
		// undefined.
		hs, bs, end = node.HeaderStart, node.BodyStart, node.End
	}
	switch sec.Specifier {
	case imap.PartSpecifierText:
		it.isRange, it.start, it.n = true, bs, end-bs
	case imap.PartSpecifierMIME, imap.PartSpecifierHeader:
		if len(sec.HeaderFields) == 0 && len(sec.HeaderFieldsNot) == 0 {
			it.isRange, it.start, it.n = true, hs, bs-hs
			break
		}
		raw := make([]byte, bs-hs)
		if _, err := body.ReadAt(raw, hs); err != nil && !errors.Is(err, io.EOF) {
			return it, s.mapErr("fetch", err, false)
		}
		if len(sec.HeaderFields) > 0 {
			it.data = filterHeader(raw, sec.HeaderFields, false)
		} else {
			it.data = filterHeader(raw, sec.HeaderFieldsNot, true)
		}
		it.n = int64(len(it.data))
	}
	applyPartial(&it, sec.Partial)
	return it, nil
}

// applyPartial cuts a section to <offset.size>.
func applyPartial(it *item, partial *imap.SectionPartial) {
	if partial == nil {
		return
	}
	off := min(max(partial.Offset, 0), it.n)
	n := min(max(partial.Size, 0), it.n-off)
	if it.isRange {
		it.start += off
	} else {
		it.data = it.data[off : off+n]
	}
	it.n = n
}

// locatePart follows a section-part path (RFC 9051 §6.4.5): part N of a
// multipart is its Nth child; part 1 of a non-multipart message is its
// body; a message/rfc822 part's own parts are those of the message it
// holds. top reports that the result is the body of a non-multipart
// message (not a part of a multipart).
func locatePart(root *backend.Part, path []int) (node *backend.Part, top, ok bool) {
	node, top = root, true
	for i, n := range path {
		if i > 0 && node.IsMessage() {
			if len(node.Parts) != 1 {
				return nil, false, false
			}
			node, top = &node.Parts[0], true
		}
		switch {
		case node.IsMultipart():
			if n < 1 || n > len(node.Parts) {
				return nil, false, false
			}
			node, top = &node.Parts[n-1], false
		case top && n == 1:
			top = true
		default:
			return nil, false, false
		}
	}
	return node, top, true
}

// filterHeader returns the fields of a raw header named (or, with not, not
// named) in fields, byte for byte, and the blank line that ends a header
// (RFC 9051 §6.4.5: HEADER.FIELDS includes it).
func filterHeader(raw []byte, fields []string, not bool) []byte {
	want := make(map[string]bool, len(fields))
	for _, f := range fields {
		want[strings.ToLower(f)] = true
	}
	var out bytes.Buffer
	keep := false
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line = raw[:i+1]
		}
		raw = raw[len(line):]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if keep {
				out.Write(line)
			}
			continue
		}
		name, _, found := bytes.Cut(trimmed, []byte(":"))
		keep = found && want[strings.ToLower(string(bytes.TrimSpace(name)))] != not
		if keep {
			out.Write(line)
			if line[len(line)-1] != '\n' {
				out.WriteString("\r\n")
			}
		}
	}
	out.WriteString("\r\n")
	return out.Bytes()
}

// binarySection prepares BINARY[part] (RFC 3516): the part's body with its
// Content-Transfer-Encoding undone. it.n is the decoded size.
func (s *session) binarySection(m *backend.Message, body io.ReaderAt, getParsed func() (*backend.Parsed, error), path []int) (item, error) {
	var it item
	if len(path) == 0 {
		it.isRange, it.start, it.n = true, 0, m.Size
		return it, nil
	}
	p, err := getParsed()
	if err != nil {
		return it, s.mapErr("fetch", err, false)
	}
	node, _, ok := locatePart(&p.Root, path)
	if !ok {
		return it, nil
	}
	if node.IsMultipart() || node.IsMessage() {
		it.isRange, it.start, it.n = true, node.BodyStart, node.Size()
		return it, nil
	}
	enc := strings.ToLower(strings.TrimSpace(node.Encoding))
	switch enc {
	case "", "7bit", "8bit", "binary":
		it.isRange, it.start, it.n = true, node.BodyStart, node.Size()
		return it, nil
	case "base64", "quoted-printable":
	default:
		return it, no(imap.ResponseCodeUnknownCTE, "Cannot decode Content-Transfer-Encoding %q", node.Encoding)
	}
	raw := make([]byte, node.Size())
	if _, err := body.ReadAt(raw, node.BodyStart); err != nil && !errors.Is(err, io.EOF) {
		return it, s.mapErr("fetch", err, false)
	}
	if enc == "base64" {
		it.data = decodeBase64(raw)
	} else {
		// Decode what decodes: a stray "=" ends the data, not the command.
		it.data, _ = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
	}
	it.n = int64(len(it.data))
	return it, nil
}

// decodeBase64 decodes leniently: characters outside the alphabet are
// ignored (RFC 2045 §6.8), and a truncated last group decodes as far as it
// goes.
func decodeBase64(src []byte) []byte {
	clean := make([]byte, 0, len(src))
	for _, c := range src {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, _ := base64.RawStdEncoding.Decode(out, clean)
	return out[:n]
}

// envelope converts the stored envelope for ENVELOPE (RFC 9051 §7.5.2).
func envelope(e *backend.Envelope) *imap.Envelope {
	if e == nil {
		return nil
	}
	return &imap.Envelope{
		Date:      e.Date,
		Subject:   e.Subject,
		From:      addresses(e.From),
		Sender:    addresses(e.Sender),
		ReplyTo:   addresses(e.ReplyTo),
		To:        addresses(e.To),
		Cc:        addresses(e.Cc),
		Bcc:       addresses(e.Bcc),
		InReplyTo: e.InReplyTo,
		MessageID: e.MessageID,
	}
}

func addresses(l []backend.Address) []imap.Address {
	if len(l) == 0 {
		return nil
	}
	out := make([]imap.Address, len(l))
	for i, a := range l {
		out[i] = imap.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
	}
	return out
}

// bodyStructure converts the stored MIME structure for BODYSTRUCTURE (RFC
// 9051 §7.5.2), always with the extension data (imapserver leaves it out
// for BODY).
func bodyStructure(p *backend.Part) imap.BodyStructure {
	if p.IsMultipart() && len(p.Parts) > 0 {
		mp := &imap.BodyStructureMultiPart{
			Subtype: p.Subtype,
			Extended: &imap.BodyStructureMultiPartExt{
				Params:      p.Params,
				Disposition: disposition(p),
				Language:    p.Language,
				Location:    p.Location,
			},
		}
		for i := range p.Parts {
			mp.Children = append(mp.Children, bodyStructure(&p.Parts[i]))
		}
		return mp
	}
	sp := &imap.BodyStructureSinglePart{
		Type:        p.Type,
		Subtype:     p.Subtype,
		Params:      p.Params,
		ID:          p.ID,
		Description: p.Description,
		Encoding:    p.Encoding,
		Size:        uint32(min(max(p.Size(), 0), math.MaxUint32)),
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: disposition(p),
			Language:    p.Language,
			Location:    p.Location,
		},
	}
	switch {
	case p.IsMultipart():
		// A multipart without parts (no boundary, or none found) is shown
		// as the text it is.
		sp.Type, sp.Subtype, sp.Params = "text", "plain", nil
	case p.IsMessage() && (len(p.Parts) != 1 || p.Envelope == nil):
		sp.Type, sp.Subtype = "application", "octet-stream"
	case p.IsMessage():
		sp.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      envelope(p.Envelope),
			BodyStructure: bodyStructure(&p.Parts[0]),
			NumLines:      p.Lines,
		}
	}
	if sp.Type == "text" {
		sp.Text = &imap.BodyStructureText{NumLines: p.Lines}
		if _, ok := sp.Params["charset"]; !ok {
			// RFC 2045 §5.2's default, spelt out as Dovecot does.
			params := make(map[string]string, len(sp.Params)+1)
			for k, v := range sp.Params {
				params[k] = v
			}
			params["charset"] = "us-ascii"
			sp.Params = params
		}
	}
	return sp
}

func disposition(p *backend.Part) *imap.BodyStructureDisposition {
	if p.Disposition == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: p.Disposition, Params: p.DispositionParams}
}
