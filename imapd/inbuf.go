package imapd

import (
	"bytes"
	"errors"
	"io"
)

// inbuf is the buffered input of a connection. Unlike bufio.Reader it keeps
// no sticky error: a read deadline that interrupts a wait (Shutdown, account
// deletion, the close monitor) leaves the buffer as it was, and the caller
// decides whether to read on. It grows for bulk transfers (APPEND) and
// shrinks back when drained and the connection waits for its next command
// (shrink), so an idle connection holds 4 KiB.
type inbuf struct {
	rd   io.Reader
	buf  []byte
	r, w int
	// arm, if set, runs before every read of rd (it sets the deadline);
	// timeout decides what a deadline error means: read on (nil) or fail.
	arm     func()
	timeout func(err error) error
	// tail holds the end of the last line that was too long.
	tail []byte
	// maxDiscard bounds what readLine reads and drops of a line too long
	// (0: no bound): past it the line ends the connection (errLineFlood).
	// Over COMPRESS a few octets on the wire can stand for megabytes.
	maxDiscard int64
}

const (
	inbufMin = 4 << 10
	inbufMax = 64 << 10
)

var errLineTooLong = errors.New("line too long")

// errLineFlood: a line went on for more than maxDiscard past the limit.
var errLineFlood = errors.New("imapd: line far too long")

// errInbufFull: fill found no room, the buffer holds inbufMax octets not
// yet consumed (only the close watch reads ahead like that).
var errInbufFull = errors.New("imapd: input buffer full")

func newInbuf(rd io.Reader) *inbuf { return &inbuf{rd: rd, buf: make([]byte, inbufMin)} }

// buffered returns the bytes read and not yet consumed.
func (b *inbuf) buffered() []byte { return b.buf[b.r:b.w] }

// fill reads at least one more byte into the buffer.
func (b *inbuf) fill() error {
	switch {
	case b.r == b.w:
		// Not shrunk here: a literal read in pieces would make a new
		// buffer for every piece.
		b.r, b.w = 0, 0
	case b.w == len(b.buf) && b.r > 0:
		b.w = copy(b.buf, b.buf[b.r:b.w])
		b.r = 0
	case b.w == len(b.buf):
		nb := make([]byte, min(2*len(b.buf), inbufMax))
		b.w = copy(nb, b.buf[b.r:b.w])
		b.r, b.buf = 0, nb
	}
	if b.w == len(b.buf) {
		return errInbufFull
	}
	for {
		if b.arm != nil {
			b.arm()
		}
		n, err := b.rd.Read(b.buf[b.w:])
		b.w += n
		if n > 0 {
			if b.w == len(b.buf) && len(b.buf) < inbufMax {
				// A read filled the buffer: more is coming, read it in
				// larger pieces.
				nb := make([]byte, inbufMax)
				b.w = copy(nb, b.buf[b.r:b.w])
				b.r, b.buf = 0, nb
			}
			return nil
		}
		if err == nil {
			continue
		}
		if isTimeout(err) && b.timeout != nil {
			if err = b.timeout(err); err == nil {
				continue
			}
		}
		return err
	}
}

// shrink replaces a large buffer that holds nothing unread by a small one.
func (b *inbuf) shrink() {
	if b.r == b.w && len(b.buf) > inbufMin {
		b.r, b.w = 0, 0
		b.buf = make([]byte, inbufMin)
	}
}

// ReadByte implements io.ByteReader (compress/flate reads through it).
func (b *inbuf) ReadByte() (byte, error) {
	if b.r == b.w {
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	c := b.buf[b.r]
	b.r++
	return c, nil
}

// Read implements io.Reader.
func (b *inbuf) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r == b.w {
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

// discard drops n bytes.
func (b *inbuf) discard(n int64) error {
	for n > 0 {
		if b.r == b.w {
			if err := b.fill(); err != nil {
				return err
			}
		}
		k := min(int64(b.w-b.r), n)
		b.r += int(k)
		n -= k
	}
	return nil
}

// readLine appends the next line, without its line break (CRLF or a bare
// LF), to dst. A line that would make dst longer than max is consumed to
// its end and returned cut to max octets, with errLineTooLong; its last
// octets (which may hold a literal header) are then in b.tail.
func (b *inbuf) readLine(dst []byte, max int) ([]byte, error) {
	tooLong := false
	var dropped int64
	b.tail = b.tail[:0]
	for {
		data := b.buf[b.r:b.w]
		i := indexByte(data, '\n')
		seg := data
		if i >= 0 {
			seg = data[:i]
		}
		if !tooLong && len(dst)+len(seg) > max {
			tooLong = true
			room := max - len(dst)
			dst = append(dst, seg[:room]...)
			b.tail = append(b.tail, dst[len(dst)-min(len(dst), 64):]...)
			seg = seg[room:]
		}
		if tooLong {
			dropped += int64(len(seg))
			b.tail = append(b.tail, seg...)
			if len(b.tail) > 64 {
				b.tail = append(b.tail[:0], b.tail[len(b.tail)-64:]...)
			}
		} else {
			dst = append(dst, seg...)
		}
		if i >= 0 {
			b.r += i + 1
			if tooLong {
				b.tail = trimCR(b.tail)
				return dst, errLineTooLong
			}
			return trimCR(dst), nil
		}
		b.r = b.w
		if tooLong && b.maxDiscard > 0 && dropped > b.maxDiscard {
			return dst, errLineFlood
		}
		if err := b.fill(); err != nil {
			return dst, err
		}
	}
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

func indexByte(p []byte, c byte) int { return bytes.IndexByte(p, c) }
