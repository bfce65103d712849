package imapd

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/roostmail/roost/backend"
)

// maxSearchDepth bounds the nesting of search keys (NOT, OR, parentheses),
// so that a hostile command costs linear time and stack.
const maxSearchDepth = 100

// searchOpts are ESEARCH's return options (RFC 4731, RFC 5182 SAVE, RFC
// 9394 PARTIAL).
type searchOpts struct {
	esearch                    bool // RETURN given: answer with ESEARCH
	update                     bool // RETURN (UPDATE): a search context (RFC 5267 §4)
	min, max, all, count, save bool
	partial                    *partialRange
	usesModSeq                 bool
	name                       string // untagged response without RETURN: SEARCH or SORT
}

// partialRange is RFC 9394's PARTIAL range: positive counts from the start
// of the result, negative from its end.
type partialRange struct{ lo, hi int64 }

func (p *parser) searchReturn(o *searchOpts) error {
	kw, err := p.keyword()
	if err != nil {
		return err
	}
	if kw != "RETURN" {
		return badf("Expected RETURN")
	}
	if err := p.sp(); err != nil {
		return err
	}
	o.esearch = true
	err = p.list(func() error {
		kw, err := p.keyword()
		if err != nil {
			return err
		}
		switch kw {
		case "MIN":
			o.min = true
		case "MAX":
			o.max = true
		case "ALL":
			o.all = true
		case "COUNT":
			o.count = true
		case "SAVE":
			o.save = true
		case "UPDATE":
			o.update = true
		case "PARTIAL":
			if err := p.sp(); err != nil {
				return err
			}
			r, err := p.partialRange()
			if err != nil {
				return err
			}
			o.partial = r
		default:
			return badf("Unknown RETURN option %s", kw)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !o.min && !o.max && !o.all && !o.count && !o.save && o.partial == nil && !o.update {
		o.all = true // RETURN () is RETURN (ALL), RFC 4731 §3.1
	}
	if o.partial != nil && o.all {
		return badf("PARTIAL and ALL cannot be combined")
	}
	return nil
}

// partialRange reads "n:m" or "-n:-m" (RFC 9394 §3: partial-range).
func (p *parser) partialRange() (*partialRange, error) {
	num := func() (int64, error) {
		neg := p.consume('-')
		n, err := p.nzNumber()
		if err != nil {
			return 0, err
		}
		if neg {
			return -int64(n), nil
		}
		return int64(n), nil
	}
	lo, err := num()
	if err != nil {
		return nil, err
	}
	if err := p.expect(':'); err != nil {
		return nil, err
	}
	hi, err := num()
	if err != nil {
		return nil, err
	}
	if (lo < 0) != (hi < 0) {
		return nil, badf("Invalid partial range")
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return &partialRange{lo, hi}, nil
}

// searchProgram reads CHARSET and the search keys into backend criteria.
func (s *session) searchProgram(p *parser, o *searchOpts) (*backend.SearchCriteria, error) {
	c := &backend.SearchCriteria{}
	first := true
	for {
		if !first {
			if p.atEOL() {
				break
			}
			if err := p.sp(); err != nil {
				return nil, err
			}
		}
		start := p.pos
		if first {
			if kw, err := p.keyword(); err == nil && kw == "CHARSET" {
				if err := p.sp(); err != nil {
					return nil, err
				}
				cs, err := p.astring()
				if err != nil {
					return nil, err
				}
				switch strings.ToUpper(cs) {
				case "UTF-8", "US-ASCII":
				default:
					return nil, nof("BADCHARSET (US-ASCII UTF-8)", "Unsupported charset %s", cs)
				}
				first = false
				continue
			}
			p.pos = start
		}
		first = false
		if err := s.searchKey(p, c, o, 0); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// searchKey reads one search-key into c (AND).
func (s *session) searchKey(p *parser, c *backend.SearchCriteria, o *searchOpts, depth int) error {
	if depth > maxSearchDepth {
		return badf("Search keys nested too deeply")
	}
	if p.peek() == '(' {
		p.pos++
		for {
			if err := s.searchKey(p, c, o, depth+1); err != nil {
				return err
			}
			if p.consume(')') {
				return nil
			}
			if err := p.sp(); err != nil {
				return err
			}
		}
	}
	if ch := p.peek(); ch == '$' || ch == '*' || ch >= '0' && ch <= '9' {
		set, err := p.seqSet()
		if err != nil {
			return err
		}
		c.UIDs = append(c.UIDs, s.searchSet(set, false))
		return nil
	}
	kw, err := p.keyword()
	if err != nil {
		return err
	}
	str := func() (string, error) {
		if err := p.sp(); err != nil {
			return "", err
		}
		return p.astring()
	}
	date := func() (t time.Time, err error) {
		if err := p.sp(); err != nil {
			return t, err
		}
		return p.date()
	}
	header := func(name string) error {
		v, err := str()
		if err != nil {
			return err
		}
		c.Header = append(c.Header, backend.HeaderMatch{Key: name, Value: v})
		return nil
	}
	switch kw {
	case "ALL":
	case "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN":
		c.Flag = append(c.Flag, `\`+capitalise(strings.ToLower(kw)))
	case "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		c.NotFlag = append(c.NotFlag, `\`+capitalise(strings.ToLower(kw[2:])))
	case "KEYWORD", "UNKEYWORD":
		if err := p.sp(); err != nil {
			return err
		}
		f, err := p.flag(false)
		if err != nil {
			return err
		}
		if kw == "KEYWORD" {
			c.Flag = append(c.Flag, f)
		} else {
			c.NotFlag = append(c.NotFlag, f)
		}
	case "NEW", "RECENT", "OLD":
		recent := s.recentRanges()
		switch kw {
		case "NEW":
			c.UIDs = append(c.UIDs, recent)
			c.NotFlag = append(c.NotFlag, backend.FlagSeen)
		case "RECENT":
			c.UIDs = append(c.UIDs, recent)
		case "OLD":
			c.Not = append(c.Not, backend.SearchCriteria{UIDs: [][]backend.UIDRange{recent}})
		}
	case "BCC", "CC", "FROM", "TO":
		v, err := str()
		if err != nil {
			return err
		}
		switch kw {
		case "FROM":
			c.From = append(c.From, v)
		case "TO":
			c.To = append(c.To, v)
		case "CC":
			c.Cc = append(c.Cc, v)
		default:
			c.Bcc = append(c.Bcc, v)
		}
	case "SUBJECT":
		return header("Subject")
	case "HEADER":
		name, err := str()
		if err != nil {
			return err
		}
		return header(name)
	case "BODY", "TEXT":
		v, err := str()
		if err != nil {
			return err
		}
		if kw == "BODY" {
			c.Body = append(c.Body, v)
		} else {
			c.Text = append(c.Text, v)
		}
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		d, err := date()
		if err != nil {
			return err
		}
		target := c
		if dateSet(c, kw) {
			// A second key of the same kind must hold too: AND it in as
			// NOT NOT.
			c.Not = append(c.Not, backend.SearchCriteria{Not: []backend.SearchCriteria{{}}})
			target = &c.Not[len(c.Not)-1].Not[0]
		}
		switch kw {
		case "BEFORE":
			target.Before = d
		case "ON":
			target.On = d
		case "SINCE":
			target.Since = d
		case "SENTBEFORE":
			target.SentBefore = d
		case "SENTON":
			target.SentOn = d
		case "SENTSINCE":
			target.SentSince = d
		}
	case "LARGER", "SMALLER":
		if err := p.sp(); err != nil {
			return err
		}
		n, err := p.number64()
		if err != nil {
			return err
		}
		if kw == "LARGER" {
			c.Larger = max(c.Larger, int64(n))
		} else if c.Smaller == 0 || int64(n) < c.Smaller {
			c.Smaller = int64(n)
			if n == 0 {
				c.UIDs = append(c.UIDs, []backend.UIDRange{}) // SMALLER 0 matches nothing
			}
		}
	case "UID":
		if err := p.sp(); err != nil {
			return err
		}
		set, err := p.seqSet()
		if err != nil {
			return err
		}
		c.UIDs = append(c.UIDs, s.searchSet(set, true))
	case "NOT":
		if err := p.sp(); err != nil {
			return err
		}
		sub := backend.SearchCriteria{}
		if err := s.searchKey(p, &sub, o, depth+1); err != nil {
			return err
		}
		c.Not = append(c.Not, sub)
	case "OR":
		var pair [2]backend.SearchCriteria
		for i := range pair {
			if err := p.sp(); err != nil {
				return err
			}
			if err := s.searchKey(p, &pair[i], o, depth+1); err != nil {
				return err
			}
		}
		c.Or = append(c.Or, pair)
	case "MODSEQ":
		// RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence.
		if err := p.sp(); err != nil {
			return err
		}
		if p.peek() == '"' {
			if _, err := p.quoted(); err != nil {
				return err
			}
			if err := p.sp(); err != nil {
				return err
			}
			t, err := p.keyword()
			if err != nil {
				return err
			}
			if t != "PRIV" && t != "SHARED" && t != "ALL" {
				return badf("Invalid MODSEQ entry type %s", t)
			}
			if err := p.sp(); err != nil {
				return err
			}
		}
		n, err := p.number64()
		if err != nil {
			return err
		}
		c.ModSeq = max(c.ModSeq, n)
		o.usesModSeq = true
		s.enableCondstore()
	default:
		return badf("Unknown search key %s", kw)
	}
	return nil
}

func dateSet(c *backend.SearchCriteria, kw string) bool {
	switch kw {
	case "BEFORE":
		return !c.Before.IsZero()
	case "ON":
		return !c.On.IsZero()
	case "SINCE":
		return !c.Since.IsZero()
	case "SENTBEFORE":
		return !c.SentBefore.IsZero()
	case "SENTON":
		return !c.SentOn.IsZero()
	}
	return !c.SentSince.IsZero()
}

// searchSet turns a sequence or UID set of a search into UID ranges. A
// number beyond the mailbox is no error (it matches nothing).
func (s *session) searchSet(set numSet, uid bool) []backend.UIDRange {
	sel := s.sel
	out := []backend.UIDRange{}
	if set.saved {
		for _, u := range sel.saved {
			out = append(out, backend.UIDRange{Start: u, Stop: u})
		}
		return out
	}
	n := len(sel.uids)
	if uid {
		maxUID := uint32(0)
		if n > 0 {
			maxUID = sel.uids[n-1]
		}
		for _, r := range set.ranges {
			a, b := r.bounds(maxUID)
			out = append(out, backend.UIDRange{Start: a, Stop: b})
		}
		return out
	}
	for _, r := range set.ranges {
		a, b := r.bounds(uint32(n))
		if n == 0 || a > uint32(n) {
			continue
		}
		b = min(b, uint32(n))
		out = append(out, backend.UIDRange{Start: sel.uids[a-1], Stop: sel.uids[b-1]})
	}
	return out
}

// recentRanges are the UIDs this session holds \Recent.
func (s *session) recentRanges() []backend.UIDRange {
	if s.rev2 {
		return []backend.UIDRange{}
	}
	return append([]backend.UIDRange{}, s.sel.recent...)
}

// cmdSearch implements SEARCH and UID SEARCH (RFC 9051 §6.4.4) with
// ESEARCH (RFC 4731), SEARCHRES (RFC 5182), MODSEQ (RFC 7162 §3.1.5) and
// PARTIAL (RFC 9394).
func cmdSearch(s *session, p *parser) error {
	uid := s.cmd == "UID SEARCH"
	if err := p.sp(); err != nil {
		return err
	}
	var o searchOpts
	if start := p.pos; true {
		if kw, err := p.keyword(); err == nil && kw == "RETURN" {
			p.pos = start
			if err := p.searchReturn(&o); err != nil {
				return err
			}
			if err := p.sp(); err != nil {
				return err
			}
		} else {
			p.pos = start
		}
	}
	crit, err := s.searchProgram(p, &o)
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	var uids []uint32
	var highest uint64
	err = s.backendWork(func() (err error) {
		uids, highest, err = s.user.SearchModSeq(s.ctx, s.sel.id, crit)
		return err
	})
	if errors.Is(err, errCloseConn) {
		return err
	}
	if err != nil {
		return s.mapErr("search", err, false)
	}
	_ = highest
	if o.update {
		if err := s.addContext(s.tag, uid, crit, uids); err != nil {
			return err
		}
	}
	return s.searchResults(uids, uid, &o, nil)
}

// searchResults answers a SEARCH (or SORT, with order) with the messages
// the client knows of.
func (s *session) searchResults(uids []uint32, uid bool, o *searchOpts, order []uint32) error {
	sel := s.sel
	// Messages the client has not been told of yet are not found.
	type hit struct{ seq, uid uint32 }
	hits := make([]hit, 0, len(uids))
	for _, u := range uids {
		seq, ok := sel.seqOf(u)
		if !ok || sel.ghosts[u] {
			continue
		}
		hits = append(hits, hit{seq, u})
	}
	num := func(h hit) uint32 {
		if uid {
			return h.uid
		}
		return h.seq
	}
	var highest uint64
	if o.usesModSeq && len(hits) > 0 {
		// RFC 4731 §3.2 / RFC 7162 §3.1.5: the highest modseq of the
		// messages returned: with only MIN and/or MAX, of those.
		var hu []uint32
		if o.esearch && !o.all && !o.count && o.partial == nil && (o.min || o.max) {
			if o.min {
				hu = append(hu, hits[0].uid)
			}
			if o.max {
				hu = append(hu, hits[len(hits)-1].uid)
			}
		} else {
			hu = make([]uint32, len(hits))
			for i, h := range hits {
				hu[i] = h.uid
			}
		}
		msgs, err := s.user.MessagesByUID(sel.id, hu)
		if err != nil {
			return s.mapErr("search", err, false)
		}
		for _, m := range msgs {
			highest = max(highest, m.ModSeq)
		}
	}
	if o.save {
		saved := make([]uint32, 0, len(hits))
		switch {
		case (o.min || o.max) && !o.all && !o.count:
			if len(hits) > 0 {
				if o.min {
					saved = append(saved, hits[0].uid)
				}
				if o.max && (!o.min || len(hits) > 1) {
					saved = append(saved, hits[len(hits)-1].uid)
				}
			}
		default:
			for _, h := range hits {
				saved = append(saved, h.uid)
			}
		}
		slices.Sort(saved)
		sel.saved = saved
	}
	b := s.c.buf()
	if !o.esearch {
		b = append(b, "* "...)
		if o.name == "" {
			o.name = "SEARCH"
		}
		b = append(b, o.name...)
		for _, h := range hits {
			b = append(b, ' ')
			b = appendNum(b, uint64(num(h)))
			if len(b) >= flushSize {
				s.c.setBuf(b)
				if err := s.c.out.flush(); err != nil {
					return err
				}
				b = s.c.buf()
			}
		}
		if o.usesModSeq && len(hits) > 0 {
			b = append(b, " (MODSEQ "...)
			b = appendNum(b, highest)
			b = append(b, ')')
		}
		s.c.setBuf(append(b, "\r\n"...))
		return nil
	}
	if o.save && !o.min && !o.max && !o.all && !o.count && o.partial == nil {
		return nil // RFC 5182 §2.4: SAVE alone returns no ESEARCH
	}
	b = append(b, `* ESEARCH (TAG `...)
	b = appendString(b, s.tag, false)
	b = append(b, ')')
	if uid {
		b = append(b, " UID"...)
	}
	if len(hits) > 0 {
		if o.min {
			b = append(b, " MIN "...)
			b = appendNum(b, uint64(num(hits[0])))
		}
		if o.max {
			b = append(b, " MAX "...)
			b = appendNum(b, uint64(num(hits[len(hits)-1])))
		}
	}
	if o.count {
		b = append(b, " COUNT "...)
		b = appendNum(b, uint64(len(hits)))
	}
	if o.all && len(hits) > 0 {
		nums := make([]uint32, len(hits))
		for i, h := range hits {
			nums[i] = num(h)
		}
		b = append(b, " ALL "...)
		b = appendSet(b, nums)
	}
	if o.partial != nil {
		nums := make([]uint32, len(hits))
		for i, h := range hits {
			nums[i] = num(h)
		}
		b = append(b, " PARTIAL ("...)
		b = appendPartialRange(b, o.partial)
		b = append(b, ' ')
		part := partialSlice(nums, o.partial)
		if len(part) == 0 {
			b = append(b, "NIL"...)
		} else {
			b = appendSet(b, part)
		}
		b = append(b, ')')
	}
	if o.usesModSeq && len(hits) > 0 {
		b = append(b, " MODSEQ "...)
		b = appendNum(b, highest)
	}
	s.c.setBuf(append(b, "\r\n"...))
	return nil
}

func appendPartialRange(b []byte, r *partialRange) []byte {
	b = appendInt(b, r.lo)
	b = append(b, ':')
	return appendInt(b, r.hi)
}

func appendInt(b []byte, n int64) []byte {
	if n < 0 {
		b = append(b, '-')
		n = -n
	}
	return appendNum(b, uint64(n))
}

// partialSlice returns the part of nums that r selects (1-based; negative
// counts from the end, RFC 9394 §3).
func partialSlice(nums []uint32, r *partialRange) []uint32 {
	n := int64(len(nums))
	lo, hi := r.lo, r.hi
	if lo < 0 {
		lo, hi = n+hi+1, n+lo+1
		if lo > hi {
			lo, hi = hi, lo
		}
	}
	lo = max(lo, 1)
	hi = min(hi, n)
	if lo > hi {
		return nil
	}
	return nums[lo-1 : hi]
}
