package imapd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The guard.
//
// A wire is one client connection. imapserver does not read the transport
// (TCP or TLS) directly but a view of the wire, whose Read passes the
// client's bytes through a small state machine that knows where command
// lines and literals (RFC 9051 §4.3, RFC 7888) begin and end, and whose
// Write lets the guard see imapserver's answers. This closes imapserver's
// gaps:
//
//   - A line ending in a literal header is delivered, and nothing after it,
//     until imapserver asks for more. imapserver refuses a literal over
//     4096 bytes unless it is APPEND's message (over AppendLimit then); a
//     refused literal's bytes would be read as commands, or worse, as the
//     rest of the same command (its astring parser goes on after the
//     refusal). So when imapserver has answered the command (a tagged
//     response with its tag) or refuses the literal by those rules, the
//     literal and the rest of the command are swallowed; if imapserver is
//     still parsing, it is then given a bare CRLF, on which it fails the
//     command with BAD. A synchronising literal is passed on only after
//     imapserver's "+" continuation (imapserver itself would wait for a
//     refused synchronising literal's bytes: it gets the CRLF too).
//   - STARTTLS is answered here, so that the TLS handshake runs beneath the
//     guard (bounded by HandshakeTimeout), and the connection continues on a
//     fresh imapserver connection that knows it is on TLS.
//   - Read deadlines: until login, every read is bounded by the login
//     deadline; after it, the wait for a command (and IDLE) by IdleTimeout.
//     A connection that times out between commands gets "* BYE".
//   - Commands longer than imapserver's own limit get "* BYE" (imapserver
//     would otherwise resume parsing in the middle of the line).
//   - Shutdown: when imapserver asks for the next command, "* BYE".

const (
	// maxCommandBytes is imapserver's limit on a command, literals excluded
	// (maxCommandSize in imapserver/conn.go).
	maxCommandBytes = 50 * 1024
	// maxBufferedLiteral is the largest literal imapserver reads into
	// memory (checkBufferedLiteral in imapserver/conn.go); every literal but
	// APPEND's message is one.
	maxBufferedLiteral = 4096
	// startTLSLookahead is how much of a first line the guard waits for to
	// recognise STARTTLS before authentication.
	startTLSLookahead = 1024
	// The read buffer starts small, since most connections sit idle, and
	// grows for a bulk transfer (an APPEND literal) while reads fill it.
	readBufMin      = 4 * 1024
	readBufMax      = 32 * 1024
	byeWriteTimeout = 5 * time.Second
	// imapIdleWait recognises imapserver's wait for a command after login
	// (idleReadTimeout, 35 minutes): longer read deadlines than this are
	// replaced by IdleTimeout.
	imapIdleWait = 31 * time.Minute
)

type readState int

const (
	stLine    readState = iota // in a command line
	stHold                     // a line ending in a literal header was delivered
	stLiteral                  // passing a literal's bytes
	stDiscard                  // swallowing a refused literal's bytes
)

type wire struct {
	srv           *Server
	id            string
	log           *slog.Logger
	raw           net.Conn
	loginDeadline time.Time

	// Set by run between imapserver connections (no reader is active then).
	transport net.Conn
	isTLS     bool
	view      *view

	authenticated atomic.Bool
	stopping      atomic.Bool // Shutdown asked
	closed        atomic.Bool // the session asked to close the connection
	wantTLS       bool        // the guard answered STARTTLS

	// Read side: used by imapserver's reading goroutine only.
	buf          []byte
	r, e         int // undelivered bytes are buf[r:e]
	st           readState
	remaining    int64 // of the literal being passed or swallowed
	atCmdStart   bool  // the next byte starts a command
	discardRest  bool  // swallowing the rest of a command
	firstLine    bool  // in the first line of a command
	head, tail   []byte
	cmdBytes     int64
	tag, cmdName string
	literals     int  // literal headers seen in this command
	appendMbox   bool // this APPEND's mailbox name is a literal
	inject       bool // after swallowing, end imapserver's command with CRLF
	synth        []byte
	hold         struct {
		n         int64
		nonSync   bool
		appendMsg bool // APPEND's message literal, streamed by imapserver
		lines     uint64
	}
	imapDeadline time.Time

	// Write side, under wmu.
	wmu          sync.Mutex
	out          outScanner
	dropGreeting bool // after STARTTLS the new imapserver connection greets again
	byeSent      bool
	// batching: imapserver's output is gathered in pend and written in
	// large pieces (a FETCH of many messages, which imapserver flushes
	// message by message), not a system call per response.
	batching bool
	pend     []byte
}

