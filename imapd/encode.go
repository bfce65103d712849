package imapd

import (
	"compress/flate"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/roostmail/roost/internal/mutf7"
)

// The response encoder. Responses are appended to one buffer per
// connection and written when a command completes, when the buffer passes
// flushSize (a FETCH of many messages), or at once in IDLE. Between
// commands the buffer goes back to a pool, so an idle connection holds
// none. With COMPRESS=DEFLATE every flush ends with a deflate sync flush
// (RFC 4978 §4: the client must never wait for data the compressor holds).

const flushSize = 64 << 10

var outPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

type outbuf struct {
	c   *conn
	w   io.Writer     // the transport, or fw
	fw  *flate.Writer // COMPRESS=DEFLATE
	b   []byte
	err error
}

func (o *outbuf) grab() {
	if o.b == nil {
		o.b = (*outPool.Get().(*[]byte))[:0]
	}
}

// release returns an empty buffer to the pool (between commands).
func (o *outbuf) release() {
	if o.b != nil && len(o.b) == 0 {
		if cap(o.b) <= 64<<10 {
			b := o.b
			outPool.Put(&b)
		}
		o.b = nil
	}
}

// flush writes what is buffered.
func (o *outbuf) flush() error {
	if o.err != nil {
		o.b = o.b[:0]
		return o.err
	}
	if len(o.b) == 0 {
		return nil
	}
	o.c.srv.debug(o.c.id, "S:", o.b)
	timeout := o.c.srv.opts.WriteTimeout
	if timeout <= 0 {
		timeout = DefaultWriteTimeout // a Server not made by New (tests)
	}
	o.c.raw.SetWriteDeadline(time.Now().Add(timeout))
	_, err := o.w.Write(o.b)
	if err == nil && o.fw != nil {
		err = o.fw.Flush()
	}
	o.b = o.b[:0]
	if cap(o.b) > 2*flushSize {
		o.b = make([]byte, 0, 4096)
	}
	if err != nil {
		if isTimeout(err) {
			o.c.log.Info("write timeout: the client does not read; closing", "write_timeout", timeout)
		}
		o.err = err
		o.c.sessCancel()
	}
	return err
}

// maybeFlush flushes a full buffer.
func (o *outbuf) maybeFlush() error {
	if len(o.b) >= flushSize {
		return o.flush()
	}
	return o.err
}

// writeRaw writes a large piece (a literal's content) through the buffer.
func (o *outbuf) copyFrom(r io.Reader, n int64) error {
	for n > 0 {
		o.grab()
		if len(o.b) >= flushSize {
			if err := o.flush(); err != nil {
				return err
			}
		}
		if cap(o.b)-len(o.b) < 16<<10 {
			nb := make([]byte, len(o.b), max(2*cap(o.b), flushSize+16<<10))
			copy(nb, o.b)
			o.b = nb
		}
		room := int64(cap(o.b) - len(o.b))
		k := min(room, n)
		start := len(o.b)
		o.b = o.b[:start+int(k)]
		got, err := io.ReadFull(r, o.b[start:])
		o.b = o.b[:start+got]
		n -= int64(got)
		if err != nil {
			return err
		}
	}
	return nil
}

// Encoding helpers: each appends to b and returns it.

func appendNum(b []byte, n uint64) []byte { return strconv.AppendUint(b, n, 10) }

// needsLiteral reports whether s cannot be a quoted string (RFC 9051 §9:
// no CR, LF, NUL; 8-bit only in a UTF-8 session).
func needsLiteral(s string, utf8 bool) bool {
	if len(s) > 1024 {
		return true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' || c == 0 || (c >= 0x80 && !utf8) {
			return true
		}
	}
	return false
}

// appendString writes s as a quoted string, or as a literal where it must
// be one.
func appendString(b []byte, s string, utf8 bool) []byte {
	if needsLiteral(s, utf8) {
		b = append(b, '{')
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, "}\r\n"...)
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// appendNString writes NIL for "" and else a string.
func appendNString(b []byte, s string, utf8 bool) []byte {
	if s == "" {
		return append(b, "NIL"...)
	}
	return appendString(b, s, utf8)
}

// appendAString writes an atom where s is one, else a string.
func appendAString(b []byte, s string, utf8 bool) []byte {
	if s == "" {
		return append(b, `""`...)
	}
	for i := 0; i < len(s); i++ {
		if !isAstringChar(s[i]) {
			return appendString(b, s, utf8)
		}
	}
	return append(b, s...)
}

// appendMailbox writes a mailbox name in the session's encoding.
func appendMailbox(b []byte, name string, utf8 bool) []byte {
	if name == "INBOX" {
		return append(b, name...)
	}
	if !utf8 {
		name = mutf7.Encode(name)
	}
	return appendString(b, name, utf8)
}

func appendFlags(b []byte, flags []string) []byte {
	b = append(b, '(')
	for i, f := range flags {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f...)
	}
	return append(b, ')')
}

// untagged writes "* " and the formatted text and CRLF.
func (c *conn) untagged(format string, args ...any) {
	c.out.grab()
	c.out.b = append(c.out.b, "* "...)
	c.out.b = fmt.Appendf(c.out.b, format, args...)
	c.out.b = append(c.out.b, "\r\n"...)
}

// line appends raw response bytes.
func (c *conn) buf() []byte {
	c.out.grab()
	return c.out.b
}

func (c *conn) setBuf(b []byte) { c.out.b = b }

// writeStatus writes a status response with tag (or "*").
func (c *conn) writeStatus(tag string, st *status) {
	c.out.grab()
	b := append(c.out.b, tag...)
	b = append(b, ' ')
	b = append(b, st.typ...)
	b = append(b, ' ')
	if st.code != "" {
		b = append(b, '[')
		b = append(b, st.code...)
		b = append(b, "] "...)
	}
	b = append(b, st.text...)
	c.out.b = append(b, "\r\n"...)
}

// continuation sends a continuation request and flushes.
func (c *conn) continuation(text string) error {
	c.out.grab()
	c.out.b = append(c.out.b, "+ "...)
	c.out.b = append(c.out.b, text...)
	c.out.b = append(c.out.b, "\r\n"...)
	return c.out.flush()
}
