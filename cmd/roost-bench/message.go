package main

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sizeKind says how sizeDist picks a message size.
type sizeKind int

const (
	sizeFixed sizeKind = iota // every message min bytes
	sizeRange                 // uniform in [min, max]
	sizeMixed                 // realistic mix, see msgGenerator.message
)

// sizeDist is the parsed -size flag: "10k" (fixed), "2k-20k" (uniform range)
// or "mixed".
type sizeDist struct {
	kind     sizeKind
	min, max int
}

// Bounds of the "mixed" distribution.
const (
	mixedTextMin       = 2 << 10
	mixedTextMax       = 20 << 10
	mixedAttachMin     = 50 << 10
	mixedAttachMax     = 500 << 10
	mixedAttachPercent = 10 // share of messages that carry an attachment
	maxMessageSize     = 64 << 20
)

func parseSizeDist(s string) (sizeDist, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "mixed") {
		return sizeDist{kind: sizeMixed}, nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err := parseByteSize(lo)
		if err != nil {
			return sizeDist{}, err
		}
		b, err := parseByteSize(hi)
		if err != nil {
			return sizeDist{}, err
		}
		if a > b {
			return sizeDist{}, fmt.Errorf("size range %q: lower bound above upper bound", s)
		}
		return sizeDist{kind: sizeRange, min: a, max: b}, nil
	}
	n, err := parseByteSize(s)
	if err != nil {
		return sizeDist{}, err
	}
	return sizeDist{kind: sizeFixed, min: n, max: n}, nil
}

// parseByteSize parses "512", "10k", "1m" (k and m are powers of 1024).
func parseByteSize(s string) (int, error) {
	s = strings.TrimSpace(s)
	mult := 1
	switch {
	case strings.HasSuffix(s, "k") || strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "m") || strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q: want a positive number with optional k or m suffix, a range like 2k-20k, or mixed", s)
	}
	if n > maxMessageSize/mult {
		return 0, fmt.Errorf("size %q above the %d MiB limit", s, maxMessageSize>>20)
	}
	return n * mult, nil
}

func (d sizeDist) String() string {
	switch d.kind {
	case sizeMixed:
		return "mixed"
	case sizeRange:
		return fmt.Sprintf("%d-%d", d.min, d.max)
	default:
		return strconv.Itoa(d.min)
	}
}

// msgGenerator builds realistic RFC 5322 messages. Message number seq is a
// pure function of (seed, seq, size, addresses): the same -seed gives the
// same bytes whatever the concurrency.
type msgGenerator struct {
	seed uint64
	size sizeDist
}

// baseDate is the Date of message 0; later messages are 37 s apart, so
// mailboxes sort by date the same way as by arrival.
var baseDate = time.Date(2026, time.January, 5, 8, 0, 0, 0, time.FixedZone("", 3600))

// message returns message number seq from from to to, with CRLF line endings
// only (RFC 5322 §2.1) and lines below 78 characters (§2.1.1). The slice is
// the caller's; a load worker uses a msgBuilder instead.
func (g msgGenerator) message(seq uint64, from, to string) []byte {
	return g.newBuilder().build(seq, from, to)
}

// msgBuilder builds the messages of one msgGenerator into buffers it
// reuses, so that a load worker allocates nothing per message: the CPU a
// load tool spends is taken from the server it measures. One per worker;
// not safe for concurrent use.
type msgBuilder struct {
	gen  msgGenerator
	src  *pcg       // reseeded with (seed, seq) for every message
	rng  *rand.Rand // draws from src, for all but the text
	buf  []byte     // the message
	raw  []byte     // an attachment before base64
	dots []int      // offsets in buf of the lines that start with "."
}

func (g msgGenerator) newBuilder() *msgBuilder {
	src := new(pcg)
	return &msgBuilder{gen: g, src: src, rng: rand.New(src)}
}

