package backend

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"slices"
	"sort"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"
)

// UIDRange is an inclusive range of UIDs.
type UIDRange struct{ Start, Stop uint32 }

// HeaderMatch matches messages that have header Key whose value, RFC 2047
// words decoded, contains Value, case-insensitively. An empty Value matches
// any message that has the header (RFC 9051 §6.4.4).
type HeaderMatch struct{ Key, Value string }

// SearchCriteria select messages; every set field must match (AND).
// Dates compare by calendar day, as IMAP SEARCH does; strings match as
// case-insensitive substrings. Session state (RECENT, NEW, sequence
// numbers, $ of SEARCHRES) is the front end's: it turns them into UIDs.
type SearchCriteria struct {
	UIDs [][]UIDRange // the UID must be in each set

	Since, Before, On             time.Time // internal date
	SentSince, SentBefore, SentOn time.Time // Date: header

	// From, To, Cc and Bcc match the addresses of those fields as a reader
	// sees them: "Display Name <mailbox@host>" with RFC 2047 words decoded,
	// group syntax as "group: members;" (as Dovecot matches them).
	From, To, Cc, Bcc []string

	Header []HeaderMatch
	Body   []string // in the decoded text of the body
	Text   []string // in the header or the body

	Flag    []string // has all of these flags
	NotFlag []string // has none of these flags

	Larger, Smaller int64 // RFC822.SIZE > Larger, < Smaller (0: unset)
	// ModSeq: the message's modseq is at least this (RFC 7162 §3.1.5; 0:
	// unset). Roost keeps one modseq per message, not per flag, so the
	// criterion's entry name and type are for the front end to accept and
	// ignore, as §3.1.5 allows.
	ModSeq uint64

	Not []SearchCriteria
	Or  [][2]SearchCriteria
}

// Search returns the UIDs of the mailbox's messages that match c, ascending.
func (u *User) Search(ctx context.Context, mailboxID uint64, c *SearchCriteria) ([]uint32, error) {
	uids, _, err := u.SearchModSeq(ctx, mailboxID, c)
	return uids, err
}

// SearchModSeq is Search that also returns the highest modseq of the
// messages found (0 if none): SEARCH's "(MODSEQ n)" and ESEARCH's MODSEQ
// (RFC 7162 §3.1.5, RFC 4731). It costs time and memory linear in the
// mailbox and the messages it must read, and stops with ctx's error when
// ctx is done.
func (u *User) SearchModSeq(ctx context.Context, mailboxID uint64, c *SearchCriteria) (uids []uint32, highestModSeq uint64, err error) {
	err = u.scan(ctx, mailboxID, c, needOf(c), func(mc *matchCtx) error {
		uids = append(uids, mc.msg.UID)
		highestModSeq = max(highestModSeq, mc.msg.ModSeq)
		return nil
	})
	return uids, highestModSeq, err
}

// need says what a criterion reads beyond the message record.
type need uint8

const (
	needRecord   need = iota // flags, UID, size, dates, modseq
	needEnvelope             // the parsed form stored at delivery
	needRaw                  // the raw message (header fields, body text)
)