// batchFlushSize is how much output a batch gathers before writing it.
const batchFlushSize = 64 << 10

// batchWriteTimeout bounds each write of a batch.
const batchWriteTimeout = time.Minute

// beginBatch starts gathering output; endBatch writes what was gathered.
func (w *wire) beginBatch() {
	w.wmu.Lock()
	w.batching = true
	w.wmu.Unlock()
}

func (w *wire) endBatch() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.batching = false
	err := w.flushPendLocked()
	if cap(w.pend) > 4<<10 {
		w.pend = nil // do not keep a large FETCH's buffer while idle
	}
	w.raw.SetWriteDeadline(time.Time{})
	return err
}

func (w *wire) flushPendLocked() error {
	if len(w.pend) == 0 {
		return nil
	}
	p := w.pend
	w.pend = w.pend[:0]
	if w.byeSent {
		return nil
	}
	w.raw.SetWriteDeadline(time.Now().Add(batchWriteTimeout))
	_, err := w.transport.Write(p)
	return err
}

func (s *Server) newWire(c net.Conn) *wire {
	id := s.connID()
	return &wire{
		srv:           s,
		id:            id,
		log:           s.log.With("conn", id, "remote", c.RemoteAddr().String()),
		raw:           c,
		transport:     c,
		loginDeadline: time.Now().Add(s.opts.LoginTimeout),
		buf:           make([]byte, readBufMin),
	}
}

// run serves the connection until it ends.
func (w *wire) run(implicitTLS bool) {
	defer w.raw.Close()
	w.log.Debug("connected", "tls", implicitTLS)
	if implicitTLS {
		if err := w.handshake(nil); err != nil {
			w.log.Info("TLS handshake failed", "err", err)
			return
		}
	}
	for {
		w.resetStretch()
		v := &view{w: w, done: make(chan struct{}), sessDone: make(chan struct{})}
		w.view = v
		// imapserver.Server.Serve returns as soon as the one connection has
		// been handed to its goroutine.
		w.srv.newIMAPServer(w).Serve(&oneConnListener{conn: v})
		<-v.done
		<-v.sessDone
		if !w.wantTLS || w.stopping.Load() {
			w.log.Debug("disconnected")
			return
		}
		w.wantTLS = false
		var rest []byte
		if w.e > w.r {
			rest = append(rest, w.buf[w.r:w.e]...)
		}
		if err := w.handshake(rest); err != nil {
			w.log.Info("STARTTLS handshake failed", "err", err)
			return
		}
		w.dropGreeting = true
	}
}

