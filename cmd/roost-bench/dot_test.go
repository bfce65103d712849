package main

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

// dotWriterBytes is what net/textproto's DotWriter writes for msg.
func dotWriterBytes(t testing.TB, msg []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	w := textproto.NewWriter(bw).DotWriter()
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestAppendDotStuffed(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{"leading dot doubled", ".a\r\n", "..a\r\n.\r\n"},
		{"lone dot doubled", "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
		{"dots doubled once", "...\r\n", "....\r\n.\r\n"},
		{"dot inside a line kept", "a.b\r\n a.\r\n", "a.b\r\n a.\r\n.\r\n"},
		{"last line without CRLF", "a\r\n.b", "a\r\n..b\r\n.\r\n"},
		{"bare LF becomes CRLF", "a\n.b\n", "a\r\n..b\r\n.\r\n"},
		{"ends in CR", "a\r", "a\r\n.\r\n"},
		{"CR CR LF", "a\r\r\n", "a\r\r\r\n.\r\n"},
		{"empty", "", "\r\n.\r\n"},
		{"only CRLF", "\r\n", "\r\n.\r\n"},
		{"dot after bare CR is not at a line start", "a\r.b\r\n", "a\r.b\r\n.\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendDotStuffed([]byte("prefix"), []byte(tt.in))
			if string(got) != "prefix"+tt.want {
				t.Errorf("appendDotStuffed(%q) = %q, want %q", tt.in, got[len("prefix"):], tt.want)
			}
			if dw := dotWriterBytes(t, []byte(tt.in)); string(dw) != tt.want {
				t.Errorf("DotWriter(%q) = %q: the table is wrong", tt.in, dw)
			}
		})
	}
}

// TestAppendDotStuffedGenerated checks the generator's messages, which have
// lines that are a lone dot or start with dots, against DotWriter.
func TestAppendDotStuffedGenerated(t *testing.T) {
	for _, size := range []string{"10k", "mixed"} {
		dist, err := parseSizeDist(size)
		if err != nil {
			t.Fatal(err)
		}
		g := msgGenerator{seed: 5, size: dist}
		for seq := range uint64(40) {
			msg := g.message(seq, "f@example.net", "t@example.org")
			got := appendDotStuffed(nil, msg)
			if want := dotWriterBytes(t, msg); !bytes.Equal(got, want) {
				t.Fatalf("size %s seq %d: differs from DotWriter", size, seq)
			}
			if !bytes.HasSuffix(got, []byte("\r\n.\r\n")) {
				t.Fatalf("size %s seq %d: does not end with CRLF.CRLF", size, seq)
			}
			if lone := bytes.Count(msg, []byte("\r\n.\r\n")); bytes.Count(got, []byte("\r\n..\r\n")) != lone {
				t.Fatalf("size %s seq %d: not every one of %d lone-dot lines is doubled", size, seq, lone)
			}
		}
	}
}

// FuzzDotStuffed: appendDotStuffed writes exactly what DotWriter writes.
func FuzzDotStuffed(f *testing.F) {
	for _, s := range []string{"", ".", "..\r\n", "a\r\n.\r\n", "a\n.\n", "\r", "\r\r\n", "\r\r\r\n.", "x\r.\r\n", "\n\n.", "a.b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		if got, want := appendDotStuffed(nil, msg), dotWriterBytes(t, msg); !bytes.Equal(got, want) {
			t.Fatalf("appendDotStuffed(%q) = %q, DotWriter wrote %q", msg, got, want)
		}
	})
}

func BenchmarkAppendDotStuffed10k(b *testing.B) {
	msg := msgGenerator{seed: 1, size: sizeDist{kind: sizeFixed, min: 10 << 10, max: 10 << 10}}.message(0, "f", "t")
	var buf []byte
	b.SetBytes(int64(len(msg)))
	for range b.N {
		buf = appendDotStuffed(buf[:0], msg)
	}
}

// TestBuilderDotStuffed: the builder's stuffing from the dot lines it noted
// is what appendDotStuffed gives for the message, over sizes and kinds that
// put dot lines at the start and end of the text (the last line is trimmed
// or padded) and in multipart messages.
func TestBuilderDotStuffed(t *testing.T) {
	var dotLines int
	for _, size := range []string{"1", "300", "2k", "10k", "1k-30k", "mixed"} {
		dist, err := parseSizeDist(size)
		if err != nil {
			t.Fatal(err)
		}
		m := msgGenerator{seed: 11, size: dist}.newBuilder()
		for seq := range uint64(150) {
			msg := m.build(seq, "f@example.net", "t@example.org")
			want := appendDotStuffed([]byte("x"), msg)
			if got := m.appendDotStuffed([]byte("x")); !bytes.Equal(got, want) {
				t.Fatalf("size %s seq %d: builder's stuffing differs from appendDotStuffed", size, seq)
			}
			dotLines += len(m.dots)
		}
	}
	if dotLines == 0 {
		t.Fatal("no message had a line starting with a dot")
	}
}
