package backend

import "strings"

// BaseSubject returns the base subject of a Subject: field as written (RFC
// 5256 §2.1): RFC 2047 words decoded, whitespace collapsed, and the
// "Re:", "Fwd:", "[blob]" prefixes, "(fwd)" trailers and "[fwd: ...]"
// wrappers removed, repeatedly. SORT SUBJECT and THREAD compare base
// subjects (with i;ascii-casemap, see CompareASCIICasemap).
func BaseSubject(subject string) string {
	base, _ := baseSubject(subject)
	return base
}

// baseSubject also reports whether the subject showed the message to be a
// reply or forward: a "re:"/"fwd:" leader, a "(fwd)" trailer or a "[fwd:
// ...]" wrapper was removed. THREAD=REFERENCES uses that (RFC 5256 §2.2,
// step 6). Every step removes text or stops, so the whole costs time
// linear in the subject times the number of nested wrappers.
func baseSubject(subject string) (base string, reply bool) {
	// (1) Decode, turn tabs and line breaks into spaces, collapse runs.
	s := collapseWSP(decodeWords(subject))
	for {
		// (2) Trailers: "(fwd)" and whitespace, repeatedly.
		for {
			t := strings.TrimRight(s, " ")
			if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
				s = t[:len(t)-5]
				reply = true
				continue
			}
			if len(t) == len(s) {
				break
			}
			s = t
		}
		// (3), (4) and (5): leaders and blobs, until none is left.
		for {
			n := len(s)
			var r bool
			s, r = trimLeader(s)
			reply = reply || r
			if blob := blobLen(s); blob > 0 && blob < len(s) {
				// (4) A leading blob goes if something remains after it.
				s = s[blob:]
			}
			if len(s) == n {
				break
			}
		}
		// (6) "[fwd: ...]" wraps the subject of a forwarded message.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s = s[5 : len(s)-1]
			reply = true
			continue
		}
		return s, reply
	}
}

// collapseWSP turns tabs, CR and LF into spaces and runs of spaces into
// one (RFC 5256 §2.1 step 1).
func collapseWSP(s string) string {
	if !strings.ContainsAny(s, "\t\r\n") && !strings.Contains(s, "  ") {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			if !space {
				sb.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		sb.WriteByte(c)
	}
	return sb.String()
}

// trimLeader removes one subj-leader (RFC 5256 §5): whitespace, or
// blobs followed by "re", "fw" or "fwd", optional whitespace, an optional
// blob and a colon. It reports whether a re/fwd leader went.
func trimLeader(s string) (string, bool) {
	if strings.HasPrefix(s, " ") {
		return strings.TrimLeft(s, " "), false
	}
	// *subj-blob
	i := 0
	for {
		n := blobLen(s[i:])
		if n == 0 {
			break
		}
		i += n
	}
	// subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
	rest := s[i:]
	switch {
	case hasPrefixFold(rest, "re"):
		rest = rest[2:]
	case hasPrefixFold(rest, "fwd"):
		rest = rest[3:]
	case hasPrefixFold(rest, "fw"):
		rest = rest[2:]
	default:
		return s, false
	}
	rest = strings.TrimLeft(rest, " ")
	rest = rest[blobLen(rest):]
	if !strings.HasPrefix(rest, ":") {
		return s, false
	}
	return rest[1:], true
}

// blobLen returns the length of a subj-blob at the start of s ("[" any
// characters but brackets "]" and the whitespace after), or 0.
func blobLen(s string) int {
	if !strings.HasPrefix(s, "[") {
		return 0
	}
	end := strings.IndexAny(s[1:], "[]")
	if end < 0 || s[1+end] != ']' {
		return 0
	}
	n := end + 2
	for n < len(s) && s[n] == ' ' {
		n++
	}
	return n
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// CompareASCIICasemap compares two strings with the i;ascii-casemap
// collation (RFC 4790 §9.2), the default of SORT (RFC 5256 §2.1): octet by
// octet, with a-z taken as A-Z. It returns -1, 0 or +1.
func CompareASCIICasemap(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := upperASCII(a[i]), upperASCII(b[i])
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

func upperASCII(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
