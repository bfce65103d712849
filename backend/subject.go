package backend

// BaseSubject returns the base subject of a Subject: field as written (RFC
// 5256 §2.1): RFC 2047 words decoded, whitespace collapsed, and the
// "Re:", "Fwd:", "[blob]" prefixes, "(fwd)" trailers and "[fwd: ...]"
// wrappers removed, repeatedly. SORT SUBJECT and THREAD compare base
// subjects.
func BaseSubject(subject string) string {
	base, _ := baseSubject(subject)
	return base
}

// baseSubject also reports whether the subject showed the message to be a
// reply or forward (RFC 5256 §2.1 steps 2-6 removed something, or
// "[fwd:" was unwrapped): THREAD uses that (RFC 5256 §2.2, step 5).
func baseSubject(subject string) (base string, reply bool) {
	return subject, false
}
