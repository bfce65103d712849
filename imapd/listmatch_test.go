package imapd

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// BenchmarkListWildcards: LIST matching costs about the same for a pattern
// of 1,000 wildcards as for one of 10. Two kinds of pattern: wildcards in a
// row ("*%*%…x", which collapse to "*x"), and wildcards with a literal
// between each two ("*a%a*a…x", which do not collapse: the matcher's
// window is what bounds them), over three kinds of names: everyday ones,
// names of a's that nearly match the second kind, and names of 1,000 a's
// (the longest a name may be). A backtracking matcher never finishes the
// 1,000-wildcard ones; the previous NFA visited every position of the
// pattern for every octet of the name.
func BenchmarkListWildcards(b *testing.B) {
	as := strings.Repeat("a", 30)
	nameSets := []struct {
		name  string
		names []string
	}{
		{"everyday", make([]string, 200)},
		{"near", make([]string, 200)},
		{"long", make([]string, 20)},
	}
	for i := range 200 {
		nameSets[0].names[i] = fmt.Sprintf("Projects/%d/Archive/Mail %d/sub", i, i)
		nameSets[1].names[i] = fmt.Sprintf("Lists/%s/%s%d", as, as, i)
	}
	for i := range nameSets[2].names {
		nameSets[2].names[i] = strings.Repeat("a", 995) + fmt.Sprint(10000+i)
	}
	patterns := []struct {
		name string
		make func(n int) string
	}{
		{"collapsing", func(n int) string { return strings.Repeat("*%", n/2) + "x" }},
		{"alternating", func(n int) string { return hostilePattern(n, "x") }},
	}
	for _, ns := range nameSets {
		for _, pk := range patterns {
			for _, n := range []int{10, 1000} {
				pattern := pk.make(n)
				b.Run(fmt.Sprintf("names=%s/pattern=%s/wildcards=%d", ns.name, pk.name, n), func(b *testing.B) {
					for b.Loop() {
						m := newListMatcher(pattern, '/')
						for _, name := range ns.names {
							m.match(name)
						}
					}
				})
			}
		}
	}
}

// TestListMatcher checks the matcher against the rules of RFC 9051 §6.3.9.
func TestListMatcher(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "a/b/c", true}, {"%", "a/b", false}, {"%", "a", true}, {"a/%", "a/b", true},
		{"a/%", "a/b/c", false}, {"a/*", "a/b/c", true}, {"*c", "a/b/c", true}, {"%c", "a/c", false},
		{"a*b%c", "axxb/c", false}, {"a*b%c", "axx/bxc", true}, {"", "", true}, {"INBOX", "INBOX", true},
		{"", "a", false}, {"*", "", true}, {"%", "", true}, {"a", "", false}, {"a%", "a", true},
		{strings.Repeat("*%", 500) + "x", strings.Repeat("y", 100), false},
		{strings.Repeat("%*", 20) + "x", "a/b/x", true},
		{hostilePattern(1000, "x"), strings.Repeat("a", 999) + "x", false},
		{hostilePattern(1000, "x"), strings.Repeat("a", 1000) + "x", true},
		{hostilePattern(1000, "x"), strings.Repeat("a", 1200) + "x", true},
		{hostilePattern(10, "/x"), strings.Repeat("a", 20) + "/x", true},
		{hostilePattern(11, "/x"), strings.Repeat("a", 20) + "/x", true},
		{"%a/x", "b/a/x", false},
	} {
		if got := newListMatcher(tc.pattern, '/').match(tc.name); got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", truncate(tc.pattern, 40), truncate(tc.name, 40), got, tc.want)
		}
	}
}

// referenceMatch is the plain recursive reading of RFC 9051 §6.3.9, for
// short inputs only (it is exponential).
func referenceMatch(pat, name string) bool {
	if pat == "" {
		return name == ""
	}
	switch pat[0] {
	case '*':
		for i := 0; i <= len(name); i++ {
			if referenceMatch(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	case '%':
		for i := 0; i <= len(name); i++ {
			if referenceMatch(pat[1:], name[i:]) {
				return true
			}
			if i < len(name) && name[i] == '/' {
				return false
			}
		}
		return false
	}
	return name != "" && name[0] == pat[0] && referenceMatch(pat[1:], name[1:])
}

// TestListMatcherReference compares the matcher with referenceMatch on
// random patterns and names over a small alphabet, one matcher serving many
// names (its state must be clean between matches).
func TestListMatcherReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(alphabet string, max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 3000 {
		pat := word("ab/*%", 8)
		m := newListMatcher(pat, '/')
		for range 20 {
			name := word("ab/", 10)
			if got, want := m.match(name), referenceMatch(pat, name); got != want {
				t.Fatalf("%q matches %q: %v, want %v", pat, name, got, want)
			}
		}
	}
}
