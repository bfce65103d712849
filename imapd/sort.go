package imapd

import (
	"errors"
	"strings"

	"github.com/roostmail/roost/backend"
)

// searchKeys reads one or more search keys (after SORT's and THREAD's
// charset).
func (s *session) searchKeys(p *parser, o *searchOpts) (*backend.SearchCriteria, error) {
	c := &backend.SearchCriteria{}
	for {
		if err := s.searchKey(p, c, o, 0); err != nil {
			return nil, err
		}
		if p.atEOL() {
			return c, nil
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
	}
}

func (p *parser) charset() error {
	cs, err := p.astring()
	if err != nil {
		return err
	}
	switch strings.ToUpper(cs) {
	case "UTF-8", "US-ASCII":
		return nil
	}
	return nof("BADCHARSET (US-ASCII UTF-8)", "Unsupported charset %s", cs)
}

var sortCriteria = map[string]backend.SortCriterion{
	"ARRIVAL":     backend.SortArrival,
	"CC":          backend.SortCc,
	"DATE":        backend.SortDate,
	"FROM":        backend.SortFrom,
	"SIZE":        backend.SortSize,
	"SUBJECT":     backend.SortSubject,
	"TO":          backend.SortTo,
	"DISPLAYFROM": backend.SortDisplayFrom,
	"DISPLAYTO":   backend.SortDisplayTo,
}

// cmdSort implements SORT and UID SORT (RFC 5256 §3, SORT=DISPLAY RFC
// 5957) with ESORT's RETURN options (RFC 5267 §3) and PARTIAL (RFC 9394).
func cmdSort(s *session, p *parser) error {
	uid := s.cmd == "UID SORT"
	if err := p.sp(); err != nil {
		return err
	}
	var o searchOpts
	if p.peek() == 'R' || p.peek() == 'r' {
		if err := p.searchReturn(&o); err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	var keys []backend.SortKey
	reverse := false
	err := p.list(func() error {
		kw, err := p.keyword()
		if err != nil {
			return err
		}
		if kw == "REVERSE" {
			reverse = true
			if err := p.sp(); err != nil {
				return err
			}
			if kw, err = p.keyword(); err != nil {
				return err
			}
		}
		c, ok := sortCriteria[kw]
		if !ok {
			return badf("Unknown sort criterion %s", kw)
		}
		keys = append(keys, backend.SortKey{Criterion: c, Reverse: reverse})
		reverse = false
		return nil
	})
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return badf("Empty sort criteria")
	}
	if err := p.sp(); err != nil {
		return err
	}
	if err := p.charset(); err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	crit, err := s.searchKeys(p, &o)
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	var uids []uint32
	err = s.backendWork(func() (err error) {
		uids, _, err = s.user.Sort(s.ctx, s.sel.id, keys, crit)
		return err
	})
	if errors.Is(err, errCloseConn) {
		return err
	}
	if err != nil {
		return s.mapErr("sort", err, false)
	}
	o.name = "SORT"
	return s.searchResults(uids, uid, &o, nil)
}

// cmdThread implements THREAD and UID THREAD (RFC 5256 §3):
// ORDEREDSUBJECT and REFERENCES.
func cmdThread(s *session, p *parser) error {
	uid := s.cmd == "UID THREAD"
	if err := p.sp(); err != nil {
		return err
	}
	alg, err := p.keyword()
	if err != nil {
		return err
	}
	var algorithm backend.ThreadAlgorithm
	switch alg {
	case "ORDEREDSUBJECT":
		algorithm = backend.ThreadOrderedSubject
	case "REFERENCES":
		algorithm = backend.ThreadReferences
	default:
		return badf("Unknown THREAD algorithm %s", alg)
	}
	if err := p.sp(); err != nil {
		return err
	}
	if err := p.charset(); err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	var o searchOpts
	crit, err := s.searchKeys(p, &o)
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	var threads []backend.ThreadNode
	err = s.backendWork(func() (err error) {
		threads, err = s.user.Thread(s.ctx, s.sel.id, algorithm, crit)
		return err
	})
	if errors.Is(err, errCloseConn) {
		return err
	}
	if err != nil {
		return s.mapErr("thread", err, false)
	}
	sel := s.sel
	num := func(u uint32) (uint32, bool) {
		if sel.ghosts[u] {
			return 0, false
		}
		seq, ok := sel.seqOf(u)
		if uid {
			return u, ok
		}
		return seq, ok
	}
	b := s.c.buf()
	b = append(b, "* THREAD"...)
	if len(threads) > 0 {
		b = append(b, ' ')
	}
	for _, t := range threads {
		b = appendThread(b, t, num)
	}
	s.c.setBuf(append(b, "\r\n"...))
	return nil
}

// appendThread writes one thread (RFC 5256 §4: thread-list).
func appendThread(b []byte, n backend.ThreadNode, num func(uint32) (uint32, bool)) []byte {
	b = append(b, '(')
	first := true
	for {
		if n.UID != 0 {
			if v, ok := num(n.UID); ok {
				if !first {
					b = append(b, ' ')
				}
				b = appendNum(b, uint64(v))
				first = false
			}
		}
		if len(n.Children) == 1 {
			n = n.Children[0]
			continue
		}
		if len(n.Children) > 1 {
			if !first {
				b = append(b, ' ')
			}
			for _, c := range n.Children {
				b = appendThread(b, c, num)
			}
		}
		return append(b, ')')
	}
}
