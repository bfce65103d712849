package imapd

// listMatcher matches mailbox names against a LIST pattern (RFC 9051
// §6.3.9: "*" matches anything, "%" anything but the hierarchy delimiter).
// It simulates the pattern as a set of positions (an NFA) over the name, so
// a match costs O(len(name) × len(pattern)) time and O(len(pattern))
// memory whatever the wildcards (backtracking matchers are exponential in
// them). Runs of wildcards are collapsed first ("%*%" is "*", "%%" is "%"),
// so a pattern of a thousand wildcards costs what one does.
type listMatcher struct {
	pat   []byte // '*' and '%' are wildcards
	delim byte
	cur   []bool
	next  []bool
}

func newListMatcher(pattern string, delim byte) *listMatcher {
	var pat []byte
	for i := 0; i < len(pattern); {
		c := pattern[i]
		if c != '*' && c != '%' {
			pat = append(pat, c)
			i++
			continue
		}
		star := false
		for i < len(pattern) && (pattern[i] == '*' || pattern[i] == '%') {
			star = star || pattern[i] == '*'
			i++
		}
		if star {
			pat = append(pat, '*')
		} else {
			pat = append(pat, '%')
		}
	}
	return &listMatcher{pat: pat, delim: delim, cur: make([]bool, len(pat)+1), next: make([]bool, len(pat)+1)}
}

// closure adds the positions reachable by letting wildcards match nothing.
func (m *listMatcher) closure(set []bool) {
	for i := 0; i < len(m.pat); i++ {
		if set[i] && (m.pat[i] == '*' || m.pat[i] == '%') {
			set[i+1] = true
		}
	}
}

func (m *listMatcher) match(name string) bool {
	cur, next := m.cur, m.next
	clear(cur)
	cur[0] = true
	m.closure(cur)
	for k := 0; k < len(name); k++ {
		c := name[k]
		clear(next)
		any := false
		for i := 0; i < len(m.pat); i++ {
			if !cur[i] {
				continue
			}
			switch p := m.pat[i]; {
			case p == '*':
				next[i] = true
				any = true
			case p == '%':
				if c != m.delim {
					next[i] = true
					any = true
				}
			case p == c:
				next[i+1] = true
				any = true
			}
		}
		if !any {
			return false
		}
		m.closure(next)
		cur, next = next, cur
	}
	return cur[len(m.pat)]
}
