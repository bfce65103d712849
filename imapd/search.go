package imapd

import (
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/roostmail/roost/backend"
)

// Search implements imapserver.Session: SEARCH and UID SEARCH with every
// criterion of RFC 9051 §6.4.4, ESEARCH results (RFC 4731) and SEARCHRES
// (RFC 5182). Sequence sets become UID ranges through the session's map;
// the backend evaluates the criteria.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	if s.sel == nil {
		return nil, errNotSelected
	}
	c, err := s.searchCriteria(criteria)
	if err != nil {
		return nil, err
	}
	uids, err := s.user.Search(s.ctx, s.sel.id, c)
	if err != nil {
		return nil, s.mapErr("search", err, false)
	}
	sel := s.sel
	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
		saved  []uint32
	)
	for _, uid := range uids {
		// Messages the client has not been told of yet are not found.
		seq, ok := sel.seqOf(uid)
		if !ok || sel.ghosts[uid] {
			continue
		}
		saved = append(saved, uid)
		num := uid
		if kind == imapserver.NumKindSeq {
			num = seq
			seqSet.AddNum(seq)
		} else {
			uidSet.AddNum(imap.UID(uid))
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqSet
	} else {
		data.All = uidSet
	}
	if options.ReturnSave {
		sel.saved = saved
	}
	return &data, nil
}

// searchCriteria translates go-imap's criteria into the backend's.
func (s *session) searchCriteria(c *imap.SearchCriteria) (*backend.SearchCriteria, error) {
	sel := s.sel
	out := &backend.SearchCriteria{
		Since:      c.Since,
		Before:     c.Before,
		SentSince:  c.SentSince,
		SentBefore: c.SentBefore,
		Body:       c.Body,
		Text:       c.Text,
		Larger:     c.Larger,
		Smaller:    c.Smaller,
	}
	for _, set := range c.SeqNum {
		ts, err := s.resolve(set)
		if err != nil {
			return nil, err
		}
		out.UIDs = append(out.UIDs, uidRanges(ts))
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			ranges := []backend.UIDRange{}
			for _, uid := range sel.saved {
				ranges = append(ranges, backend.UIDRange{Start: uid, Stop: uid})
			}
			out.UIDs = append(out.UIDs, ranges)
			continue
		}
		maxUID := uint32(0)
		if n := len(sel.uids); n > 0 {
			maxUID = sel.uids[n-1]
		}
		ranges := make([]backend.UIDRange, 0, len(set))
		for _, r := range set {
			start, stop := staticRange(uint32(r.Start), uint32(r.Stop), maxUID)
			ranges = append(ranges, backend.UIDRange{Start: start, Stop: stop})
		}
		out.UIDs = append(out.UIDs, ranges)
	}
	for _, h := range c.Header {
		out.Header = append(out.Header, backend.HeaderMatch{Key: h.Key, Value: h.Value})
	}
	for _, f := range c.Flag {
		out.Flag = append(out.Flag, string(f))
	}
	for _, f := range c.NotFlag {
		out.NotFlag = append(out.NotFlag, string(f))
	}
	for i := range c.Not {
		n, err := s.searchCriteria(&c.Not[i])
		if err != nil {
			return nil, err
		}
		out.Not = append(out.Not, *n)
	}
	for i := range c.Or {
		a, err := s.searchCriteria(&c.Or[i][0])
		if err != nil {
			return nil, err
		}
		b, err := s.searchCriteria(&c.Or[i][1])
		if err != nil {
			return nil, err
		}
		out.Or = append(out.Or, [2]backend.SearchCriteria{*a, *b})
	}
	return out, nil
}

// uidRanges compresses messages (ascending) into UID ranges; messages
// consecutive in the map form one range.
func uidRanges(ts []target) []backend.UIDRange {
	out := []backend.UIDRange{}
	for i, t := range ts {
		if i > 0 && t.seq == ts[i-1].seq+1 {
			out[len(out)-1].Stop = t.uid
			continue
		}
		out = append(out, backend.UIDRange{Start: t.uid, Stop: t.uid})
	}
	return slices.Clip(out)
}
