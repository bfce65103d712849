package imapd

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"mime/quotedprintable"
	"slices"
	"strconv"
	"strings"

	"github.com/roostmail/roost/backend"
)

// fetchBatch is how many message records FETCH reads per store call.
const fetchBatch = 1024

// fetchItem is one requested FETCH data item (RFC 9051 §6.4.5).
type fetchItem struct {
	name string // UID, FLAGS, BODY, BINARY, BINARY.SIZE, RFC822, ...
	// Sections (BODY[...], BINARY[...]).
	peek        bool
	part        []int
	spec        string // "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
	fields      []string
	partial     bool
	offset, cnt int64
	label       string // how the response names the item, e.g. "BODY[1.MIME]<0>"
}

// fetchArgs is a parsed FETCH command.
type fetchArgs struct {
	items        []fetchItem
	uid, flags   bool
	modseq       bool
	changedSince uint64
	hasChanged   bool
	vanished     bool
	needParsed   bool
	needBody     bool
	markSeen     bool
}

func (p *parser) fetchArgs(uidCmd bool) (fetchArgs, error) {
	var a fetchArgs
	add := func(name string) error {
		switch name {
		case "ALL":
			a.items = append(a.items, fetchItem{name: "FLAGS"}, fetchItem{name: "INTERNALDATE"}, fetchItem{name: "RFC822.SIZE"}, fetchItem{name: "ENVELOPE"})
		case "FAST":
			a.items = append(a.items, fetchItem{name: "FLAGS"}, fetchItem{name: "INTERNALDATE"}, fetchItem{name: "RFC822.SIZE"})
		case "FULL":
			a.items = append(a.items, fetchItem{name: "FLAGS"}, fetchItem{name: "INTERNALDATE"}, fetchItem{name: "RFC822.SIZE"}, fetchItem{name: "ENVELOPE"}, fetchItem{name: "BODY"})
		default:
			return badf("Unknown FETCH item %s", name)
		}
		return nil
	}
	if p.peek() == '(' {
		if err := p.list(func() error { return p.fetchAtt(&a) }); err != nil {
			return a, err
		}
	} else {
		start := p.pos
		kw, err := p.keyword()
		if err != nil {
			return a, err
		}
		switch kw {
		case "ALL", "FAST", "FULL":
			if err := add(kw); err != nil {
				return a, err
			}
		default:
			p.pos = start
			if err := p.fetchAtt(&a); err != nil {
				return a, err
			}
		}
	}
	if p.consume(' ') {
		// fetch-modifiers (RFC 4466 §2.4): CHANGEDSINCE, VANISHED (RFC 7162).
		err := p.list(func() error {
			kw, err := p.keyword()
			if err != nil {
				return err
			}
			switch kw {
			case "CHANGEDSINCE":
				if err := p.sp(); err != nil {
					return err
				}
				a.changedSince, err = p.number64()
				a.hasChanged = true
				return err
			case "VANISHED":
				a.vanished = true
				return nil
			}
			return badf("Unknown FETCH modifier %s", kw)
		})
		if err != nil {
			return a, err
		}
		if a.vanished && (!uidCmd || !a.hasChanged) {
			return a, badf("VANISHED needs UID FETCH with CHANGEDSINCE")
		}
	}
	a.prepare(uidCmd)
	return a, nil
}

