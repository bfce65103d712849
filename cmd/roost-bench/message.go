package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
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
// only (RFC 5322 §2.1) and lines below 78 characters (§2.1.1).
func (g msgGenerator) message(seq uint64, from, to string) []byte {
	rng := rand.New(rand.NewPCG(g.seed, seq))
	target, attach := g.pick(rng)

	var b bytes.Buffer
	b.Grow(target + 1024)
	name := fmt.Sprintf("%s %s", pickWord(rng, firstNames), pickWord(rng, lastNames))
	fmt.Fprintf(&b, "From: %s <%s>\r\n", name, from)
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	writeFolded(&b, "Subject:", subject(rng))
	fmt.Fprintf(&b, "Date: %s\r\n", baseDate.Add(time.Duration(seq)*37*time.Second).Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.%d.%x@roost-bench.invalid>\r\n", g.seed, seq, rng.Uint32())
	b.WriteString("MIME-Version: 1.0\r\n")

	if attach == 0 {
		b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n")
		b.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
		writeText(&b, rng, target-b.Len())
		return b.Bytes()
	}

	// RFC 2046 §5.1: multipart/mixed, a text part and a base64 attachment.
	boundary := fmt.Sprintf("=_rb_%016x", rng.Uint64())
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary)
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	fmt.Fprintf(&b, "--%s\r\n", boundary)
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n")
	b.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
	writeText(&b, rng, 1024+rng.IntN(3072))
	fmt.Fprintf(&b, "\r\n--%s\r\n", boundary)
	ext, ctype := attachmentType(rng)
	file := fmt.Sprintf("%s-%d.%s", pickWord(rng, words), seq, ext)
	fmt.Fprintf(&b, "Content-Type: %s;\r\n name=\"%s\"\r\n", ctype, file)
	fmt.Fprintf(&b, "Content-Disposition: attachment; filename=\"%s\"\r\n", file)
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	writeBase64(&b, rng, attach)
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
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

// writeText appends about n bytes (exactly n when n >= 2) of plain text in
// CRLF-terminated lines of words. Now and then a line starts with a dot, or
// is a lone dot, so that servers and clients must get SMTP and POP3
// dot-stuffing right (RFC 5321 §4.5.2, RFC 1939 §3).
func writeText(b *bytes.Buffer, rng *rand.Rand, n int) {
	end := b.Len() + max(n, 2)
	var line []byte
	for b.Len() < end {
		line = line[:0]
		switch r := rng.IntN(40); {
		case r == 0:
			line = append(line, '.')
		case r == 1:
			line = append(line, "..."...)
		case r < 5:
			// paragraph break: empty line
		default:
			width := 40 + rng.IntN(36)
			for len(line) < width {
				w := pickWord(rng, words)
				if len(line)+1+len(w) > maxTextLine {
					break
				}
				if len(line) > 0 {
					line = append(line, ' ')
				}
				line = append(line, w...)
			}
		}
		if room := end - b.Len(); len(line)+2 > room-2 {
			// Last line: trim or pad its text so the total is exact.
			for len(line) < room-2 {
				line = append(line, 's')
			}
			line = line[:room-2]
		}
		line = append(line, '\r', '\n')
		b.Write(line)
	}
}

// writeBase64 appends n random (incompressible, like real PDFs and JPEGs)
// bytes, base64 in 76-character lines (RFC 2045 §6.8).
func writeBase64(b *bytes.Buffer, rng *rand.Rand, n int) {
	const rawPerLine = 57 // 57 bytes encode to 76 characters
	raw := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	enc := make([]byte, base64.StdEncoding.EncodedLen(rawPerLine))
	for len(raw) > 0 {
		chunk := raw[:min(rawPerLine, len(raw))]
		raw = raw[len(chunk):]
		m := base64.StdEncoding.EncodedLen(len(chunk))
		base64.StdEncoding.Encode(enc[:m], chunk)
		b.Write(enc[:m])
		b.WriteString("\r\n")
	}
}

// maxTextLine is the longest line we write, below the 78 characters that
// RFC 5322 §2.1.1 asks for.
const maxTextLine = 76

// writeFolded writes a header field, folding before a word that would make
// the line longer than maxTextLine (RFC 5322 §2.2.3).
func writeFolded(b *bytes.Buffer, name string, words []string) {
	b.WriteString(name)
	n := len(name)
	for _, w := range words {
		if n+1+len(w) > maxTextLine {
			b.WriteString("\r\n")
			n = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		n += 1 + len(w)
	}
	b.WriteString("\r\n")
}

func subject(rng *rand.Rand) []string {
	var parts []string
	if rng.IntN(4) == 0 {
		parts = append(parts, "Re:")
	}
	if rng.IntN(6) == 0 {
		// RFC 2047 encoded-word, as sent by most mail apps for non-ASCII.
		parts = append(parts, "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=")
	}
	for i, n := 0, 2+rng.IntN(6); i < n; i++ {
		parts = append(parts, pickWord(rng, words))
	}
	return parts
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
