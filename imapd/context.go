package imapd

import (
	"slices"
	"strings"

	"github.com/roostmail/roost/backend"
)

// searchContext is a SEARCH RETURN (UPDATE) whose result the client is kept
// informed of (RFC 5267 §4, CONTEXT=SEARCH): after each command the
// search runs again and the difference goes out as ESEARCH ADDTO and
// REMOVEFROM; expunged messages leave it before their EXPUNGE.
type searchContext struct {
	tag    string
	uid    bool
	crit   *backend.SearchCriteria
	result []uint32 // UIDs, ascending
}

// maxSearchContexts bounds the UPDATE searches a session may keep.
const maxSearchContexts = 16

func (s *session) addContext(tag string, uid bool, crit *backend.SearchCriteria, uids []uint32) error {
	if len(s.contexts) >= maxSearchContexts {
		return nof("LIMIT", "Too many search contexts (at most %d)", maxSearchContexts)
	}
	s.contexts = append(s.contexts, &searchContext{tag: tag, uid: uid, crit: crit, result: s.knownUIDs(uids)})
	return nil
}

// knownUIDs keeps the UIDs the client knows of.
func (s *session) knownUIDs(uids []uint32) []uint32 {
	out := make([]uint32, 0, len(uids))
	for _, u := range uids {
		if s.sel.has(u) && !s.sel.ghosts[u] {
			out = append(out, u)
		}
	}
	return out
}

func (s *session) writeContextUpdate(c *searchContext, word string, pos int, uids []uint32) {
	nums := uids
	if !c.uid {
		nums = make([]uint32, 0, len(uids))
		for _, u := range uids {
			if seq, ok := s.sel.seqOf(u); ok {
				nums = append(nums, seq)
			}
		}
	}
	b := s.c.buf()
	b = append(b, `* ESEARCH (TAG `...)
	b = appendString(b, c.tag, false)
	b = append(b, ')')
	if c.uid {
		b = append(b, " UID"...)
	}
	b = append(b, ' ')
	b = append(b, word...)
	b = append(b, " ("...)
	b = appendNum(b, uint64(pos))
	b = append(b, ' ')
	b = appendSet(b, nums)
	s.c.setBuf(append(b, ")\r\n"...))
}

// contextsExpunged takes expunged messages out of the contexts, before the
// EXPUNGE responses renumber the rest.
func (s *session) contextsExpunged(uids []uint32) {
	for _, c := range s.contexts {
		var gone []uint32
		kept := c.result[:0]
		for _, u := range c.result {
			if _, found := slices.BinarySearch(uids, u); found {
				gone = append(gone, u)
			} else {
				kept = append(kept, u)
			}
		}
		c.result = kept
		if len(gone) > 0 {
			s.writeContextUpdate(c, "REMOVEFROM", 0, gone)
		}
	}
}

// updateContexts runs the UPDATE searches again and reports the changes.
func (s *session) updateContexts() {
	if s.sel == nil {
		s.contexts = nil
		return
	}
	for _, c := range s.contexts {
		uids, err := s.user.Search(s.ctx, s.sel.id, c.crit)
		if err != nil {
			continue
		}
		now := s.knownUIDs(uids)
		var added, removed []uint32
		i, j := 0, 0
		for i < len(c.result) || j < len(now) {
			switch {
			case j == len(now) || i < len(c.result) && c.result[i] < now[j]:
				removed = append(removed, c.result[i])
				i++
			case i == len(c.result) || now[j] < c.result[i]:
				added = append(added, now[j])
				j++
			default:
				i++
				j++
			}
		}
		c.result = now
		if len(removed) > 0 {
			s.writeContextUpdate(c, "REMOVEFROM", 0, removed)
		}
		if len(added) > 0 {
			pos, _ := slices.BinarySearch(now, added[0])
			s.writeContextUpdate(c, "ADDTO", pos+1, added)
		}
	}
}

// cmdCancelUpdate implements CANCELUPDATE (RFC 5267 §4.2).
func cmdCancelUpdate(s *session, p *parser) error {
	var tags []string
	for {
		if err := p.sp(); err != nil {
			if len(tags) == 0 {
				return err
			}
			break
		}
		t, err := p.str()
		if err != nil {
			return err
		}
		tags = append(tags, t)
		if p.atEOL() {
			break
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	s.contexts = slices.DeleteFunc(s.contexts, func(c *searchContext) bool {
		return slices.ContainsFunc(tags, func(t string) bool { return strings.EqualFold(t, c.tag) })
	})
	return nil
}