func needOf(c *SearchCriteria) need {
	if c == nil {
		return needRecord
	}
	n := needRecord
	if len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 {
		return needRaw
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() || !c.SentOn.IsZero() ||
		len(c.From) > 0 || len(c.To) > 0 || len(c.Cc) > 0 || len(c.Bcc) > 0 {
		n = needEnvelope
	}
	for i := range c.Not {
		n = max(n, needOf(&c.Not[i]))
	}
	for i := range c.Or {
		n = max(n, needOf(&c.Or[i][0]), needOf(&c.Or[i][1]))
	}
	return n
}

// parsedBatch is how many parsed forms one read transaction loads.
const parsedBatch = 1024

// scan calls fn, in UID order, for every message of the mailbox that
// matches c (nil: every message), with the message's parsed form loaded if
// at least want is asked (for sort keys).
func (u *User) scan(ctx context.Context, mailboxID uint64, c *SearchCriteria, want need, fn func(mc *matchCtx) error) error {
	c = prepared(c)
	lo, hi := uint32(1), ^uint32(0)
	if c != nil && len(c.UIDs) > 0 {
		lo, hi = rangeBounds(c.UIDs[0])
	}
	n := needOf(c)
	if n == needRecord && want == needRecord {
		// Every criterion reads the record alone (UNSEEN, DELETED, ...):
		// match during the scan, keeping nothing else.
		i := 0
		var mc matchCtx // one for all: fn must not keep it
		err := u.Messages(mailboxID, lo, hi, func(m Message) error {
			if i++; i%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			mc = matchCtx{ctx: ctx, u: u, msg: &m}
			if c == nil || mc.match(c) {
				return fn(&mc)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return ctx.Err() // a match stopped by ctx failed: the result is short
	}
	// Otherwise narrow by the record first, then load parsed forms in
	// batches, one read transaction each. One matchCtx serves every
	// message: fn must not keep it, nor the parsed form it holds.
	var (
		msgs []Message
		eb   envelopeBatch
		mc   matchCtx
	)
	if mb, err := u.ms.MailboxByID(mailboxID); err == nil {
		msgs = make([]Message, 0, mb.Messages)
	}
	err := u.Messages(mailboxID, lo, hi, func(m Message) error {
		if len(msgs)%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if c != nil && n == needRecord {
			if mc := (matchCtx{ctx: ctx, u: u, msg: &m}); !mc.match(c) {
				return nil
			}
		}
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		return err
	}
	if n == needRecord {
		c = nil // already matched
	}
	for start := 0; start < len(msgs); start += parsedBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := msgs[start:min(start+parsedBatch, len(msgs))]
		parsed, err := u.parsedOf(batch, max(n, want) == needRaw, &eb)
		if err != nil {
			return err
		}
		for i := range batch {
			if n == needRaw && ctx.Err() != nil {
				return ctx.Err()
			}
			mc = matchCtx{ctx: ctx, u: u, msg: &batch[i], parsed: parsed[i]}
			if c == nil || mc.match(c) {
				if err := fn(&mc); err != nil {
					return err
				}
			}
		}
	}
	return ctx.Err()
}

// parsedOf returns the parsed forms of msgs, read in one transaction; with
// full false only their envelopes (Root left zero). A message expunged
// meanwhile gets an empty form (it matches only criteria on its record), as
// it would have a moment earlier.
func (u *User) parsedOf(msgs []Message, full bool, eb *envelopeBatch) ([]*Parsed, error) {
	blobs := make([]uint64, len(msgs))
	for i := range msgs {
		blobs[i] = msgs[i].BlobID
	}
	var out []*Parsed
	if !full {
		err := u.ms.ParsedEach(blobs, func(i int, raw []byte) error {
			eb.add(raw)
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = eb.decode()
	} else if err := u.ms.ParsedEach(blobs, func(i int, raw []byte) error {
		if out == nil {
			out = make([]*Parsed, len(msgs))
		}
		if raw == nil {
			out[i] = &Parsed{Version: parsedVersion}
			return nil
		}
		p, err := unmarshalParsed(raw)
		if err != nil {
			out[i] = &Parsed{Version: parsedVersion}
			return nil
		}
		out[i] = p
		return nil
	}); err != nil {
		return nil, err
	}
	for i, p := range out {
		if p.Version < parsedVersion {
			if np, err := u.reparse(&msgs[i]); err == nil {
				out[i] = np
			}
		}
	}
	return out, nil
}

func rangeBounds(set []UIDRange) (uint32, uint32) {
	if len(set) == 0 {
		return 1, 0
	}
	lo, hi := ^uint32(0), uint32(0)
	for _, r := range set {
		a, b := r.Start, r.Stop
		if a > b {
			a, b = b, a
		}
		lo, hi = min(lo, a), max(hi, b)
	}
	return lo, hi
}

// matchCtx evaluates criteria against one message, loading its raw form
// at most once and only when a criterion needs it.
type matchCtx struct {
	// ctx stops the match: a key over a large text costs a pass over it,
	// and a search may have many (match then fails; scan returns ctx's
	// error).
	ctx    context.Context
	u      *User
	msg    *Message
	parsed *Parsed
	raw    []byte
	loaded bool
	hdr    header
	// Lower-cased texts, computed on first use.
	headerText, bodyText string
	haveHeader, haveBody bool
	// Address lists as search matches them, lower case, by addrField.
	addrText [4]string
	haveAddr [4]bool
}

// The address fields SEARCH matches (FROM, TO, CC, BCC), indexing
// matchCtx.addrText.
const (
	addrFrom = iota
	addrTo
	addrCc
	addrBcc
)

func (mc *matchCtx) loadRaw() []byte {
	if !mc.loaded {
		mc.loaded = true
		mc.raw, _ = mc.u.ReadBody(mc.msg) // an expunged message has no text
	}
	return mc.raw
}

func (mc *matchCtx) header() header {
	if mc.hdr == nil {
		raw := mc.loadRaw()
		end := min(int64(len(raw)), mc.parsed.Root.BodyStart)
		mc.hdr = readHeader(raw[:end])
		if mc.hdr == nil {
			mc.hdr = header{}
		}
	}
	return mc.hdr
}

func day(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// stopped reports that the search was given up.
func (mc *matchCtx) stopped() bool { return mc.ctx != nil && mc.ctx.Err() != nil }

func (mc *matchCtx) match(c *SearchCriteria) bool {
	if mc.stopped() {
		return false
	}
	m := mc.msg
	for _, set := range c.UIDs {
		if !inRanges(set, m.UID) {
			return false
		}
	}
	for _, f := range c.Flag {
		if !m.Has(f) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if m.Has(f) {
			return false
		}
	}
	if c.Larger > 0 && m.Size <= c.Larger || c.Smaller > 0 && m.Size >= c.Smaller {
		return false
	}
	if c.ModSeq > 0 && m.ModSeq < c.ModSeq {
		return false
	}
	if !dateMatch(m.InternalDate, c.Since, c.Before, c.On) {
		return false
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() || !c.SentOn.IsZero() {
		d := mc.parsed.Envelope.Date
		if d.IsZero() || !dateMatch(d, c.SentSince, c.SentBefore, c.SentOn) {
			return false
		}
	}
	for field, needles := range [...][]string{addrFrom: c.From, addrTo: c.To, addrCc: c.Cc, addrBcc: c.Bcc} {
		for _, s := range needles {
			if mc.stopped() || !strings.Contains(mc.addresses(field), s) {
				return false
			}
		}
	}
	for _, h := range c.Header {
		if mc.stopped() || !mc.headerMatch(h) {
			return false
		}
	}
	for _, s := range c.Body {
		if mc.stopped() || !strings.Contains(mc.body(), s) {
			return false
		}
	}
	for _, s := range c.Text {
		if mc.stopped() || !strings.Contains(mc.headers(), s) && !strings.Contains(mc.body(), s) {
			return false
		}
	}
	for i := range c.Not {
		if mc.match(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !mc.match(&c.Or[i][0]) && !mc.match(&c.Or[i][1]) {
			return false
		}
	}
	return true
}

func (mc *matchCtx) parsedEnv() *Envelope {
	if mc.parsed == nil {
		return &Envelope{}
	}
	return &mc.parsed.Envelope
}

// addresses returns an address list (addrFrom...) as search matches it,
// lower case.
func (mc *matchCtx) addresses(field int) string {
	if !mc.haveAddr[field] {
		env := mc.parsedEnv()
		list := [...][]Address{addrFrom: env.From, addrTo: env.To, addrCc: env.Cc, addrBcc: env.Bcc}[field]
		mc.addrText[field] = strings.ToLower(AddressText(list))
		mc.haveAddr[field] = true
	}
	return mc.addrText[field]
}

// AddressText writes an address list as a reader sees it, display names
// decoded: `Name <mailbox@host>, other@host, group: a@b, c@d;`. SEARCH
// FROM/TO/CC/BCC match in it.
func AddressText(list []Address) string {
	var sb strings.Builder
	inGroup, first := false, true
	for i := range list {
		a := &list[i]
		switch {
		case a.GroupStart:
			if !first {
				sb.WriteString(", ")
			}
			sb.WriteString(decodeWords(a.Mailbox))
			sb.WriteString(": ")
			inGroup, first = true, true
			continue
		case a.GroupEnd:
			sb.WriteString(";")
			inGroup, first = false, false
			continue
		}
		if !first {
			sb.WriteString(", ")
		}
		first = false
		if name := a.DisplayName(); name != "" {
			sb.WriteString(name)
			sb.WriteString(" <")
			sb.WriteString(a.Addr())
			sb.WriteString(">")
		} else {
			sb.WriteString(a.Addr())
		}
	}
	if inGroup {
		sb.WriteString(";")
	}
	return sb.String()
}

func (mc *matchCtx) headerMatch(hm HeaderMatch) bool {
	found := false
	for _, f := range mc.header() {
		if !strings.EqualFold(f.name, hm.Key) {
			continue
		}
		found = true
		if hm.Value == "" {
			return true
		}
		if strings.Contains(strings.ToLower(decodeWords(unfold(f.value))), hm.Value) {
			return true
		}
	}
	return found && hm.Value == ""
}

// headers returns every header of the message and of its parts, RFC 2047
// words decoded, lower case: what TEXT searches beside the body.
func (mc *matchCtx) headers() string {
	if !mc.haveHeader {
		mc.haveHeader = true
		var sb strings.Builder
		raw := mc.loadRaw()
		walkParts(&mc.parsed.Root, func(p *Part) {
			if p.HeaderStart >= p.BodyStart || p.BodyStart > int64(len(raw)) {
				return
			}
			for _, f := range readHeader(raw[p.HeaderStart:p.BodyStart]) {
				sb.WriteString(f.name)
				sb.WriteString(": ")
				sb.WriteString(decodeWords(unfold(f.value)))
				sb.WriteByte('\n')
			}
		})
		mc.headerText = strings.ToLower(sb.String())
	}
	return mc.headerText
}

// maxDecodedPart bounds the text taken from one part for BODY and TEXT.
const maxDecodedPart = 16 << 20

// body returns the text of the message's text parts, transfer encoding
// and charset decoded (RFC 2045 §6, RFC 2046 §4.1.2), lower case: what
// BODY searches, as Dovecot does. Other parts (images, archives) are not
// searched.
func (mc *matchCtx) body() string {
	if !mc.haveBody {
		mc.haveBody = true
		var sb strings.Builder
		raw := mc.loadRaw()
		walkParts(&mc.parsed.Root, func(p *Part) {
			if p.IsMultipart() && len(p.Parts) > 0 || p.IsMessage() && len(p.Parts) > 0 {
				return // its children are walked
			}
			if p.Type != "text" && !p.IsMultipart() && !p.IsMessage() {
				return
			}
			if p.BodyStart > p.End || p.End > int64(len(raw)) {
				return
			}
			sb.Write(decodeText(raw[p.BodyStart:p.End], p.Encoding, p.Params["charset"]))
			sb.WriteByte('\n')
		})
		mc.bodyText = strings.ToLower(sb.String())
	}
	return mc.bodyText
}

func walkParts(p *Part, fn func(*Part)) {
	fn(p)
	for i := range p.Parts {
		walkParts(&p.Parts[i], fn)
	}
}

// decodeText undoes a part's transfer encoding and converts its charset
// to UTF-8; what cannot be decoded is used as it is.
func decodeText(b []byte, encoding, charset string) []byte {
	var r io.Reader = bytes.NewReader(b)
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &base64Cleaner{r: r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	if cs := strings.ToLower(charset); cs != "" && cs != "utf-8" && cs != "us-ascii" {
		if cr, err := gomessage.CharsetReader(cs, r); err == nil {
			r = cr
		}
	}
	out, _ := io.ReadAll(io.LimitReader(r, maxDecodedPart))
	if len(out) == 0 && len(b) > 0 {
		return b[:min(len(b), maxDecodedPart)]
	}
	return out
}

// base64Cleaner drops what is not base64 alphabet (line breaks, stray
// characters) before decoding, as RFC 2045 §6.8 says decoders must.
type base64Cleaner struct{ r io.Reader }

func (c *base64Cleaner) Read(p []byte) (int, error) {
	for {
		n, err := c.r.Read(p)
		j := 0
		for _, b := range p[:n] {
			if b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

func dateMatch(t, since, before, on time.Time) bool {
	d := day(t)
	if !since.IsZero() && d.Before(day(since)) {
		return false
	}
	if !before.IsZero() && !d.Before(day(before)) {
		return false
	}
	if !on.IsZero() && !d.Equal(day(on)) {
		return false
	}
	return true
}

// inRanges reports whether uid is in set, which prepared has sorted:
// O(log n), so that a set of many single numbers (a client's 1 MiB list)
// costs no pass over it for every message.
func inRanges(set []UIDRange, uid uint32) bool {
	i := sort.Search(len(set), func(i int) bool { return set[i].Stop >= uid })
	return i < len(set) && set[i].Start <= uid
}

// prepared returns c (and its NOT and OR criteria) made ready for match,
// once per search rather than once per message: every UID set ordered
// (Start <= Stop), sorted, overlapping and adjacent ranges merged, for
// inRanges; the strings to find lower-cased (a needle of 1 MiB costs one
// pass, not one per message). c itself is not changed.
func prepared(c *SearchCriteria) *SearchCriteria {
	if c == nil {
		return nil
	}
	out := *c
	lower := func(l []string) []string {
		if len(l) == 0 {
			return l
		}
		o := make([]string, len(l))
		for i, s := range l {
			o[i] = strings.ToLower(s)
		}
		return o
	}
	out.From, out.To, out.Cc, out.Bcc = lower(c.From), lower(c.To), lower(c.Cc), lower(c.Bcc)
	out.Body, out.Text = lower(c.Body), lower(c.Text)
	if len(c.Header) > 0 {
		out.Header = make([]HeaderMatch, len(c.Header))
		for i, h := range c.Header {
			out.Header[i] = HeaderMatch{Key: h.Key, Value: strings.ToLower(h.Value)}
		}
	}
	if len(c.UIDs) > 0 {
		out.UIDs = make([][]UIDRange, len(c.UIDs))
		for i, set := range c.UIDs {
			out.UIDs[i] = MergeRanges(set)
		}
	}
	if len(c.Not) > 0 {
		out.Not = make([]SearchCriteria, len(c.Not))
		for i := range c.Not {
			out.Not[i] = *prepared(&c.Not[i])
		}
	}
	if len(c.Or) > 0 {
		out.Or = make([][2]SearchCriteria, len(c.Or))
		for i := range c.Or {
			out.Or[i] = [2]SearchCriteria{*prepared(&c.Or[i][0]), *prepared(&c.Or[i][1])}
		}
	}
	return &out
}

// MergeRanges returns set's ranges in a new slice, each with Start <= Stop,
// sorted, and with overlapping or adjacent ranges merged, so that a
// number can be looked up by binary search.
func MergeRanges(set []UIDRange) []UIDRange {
	rs := make([]UIDRange, len(set))
	for i, r := range set {
		if r.Start > r.Stop {
			r.Start, r.Stop = r.Stop, r.Start
		}
		rs[i] = r
	}
	slices.SortFunc(rs, func(a, b UIDRange) int { return cmp.Compare(a.Start, b.Start) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && uint64(r.Start) <= uint64(out[n-1].Stop)+1 {
			out[n-1].Stop = max(out[n-1].Stop, r.Stop)
			continue
		}
		out = append(out, r)
	}
	return out
}
