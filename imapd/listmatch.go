package imapd

// listMatcher matches mailbox names against a LIST pattern (RFC 9051
// §6.3.9: "*" matches anything, "%" anything but the hierarchy delimiter).
// It simulates the pattern as a set of positions (an NFA) over the name, so
// a match costs O(len(name) × len(pattern)) time and O(len(pattern))
// memory whatever the wildcards (backtracking matchers are exponential in
// them). Runs of wildcards are collapsed first ("%*%" is "*", "%%" is "%"),
// so a pattern of a thousand wildcards in a row costs what one does.
//
// Only a window of positions is visited for each octet of the name: each
// octet moves a position by at most one literal, and a position is dropped
// once the pattern's literals after it outnumber the octets left. The
// window then spans at most about twice the octets the name has beyond the
// pattern's literals, so a match costs O(len(name)²) at most, however long
// the pattern (a pattern with more literals than the name has octets fails
// at once): a pattern of a thousand wildcards with literals between them
// costs about what one of ten does.
type listMatcher struct {
	pat   []byte // '*' and '%' are wildcards; never two in a row
	delim byte
	// need[i] is the number of literal octets in pat[i:].
	need []int
	// cur and next are all false between matches.
	cur, next []bool
}

func isWildcard(c byte) bool { return c == '*' || c == '%' }

func newListMatcher(pattern string, delim byte) *listMatcher {
	var pat []byte
	for i := 0; i < len(pattern); {
		c := pattern[i]
		if !isWildcard(c) {
			pat = append(pat, c)
			i++
			continue
		}
		star := false
		for i < len(pattern) && isWildcard(pattern[i]) {
			star = star || pattern[i] == '*'
			i++
		}
		if star {
			pat = append(pat, '*')
		} else {
			pat = append(pat, '%')
		}
	}
	need := make([]int, len(pat)+1)
	for i := len(pat) - 1; i >= 0; i-- {
		need[i] = need[i+1]
		if !isWildcard(pat[i]) {
			need[i]++
		}
	}
	return &listMatcher{pat: pat, delim: delim, need: need, cur: make([]bool, len(pat)+1), next: make([]bool, len(pat)+1)}
}

// add puts position i into set, and the position after it if i is a
// wildcard (which may match nothing), unless the literals left after them
// outnumber rest, the octets of the name left. It widens [lo, hi] to hold
// what it added.
func (m *listMatcher) add(set []bool, i, rest int, lo, hi *int) {
	if m.need[i] > rest {
		return
	}
	set[i] = true
	*lo, *hi = min(*lo, i), max(*hi, i)
	if i < len(m.pat) && isWildcard(m.pat[i]) {
		set[i+1] = true // need[i+1] == need[i]: a wildcard is no literal
		*hi = max(*hi, i+1)
	}
}

func (m *listMatcher) match(name string) bool {
	n := len(m.pat)
	cur, next := m.cur, m.next
	lo, hi := n+1, -1
	m.add(cur, 0, len(name), &lo, &hi)
	for k := 0; k < len(name) && hi >= 0; k++ {
		c, rest := name[k], len(name)-k-1
		nlo, nhi := n+1, -1
		for i := lo; i <= hi; i++ {
			if !cur[i] {
				continue
			}
			cur[i] = false
			if i == n {
				continue // the pattern's end matches no more octets
			}
			switch p := m.pat[i]; {
			case p == '*', p == '%' && c != m.delim:
				m.add(next, i, rest, &nlo, &nhi)
			case p == c:
				m.add(next, i+1, rest, &nlo, &nhi)
			}
		}
		lo, hi = nlo, nhi
		cur, next = next, cur
	}
	if hi < 0 {
		return false
	}
	ok := cur[n]
	clear(cur[lo : hi+1])
	return ok
}