// prepare derives what the items need and puts them in answering order.
func (a *fetchArgs) prepare(uidCmd bool) {
	for _, it := range a.items {
		switch it.name {
		case "UID":
			a.uid = true
		case "FLAGS":
			a.flags = true
		case "MODSEQ":
			a.modseq = true
		case "ENVELOPE", "BODYSTRUCTURE", "BODY":
			a.needParsed = true
		case "BODY[]", "BINARY[]", "BINARY.SIZE[]", "RFC822", "RFC822.HEADER", "RFC822.TEXT":
			a.needBody = true
			if it.spec != "" || len(it.part) > 0 || it.name != "BODY[]" {
				a.needParsed = true
			}
			if !it.peek && it.name != "BINARY.SIZE[]" && it.name != "RFC822.HEADER" {
				a.markSeen = true
			}
		}
	}
	if uidCmd && !a.uid {
		a.items = append([]fetchItem{{name: "UID"}}, a.items...)
		a.uid = true
	}
	// Answer in a fixed order: UID and FLAGS first, sections last (as
	// requested among themselves). Clients match by name; some tools and
	// tests read the first items.
	slices.SortStableFunc(a.items, func(x, y fetchItem) int { return itemRank(x.name) - itemRank(y.name) })
	if a.hasChanged && !a.modseq {
		// RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ.
		a.modseq = true
		a.items = append(a.items, fetchItem{name: "MODSEQ"})
		slices.SortStableFunc(a.items, func(x, y fetchItem) int { return itemRank(x.name) - itemRank(y.name) })
	}
}

func itemRank(name string) int {
	switch name {
	case "UID":
		return 0
	case "FLAGS":
		return 1
	case "INTERNALDATE":
		return 2
	case "RFC822.SIZE":
		return 3
	case "ENVELOPE":
		return 4
	case "BODYSTRUCTURE", "BODY":
		return 5
	case "MODSEQ":
		return 6
	case "BINARY.SIZE[]":
		return 7
	}
	return 8
}

// fetchAtt reads one fetch-att.
func (p *parser) fetchAtt(a *fetchArgs) error {
	kw, err := p.keyword()
	if err != nil {
		return err
	}
	switch kw {
	case "UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "MODSEQ":
		a.items = append(a.items, fetchItem{name: kw})
		return nil
	case "RFC822", "RFC822.TEXT":
		a.items = append(a.items, fetchItem{name: kw, label: kw})
		return nil
	case "RFC822.HEADER":
		a.items = append(a.items, fetchItem{name: kw, label: kw, peek: true})
		return nil
	case "BODY", "BODY.PEEK":
		if p.peek() != '[' {
			if kw == "BODY.PEEK" {
				return badf("BODY.PEEK needs a section")
			}
			a.items = append(a.items, fetchItem{name: "BODY"})
			return nil
		}
		it := fetchItem{name: "BODY[]", peek: kw == "BODY.PEEK"}
		if err := p.section(&it, false); err != nil {
			return err
		}
		a.items = append(a.items, it)
		return nil
	case "BINARY", "BINARY.PEEK", "BINARY.SIZE":
		name := "BINARY[]"
		if kw == "BINARY.SIZE" {
			name = "BINARY.SIZE[]"
		}
		it := fetchItem{name: name, peek: kw == "BINARY.PEEK"}
		if err := p.section(&it, true); err != nil {
			return err
		}
		if kw == "BINARY.SIZE" && it.partial {
			return badf("BINARY.SIZE takes no partial")
		}
		a.items = append(a.items, it)
		return nil
	}
	return badf("Unknown FETCH item %s", kw)
}

