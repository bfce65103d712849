package main

// The generator as it was before it wrote into reused buffers (commit
// 2faa57c): TestMessageMatchesReference holds the new one to its bytes, so
// that a -seed gives the same messages as before.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// referenceMessage returns message number seq from from to to, with CRLF line endings
// only (RFC 5322 §2.1) and lines below 78 characters (§2.1.1).
func referenceMessage(g msgGenerator, seq uint64, from, to string) []byte {
	rng := rand.New(rand.NewPCG(g.seed, seq))
	target, attach := refPick(g, rng)

	var b bytes.Buffer
	b.Grow(target + 1024)
	name := fmt.Sprintf("%s %s", refPickWord(rng, firstNames), refPickWord(rng, lastNames))
	fmt.Fprintf(&b, "From: %s <%s>\r\n", name, from)
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	refWriteFolded(&b, "Subject:", refSubject(rng))
	fmt.Fprintf(&b, "Date: %s\r\n", baseDate.Add(time.Duration(seq)*37*time.Second).Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.%d.%x@roost-bench.invalid>\r\n", g.seed, seq, rng.Uint32())
	b.WriteString("MIME-Version: 1.0\r\n")

	if attach == 0 {
		b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n")
		b.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
		refWriteText(&b, rng, target-b.Len())
		return b.Bytes()
	}

	// RFC 2046 §5.1: multipart/mixed, a text part and a base64 attachment.
	boundary := fmt.Sprintf("=_rb_%016x", rng.Uint64())
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary)
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	fmt.Fprintf(&b, "--%s\r\n", boundary)
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n")
	b.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
	refWriteText(&b, rng, 1024+rng.IntN(3072))
	fmt.Fprintf(&b, "\r\n--%s\r\n", boundary)
	ext, ctype := refAttachmentType(rng)
	file := fmt.Sprintf("%s-%d.%s", refPickWord(rng, words), seq, ext)
	fmt.Fprintf(&b, "Content-Type: %s;\r\n name=\"%s\"\r\n", ctype, file)
	fmt.Fprintf(&b, "Content-Disposition: attachment; filename=\"%s\"\r\n", file)
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	refWriteBase64(&b, rng, attach)
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

// refPick returns the target total size of a text message, or the raw size of
// the attachment of a multipart one (attach > 0).
func refPick(g msgGenerator, rng *rand.Rand) (target, attach int) {
	switch g.size.kind {
	case sizeRange:
		return g.size.min + rng.IntN(g.size.max-g.size.min+1), 0
	case sizeMixed:
		// Mail sizes are roughly log-normal; log-uniform in each band is
		// close enough and keeps the bounds exact.
		if rng.IntN(100) < mixedAttachPercent {
			return 0, refLogUniform(rng, mixedAttachMin, mixedAttachMax)
		}
		return refLogUniform(rng, mixedTextMin, mixedTextMax), 0
	default:
		return g.size.min, 0
	}
}

func refLogUniform(rng *rand.Rand, lo, hi int) int {
	l, h := math.Log(float64(lo)), math.Log(float64(hi))
	return int(math.Exp(l + rng.Float64()*(h-l)))
}

// refWriteText appends about n bytes (exactly n when n >= 2) of plain text in
// CRLF-terminated lines of words. Now and then a line starts with a dot, or
// is a lone dot, so that servers and clients must get SMTP and POP3
// dot-stuffing right (RFC 5321 §4.5.2, RFC 1939 §3).
func refWriteText(b *bytes.Buffer, rng *rand.Rand, n int) {
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
				w := refPickWord(rng, words)
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

// refWriteBase64 appends n random (incompressible, like real PDFs and JPEGs)
// bytes, base64 in 76-character lines (RFC 2045 §6.8).
func refWriteBase64(b *bytes.Buffer, rng *rand.Rand, n int) {
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

// refWriteFolded writes a header field, folding before a word that would make
// the line longer than maxTextLine (RFC 5322 §2.2.3).
func refWriteFolded(b *bytes.Buffer, name string, words []string) {
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

func refSubject(rng *rand.Rand) []string {
	var parts []string
	if rng.IntN(4) == 0 {
		parts = append(parts, "Re:")
	}
	if rng.IntN(6) == 0 {
		// RFC 2047 encoded-word, as sent by most mail apps for non-ASCII.
		parts = append(parts, "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=")
	}
	for i, n := 0, 2+rng.IntN(6); i < n; i++ {
		parts = append(parts, refPickWord(rng, words))
	}
	return parts
}

func refAttachmentType(rng *rand.Rand) (ext, ctype string) {
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

func refPickWord(rng *rand.Rand, list []string) string {
	return list[rng.IntN(len(list))]
}
