package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"
)

func TestParseSizeDist(t *testing.T) {
	tests := []struct {
		in      string
		want    sizeDist
		wantErr bool
	}{
		{"mixed", sizeDist{kind: sizeMixed}, false},
		{"MIXED", sizeDist{kind: sizeMixed}, false},
		{"512", sizeDist{kind: sizeFixed, min: 512, max: 512}, false},
		{"10k", sizeDist{kind: sizeFixed, min: 10240, max: 10240}, false},
		{"10K", sizeDist{kind: sizeFixed, min: 10240, max: 10240}, false},
		{"1m", sizeDist{kind: sizeFixed, min: 1 << 20, max: 1 << 20}, false},
		{"2k-20k", sizeDist{kind: sizeRange, min: 2048, max: 20480}, false},
		{"20k-2k", sizeDist{}, true},
		{"0", sizeDist{}, true},
		{"-5", sizeDist{}, true},
		{"big", sizeDist{}, true},
		{"65m", sizeDist{}, true},
		{"", sizeDist{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSizeDist(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSizeDist(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseSizeDist(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// checkWireFormat fails unless every line ends in CRLF (no bare CR or LF),
// no line exceeds the RFC 5322 §2.1.1 limit of 998 characters and lines
// other than header fields stay within the recommended 78.
func checkWireFormat(t *testing.T, msg []byte) {
	t.Helper()
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Fatalf("message does not end with CRLF")
	}
	for i, c := range msg {
		switch c {
		case '\n':
			if i == 0 || msg[i-1] != '\r' {
				t.Fatalf("bare LF at offset %d", i)
			}
		case '\r':
			if i+1 >= len(msg) || msg[i+1] != '\n' {
				t.Fatalf("bare CR at offset %d", i)
			}
		}
	}
	for i, line := range strings.Split(string(msg), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line %d has %d characters", i+1, len(line))
		}
		// A long media type such as a .docx one cannot be folded.
		if len(line) > 78 && !strings.HasPrefix(line, "Content-Type: ") {
			t.Fatalf("line %d has %d characters: %q", i+1, len(line), line)
		}
	}
}

// parseMessage parses msg with go-message and returns its header and the
// decoded parts (text, then attachments).
func parseMessage(t *testing.T, msg []byte) (*mail.Header, []string, [][]byte) {
	t.Helper()
	mr, err := mail.CreateReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("go-message cannot read the message: %v", err)
	}
	defer mr.Close()
	var texts []string
	var attachments [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		switch p.Header.(type) {
		case *mail.InlineHeader:
			texts = append(texts, string(body))
		case *mail.AttachmentHeader:
			attachments = append(attachments, body)
		}
	}
	return &mr.Header, texts, attachments
}

func TestMessageFixedSize(t *testing.T) {
	for _, size := range []int{2 << 10, 10 << 10, 100 << 10} {
		g := msgGenerator{seed: 7, size: sizeDist{kind: sizeFixed, min: size, max: size}}
		for seq := range uint64(20) {
			msg := g.message(seq, "from@example.net", "user1@example.org")
			if len(msg) != size {
				t.Fatalf("size %d seq %d: got %d bytes", size, seq, len(msg))
			}
			checkWireFormat(t, msg)
			h, texts, atts := parseMessage(t, msg)
			if len(texts) != 1 || len(atts) != 0 {
				t.Fatalf("want one text part, got %d texts and %d attachments", len(texts), len(atts))
			}
			for _, field := range []string{"From", "To", "Subject", "Date", "Message-Id", "Mime-Version"} {
				if h.Get(field) == "" {
					t.Errorf("header %s missing", field)
				}
			}
			if _, err := h.Date(); err != nil {
				t.Errorf("Date does not parse: %v", err)
			}
			if to, err := h.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "user1@example.org" {
				t.Errorf("To = %v, %v", to, err)
			}
			if _, err := h.Subject(); err != nil {
				t.Errorf("Subject does not decode: %v", err)
			}
		}
	}
}

func TestMessageMixed(t *testing.T) {
	g := msgGenerator{seed: 1, size: sizeDist{kind: sizeMixed}}
	var text, multipart int
	ids := map[string]bool{}
	for seq := range uint64(300) {
		msg := g.message(seq, "from@example.net", "user2@example.org")
		checkWireFormat(t, msg)
		h, texts, atts := parseMessage(t, msg)
		id, _ := h.MessageID()
		if ids[id] {
			t.Fatalf("seq %d: duplicate Message-ID %q", seq, id)
		}
		ids[id] = true
		switch len(atts) {
		case 0:
			text++
			if len(msg) < mixedTextMin || len(msg) > mixedTextMax {
				t.Errorf("seq %d: text message of %d bytes, want %d-%d", seq, len(msg), mixedTextMin, mixedTextMax)
			}
		case 1:
			multipart++
			if n := len(atts[0]); n < mixedAttachMin || n > mixedAttachMax {
				t.Errorf("seq %d: attachment of %d bytes, want %d-%d", seq, n, mixedAttachMin, mixedAttachMax)
			}
			if len(texts) != 1 {
				t.Errorf("seq %d: want a text part beside the attachment, got %d", seq, len(texts))
			}
		default:
			t.Fatalf("seq %d: %d attachments", seq, len(atts))
		}
	}
	// 10% of 300 is 30; a wide band keeps the test independent of the PRNG.
	if multipart < 10 || multipart > 60 {
		t.Errorf("%d of 300 messages have an attachment, want about 30", multipart)
	}
	if text == 0 {
		t.Error("no text-only message")
	}
}

func TestMessageDeterministic(t *testing.T) {
	a := msgGenerator{seed: 42, size: sizeDist{kind: sizeMixed}}
	b := msgGenerator{seed: 43, size: sizeDist{kind: sizeMixed}}
	for seq := range uint64(50) {
		m1 := a.message(seq, "f@example.net", "t@example.org")
		m2 := a.message(seq, "f@example.net", "t@example.org")
		if !bytes.Equal(m1, m2) {
			t.Fatalf("seq %d: same seed, different bytes", seq)
		}
		if bytes.Equal(m1, b.message(seq, "f@example.net", "t@example.org")) {
			t.Fatalf("seq %d: different seeds, same bytes", seq)
		}
	}
}

func TestMessageHasDotLines(t *testing.T) {
	// The generator must exercise dot-stuffing: over enough text some lines
	// start with a dot and some are a lone dot.
	g := msgGenerator{seed: 3, size: sizeDist{kind: sizeFixed, min: 64 << 10, max: 64 << 10}}
	msg := string(g.message(0, "f@example.net", "t@example.org"))
	if !strings.Contains(msg, "\r\n.\r\n") {
		t.Error("no lone-dot line in 64 KiB of text")
	}
	if !strings.Contains(msg, "\r\n...\r\n") {
		t.Error("no line starting with a dot in 64 KiB of text")
	}
}

func TestMessageAttachmentIsBase64Lines(t *testing.T) {
	g := msgGenerator{seed: 1, size: sizeDist{kind: sizeMixed}}
	for seq := range uint64(200) {
		msg := g.message(seq, "f@example.net", "t@example.org")
		if !bytes.Contains(msg, []byte("Content-Transfer-Encoding: base64")) {
			continue
		}
		_, _, atts := parseMessage(t, msg)
		// Re-encode and compare line by line with what the generator wrote.
		enc := base64.StdEncoding.EncodeToString(atts[0])
		if !bytes.Contains(msg, []byte(enc[:76]+"\r\n")) {
			t.Fatalf("seq %d: attachment not in 76-character base64 lines", seq)
		}
		return
	}
	t.Fatal("no message with an attachment in 200")
}

// TestMessageMatchesReference holds the generator to the bytes of the one
// before it reused buffers (message_ref_test.go): a -seed must keep giving
// the same messages, or runs before and after could not be compared. The
// builder is reused across sizes and kinds, as a load worker reuses it.
func TestMessageMatchesReference(t *testing.T) {
	sizes := []string{"1", "200", "2k", "10k", "100k", "1k-30k", "mixed"}
	for _, seed := range []uint64{1, 42} {
		for _, size := range sizes {
			dist, err := parseSizeDist(size)
			if err != nil {
				t.Fatal(err)
			}
			g := msgGenerator{seed: seed, size: dist}
			b := g.newBuilder()
			for seq := range uint64(120) {
				from, to := "f@example.net", fmt.Sprintf("user%d@example.org", seq%7)
				want := referenceMessage(g, seq, from, to)
				if got := b.build(seq, from, to); !bytes.Equal(got, want) {
					t.Fatalf("seed %d size %s seq %d: builder differs from the reference (%d vs %d bytes)",
						seed, size, seq, len(got), len(want))
				}
				if got := g.message(seq, from, to); !bytes.Equal(got, want) {
					t.Fatalf("seed %d size %s seq %d: message differs from the reference", seed, size, seq)
				}
			}
		}
	}
}

func BenchmarkMessage10k(b *testing.B) {
	g := msgGenerator{seed: 1, size: sizeDist{kind: sizeFixed, min: 10 << 10, max: 10 << 10}}
	m := g.newBuilder()
	b.ReportAllocs()
	for i := range b.N {
		m.build(uint64(i), "loadgen@example.net", "dlv1@example.org")
	}
}

func BenchmarkReference10k(b *testing.B) {
	g := msgGenerator{seed: 1, size: sizeDist{kind: sizeFixed, min: 10 << 10, max: 10 << 10}}
	b.ReportAllocs()
	for i := range b.N {
		referenceMessage(g, uint64(i), "loadgen@example.net", "dlv1@example.org")
	}
}