// build returns message number seq (see message). The bytes are valid
// until the next call.
func (m *msgBuilder) build(seq uint64, from, to string) []byte {
	g, rng := m.gen, m.rng
	m.src.seed(g.seed, seq) // the stream of rand.NewPCG(g.seed, seq)
	target, attach := g.pick(rng)

	b := m.buf[:0]
	m.dots = m.dots[:0]
	if need := target + 1024; cap(b) < need {
		b = make([]byte, 0, need)
	}
	// The draws from rng happen in the same order as the fields appear,
	// which is what keeps a seed's messages the same.
	first, last := pickWord(rng, firstNames), pickWord(rng, lastNames)
	b = append(b, "From: "...)
	b = append(append(append(b, first...), ' '), last...)
	b = append(append(append(b, " <"...), from...), ">\r\nTo: <"...)
	b = append(append(b, to...), ">\r\n"...)
	b = appendSubject(b, rng)
	b = append(b, "Date: "...)
	b = baseDate.Add(time.Duration(seq)*37*time.Second).AppendFormat(b, time.RFC1123Z)
	b = append(b, "\r\nMessage-ID: <"...)
	b = append(strconv.AppendUint(b, g.seed, 10), '.')
	b = append(strconv.AppendUint(b, seq, 10), '.')
	b = strconv.AppendUint(b, uint64(rng.Uint32()), 16)
	b = append(b, "@roost-bench.invalid>\r\n"...)
	b = append(b, "MIME-Version: 1.0\r\n"...)

	if attach == 0 {
		b = append(b, "Content-Type: text/plain; charset=us-ascii\r\n"...)
		b = append(b, "Content-Transfer-Encoding: 7bit\r\n\r\n"...)
		b = m.appendText(b, target-len(b))
		m.buf = b
		return b
	}

	// RFC 2046 §5.1: multipart/mixed, a text part and a base64 attachment.
	boundary := rng.Uint64()
	b = fmt.Appendf(b, "Content-Type: multipart/mixed; boundary=\"=_rb_%016x\"\r\n\r\n", boundary)
	b = append(b, "This is a multi-part message in MIME format.\r\n"...)
	b = fmt.Appendf(b, "--=_rb_%016x\r\n", boundary)
	b = append(b, "Content-Type: text/plain; charset=us-ascii\r\n"...)
	b = append(b, "Content-Transfer-Encoding: 7bit\r\n\r\n"...)
	b = m.appendText(b, 1024+rng.IntN(3072))
	b = fmt.Appendf(b, "\r\n--=_rb_%016x\r\n", boundary)
	ext, ctype := attachmentType(rng)
	file := fmt.Sprintf("%s-%d.%s", pickWord(rng, words), seq, ext)
	b = fmt.Appendf(b, "Content-Type: %s;\r\n name=\"%s\"\r\n", ctype, file)
	b = fmt.Appendf(b, "Content-Disposition: attachment; filename=\"%s\"\r\n", file)
	b = append(b, "Content-Transfer-Encoding: base64\r\n\r\n"...)
	b = m.appendBase64(b, attach)
	b = fmt.Appendf(b, "--=_rb_%016x--\r\n", boundary)
	m.buf = b
	return b
}

// appendDotStuffed appends the message of the last build as the content
// of DATA: exactly appendDotStuffed(dst, msg) (TestBuilderDotStuffed), but
// from the dot lines noted while building instead of a scan of every line.
// Only text lines can start with a dot, and a message always ends in CRLF.
func (m *msgBuilder) appendDotStuffed(dst []byte) []byte {
	msg, prev := m.buf, 0
	for _, off := range m.dots {
		dst = append(append(dst, msg[prev:off]...), '.')
		prev = off
	}
	dst = append(dst, msg[prev:]...)
	return append(dst, ".\r\n"...)
}

// pick returns the target total size of a text message, or the raw size of
// the attachment of a multipart one (attach > 0).
func (g msgGenerator) pick(rng *rand.Rand) (target, attach int) {
	switch g.size.kind {
	case sizeRange:
		return g.size.min + rng.IntN(g.size.max-g.size.min+1), 0
	case sizeMixed:
		// Mail sizes are roughly log-normal; log-uniform in each band is
		// close enough and keeps the bounds exact.
		if rng.IntN(100) < mixedAttachPercent {
			return 0, logUniform(rng, mixedAttachMin, mixedAttachMax)
		}
		return logUniform(rng, mixedTextMin, mixedTextMax), 0
	default:
		return g.size.min, 0
	}
}

func logUniform(rng *rand.Rand, lo, hi int) int {
	l, h := math.Log(float64(lo)), math.Log(float64(hi))
	return int(math.Exp(l + rng.Float64()*(h-l)))
}

// appendText appends about n bytes (exactly n when n >= 2) of plain text in
// CRLF-terminated lines of words. Now and then a line starts with a dot, or
// is a lone dot, so that servers and clients must get SMTP and POP3
// dot-stuffing right (RFC 5321 §4.5.2, RFC 1939 §3).
//
// This is most of the work of building a text message, and the load tool
// builds one per delivery, so a word is stored with one fixed-size move
// from wordSlots instead of appended; the random draws are those of the
// simple version (TestMessageMatchesReference).
func (m *msgBuilder) appendText(b []byte, n int) []byte {
	rng := m.src
	end := len(b) + max(n, 2)
	// Room for the last line, which may run past end before it is trimmed,
	// and for a whole slot stored at the end of it.
	b = slices.Grow(b, end-len(b)+maxTextLine+2+wordSlot)
	buf, pos := b[:cap(b)], len(b)
	for pos < end {
		start := pos // the line is buf[start:pos]
		switch r := rng.intN(40); {
		case r == 0:
			buf[pos] = '.'
			pos++
		case r == 1:
			pos += copy(buf[pos:], "...")
		case r < 5:
			// paragraph break: empty line
		default:
			width := 40 + rng.intN(36)
			for pos-start < width {
				// rng.intN(len(wordSlots)) by hand: the compiler will not
				// inline it, and this is the draw made for every word.
				x := rng.Uint64()
				i, lo := bits.Mul64(x, uint64(len(wordSlots)))
				if lo < uint64(len(wordSlots)) || len(wordSlots)&(len(wordSlots)-1) == 0 {
					i = uint64(rng.intNRare(x, len(wordSlots)))
				}
				w := &wordSlots[i]
				if pos-start+1+int(w.len) > maxTextLine {
					break
				}
				if pos > start {
					*(*[wordSlot]byte)(buf[pos:]) = w.spaced
					pos += 1 + int(w.len)
				} else {
					*(*[wordSlot]byte)(buf[pos:]) = w.bare
					pos += int(w.len)
				}
			}
		}
		if room := end - start; pos-start+2 > room-2 {
			// Last line: trim or pad its text so the total is exact.
			for pos-start < room-2 {
				buf[pos] = 's'
				pos++
			}
			pos = start + room - 2
		}
		if pos > start && buf[start] == '.' {
			m.dots = append(m.dots, start)
		}
		buf[pos], buf[pos+1] = '\r', '\n'
		pos += 2
	}
	return buf[:pos]
}

