package imapd

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestInbufBulkRead: a literal read through the buffer in pieces (APPEND's
// data, as io.Copy reads it) makes no new buffer for every piece; it made
// two for every 4 KiB (a 40 MiB MULTIAPPEND allocated 666 MiB).
func TestInbufBulkRead(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB
	src := bytes.NewReader(data)
	p := make([]byte, 32<<10)
	var b *inbuf
	var got int
	allocs := testing.AllocsPerRun(2, func() {
		src.Reset(data)
		b, got = newInbuf(src), 0
		for {
			n, err := b.Read(p)
			got += n
			if err != nil {
				break
			}
		}
	})
	if got != len(data) {
		t.Fatalf("read %d of %d octets", got, len(data))
	}
	if allocs > 4 {
		t.Errorf("reading 4 MiB made %v allocations", allocs)
	}
	// Drained and waiting for a command, it goes back to its small size.
	b.shrink()
	if len(b.buf) != inbufMin {
		t.Errorf("after shrink: a buffer of %d octets", len(b.buf))
	}
}

// TestInbufFull: reading ahead into a full buffer (the close watch of a
// client that pipelines) stops with errInbufFull instead of spinning on
// reads of nothing.
func TestInbufFull(t *testing.T) {
	b := newInbuf(strings.NewReader(strings.Repeat("a NOOP\r\n", 20000)))
	for {
		err := b.fill()
		if errors.Is(err, errInbufFull) {
			break
		}
		if err != nil {
			t.Fatalf("fill: %v with %d octets buffered", err, len(b.buffered()))
		}
	}
	if len(b.buffered()) != inbufMax {
		t.Errorf("full at %d octets", len(b.buffered()))
	}
	// What was read ahead is the next commands, in order.
	if l, err := b.readLine(nil, 100); err != nil || string(l) != "a NOOP" {
		t.Errorf("first line after the read-ahead: %q %v", l, err)
	}
}

// TestInbufLineFlood: a line far over the limit is dropped up to
// maxDiscard, then refused as a whole (errLineFlood) rather than read to its
// end: over COMPRESS a few octets stand for gigabytes.
func TestInbufLineFlood(t *testing.T) {
	long := "a NOOP " + strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		maxDiscard int64
		want       error
	}{{0, errLineTooLong}, {2 << 20, errLineTooLong}, {64 << 10, errLineFlood}} {
		b := newInbuf(io.MultiReader(strings.NewReader(long), strings.NewReader("\r\nb NOOP\r\n")))
		b.maxDiscard = tc.maxDiscard
		line, err := b.readLine(nil, 1000)
		if err != tc.want || !strings.HasPrefix(string(line), "a NOOP x") {
			t.Errorf("maxDiscard %d: %q… %v, want %v", tc.maxDiscard, truncate(string(line), 20), err, tc.want)
		}
		if tc.want == errLineTooLong {
			if l, err := b.readLine(nil, 1000); err != nil || string(l) != "b NOOP" {
				t.Errorf("maxDiscard %d: the next line %q %v", tc.maxDiscard, l, err)
			}
		}
	}
}