// section reads "[" section-spec "]" [partial] (RFC 9051 §9; binary: only
// a part number, RFC 3516).
func (p *parser) section(it *fetchItem, binary bool) error {
	if err := p.expect('['); err != nil {
		return err
	}
	var label strings.Builder
	for p.peek() >= '0' && p.peek() <= '9' {
		n, err := p.nzNumber()
		if err != nil {
			return err
		}
		it.part = append(it.part, int(n))
		if label.Len() > 0 {
			label.WriteByte('.')
		}
		label.WriteString(strconv.Itoa(int(n)))
		if !p.consume('.') {
			break
		}
		if c := p.peek(); c < '0' || c > '9' {
			p.pos--
			break
		}
	}
	if !binary && p.peek() != ']' {
		if len(it.part) > 0 {
			if err := p.expect('.'); err != nil {
				return err
			}
			label.WriteByte('.')
		}
		kw, err := p.keyword()
		if err != nil {
			return err
		}
		switch kw {
		case "HEADER", "TEXT":
		case "MIME":
			if len(it.part) == 0 {
				return badf("MIME needs a part number")
			}
		case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
			if err := p.sp(); err != nil {
				return err
			}
			err := p.list(func() error {
				f, err := p.astring()
				it.fields = append(it.fields, f)
				return err
			})
			if err != nil {
				return err
			}
			if len(it.fields) == 0 {
				return badf("Empty header list")
			}
		default:
			return badf("Unknown section %s", kw)
		}
		it.spec = kw
		label.WriteString(kw)
		if it.fields != nil {
			label.WriteString(" (")
			for i, f := range it.fields {
				if i > 0 {
					label.WriteByte(' ')
				}
				label.WriteString(strings.ToUpper(f))
			}
			label.WriteByte(')')
		}
	}
	if err := p.expect(']'); err != nil {
		return err
	}
	base := strings.TrimSuffix(it.name, "[]")
	it.label = base + "[" + label.String() + "]"
	if p.consume('<') {
		off, err := p.number64()
		if err != nil {
			return err
		}
		if err := p.expect('.'); err != nil {
			return err
		}
		n, err := p.number64()
		if err != nil {
			return err
		}
		if n == 0 {
			return badf("Partial size must be non-zero")
		}
		if err := p.expect('>'); err != nil {
			return err
		}
		it.partial, it.offset, it.cnt = true, int64(off), int64(n)
	}
	return nil
}

// cmdFetch implements FETCH and UID FETCH (RFC 9051 §6.4.5, RFC 3516
// BINARY, RFC 7162 CHANGEDSINCE and VANISHED). Sections are served from the
// byte offsets of the MIME structure stored at delivery: a section is a
// range of the raw message, read chunk by chunk; nothing is parsed again.
func cmdFetch(s *session, p *parser) error {
	uid := s.cmd == "UID FETCH"
	if err := p.sp(); err != nil {
		return err
	}
	set, err := p.seqSet()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	args, err := p.fetchArgs(uid)
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if args.modseq {
		s.enableCondstore()
	}
	if args.vanished && !s.qresync {
		return badf("VANISHED needs QRESYNC enabled")
	}
	ts, err := s.resolveGhosts(set, uid, true)
	if err != nil {
		return err
	}
	if args.vanished {
		if err := s.vanishedEarlier(set, args.changedSince); err != nil {
			return err
		}
	}
	// A client that goes away stops the FETCH, also one whose items cost
	// much and answer little (BINARY.SIZE of large parts), so that no
	// write fails for a long while (backendWork's watch). The watch costs
	// about 15 µs: the FETCH of a few items of a few messages, which
	// clients send most, goes without.
	var missing bool
	fetch := func() (err error) {
		missing, err = s.fetchTargets(ts, &args)
		return err
	}
	if len(ts)*len(args.items) >= 64 {
		err = s.backendWork(fetch)
	} else {
		err = fetch()
	}
	if err != nil {
		return err
	}
	if missing {
		// RFC 2180 §4.1.2: what is gone is answered with NO, the rest with
		// its data.
		return nof("EXPUNGEISSUED", "Some of the requested messages no longer exist")
	}
	return nil
}

