package backend

// The stored form of Parsed. Roost before parsed version 1 stored JSON
// (first byte '{'); that still decodes. Since then it is the binary form
// below, hand-written rather than JSON or gob because:
//   - SORT, THREAD and SEARCH decode 100,000 of these per command, and
//     encoding/json costs ~25 µs each (reflection), most of a SORT;
//   - JSON replaces invalid UTF-8 with U+FFFD, which changed the raw 8-bit
//     header bytes that ENVELOPE must send as they are;
//   - the envelope comes first with its length, so the search and sort
//     paths decode it without the MIME tree.
//
// Layout (integers are uvarints unless said otherwise, strings a length
// then bytes):
//
//	0x02                         format marker
//	version
//	BareLF, Unterminated (0/1)
//	envelope length, envelope
//	root part
//
// envelope: hasDate (0/1) [unix seconds (varint), nanoseconds, zone offset
// seconds (varint)], Subject, RawDate, RawSubject, RawInReplyTo,
// RawMessageID, MessageID, InReplyTo and References (count, strings), From,
// Sender, ReplyTo, To, Cc, Bcc (count, then per address: flags (1 group
// start, 2 group end), Name, Route, Mailbox, Host).
//
// part: Type, Subtype, ID, Description, Encoding, Disposition, Location,
// MD5, Params and DispositionParams (count, sorted key/value pairs),
// Language (count, strings), HeaderStart, BodyStart, End, Lines, hasEnvelope
// (0/1) [envelope length, envelope], children (count, parts).

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

const binaryParsedMarker = 0x02

// maxDecodeDepth bounds the nesting a stored form may claim, so that a
// damaged record cannot exhaust the stack.
const maxDecodeDepth = maxDepth + 2

var errBadParsed = errors.New("malformed stored parsed form")

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) strs(l []string) {
	e.uint(uint64(len(l)))
	for _, s := range l {
		e.str(s)
	}
}

func (e *encoder) params(m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.uint(uint64(len(keys)))
	for _, k := range keys {
		e.str(k)
		e.str(m[k])
	}
}

func (e *encoder) addresses(l []Address) {
	e.uint(uint64(len(l)))
	for i := range l {
		a := &l[i]
		var flags uint64
		if a.GroupStart {
			flags |= 1
		}
		if a.GroupEnd {
			flags |= 2
		}
		e.uint(flags)
		e.str(a.Name)
		e.str(a.Route)
		e.str(a.Mailbox)
		e.str(a.Host)
	}
}

// envelope writes env with its length in front.
func (e *encoder) envelope(env *Envelope) {
	inner := encoder{b: make([]byte, 0, 256)}
	inner.bool(!env.Date.IsZero())
	if !env.Date.IsZero() {
		_, off := env.Date.Zone()
		inner.int(env.Date.Unix())
		inner.uint(uint64(env.Date.Nanosecond()))
		inner.int(int64(off))
	}
	for _, s := range [...]string{env.Subject, env.RawDate, env.RawSubject, env.RawInReplyTo, env.RawMessageID, env.MessageID} {
		inner.str(s)
	}
	inner.strs(env.InReplyTo)
	inner.strs(env.References)
	for _, l := range [...][]Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		inner.addresses(l)
	}
	e.uint(uint64(len(inner.b)))
	e.b = append(e.b, inner.b...)
}

func (e *encoder) part(p *Part) {
	for _, s := range [...]string{p.Type, p.Subtype, p.ID, p.Description, p.Encoding, p.Disposition, p.Location, p.MD5} {
		e.str(s)
	}
	e.params(p.Params)
	e.params(p.DispositionParams)
	e.strs(p.Language)
	for _, v := range [...]int64{p.HeaderStart, p.BodyStart, p.End, p.Lines} {
		e.uint(uint64(v))
	}
	e.bool(p.Envelope != nil)
	if p.Envelope != nil {
		e.envelope(p.Envelope)
	}
	e.uint(uint64(len(p.Parts)))
	for i := range p.Parts {
		e.part(&p.Parts[i])
	}
}

func (p *Parsed) marshal() []byte {
	e := encoder{b: make([]byte, 0, 512)}
	e.b = append(e.b, binaryParsedMarker)
	e.uint(uint64(p.Version))
	e.uint(uint64(p.BareLF))
	e.bool(p.Unterminated)
	e.envelope(&p.Envelope)
	e.part(&p.Root)
	return e.b
}

