package imapd

import (
	"slices"
	"sort"
	"strconv"

	"github.com/roostmail/roost/backend"
)

// numRange is a range of a sequence set; 0 stands for "*".
type numRange struct{ start, stop uint32 }

// numSet is a sequence-set (RFC 9051 §9) or "$", the saved search result
// (RFC 5182).
type numSet struct {
	ranges []numRange
	saved  bool
}

// seqSet reads a sequence-set or "$". Its cost is linear in its length.
func (p *parser) seqSet() (numSet, error) {
	var s numSet
	if p.consume('$') {
		s.saved = true
		return s, nil
	}
	for {
		a, err := p.seqNumber()
		if err != nil {
			return s, err
		}
		r := numRange{a, a}
		if p.consume(':') {
			if r.stop, err = p.seqNumber(); err != nil {
				return s, err
			}
		}
		s.ranges = append(s.ranges, r)
		if !p.consume(',') {
			return s, nil
		}
	}
}

func (p *parser) seqNumber() (uint32, error) {
	if p.consume('*') {
		return 0, nil
	}
	n, err := p.number()
	if err != nil {
		return 0, p.errorf("Invalid sequence set at %q", p.rest())
	}
	if n == 0 {
		return 0, p.errorf("Invalid sequence number 0")
	}
	return n, nil
}

// bounds returns the range ordered, with "*" replaced by largest.
func (r numRange) bounds(largest uint32) (uint32, uint32) {
	a, b := r.start, r.stop
	if a == 0 {
		a = largest
	}
	if b == 0 {
		b = largest
	}
	if a > b {
		a, b = b, a
	}
	return a, b
}

// contains returns a test of membership in the set's ranges, "*" being
// largest. It sorts and merges the ranges once, so that each test costs
// O(log n): a client's list of many single numbers (QRESYNC known UIDs)
// costs no pass over it for every message.
func (s numSet) contains(largest uint32) func(uint32) bool {
	rs := make([]backend.UIDRange, 0, len(s.ranges))
	for _, r := range s.ranges {
		a, b := r.bounds(largest)
		rs = append(rs, backend.UIDRange{Start: a, Stop: b})
	}
	merged := backend.MergeRanges(rs)
	return func(u uint32) bool {
		i := sort.Search(len(merged), func(i int) bool { return merged[i].Stop >= u })
		return i < len(merged) && merged[i].Start <= u
	}
}

// appendSet writes nums (in the order given) as a sequence set, runs of
// consecutive numbers as ranges.
func appendSet(b []byte, nums []uint32) []byte {
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(nums[i]), 10)
		if j > i {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(nums[j]), 10)
		}
		i = j + 1
	}
	return b
}

// formatSet is appendSet as a string.
func formatSet(nums []uint32) string { return string(appendSet(nil, nums)) }

// sortedSet returns nums sorted without duplicates.
func sortedSet(nums []uint32) []uint32 {
	out := slices.Clone(nums)
	slices.Sort(out)
	return slices.Compact(out)
}