// wordSlot is the size of an entry of wordSlots: more than the longest word
// and a space.
const wordSlot = 16

// wordSlots holds each of words padded to wordSlot bytes, bare and after a
// space. It is never written after init.
var wordSlots = func() []struct {
	bare, spaced [wordSlot]byte
	len          uint8
} {
	slots := make([]struct {
		bare, spaced [wordSlot]byte
		len          uint8
	}, len(words))
	for i, w := range words {
		if len(w) >= wordSlot {
			panic("roost-bench: word " + w + " too long for wordSlots")
		}
		copy(slots[i].bare[:], w)
		slots[i].spaced[0] = ' '
		copy(slots[i].spaced[1:], w)
		slots[i].len = uint8(len(w))
	}
	return slots
}()

// appendBase64 appends n random (incompressible, like real PDFs and JPEGs)
// bytes, base64 in 76-character lines (RFC 2045 §6.8).
func (m *msgBuilder) appendBase64(b []byte, n int) []byte {
	const rawPerLine = 57 // 57 bytes encode to 76 characters
	if cap(m.raw) < n {
		m.raw = make([]byte, n)
	}
	raw := m.raw[:n]
	for i := 0; i < n; i += 8 {
		v := m.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	for len(raw) > 0 {
		chunk := raw[:min(rawPerLine, len(raw))]
		raw = raw[len(chunk):]
		b = base64.StdEncoding.AppendEncode(b, chunk)
		b = append(b, '\r', '\n')
	}
	return b
}

// maxTextLine is the longest line we write, below the 78 characters that
// RFC 5322 §2.1.1 asks for.
const maxTextLine = 76

// appendSubject appends a Subject field of random words, folded before a
// word that would make the line longer than maxTextLine (RFC 5322 §2.2.3).
func appendSubject(b []byte, rng *rand.Rand) []byte {
	const name = "Subject:"
	b = append(b, name...)
	n := len(name) // length of the current line
	word := func(w string) {
		if n+1+len(w) > maxTextLine {
			b = append(b, '\r', '\n')
			n = 0
		}
		b = append(b, ' ')
		b = append(b, w...)
		n += 1 + len(w)
	}
	if rng.IntN(4) == 0 {
		word("Re:")
	}
	if rng.IntN(6) == 0 {
		// RFC 2047 encoded-word, as sent by most mail apps for non-ASCII.
		word("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=")
	}
	for i, count := 0, 2+rng.IntN(6); i < count; i++ {
		word(pickWord(rng, words))
	}
	return append(b, '\r', '\n')
}

func attachmentType(rng *rand.Rand) (ext, ctype string) {
	switch rng.IntN(4) {
	case 0:
		return "jpg", "image/jpeg"
	case 1:
		return "zip", "application/zip"
	case 2:
		return "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
	default:
		return "pdf", "application/pdf"
	}
}

func pickWord(rng *rand.Rand, list []string) string {
	return list[rng.IntN(len(list))]
}

var firstNames = []string{"Anna", "Ben", "Chloe", "Dmitri", "Elif", "Farid", "Greta", "Hiro",
	"Ines", "Jonas", "Kofi", "Lena", "Marta", "Nils", "Olga", "Pavel", "Quinn", "Rosa"}

var lastNames = []string{"Andersen", "Becker", "Costa", "Dubois", "Eriksen", "Fischer",
	"Garcia", "Hoffmann", "Ivanova", "Jansen", "Kowalski", "Lindqvist", "Moreau", "Novak"}

var words = []string{"the", "meeting", "report", "about", "quarterly", "budget", "please",
	"review", "attached", "before", "friday", "thanks", "regards", "project", "update",
	"deadline", "server", "migration", "schedule", "invoice", "customer", "feedback",
	"draft", "proposal", "agenda", "notes", "from", "yesterday", "call", "with", "team",
	"and", "we", "should", "discuss", "next", "steps", "for", "release", "mailbox",
	"delivery", "question", "answer", "holiday", "plans", "office", "coffee", "lunch",
	"tomorrow", "morning", "afternoon", "weekly", "status", "ticket", "issue", "fixed",
	"backup", "storage", "travel", "hotel", "booking", "confirm", "contract", "signed",
	"a", "to", "of", "in", "is", "it", "on", "that", "this", "will", "can", "our", "your"}