// handshake runs the server side of TLS on the raw connection, bounded by
// HandshakeTimeout. early holds bytes already read past the STARTTLS line
// (the start of the ClientHello of an eager client).
func (w *wire) handshake(early []byte) error {
	var c net.Conn = w.raw
	if len(early) > 0 {
		c = &prefixConn{Conn: w.raw, r: io.MultiReader(bytes.NewReader(early), w.raw)}
	}
	tc := tls.Server(c, w.srv.opts.TLSConfig)
	w.raw.SetDeadline(time.Now().Add(w.srv.opts.HandshakeTimeout))
	if w.stopping.Load() {
		return errors.New("server shutting down")
	}
	if err := tc.Handshake(); err != nil {
		return err
	}
	w.raw.SetDeadline(time.Time{})
	w.transport, w.isTLS = tc, true
	st := tc.ConnectionState()
	w.log.Debug("TLS established", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return nil
}

func (w *wire) resetStretch() {
	w.r, w.e = 0, 0
	w.st, w.atCmdStart, w.discardRest, w.inject, w.synth = stLine, true, false, false, nil
	w.cmdBytes, w.tag, w.cmdName = 0, "", ""
	w.head, w.tail = w.head[:0], w.tail[:0]
	w.wmu.Lock()
	w.out = outScanner{}
	w.wmu.Unlock()
}

// Interrupt is Shutdown's request: the connection says BYE when imapserver
// next waits for a command, or at once if it is waiting now.
func (w *wire) Interrupt() {
	w.stopping.Store(true)
	w.raw.SetReadDeadline(time.Now())
}

// Close is Shutdown's last resort when its context ends: it closes the
// transport, and the connection's goroutine ends on the failed I/O.
func (w *wire) Close() error { return w.raw.Close() }

// closeWithBye ends the connection from the session's side: BYE now, and
// imapserver's next read fails.
func (w *wire) closeWithBye(text string) {
	w.bye(text)
	w.closed.Store(true)
	w.raw.SetReadDeadline(time.Now())
}

// command returns the name of the command being run (e.g. "CLOSE",
// "UID EXPUNGE"), as the guard read it.
func (w *wire) command() string { return w.cmdName }

// read is the view's Read: the guarded stream of client bytes.
func (w *wire) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if w.closed.Load() {
			return 0, net.ErrClosed
		}
		w.wmu.Lock()
		bye := w.byeSent
		w.wmu.Unlock()
		if bye {
			return 0, io.EOF
		}
		if len(w.synth) > 0 {
			n := copy(p, w.synth)
			w.srv.debug(w.id, "C(guard):", w.synth[:n])
			w.synth = w.synth[n:]
			return n, nil
		}
		if w.st == stHold {
			if err := w.resolveHold(); err != nil {
				return 0, err
			}
			continue
		}
		if w.st == stLine && w.atCmdStart && !w.discardRest {
			if w.stopping.Load() {
				return 0, w.bye("Server shutting down")
			}
			if !w.isTLS && !w.authenticated.Load() && w.srv.opts.TLSConfig != nil {
				i := bytes.IndexByte(w.buf[w.r:w.e], '\n')
				if i < 0 && w.e-w.r < startTLSLookahead {
					if err := w.fill(); err != nil {
						return 0, err
					}
					continue
				}
				if i >= 0 {
					line := w.buf[w.r : w.r+i+1]
					if tag, ok := startTLSLine(line); ok {
						w.srv.debug(w.id, "C:", line)
						w.r += i + 1
						if err := w.writeGuard(tag + " OK Begin TLS negotiation now\r\n"); err != nil {
							return 0, err
						}
						w.wantTLS = true
						return 0, io.EOF
					}
				}
			}
		}
		if w.e > w.r {
			n, err := w.consume(p)
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		if err := w.fill(); err != nil {
			return 0, err
		}
	}
}

// fill reads more bytes from the transport.
func (w *wire) fill() error {
	if w.r == w.e {
		w.r, w.e = 0, 0
		if len(w.buf) > readBufMin {
			w.buf = make([]byte, readBufMin) // the bulk transfer is over
		}
	} else if w.e == len(w.buf) {
		w.e = copy(w.buf, w.buf[w.r:w.e])
		w.r = 0
	}
	n, err := w.transport.Read(w.buf[w.e:])
	w.e += n
	if w.e == len(w.buf) && len(w.buf) < readBufMax {
		// A read filled the buffer: more is coming, read it in larger pieces.
		nb := make([]byte, readBufMax)
		copy(nb, w.buf[:w.e])
		w.buf = nb
	}
	if n > 0 {
		return nil
	}
	if err == nil {
		return nil
	}
	if err == io.EOF && w.st == stLiteral {
		// The client went away inside a literal: that is no literal.
		return io.ErrUnexpectedEOF
	}
	return w.readError(err)
}