// fetchTargets writes the FETCH responses of ts (FETCH, and NOTIFY's
// MessageNew with fetch attributes); missing reports messages expunged
// meanwhile, which get none.
func (s *session) fetchTargets(ts []target, args *fetchArgs) (missing bool, err error) {
	sel := s.sel
	// A non-PEEK body fetch sets \Seen, but never in EXAMINE (RFC 9051
	// §6.3.3: no change to the mailbox, per-user state included).
	markSeen := args.markSeen && !sel.readOnly
	for i := 0; i < len(ts); i += fetchBatch {
		if err := s.ctx.Err(); err != nil {
			return missing, err
		}
		chunk := ts[i:min(i+fetchBatch, len(ts))]
		msgs, err := s.fetchRecords(chunk)
		if err != nil {
			return missing, s.mapErr("fetch", err, false)
		}
		seen := map[uint32]bool(nil)
		if markSeen {
			var unseen []uint32
			for _, m := range msgs {
				if !m.Has(backend.FlagSeen) {
					unseen = append(unseen, m.UID)
				}
			}
			if len(unseen) > 0 {
				updated, _, err := s.user.StoreFlags(sel.id, unseen, backend.FlagsAdd, []string{backend.FlagSeen}, 0)
				if err != nil {
					return missing, s.mapErr("fetch", err, false)
				}
				seen = make(map[uint32]bool, len(updated))
				for _, m := range updated {
					sel.own[m.UID] = m.ModSeq
					if j, ok := slices.BinarySearchFunc(msgs, m.UID, byUID); ok {
						msgs[j] = m
					}
					seen[m.UID] = true
				}
			}
		}
		// Both chunk and msgs ascend by UID: walk them together. msgs may
		// hold records the chunk does not name (see fetchRecords); a
		// message of the chunk missing from msgs was expunged meanwhile.
		j := 0
		for _, t := range chunk {
			for j < len(msgs) && msgs[j].UID < t.uid {
				j++
			}
			if j == len(msgs) || msgs[j].UID != t.uid {
				missing = true
				continue
			}
			m := &msgs[j]
			if args.hasChanged && m.ModSeq <= args.changedSince {
				continue
			}
			if err := s.fetchOne(t.seq, m, args, seen[t.uid]); err != nil {
				if errors.Is(err, errVanished) {
					missing = true
					continue
				}
				return missing, err
			}
			if err := s.c.out.maybeFlush(); err != nil {
				return missing, err
			}
		}
	}
	return missing, nil
}

var errVanished = errors.New("message vanished")

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

// section is one prepared body or binary section: a range of the raw
// message, bytes, or a decoded stream.
type section struct {
	start, n int64
	data     []byte
	isData   bool
	decode   func() io.Reader // BINARY of an encoded part: the decoded octets
	skip     int64            // octets of decode's output before the section
	literal8 bool
}

