package backend

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"mime"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode non-UTF-8 text for BODY/TEXT search
	"github.com/emersion/go-message/textproto"
)

// UIDRange is an inclusive range of UIDs.
type UIDRange struct{ Start, Stop uint32 }

// HeaderMatch matches messages that have header Key whose (decoded) value
// contains Value, case-insensitively. An empty Value matches any message
// that has the header (RFC 9051 §6.4.4).
type HeaderMatch struct{ Key, Value string }

// SearchCriteria select messages; every set field must match (AND).
// Dates compare by calendar day, as IMAP SEARCH does.
type SearchCriteria struct {
	UIDs [][]UIDRange // the UID must be in each set

	Since, Before, On             time.Time // internal date
	SentSince, SentBefore, SentOn time.Time // Date: header

	Header []HeaderMatch
	Body   []string // in the decoded text of the body
	Text   []string // in the header or the body

	Flag    []string // has all of these flags
	NotFlag []string // has none of these flags

	Larger, Smaller int64 // RFC822.SIZE > Larger, < Smaller (0: unset)
	ModSeq          uint64

	Not []SearchCriteria
	Or  [][2]SearchCriteria
}

// Search returns the UIDs of the mailbox's messages that match c, ascending.
func (u *User) Search(ctx context.Context, mailboxID uint64, c *SearchCriteria) ([]uint32, error) {
	min, max := uint32(1), ^uint32(0)
	if len(c.UIDs) > 0 {
		min, max = rangeBounds(c.UIDs[0])
	}
	if recordOnly(c) {
		// Every criterion reads the message record alone (flags, UID,
		// size, dates, modseq: UNSEEN, DELETED, ...): match during the scan,
		// without keeping the records or loading anything else.
		var out []uint32
		n := 0
		err := u.Messages(mailboxID, min, max, func(m Message) error {
			if n++; n%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			mc := matchCtx{u: u, msg: &m}
			if mc.match(c) {
				out = append(out, m.UID)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	var msgs []Message
	err := u.Messages(mailboxID, min, max, func(m Message) error {
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []uint32
	for i := range msgs {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		mc := &matchCtx{u: u, msg: &msgs[i]}
		if mc.match(c) {
			out = append(out, msgs[i].UID)
		}
	}
	return out, nil
}

// recordOnly reports whether c can be decided from the message record
// alone: no header, body or envelope criterion at any depth.
func recordOnly(c *SearchCriteria) bool {
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() || !c.SentOn.IsZero() ||
		len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 {
		return false
	}
	for i := range c.Not {
		if !recordOnly(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !recordOnly(&c.Or[i][0]) || !recordOnly(&c.Or[i][1]) {
			return false
		}
	}
	return true
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

// matchCtx evaluates criteria against one message, loading its parsed form,
// header and body at most once and only when a criterion needs them.
type matchCtx struct {
	u      *User
	msg    *Message
	parsed *Parsed
	header textproto.Header
	raw    []byte
	text   string // decoded body text, lower case
	failed bool
}

func (mc *matchCtx) loadParsed() *Parsed {
	if mc.parsed == nil && !mc.failed {
		p, err := mc.u.Parsed(mc.msg)
		if err != nil {
			mc.failed = true
			return &Parsed{}
		}
		mc.parsed = p
	}
	if mc.parsed == nil {
		return &Parsed{}
	}
	return mc.parsed
}

func (mc *matchCtx) loadRaw() []byte {
	if mc.raw == nil && !mc.failed {
		b, err := mc.u.ReadBody(mc.msg)
		if err != nil {
			mc.failed = true
		}
		mc.raw = b
	}
	return mc.raw
}

func (mc *matchCtx) loadHeader() textproto.Header {
	if mc.header.Len() == 0 {
		end := mc.loadParsed().Root.BodyStart
		r := io.NewSectionReader(mc.u.OpenBody(mc.msg), 0, end)
		mc.header, _ = textproto.ReadHeader(bufio.NewReader(r))
	}
	return mc.header
}

func (mc *matchCtx) bodyText() string {
	if mc.text == "" {
		var sb strings.Builder
		if e, err := gomessage.Read(bytes.NewReader(mc.loadRaw())); e != nil && (err == nil || gomessage.IsUnknownCharset(err) || gomessage.IsUnknownEncoding(err)) {
			e.Walk(func(path []int, part *gomessage.Entity, err error) error {
				if err != nil {
					return nil
				}
				t, _, _ := part.Header.ContentType()
				if t == "" || strings.HasPrefix(t, "text/") {
					b, _ := io.ReadAll(io.LimitReader(part.Body, 16<<20))
					sb.Write(b)
					sb.WriteByte('\n')
				}
				return nil
			})
		} else {
			raw := mc.loadRaw()
			sb.Write(raw[min(int64(len(raw)), mc.loadParsed().Root.BodyStart):])
		}
		mc.text = strings.ToLower(sb.String()) + " "
	}
	return mc.text
}

var wordDecoder = mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
	return gomessage.CharsetReader(charset, input)
}}

func containsFold(hay, needle string) bool {
	return strings.Contains(strings.ToLower(hay), strings.ToLower(needle))
}

func day(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func (mc *matchCtx) match(c *SearchCriteria) bool {
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
		d := mc.loadParsed().Envelope.Date
		if d.IsZero() || !dateMatch(d, c.SentSince, c.SentBefore, c.SentOn) {
			return false
		}
	}
	for _, h := range c.Header {
		if !mc.headerMatch(h) {
			return false
		}
	}
	for _, s := range c.Body {
		if !strings.Contains(mc.bodyText(), strings.ToLower(s)) {
			return false
		}
	}
	for _, s := range c.Text {
		if !containsFold(mc.headerText(), s) && !strings.Contains(mc.bodyText(), strings.ToLower(s)) {
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

func (mc *matchCtx) headerText() string {
	var sb strings.Builder
	h := mc.loadHeader()
	for f := h.Fields(); f.Next(); {
		v, err := wordDecoder.DecodeHeader(f.Value())
		if err != nil {
			v = f.Value()
		}
		sb.WriteString(f.Key())
		sb.WriteString(": ")
		sb.WriteString(v)
		sb.WriteString("\n")
	}
	return sb.String()
}

func (mc *matchCtx) headerMatch(hm HeaderMatch) bool {
	h := mc.loadHeader()
	fields := h.FieldsByKey(hm.Key)
	found := false
	for fields.Next() {
		found = true
		if hm.Value == "" {
			return true
		}
		v, err := wordDecoder.DecodeHeader(fields.Value())
		if err != nil {
			v = fields.Value()
		}
		if containsFold(v, hm.Value) {
			return true
		}
	}
	return found && hm.Value == ""
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

func inRanges(set []UIDRange, uid uint32) bool {
	for _, r := range set {
		a, b := r.Start, r.Stop
		if a > b {
			a, b = b, a
		}
		if uid >= a && uid <= b {
			return true
		}
	}
	return false
}