// readError turns a transport error into what imapserver should see.
func (w *wire) readError(err error) error {
	if !isTimeout(err) {
		return err
	}
	if w.closed.Load() {
		return net.ErrClosed
	}
	atBoundary := w.st == stLine && w.atCmdStart && !w.discardRest && w.e == w.r
	if w.stopping.Load() {
		if atBoundary {
			return w.bye("Server shutting down")
		}
		// A command in progress may finish, within its own deadline.
		if d := w.effectiveDeadline(w.imapDeadline); d.IsZero() || time.Now().Before(d) {
			w.raw.SetReadDeadline(d)
			return nil
		}
	}
	switch {
	case atBoundary && !w.authenticated.Load():
		w.log.Info("login timeout")
		return w.bye("Login timeout")
	case atBoundary:
		w.log.Info("idle timeout")
		return w.bye("Autologout; idle for too long")
	}
	w.log.Info("read timeout in a command")
	w.bye("Timeout")
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// consume moves buffered bytes to p as the state machine allows. It may
// return 0 bytes (while swallowing) for the caller to go on.
func (w *wire) consume(p []byte) (int, error) {
	data := w.buf[w.r:w.e]
	switch w.st {
	case stLiteral:
		k := min(int64(len(p)), int64(len(data)), w.remaining)
		copy(p, data[:k])
		w.srv.debug(w.id, "C:", data[:k])
		w.r += int(k)
		if w.remaining -= k; w.remaining == 0 {
			w.st = stLine
		}
		return int(k), nil
	case stDiscard:
		k := min(int64(len(data)), w.remaining)
		w.r += int(k)
		if w.remaining -= k; w.remaining == 0 {
			w.st = stLine
		}
		return 0, nil
	}
	seg := data
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		seg = data[:i+1]
	}
	if !w.discardRest && len(seg) > len(p) {
		seg = seg[:len(p)]
	}
	if w.atCmdStart && (bytes.Equal(seg, crlf) || bytes.Equal(seg, crlf[1:])) && !w.discardRest && !w.continuing() {
		// A blank line between commands: imapserver would drop the
		// connection without a word (it finds no tag). Skip it.
		w.r += len(seg)
		return 0, nil
	}
	if w.atCmdStart {
		w.atCmdStart, w.firstLine = false, true
		w.head, w.cmdBytes, w.literals = w.head[:0], 0, 0
	}
	if w.cmdBytes += int64(len(seg)); w.cmdBytes > int64(w.srv.opts.MaxLineLength) {
		w.log.Info("command too long", "bytes", w.cmdBytes)
		return 0, w.bye("Command line too long")
	}
	if w.firstLine {
		w.head = appendHead(w.head, seg, 256)
	}
	w.tail = appendTail(w.tail, seg, 32)
	n := 0
	if !w.discardRest {
		n = copy(p, seg)
		w.srv.debug(w.id, "C:", seg)
	}
	w.r += len(seg)
	if seg[len(seg)-1] == '\n' {
		if err := w.lineEnd(); err != nil {
			if n > 0 {
				// bufio keeps the bytes and reports the error on the next read.
				return n, err
			}
			return 0, err
		}
	}
	return n, nil
}