// fetchOne writes the FETCH response of one message. Everything that can
// fail is prepared before the response starts.
func (s *session) fetchOne(seq uint32, m *backend.Message, a *fetchArgs, flagsChanged bool) error {
	var parsed *backend.Parsed
	if a.needParsed {
		p, err := s.user.Parsed(m)
		if err != nil {
			if errors.Is(err, backend.ErrNotFound) {
				return errVanished
			}
			return s.mapErr("fetch", err, false)
		}
		parsed = p
	}
	var body *backend.BodyReader
	if a.needBody {
		body = s.user.OpenBody(m)
	}
	secs := make([]section, len(a.items))
	for i := range a.items {
		if err := s.ctx.Err(); err != nil {
			return err // the client went away; an item may cost a pass over a part
		}
		it := &a.items[i]
		var err error
		switch it.name {
		case "BODY[]":
			secs[i], err = s.bodySection(m, body, parsed, it)
		case "RFC822":
			secs[i] = section{start: 0, n: m.Size}
		case "RFC822.HEADER":
			secs[i] = section{start: 0, n: parsed.Root.BodyStart}
		case "RFC822.TEXT":
			secs[i] = section{start: parsed.Root.BodyStart, n: m.Size - parsed.Root.BodyStart}
		case "BINARY[]", "BINARY.SIZE[]":
			secs[i], err = s.binarySection(m, body, parsed, it.part)
			if err == nil && it.partial {
				applyPartial(&secs[i], it.offset, it.cnt)
			}
		}
		if err != nil {
			return err
		}
	}
	if a.flags || flagsChanged {
		s.announceKeywords(m.Flags)
	}
	c := s.c
	b := c.buf()
	b = append(b, "* "...)
	b = appendNum(b, uint64(seq))
	b = append(b, " FETCH ("...)
	first := true
	sp := func() {
		if !first {
			b = append(b, ' ')
		}
		first = false
	}
	wroteFlags := false
	for i := range a.items {
		it := &a.items[i]
		if flagsChanged && !wroteFlags && itemRank(it.name) > 1 {
			// \Seen set by this FETCH is reported (RFC 9051 §6.4.5).
			wroteFlags = true
			sp()
			b = append(b, "FLAGS "...)
			b = s.appendMsgFlags(b, m)
		}
		switch it.name {
		case "UID":
			sp()
			b = append(b, "UID "...)
			b = appendNum(b, uint64(m.UID))
		case "FLAGS":
			if wroteFlags {
				continue
			}
			wroteFlags = true
			sp()
			b = append(b, "FLAGS "...)
			b = s.appendMsgFlags(b, m)
		case "INTERNALDATE":
			sp()
			b = append(b, `INTERNALDATE "`...)
			b = m.InternalDate.UTC().AppendFormat(b, "_2-Jan-2006 15:04:05 -0700")
			b = append(b, '"')
		case "RFC822.SIZE":
			sp()
			b = append(b, "RFC822.SIZE "...)
			b = appendNum(b, uint64(m.Size))
		case "MODSEQ":
			sp()
			b = append(b, "MODSEQ ("...)
			b = appendNum(b, m.ModSeq)
			b = append(b, ')')
		case "ENVELOPE":
			sp()
			b = append(b, "ENVELOPE "...)
			b = s.appendEnvelope(b, &parsed.Envelope)
		case "BODYSTRUCTURE":
			sp()
			b = append(b, "BODYSTRUCTURE "...)
			b = s.appendBodyStructure(b, &parsed.Root, true)
		case "BODY":
			sp()
			b = append(b, "BODY "...)
			b = s.appendBodyStructure(b, &parsed.Root, false)
		case "BINARY.SIZE[]":
			sp()
			b = append(b, "BINARY.SIZE"...)
			b = append(b, strings.TrimPrefix(it.label, "BINARY.SIZE")...)
			b = append(b, ' ')
			b = appendNum(b, uint64(secs[i].n))
		case "BODY[]", "BINARY[]", "RFC822", "RFC822.HEADER", "RFC822.TEXT":
			sp()
			b = append(b, it.label...)
			if it.partial && (it.name == "BODY[]" || it.name == "BINARY[]") {
				b = append(b, '<')
				b = appendNum(b, uint64(it.offset))
				b = append(b, '>')
			}
			sec := &secs[i]
			b = append(b, ' ')
			if sec.literal8 {
				b = append(b, '~')
			}
			b = append(b, '{')
			b = appendNum(b, uint64(sec.n))
			b = append(b, "}\r\n"...)
			switch {
			case sec.isData:
				b = append(b, sec.data...)
			case sec.n == 0:
			default:
				c.setBuf(b)
				if err := s.copySection(body, sec); err != nil {
					if c.out.err != nil {
						return err // the client is gone or stopped reading (write_timeout)
					}
					// The response is broken mid-literal: the connection
					// cannot go on.
					s.log.Error("fetch: reading message failed", "uid", m.UID, "err", err)
					c.bye("Internal error reading a message")
					return errCloseConn
				}
				b = c.buf()
			}
		}
	}
	if flagsChanged && !wroteFlags {
		sp()
		b = append(b, "FLAGS "...)
		b = s.appendMsgFlags(b, m)
	}
	if s.condstore && !a.modseq && (flagsChanged) {
		sp()
		b = append(b, "MODSEQ ("...)
		b = appendNum(b, m.ModSeq)
		b = append(b, ')')
	}
	c.setBuf(append(b, ")\r\n"...))
	return nil
}

// copySection writes a section's octets.
func (s *session) copySection(body *backend.BodyReader, sec *section) error {
	if sec.decode != nil {
		r := sec.decode()
		if sec.skip > 0 {
			if _, err := io.CopyN(io.Discard, r, sec.skip); err != nil {
				return err
			}
		}
		return s.c.out.copyFrom(r, sec.n)
	}
	return s.c.out.copyFrom(io.NewSectionReader(body, sec.start, sec.n), sec.n)
}

// bodySection prepares BODY[section]<partial> (RFC 9051 §6.4.5).
func (s *session) bodySection(m *backend.Message, body io.ReaderAt, parsed *backend.Parsed, it *fetchItem) (section, error) {
	var sec section
	if len(it.part) == 0 && it.spec == "" {
		sec = section{start: 0, n: m.Size}
		if it.partial {
			applyPartial(&sec, it.offset, it.cnt)
		}
		return sec, nil
	}
	node, top, ok := locatePart(&parsed.Root, it.part)
	if !ok {
		// A part that does not exist is empty (as Dovecot answers).
		return section{isData: true}, nil
	}
	var hs, bs, end int64 // the header and body of the section's message or part
	switch {
	case len(it.part) == 0:
		hs, bs, end = node.HeaderStart, node.BodyStart, node.End
	case it.spec == "":
		sec = section{start: node.BodyStart, n: node.Size()}
		if it.partial {
			applyPartial(&sec, it.offset, it.cnt)
		}
		return sec, nil
	case it.spec == "MIME":
		hs, bs, end = node.HeaderStart, node.BodyStart, node.End
		_ = top
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
	switch it.spec {
	case "TEXT":
		sec = section{start: bs, n: end - bs}
	case "MIME", "HEADER":
		sec = section{start: hs, n: bs - hs}
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		raw := make([]byte, bs-hs)
		if _, err := body.ReadAt(raw, hs); err != nil && !errors.Is(err, io.EOF) {
			if errors.Is(err, backend.ErrNotFound) {
				return sec, errVanished
			}
			return sec, s.mapErr("fetch", err, false)
		}
		sec = section{isData: true, data: filterHeader(raw, it.fields, it.spec == "HEADER.FIELDS.NOT")}
		sec.n = int64(len(sec.data))
	}
	if it.partial {
		applyPartial(&sec, it.offset, it.cnt)
	}
	return sec, nil
}

// applyPartial cuts a section to <offset.size>.
func applyPartial(sec *section, offset, size int64) {
	off := min(max(offset, 0), sec.n)
	n := min(max(size, 0), sec.n-off)
	switch {
	case sec.isData:
		sec.data = sec.data[off : off+n]
	case sec.decode != nil:
		sec.skip += off
	default:
		sec.start += off
	}
	sec.n = n
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
// Content-Transfer-Encoding undone, streamed: the decoded size is counted
// in a first pass, the octets decoded again as they are sent, so a large
// attachment is never held in memory.
func (s *session) binarySection(m *backend.Message, body *backend.BodyReader, parsed *backend.Parsed, path []int) (section, error) {
	if len(path) == 0 {
		return section{start: 0, n: m.Size, literal8: true}, nil
	}
	node, _, ok := locatePart(&parsed.Root, path)
	if !ok {
		return section{isData: true, literal8: true}, nil
	}
	raw := section{start: node.BodyStart, n: node.Size(), literal8: true}
	if node.IsMultipart() || node.IsMessage() {
		return raw, nil
	}
	enc := strings.ToLower(strings.TrimSpace(node.Encoding))
	switch enc {
	case "", "7bit", "8bit", "binary":
		return raw, nil
	case "base64", "quoted-printable":
	default:
		return section{}, nof("UNKNOWN-CTE", "Cannot decode Content-Transfer-Encoding %q", node.Encoding)
	}
	open := func() io.Reader { return io.NewSectionReader(body, node.BodyStart, node.Size()) }
	var decode func() io.Reader
	var n int64
	if enc == "base64" {
		count, err := countBase64(open())
		if err != nil {
			return section{}, s.sectionErr(err)
		}
		if count%4 == 1 {
			count-- // a lone last character decodes to nothing
		}
		n = count / 4 * 3
		switch count % 4 {
		case 2:
			n++
		case 3:
			n += 2
		}
		decode = func() io.Reader {
			return base64.NewDecoder(base64.RawStdEncoding, io.LimitReader(&base64Filter{r: open()}, count))
		}
	} else {
		decode = func() io.Reader { return &lenientReader{r: quotedprintable.NewReader(open())} }
		k, err := io.Copy(io.Discard, decode())
		if err != nil {
			return section{}, s.sectionErr(err)
		}
		n = k
	}
	return section{n: n, decode: decode, literal8: true}, nil
}

func (s *session) sectionErr(err error) error {
	if errors.Is(err, backend.ErrNotFound) {
		return errVanished
	}
	return s.mapErr("fetch", err, false)
}

// countBase64 counts the characters of the base64 alphabet in r.
func countBase64(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		for _, c := range buf[:k] {
			if isBase64Char(c) {
				n++
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

// base64Filter passes only base64 alphabet characters: line breaks,
// padding and garbage are ignored (RFC 2045 §6.8).
type base64Filter struct{ r io.Reader }

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if isBase64Char(c) {
				p[k] = c
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// lenientReader ends a quoted-printable stream at its first error: a stray
// "=" ends the data, not the command.
type lenientReader struct {
	r   io.Reader
	err bool
}

func (l *lenientReader) Read(p []byte) (int, error) {
	if l.err {
		return 0, io.EOF
	}
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, backend.ErrNotFound) {
			return n, err
		}
		l.err = true
		return n, nil
	}
	return n, err
}

// appendEnvelope writes an ENVELOPE (RFC 9051 §7.5.2): date, subject,
// in-reply-to and message-id as written in the header, addresses with
// their source route and RFC 5322 groups (RFC 3501 §7.4.2 group syntax).
// Sender and Reply-To default to From.
func (s *session) appendEnvelope(b []byte, e *backend.Envelope) []byte {
	u := s.utf8Names()
	b = append(b, '(')
	b = appendNString(b, e.RawDate, u)
	b = append(b, ' ')
	b = appendNString(b, e.RawSubject, u)
	sender, replyTo := e.Sender, e.ReplyTo
	if len(sender) == 0 {
		sender = e.From
	}
	if len(replyTo) == 0 {
		replyTo = e.From
	}
	for _, l := range [][]backend.Address{e.From, sender, replyTo, e.To, e.Cc, e.Bcc} {
		b = append(b, ' ')
		b = appendAddresses(b, l, u)
	}
	b = append(b, ' ')
	b = appendNString(b, e.RawInReplyTo, u)
	b = append(b, ' ')
	b = appendNString(b, e.RawMessageID, u)
	return append(b, ')')
}

func appendAddresses(b []byte, l []backend.Address, u bool) []byte {
	if len(l) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for _, a := range l {
		switch {
		case a.GroupStart:
			b = append(b, "(NIL NIL "...)
			b = appendNString(b, a.Mailbox, u)
			b = append(b, " NIL)"...)
		case a.GroupEnd:
			b = append(b, "(NIL NIL NIL NIL)"...)
		default:
			b = append(b, '(')
			b = appendNString(b, a.Name, u)
			b = append(b, ' ')
			b = appendNString(b, a.Route, u)
			b = append(b, ' ')
			b = appendNString(b, a.Mailbox, u)
			b = append(b, ' ')
			b = appendNString(b, a.Host, u)
			b = append(b, ')')
		}
	}
	return append(b, ')')
}

// appendBodyStructure writes BODYSTRUCTURE (ext: with extension data) or
// BODY (RFC 9051 §7.5.2).
func (s *session) appendBodyStructure(b []byte, p *backend.Part, ext bool) []byte {
	u := s.utf8Names()
	if p.IsMultipart() && len(p.Parts) > 0 {
		b = append(b, '(')
		for i := range p.Parts {
			b = s.appendBodyStructure(b, &p.Parts[i], ext)
		}
		b = append(b, ' ')
		b = appendString(b, p.Subtype, u)
		if ext {
			b = append(b, ' ')
			b = appendParams(b, p.Params, u)
			b = append(b, ' ')
			b = appendDisposition(b, p, u)
			b = append(b, ' ')
			b = appendLanguage(b, p.Language, u)
			b = append(b, ' ')
			b = appendNString(b, p.Location, u)
		}
		return append(b, ')')
	}
	typ, sub, params := p.Type, p.Subtype, p.Params
	isMessage := p.IsMessage() && len(p.Parts) == 1 && p.Envelope != nil
	switch {
	case p.IsMultipart():
		// A multipart without parts (no boundary, or none found) is shown
		// as the text it is.
		typ, sub, params = "text", "plain", nil
	case p.IsMessage() && !isMessage:
		typ, sub = "application", "octet-stream"
	}
	if typ == "text" {
		if _, ok := params["charset"]; !ok {
			// RFC 2045 §5.2's default, spelt out as Dovecot does.
			np := make(map[string]string, len(params)+1)
			for k, v := range params {
				np[k] = v
			}
			np["charset"] = "us-ascii"
			params = np
		}
	}
	b = append(b, '(')
	b = appendString(b, typ, u)
	b = append(b, ' ')
	b = appendString(b, sub, u)
	b = append(b, ' ')
	b = appendParams(b, params, u)
	b = append(b, ' ')
	b = appendNString(b, p.ID, u)
	b = append(b, ' ')
	b = appendNString(b, p.Description, u)
	b = append(b, ' ')
	enc := p.Encoding
	if enc == "" {
		enc = "7bit"
	}
	b = appendString(b, enc, u)
	b = append(b, ' ')
	b = appendNum(b, uint64(min(max(p.Size(), 0), math.MaxUint32)))
	if isMessage {
		b = append(b, ' ')
		b = s.appendEnvelope(b, p.Envelope)
		b = append(b, ' ')
		b = s.appendBodyStructure(b, &p.Parts[0], ext)
		b = append(b, ' ')
		b = appendNum(b, uint64(p.Lines))
	} else if typ == "text" {
		b = append(b, ' ')
		b = appendNum(b, uint64(p.Lines))
	}
	if ext {
		b = append(b, ' ')
		b = appendNString(b, p.MD5, u)
		b = append(b, ' ')
		b = appendDisposition(b, p, u)
		b = append(b, ' ')
		b = appendLanguage(b, p.Language, u)
		b = append(b, ' ')
		b = appendNString(b, p.Location, u)
	}
	return append(b, ')')
}

func appendParams(b []byte, params map[string]string, u bool) []byte {
	if len(params) == 0 {
		return append(b, "NIL"...)
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '(')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendString(b, k, u)
		b = append(b, ' ')
		b = appendString(b, params[k], u)
	}
	return append(b, ')')
}

func appendDisposition(b []byte, p *backend.Part, u bool) []byte {
	if p.Disposition == "" {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	b = appendString(b, p.Disposition, u)
	b = append(b, ' ')
	b = appendParams(b, p.DispositionParams, u)
	return append(b, ')')
}

func appendLanguage(b []byte, l []string, u bool) []byte {
	switch len(l) {
	case 0:
		return append(b, "NIL"...)
	case 1:
		return appendString(b, l[0], u)
	}
	b = append(b, '(')
	for i, x := range l {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendString(b, x, u)
	}
	return append(b, ')')
}

var _ = fmt.Sprint
