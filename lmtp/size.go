package lmtp

import (
	"strings"
)

// The SIZE parameter of MAIL (RFC 1870 §6): go-smtp v0.25.1 (and its
// newest version) parses it with strconv.ParseUint(value, 10, 32), so a
// declared size of 2^32 or more gets "501 Unable to parse SIZE" instead of
// the "552 5.3.4" RFC 1870 §6.2 asks for. The wire therefore takes the
// size out of a MAIL line itself (rewriteMailSize) and hands go-smtp the
// line with SIZE=0; the session compares the declared size with the limit
// (session.Mail). A malformed value (not all digits) goes to go-smtp
// unchanged, which answers "501 5.5.4".

// declaredSize is the SIZE a MAIL command declared.
type declaredSize struct {
	set  bool
	size uint64 // saturates at the largest uint64: "however large"
}

// rewriteMailSize returns line (a complete command line with its line
// break) with every SIZE=digits parameter of a MAIL command replaced by
// SIZE=0, and the size the last of them declared (go-smtp keeps the last
// of repeated parameters). Lines that are not MAIL commands, or that
// go-smtp will refuse before it looks at parameters, come back unchanged.
func rewriteMailSize(line []byte) ([]byte, declaredSize) {
	text := string(line)
	eol := "\n"
	text = strings.TrimSuffix(text, "\n")
	if strings.HasSuffix(text, "\r") {
		text, eol = strings.TrimSuffix(text, "\r"), "\r\n"
	}
	cmd, arg, ok := parseCommand(text)
	if !ok || cmd != "MAIL" {
		return line, declaredSize{}
	}
	// As go-smtp's handleMail: "FROM:", then the reverse-path, then the
	// parameters, which it splits with strings.Fields.
	if len(arg) < 5 || !strings.EqualFold(arg[:5], "FROM:") {
		return line, declaredSize{}
	}
	rest := strings.TrimSpace(arg[5:])
	n, ok := reversePathLen(rest)
	if !ok {
		return line, declaredSize{}
	}
	path, params := rest[:n], strings.Fields(rest[n:])
	var d declaredSize
	rewritten := false
	for i, p := range params {
		key, value, hasValue := strings.Cut(p, "=")
		if !hasValue || !strings.EqualFold(key, "SIZE") || strings.Contains(value, "=") || !allDigits(value) {
			continue
		}
		d = declaredSize{set: true, size: parseSaturating(value)}
		params[i] = "SIZE=0"
		rewritten = true
	}
	if !rewritten {
		return line, d
	}
	out := "MAIL FROM:" + path
	for _, p := range params {
		out += " " + p
	}
	return []byte(out + eol), d
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseSaturating parses a string of digits, giving the largest uint64 for
// anything larger.
func parseSaturating(s string) uint64 {
	var v uint64
	for i := 0; i < len(s); i++ {
		d := uint64(s[i] - '0')
		if v > (^uint64(0)-d)/10 {
			return ^uint64(0)
		}
		v = v*10 + d
	}
	return v
}

// reversePathLen returns how many bytes of s go-smtp v0.25.1's
// parseReversePath consumes, and false where it fails (then go-smtp
// answers 501 without looking at parameters). It follows that parser
// exactly, leniencies included (a path without angle brackets, a
// source route).
func reversePathLen(s string) (int, bool) {
	if strings.HasPrefix(s, "<>") {
		return 2, true
	}
	i := 0
	bracket := i < len(s) && s[i] == '<'
	if bracket {
		i++
	}
	if i < len(s) && s[i] == '@' {
		j := strings.IndexByte(s[i:], ':')
		if j < 0 {
			return 0, false
		}
		i += j + 1
	}
	// Local part: a quoted string or a dot-string, then "@".
	local := 0
	if i < len(s) && s[i] == '"' {
		i++
		for {
			if i >= len(s) {
				return 0, false
			}
			c := s[i]
			i++
			if c == '\\' {
				if i >= len(s) {
					return 0, false
				}
				i++
				local++
				continue
			}
			if c == '"' {
				break
			}
			local++
		}
	} else {
		for i < len(s) && s[i] != '@' {
			if strings.IndexByte("()<>[]:;\\,\" \t", s[i]) >= 0 {
				return 0, false
			}
			i++
			local++
		}
	}
	if local == 0 || i >= len(s) || s[i] != '@' {
		return 0, false
	}
	i++
	domain := 0
	for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '>' {
		i++
		domain++
	}
	if domain == 0 {
		return 0, false
	}
	if bracket {
		if i >= len(s) || s[i] != '>' {
			return 0, false
		}
		i++
	}
	return i, true
}