// lineEnd runs at the end of each line of a command.
func (w *wire) lineEnd() error {
	if w.firstLine {
		w.firstLine = false
		w.tag, w.cmdName = parseHead(w.head)
		w.appendMbox = w.cmdName == "APPEND" && appendMailboxIsLiteral(w.head)
	}
	n, nonSync, ok, bad := literalHeader(w.tail)
	w.tail = w.tail[:0]
	switch {
	case bad:
		w.log.Info("unreadable literal size")
		return w.bye("Literal too large")
	case !ok:
		w.endCommand()
	case w.discardRest && !nonSync:
		// The client waits for a "+" that will not come: the command ends
		// here.
		w.endCommand()
	case w.discardRest:
		if n > w.discardLimit() {
			return w.bye("Literal too large")
		}
		w.st, w.remaining = stDiscard, n
		if n == 0 {
			w.st = stLine
		}
	default:
		w.st = stHold
		w.hold.n, w.hold.nonSync = n, nonSync
		w.hold.appendMsg = w.cmdName == "APPEND" && (w.literals > 0 || !w.appendMbox)
		w.literals++
		w.wmu.Lock()
		w.out.watchTag, w.out.watchHit = w.tag, false
		w.hold.lines = w.out.lines
		w.wmu.Unlock()
	}
	return nil
}

// resolveHold decides, when imapserver asks for more after a literal
// header, whether it is reading the literal or has refused it.
func (w *wire) resolveHold() error {
	w.wmu.Lock()
	answered := w.out.watchHit
	cont := w.out.lines > w.hold.lines && w.out.lastCont
	w.out.watchTag = ""
	w.wmu.Unlock()
	n := w.hold.n
	refused := n > maxBufferedLiteral && !w.hold.appendMsg || w.hold.appendMsg && n > w.srv.opts.AppendLimit
	switch {
	case w.hold.nonSync && (answered || refused):
		// The literal's bytes must never be read as commands (RFC 7888 §4):
		// swallow them and the rest of the command.
		w.log.Info("swallowing a refused non-synchronising literal", "tag", w.tag, "command", w.cmdName, "bytes", n)
		if n > w.discardLimit() {
			return w.bye("Literal too large")
		}
		w.st, w.remaining, w.discardRest, w.inject = stDiscard, n, true, !answered
		if !answered {
			w.refusalNote(n)
		}
		if n == 0 {
			w.st = stLine
		}
	case w.hold.nonSync || cont:
		w.st, w.remaining = stLiteral, n
		if n == 0 {
			w.st = stLine
		}
	default:
		// A refused synchronising literal: the client does not send it. If
		// imapserver is still parsing, end the command for it.
		w.endCommand()
		if !answered {
			w.refusalNote(n)
			w.synth = crlf
		}
	}
	return nil
}

var crlf = []byte("\r\n")

// refusalNote tells the client why the BAD that follows comes (an untagged
// NO is a warning, RFC 9051 §7.1.2).
func (w *wire) refusalNote(n int64) {
	limit := int64(maxBufferedLiteral)
	if w.hold.appendMsg {
		limit = w.srv.opts.AppendLimit
	}
	w.wmu.Lock()
	ok := w.out.atBoundary() && !w.byeSent
	w.wmu.Unlock()
	if ok {
		w.writeGuard(fmt.Sprintf("* NO [TOOBIG] Literal of %d bytes refused (limit %d); the command fails\r\n", n, limit))
	}
}

// continuing reports whether imapserver's last line was a continuation
// request: the client's next line (a SASL response, IDLE's DONE) belongs to
// the command, even if blank.
func (w *wire) continuing() bool {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.out.lastCont
}

func (w *wire) endCommand() {
	if w.discardRest && w.inject {
		w.synth = crlf
	}
	w.st, w.atCmdStart, w.discardRest, w.inject, w.cmdBytes = stLine, true, false, false, 0
}

// discardLimit is the largest refused literal the guard reads and drops so
// that the session can go on; a larger one ends the connection.
func (w *wire) discardLimit() int64 {
	return max(2*w.srv.opts.AppendLimit, 1<<20)
}

// bye sends "* BYE text" (when the output is between responses) and makes
// the connection end: further output is dropped and imapserver reads EOF.
func (w *wire) bye(text string) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.flushPendLocked()
	if !w.byeSent && w.out.atBoundary() {
		line := "* BYE " + text + "\r\n"
		w.raw.SetWriteDeadline(time.Now().Add(byeWriteTimeout))
		w.srv.debug(w.id, "S:", []byte(line))
		w.transport.Write([]byte(line))
	}
	w.byeSent = true
	return io.EOF
}