// decoder reads from one string copy of the record: every decoded string
// is a substring of it, so a record costs one allocation for its text.
type decoder struct {
	s   string
	pos int
	err error
	// Arenas, if set, that address and string lists are cut from
	// (envelopeBatch).
	addrArena *[]Address
	strArena  *[]string
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errBadParsed
	}
	d.pos = len(d.s)
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if d.pos >= len(d.s) || shift > 63 {
			d.fail()
			return 0
		}
		c := d.s[d.pos]
		d.pos++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
}

func (d *decoder) int() int64 {
	u := d.uint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// count reads a count of items, each at least min bytes long, and refuses
// one the rest of the record cannot hold.
func (d *decoder) count(min int) int {
	n := d.uint()
	if n > uint64(len(d.s)-d.pos)/uint64(min) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) offset() int64 {
	v := d.uint()
	if v > 1<<62 {
		d.fail()
		return 0
	}
	return int64(v)
}

func (d *decoder) str() string {
	n := d.uint()
	if d.err != nil || n > uint64(len(d.s)-d.pos) {
		d.fail()
		return ""
	}
	s := d.s[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return s
}

func (d *decoder) bool() bool {
	v := d.uint()
	if v > 1 {
		d.fail()
	}
	return v == 1
}

func (d *decoder) strs() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	var out []string
	if d.strArena != nil {
		start := len(*d.strArena)
		*d.strArena = slices.Grow(*d.strArena, n)[:start+n]
		out = (*d.strArena)[start : start+n : start+n]
	} else {
		out = make([]string, n)
	}
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *decoder) params() map[string]string {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

func (d *decoder) addresses() []Address {
	n := d.count(5)
	if n == 0 {
		return nil
	}
	var out []Address
	if d.addrArena != nil {
		start := len(*d.addrArena)
		*d.addrArena = slices.Grow(*d.addrArena, n)[:start+n]
		out = (*d.addrArena)[start : start+n : start+n]
	} else {
		out = make([]Address, n)
	}
	for i := range out {
		flags := d.uint()
		out[i] = Address{GroupStart: flags&1 != 0, GroupEnd: flags&2 != 0,
			Name: d.str(), Route: d.str(), Mailbox: d.str(), Host: d.str()}
	}
	return out
}

func (d *decoder) envelope(env *Envelope) {
	n := d.uint()
	if d.err != nil || n > uint64(len(d.s)-d.pos) {
		d.fail()
		return
	}
	end := d.pos + int(n)
	sub := decoder{s: d.s[:end], pos: d.pos, addrArena: d.addrArena, strArena: d.strArena}
	sub.envelopeBody(env)
	if sub.err != nil || sub.pos != end {
		d.fail()
		return
	}
	d.pos = end
}

func (d *decoder) envelopeBody(env *Envelope) {
	if d.bool() {
		sec, nsec, off := d.int(), d.uint(), d.int()
		if nsec >= 1e9 || off < -86400 || off > 86400 {
			d.fail()
			return
		}
		env.Date = time.Unix(sec, int64(nsec)).In(time.FixedZone("", int(off)))
	}
	env.Subject, env.RawDate, env.RawSubject = d.str(), d.str(), d.str()
	env.RawInReplyTo, env.RawMessageID, env.MessageID = d.str(), d.str(), d.str()
	env.InReplyTo, env.References = d.strs(), d.strs()
	env.From, env.Sender, env.ReplyTo = d.addresses(), d.addresses(), d.addresses()
	env.To, env.Cc, env.Bcc = d.addresses(), d.addresses(), d.addresses()
}

func (d *decoder) part(p *Part, depth int) {
	if depth > maxDecodeDepth {
		d.fail()
		return
	}
	p.Type, p.Subtype, p.ID, p.Description = d.str(), d.str(), d.str(), d.str()
	p.Encoding, p.Disposition, p.Location, p.MD5 = d.str(), d.str(), d.str(), d.str()
	p.Params, p.DispositionParams = d.params(), d.params()
	p.Language = d.strs()
	p.HeaderStart, p.BodyStart, p.End, p.Lines = d.offset(), d.offset(), d.offset(), d.offset()
	if d.bool() {
		p.Envelope = &Envelope{}
		d.envelope(p.Envelope)
	}
	if n := d.count(12); n > 0 {
		p.Parts = make([]Part, n)
		for i := range p.Parts {
			d.part(&p.Parts[i], depth+1)
		}
	}
}

// unmarshalParsed decodes a stored parsed form, binary or (from an older
// Roost) JSON.
func unmarshalParsed(b []byte) (*Parsed, error) {
	if len(b) > 0 && b[0] == '{' {
		var p Parsed
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, err
		}
		return &p, nil
	}
	d, p := decodeHead(string(b))
	if d.err == nil {
		d.part(&p.Root, 0)
	}
	if d.err != nil || d.pos != len(d.s) {
		return nil, errBadParsed
	}
	return p, nil
}

// unmarshalEnvelope decodes only the version and envelope of a stored
// form (Root is left zero): what SORT, THREAD and address searches read.
// Only the envelope's bytes are copied.
func unmarshalEnvelope(b []byte) (*Parsed, error) {
	if len(b) > 0 && b[0] == '{' {
		return unmarshalParsed(b)
	}
	// Copy the head and envelope, not the MIME tree after them.
	d, p := decodeHead(string(b[:envelopeEnd(b)]))
	if d.err != nil {
		return nil, errBadParsed
	}
	return p, nil
}

// envelopeEnd returns the offset just past the envelope of a binary stored
// form, or len(b) if it cannot tell (the full decode then reports errors).
func envelopeEnd(b []byte) int {
	pos := 1
	for i := 0; i < 3; i++ { // version, BareLF, Unterminated
		_, n := binary.Uvarint(b[min(pos, len(b)):])
		if n <= 0 {
			return len(b)
		}
		pos += n
	}
	l, n := binary.Uvarint(b[min(pos, len(b)):])
	if n <= 0 || l > uint64(len(b)-pos-n) {
		return len(b)
	}
	return pos + n + int(l)
}

// decodeHead reads the marker, version, counters and envelope.
func decodeHead(s string) (*decoder, *Parsed) {
	d := &decoder{s: s}
	p := &Parsed{}
	decodeHeadInto(d, p)
	return d, p
}

func decodeHeadInto(d *decoder, p *Parsed) {
	s := d.s
	if len(s) == 0 || s[0] != binaryParsedMarker {
		d.fail()
		return
	}
	d.pos = 1
	p.Version = int(min(d.uint(), 1<<20))
	p.BareLF = d.offset()
	p.Unterminated = d.bool()
	d.envelope(&p.Envelope)
}

// envelopeBatch decodes the envelopes of a batch of stored forms (SORT,
// THREAD, address SEARCH) with a handful of allocations for the whole
// batch instead of a dozen per message: the records' bytes are copied into
// one string, and the Parsed values and their address and string lists
// are cut from arenas reused from one batch to the next. So nothing
// decoded may be kept past the next batch (keys are copied).
type envelopeBatch struct {
	buf    []byte
	offs   [][2]int // each record's bytes in buf; [0] < 0: gone, -2: JSON
	json   [][]byte // records of an older Roost, decoded the slow way
	parsed []Parsed
	addrs  []Address
	strs   []string
}

// add keeps one record (raw valid only during the call; nil: gone).
func (eb *envelopeBatch) add(raw []byte) {
	switch {
	case raw == nil:
		eb.offs = append(eb.offs, [2]int{-1, 0})
	case raw[0] == '{':
		eb.offs = append(eb.offs, [2]int{-2, len(eb.json)})
		eb.json = append(eb.json, bytes.Clone(raw))
	default:
		start := len(eb.buf)
		eb.buf = append(eb.buf, raw[:envelopeEnd(raw)]...)
		eb.offs = append(eb.offs, [2]int{start, len(eb.buf)})
	}
}

// decode returns the batch's forms, in the order added: an empty form for
// a record that is gone or damaged.
func (eb *envelopeBatch) decode() []*Parsed {
	s := string(eb.buf)
	eb.parsed = slices.Grow(eb.parsed[:0], len(eb.offs))[:len(eb.offs)]
	clear(eb.parsed)
	eb.addrs, eb.strs = eb.addrs[:0], eb.strs[:0]
	out := make([]*Parsed, len(eb.offs))
	for i, o := range eb.offs {
		p := &eb.parsed[i]
		out[i] = p
		switch {
		case o[0] == -1:
			p.Version = parsedVersion
		case o[0] == -2:
			if jp, err := unmarshalParsed(eb.json[o[1]]); err == nil {
				out[i] = jp
			} else {
				p.Version = parsedVersion
			}
		default:
			d := decoder{s: s[o[0]:o[1]], addrArena: &eb.addrs, strArena: &eb.strs}
			decodeHeadInto(&d, p)
			if d.err != nil {
				*p = Parsed{Version: parsedVersion}
			}
		}
	}
	eb.buf, eb.offs, eb.json = eb.buf[:0], eb.offs[:0], eb.json[:0]
	return out
}