// writeGuard writes a response of the guard's own.
func (w *wire) writeGuard(line string) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.flushPendLocked()
	w.raw.SetWriteDeadline(time.Now().Add(byeWriteTimeout))
	defer w.raw.SetWriteDeadline(time.Time{})
	w.srv.debug(w.id, "S:", []byte(line))
	_, err := w.transport.Write([]byte(line))
	return err
}

// write is the view's Write: imapserver's output.
func (w *wire) write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.byeSent {
		return len(p), nil
	}
	n := len(p)
	if w.dropGreeting {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return n, nil
		}
		p, w.dropGreeting = p[i+1:], false
	}
	w.out.scan(p)
	w.srv.debug(w.id, "S:", p)
	if w.batching {
		w.pend = append(w.pend, p...)
		if len(w.pend) >= batchFlushSize {
			if err := w.flushPendLocked(); err != nil {
				return 0, err
			}
		}
		return n, nil
	}
	if _, err := w.transport.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}

// setReadDeadline applies imapserver's read deadline, as the guard bends it.
func (w *wire) setReadDeadline(t time.Time) error {
	w.imapDeadline = t
	if w.stopping.Load() || w.closed.Load() {
		// Keep the interruption in force; read takes it from here.
		return nil
	}
	return w.raw.SetReadDeadline(w.effectiveDeadline(t))
}

func (w *wire) effectiveDeadline(t time.Time) time.Time {
	if !w.authenticated.Load() {
		return w.loginDeadline
	}
	if !t.IsZero() && time.Until(t) > imapIdleWait {
		// imapserver's wait for the next command or for IDLE's DONE.
		return time.Now().Add(w.srv.opts.IdleTimeout)
	}
	return t
}

// outScanner follows imapserver's output: lines, and the server's literals
// within them, so that the guard knows the last response line.
type outScanner struct {
	lit      int64 // literal bytes still to pass
	midLine  bool
	head     []byte
	tail     []byte
	lines    uint64 // complete lines so far
	lastCont bool   // the last complete line was a continuation request
	watchTag string // report a tagged response with this tag
	watchHit bool
}

func (o *outScanner) scan(p []byte) {
	for len(p) > 0 {
		if o.lit > 0 {
			k := min(int64(len(p)), o.lit)
			o.lit -= k
			p = p[k:]
			continue
		}
		seg := p
		i := bytes.IndexByte(p, '\n')
		if i >= 0 {
			seg = p[:i+1]
		}
		o.midLine = true
		o.head = appendHead(o.head, seg, 64)
		o.tail = appendTail(o.tail, seg, 32)
		p = p[len(seg):]
		if i < 0 {
			return
		}
		o.lines++
		o.lastCont = len(o.head) > 0 && o.head[0] == '+'
		if o.watchTag != "" && len(o.head) > len(o.watchTag) &&
			string(o.head[:len(o.watchTag)]) == o.watchTag && o.head[len(o.watchTag)] == ' ' {
			o.watchHit = true
		}
		if n, _, ok, _ := literalHeader(o.tail); ok {
			o.lit = n
		}
		o.midLine = false
		o.head, o.tail = o.head[:0], o.tail[:0]
	}
}

// atBoundary reports whether the output is between responses.
func (o *outScanner) atBoundary() bool { return o.lit == 0 && !o.midLine }

// literalHeader parses a literal header at the end of a line (line break
// included): "{" number ["+"] "}" (RFC 9051 §9 literal, RFC 7888 literal+;
// literal8 has "~" before it). bad reports a number too long to be a size.
func literalHeader(line []byte) (n int64, nonSync, ok, bad bool) {
	l := bytes.TrimSuffix(line, []byte("\n"))
	l = bytes.TrimSuffix(l, []byte("\r"))
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false, false, false
	}
	l = l[:len(l)-1]
	if l[len(l)-1] == '+' {
		nonSync = true
		l = l[:len(l)-1]
	}
	i := len(l)
	for i > 0 && l[i-1] >= '0' && l[i-1] <= '9' {
		i--
	}
	digits := l[i:]
	if len(digits) == 0 || i == 0 || l[i-1] != '{' {
		return 0, false, false, false
	}
	if len(digits) > 18 {
		return 0, nonSync, true, true
	}
	for _, d := range digits {
		n = n*10 + int64(d-'0')
	}
	return n, nonSync, true, false
}

// startTLSLine recognises "tag STARTTLS" (RFC 9051 §6.2.1) as imapserver
// would: command names are case-insensitive; a trailing space is tolerated.
func startTLSLine(line []byte) (tag string, ok bool) {
	s := strings.TrimRight(string(line), "\r\n")
	s = strings.TrimSuffix(s, " ")
	tag, cmd, found := strings.Cut(s, " ")
	if !found || tag == "" || !strings.EqualFold(cmd, "STARTTLS") {
		return "", false
	}
	return tag, true
}

// parseHead returns the tag and command name (e.g. "UID FETCH") of a
// command's first line.
func parseHead(head []byte) (tag, name string) {
	s := strings.TrimRight(string(head), "\r\n")
	f := strings.SplitN(s, " ", 4)
	tag = f[0]
	if len(f) > 1 {
		name = strings.ToUpper(f[1])
		if name == "UID" && len(f) > 2 {
			name += " " + strings.ToUpper(f[2])
		}
	}
	return tag, name
}

// appendMailboxIsLiteral reports whether an APPEND's first line ends at
// its mailbox name's literal header: "tag APPEND {n}".
func appendMailboxIsLiteral(head []byte) bool {
	f := strings.SplitN(strings.TrimRight(string(head), "\r\n"), " ", 3)
	return len(f) == 3 && strings.HasPrefix(f[2], "{")
}

func appendHead(head, seg []byte, max int) []byte {
	if room := max - len(head); room > 0 {
		head = append(head, seg[:min(room, len(seg))]...)
	}
	return head
}

func appendTail(tail, seg []byte, max int) []byte {
	if len(seg) >= max {
		return append(tail[:0], seg[len(seg)-max:]...)
	}
	tail = append(tail, seg...)
	if len(tail) > max {
		tail = append(tail[:0], tail[len(tail)-max:]...)
	}
	return tail
}

// view is the net.Conn imapserver sees for one stretch of a connection.
type view struct {
	w        *wire
	once     sync.Once
	done     chan struct{} // closed by imapserver
	sessDone chan struct{} // closed by the session's Close
}

func (v *view) Read(p []byte) (int, error)  { return v.w.read(p) }
func (v *view) Write(p []byte) (int, error) { return v.w.write(p) }
func (v *view) Close() error {
	v.once.Do(func() { close(v.done) })
	return nil
}
func (v *view) LocalAddr() net.Addr                { return v.w.raw.LocalAddr() }
func (v *view) RemoteAddr() net.Addr               { return v.w.raw.RemoteAddr() }
func (v *view) SetReadDeadline(t time.Time) error  { return v.w.setReadDeadline(t) }
func (v *view) SetWriteDeadline(t time.Time) error { return v.w.setWriteDeadline(t) }

// setWriteDeadline applies imapserver's write deadline, except in a batch,
// whose writes have their own (imapserver sets one per response).
func (w *wire) setWriteDeadline(t time.Time) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.batching {
		return nil
	}
	return w.raw.SetWriteDeadline(t)
}
func (v *view) SetDeadline(t time.Time) error {
	v.w.raw.SetWriteDeadline(t)
	return v.w.setReadDeadline(t)
}

// oneConnListener hands one connection to imapserver.Server.Serve, which
// then returns.
type oneConnListener struct {
	conn net.Conn
	used bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.used {
		return nil, net.ErrClosed
	}
	l.used = true
	return l.conn, nil
}
func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// prefixConn reads some bytes before those of its connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }
