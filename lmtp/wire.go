package lmtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/internal/netlimit"
)

// wire is the connection go-smtp reads commands and message data from and
// writes replies to. It sits between the library and the network (the TLS
// connection, after STARTTLS or on an implicit-TLS listener, is below it, so
// it always sees clear text) and follows the SMTP framing byte for byte as
// go-smtp v0.25.1 parses it:
//
//   - Commands are handed to go-smtp one line per Read. go-smtp only reads
//     again once it has dealt with the line it has and written the reply,
//     so when Read is called the wire knows every earlier reply is out.
//     That is what makes the wire's own replies (STARTTLS, junk commands,
//     "421" on too many errors or shutdown) come in the right order.
//   - After a DATA line it waits for go-smtp's next Read: if the session's
//     Data started meanwhile (go-smtp replied 354), what follows is message
//     data up to the end marker; otherwise more commands. In data it runs
//     the same state machine as go-smtp's data reader, so it knows exactly
//     where the message ends, and checks every byte for bare CR and bare LF
//     (RFC 5321 §2.3.8) before go-smtp's dot-unstuffing can hide one.
//   - The data of a DATA command does not go through go-smtp at all: the
//     session reads it from the wire (dataReader), which removes the dot
//     stuffing as go-smtp's data reader would, in the same pass as its own
//     scan, and applies go-smtp's line length limit to it; go-smtp's reader
//     is then handed only the end marker. go-smtp's reader takes one byte
//     at a time through two layers of readers, and was a seventh of the
//     CPU time of a delivery; the wire has the data in its buffer already.
//     FuzzDirectData checks that both give the same bytes and errors.
//   - After a well-formed BDAT line the next N bytes are a chunk (RFC 3030),
//     which go-smtp always consumes.
//
// Deadlines are set on every read from the network, by phase: IdleTimeout
// while waiting for a command, DataTimeout between two reads of message
// data, capped by MaxDataDuration for one message. go-smtp's own
// ReadTimeout would instead be one deadline for a whole DATA transfer.
//
// Replies go through Write, which counts error replies for MaxErrors,
// writes our message size into the EHLO SIZE keyword and adds STARTTLS to
// the EHLO keywords when it is offered.
type wire struct {
	srv         *Server
	raw         net.Conn        // the accepted connection (closing it frees its netlimit slot)
	rawTCP      syscall.RawConn // its socket, for ackNow; nil when not TCP
	id          uint64
	log         *slog.Logger
	implicitTLS bool

	// Read side. Only the goroutine that go-smtp reads from uses these (its
	// connection goroutine, or for LMTP DATA the one running LMTPData, one
	// after the other).
	in          []byte // bytes read from the network; in[r:n] are not yet handed on
	r, n        int
	out         []byte // bytes approved for go-smtp, not yet read by it
	mode        mode
	chunkLeft   int64     // bytes left in the current BDAT chunk
	chunkLast   bool      // it is the LAST one
	dataState   int       // go-smtp's data reader state, mirrored
	prevCR      bool      // the last data byte was CR
	dataStarted time.Time // start of the current DATA or chunk, for MaxDataDuration
	afterDATA   bool      // the last line handed on was DATA
	dataGenSeen uint64    // dataGen when that DATA line was handed on
	// direct: the current DATA's data goes to the session (dataReader),
	// unstuffed into unstuffed, not to go-smtp; endMarker: go-smtp's data
	// reader is to be handed the end marker next (the session has read
	// the data); lineLen is go-smtp's line length count over the data.
	direct    bool
	endMarker bool
	lineLen   int
	unstuffed []byte
	readErr   error // sticky: once reading failed, it always fails
	handshook bool
	// mailSize is the SIZE of the last MAIL line handed on; go-smtp calls
	// the session's Mail for it before it reads again.
	mailSize declaredSize

	// dataGen counts calls of the session's Data/LMTPData, so the wire can
	// tell whether go-smtp accepted a DATA command (see above).
	dataGen atomic.Uint64
	// bare records a bare CR or LF in the current transaction's data.
	bare atomic.Bool
	// errors counts error replies since the last delivered message.
	errors atomic.Int32
	// failure says why the wire hung up, for the session's log line.
	failure atomic.Value // string
	// saslWait is set when a "334" challenge went out: the next line is
	// a SASL response (RFC 4954 §4), not a command.
	saslWait atomic.Bool

	mu        sync.Mutex
	conn      net.Conn // raw, or a *tls.Conn over it
	isTLS     bool
	closing   bool // Shutdown was called
	waiting   bool // blocked reading the next command
	closed    bool
	evicted   bool   // by MaxUnauthenticated
	helloVerb string // HELO, EHLO or LHLO: the last greeting seen
	needHello bool   // after STARTTLS, until the next greeting (RFC 3207 §4.2)
	sess      *session

	// ticket counts the connection against MaxUnauthenticated until a
	// recipient is accepted.
	ticket *netlimit.Ticket

	wmu     sync.Mutex // serialises writes
	wcarry  []byte     // start of a reply line not yet complete
	pending []byte     // replies written but not yet sent (see Write)
}

type mode int

const (
	modeCommand mode = iota
	modeData         // DATA content, up to and including the end marker
	modeChunk        // a BDAT chunk
)

// States of go-smtp's (and net/textproto's) DATA reader, mirrored exactly,
// quirks included: ".\r" at the start of a line followed by anything but LF
// drops the CR and does not recognise the next line start. Only a strict
// CRLF "." CRLF ends the data, so "\n.\n" or "\r.\r\n" never do.
const (
	stateBeginLine = iota
	stateDot
	stateDotCR
	stateCR
	stateData
	stateEOF
)

// errHungUp is what reads return once the wire has closed the connection.
// It is not io.EOF: io.Copy would take that as the normal end of a BDAT
// chunk, and go-smtp would deliver a truncated message. It wraps
// net.ErrClosed, which go-smtp's command loop ends on quietly.
var errHungUp = fmt.Errorf("lmtp: connection closed: %w", net.ErrClosed)

const readBufferSize = 16 << 10

func newWire(s *Server, c net.Conn, implicitTLS bool) *wire {
	id := s.nextID.Add(1)
	w := &wire{
		srv:         s,
		raw:         c,
		rawTCP:      rawTCP(c),
		conn:        c,
		id:          id,
		implicitTLS: implicitTLS,
		log:         s.log.With("conn", id, "proto", s.proto, "remote", c.RemoteAddr().String()),
		in:          make([]byte, max(readBufferSize, s.opts.MaxLineLength+2)),
	}
	if implicitTLS {
		w.conn = tls.Server(c, s.opts.TLSConfig)
		w.isTLS = true
	} else {
		w.handshook = true
	}
	w.failure.Store("")
	w.ticket = s.preauth.Admit(w.evict)
	w.log.Debug("connection opened", "tls", implicitTLS)
	return w
}

// evict ends a connection that has had no recipient accepted, to make
// room under MaxUnauthenticated: at its next command read it gets "421"
// and is closed; a TLS handshake in progress fails.
func (w *wire) evict() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.evicted = true
	w.raw.SetReadDeadline(time.Now())
}

func (w *wire) hangupEvicted() error {
	w.failure.Store("evicted")
	w.log.Info("too many connections without a recipient; closing the oldest, this one", "max", w.srv.opts.MaxUnauthenticated)
	return w.hangup("421 4.7.0 %s Too many connections waiting, closing connection", w.srv.opts.Hostname)
}

// ---- net.Conn ----

func (w *wire) LocalAddr() net.Addr  { return w.raw.LocalAddr() }
func (w *wire) RemoteAddr() net.Addr { return w.raw.RemoteAddr() }

// Deadlines are the wire's business (see Read and Write); go-smtp sets none
// with our configuration, and these are no-ops so it cannot disturb them.
func (w *wire) SetDeadline(time.Time) error      { return nil }
func (w *wire) SetReadDeadline(time.Time) error  { return nil }
func (w *wire) SetWriteDeadline(time.Time) error { return nil }

// Close sends the replies still pending and closes the connection. It may
// be called more than once.
func (w *wire) Close() error {
	w.flush()
	return w.closeConn()
}

func (w *wire) closeConn() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	c := w.conn
	w.mu.Unlock()
	err := c.Close()
	if c != w.raw {
		w.raw.Close()
	}
	w.ticket.Done()
	w.srv.conns.Remove(w)
	w.log.Debug("connection closed")
	return err
}

// Interrupt asks the wire to end the connection at the next command
// boundary, and wakes it if it is waiting for a command now (Shutdown).
func (w *wire) Interrupt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closing = true
	if w.waiting {
		w.conn.SetReadDeadline(time.Now())
	}
}

// ---- reading ----

// Read hands go-smtp the next approved bytes: one command line, message
// data up to the end marker, or chunk bytes.
func (w *wire) Read(p []byte) (int, error) {
	if err := w.handshake(); err != nil {
		return 0, err
	}
	for len(w.out) == 0 {
		if w.readErr != nil {
			return 0, w.readErr
		}
		if err := w.produce(); err != nil {
			w.readErr = err
			return 0, err
		}
	}
	n := copy(p, w.out)
	w.out = w.out[n:]
	return n, nil
}

func (w *wire) produce() error {
	if w.endMarker {
		// The session has read the data itself: go-smtp's data reader
		// gets the end marker alone.
		w.endMarker = false
		w.out = []byte(".\r\n")
		return nil
	}
	switch w.mode {
	case modeData:
		return w.produceData()
	case modeChunk:
		return w.produceChunk()
	}
	if w.startData() {
		return nil
	}
	if w.errors.Load() >= int32(w.srv.opts.MaxErrors) {
		w.failure.Store("too many errors")
		w.log.Info("too many errors, disconnecting", "errors", w.errors.Load())
		return w.hangup("421 4.7.0 %s Too many errors, closing connection", w.srv.opts.Hostname)
	}
	if w.isClosing() {
		return w.hangup("421 4.3.2 %s Service shutting down, closing connection", w.srv.opts.Hostname)
	}
	if w.isEvicted() {
		return w.hangupEvicted()
	}
	line, whole, err := w.nextLine()
	if err != nil {
		return err
	}
	if !whole {
		// Longer than MaxLineLength: go-smtp's line limit refuses it with
		// "500 5.4.0" and closes the connection.
		w.out = line
		return nil
	}
	return w.command(line)
}

// startData switches to message data if go-smtp has accepted the DATA
// line it was handed last (it replied 354 and called the session's Data).
func (w *wire) startData() bool {
	if !w.afterDATA {
		return false
	}
	w.afterDATA = false
	if w.dataGen.Load() == w.dataGenSeen {
		return false
	}
	w.mode = modeData
	w.dataState = stateBeginLine
	w.prevCR = false
	w.dataStarted = time.Now()
	return true
}

// dataReader returns the reader of the message data that follows the DATA
// command go-smtp has just accepted, or nil if no such data follows. The
// session calls it in Data or LMTPData with the reader go-smtp gave it,
// after counting the call in dataGen and before reading r.
//
// For BDAT, go-smtp hands the session the read end of an io.Pipe and goes
// on reading chunks from the wire in its connection goroutine while the
// session runs in another: the wire's read side is not the session's to
// touch, and dataReader returns nil without looking at it. For DATA,
// go-smtp's connection goroutine reads nothing until the session returns.
func (w *wire) dataReader(r io.Reader) io.Reader {
	if _, bdat := r.(*io.PipeReader); bdat {
		return nil
	}
	if len(w.out) > 0 || !w.startData() {
		return nil
	}
	w.direct = true
	w.lineLen = 1 // go-smtp counts the LF of the DATA line as the next line's
	return directData{w}
}

// directData reads the message data from the wire (see dataReader).
type directData struct{ w *wire }

func (d directData) Read(p []byte) (int, error) {
	w := d.w
	for len(w.out) == 0 {
		switch {
		case w.readErr != nil:
			return 0, w.readErr
		case !w.direct:
			return 0, io.EOF
		}
		if err := w.produceData(); err != nil {
			w.readErr = err
			return 0, err
		}
	}
	n := copy(p, w.out)
	w.out = w.out[n:]
	return n, nil
}

// nextLine returns the next command line including its LF, or, when none
// fits in MaxLineLength, a fragment of it (whole is false).
func (w *wire) nextLine() (line []byte, whole bool, err error) {
	limit := w.srv.opts.MaxLineLength + 1
	scanned := 0
	for {
		if i := bytes.IndexByte(w.in[w.r+scanned:w.n], '\n'); i >= 0 {
			end := w.r + scanned + i + 1
			line = w.in[w.r:end]
			w.r = end
			return line, true, nil
		}
		scanned = w.n - w.r
		if scanned > limit {
			line = w.in[w.r:w.n]
			w.r = w.n
			return line, false, nil
		}
		if err := w.fill(modeCommand); err != nil {
			return nil, false, err
		}
	}
}

// commands go-smtp knows. Anything else gets our "500 5.5.2" (so that
// go-smtp's own fixed limit of three bad commands never applies: ours,
// MaxErrors, does).
var knownCommands = map[string]bool{
	"HELO": true, "EHLO": true, "LHLO": true, "MAIL": true, "RCPT": true,
	"DATA": true, "BDAT": true, "RSET": true, "VRFY": true, "NOOP": true,
	"QUIT": true, "AUTH": true, "SEND": true, "SOML": true, "SAML": true,
	"EXPN": true, "HELP": true, "TURN": true,
}

// command looks at one complete command line before go-smtp gets it.
func (w *wire) command(line []byte) error {
	if w.saslWait.Swap(false) {
		w.out = line // go-smtp's AUTH reads it; it is never logged
		return nil
	}
	text := strings.TrimRight(string(line), "\r\n")
	cmd, arg, ok := parseCommand(text)
	switch {
	case hasControl(text):
		// go-smtp echoes arguments (the greeting's domain) in replies: a
		// CR or NUL in one would go back out inside a reply line.
		return w.reply("500 5.5.2 Syntax error, control character in command")
	case !ok:
		return w.reply("500 5.5.2 Syntax error, command unrecognized")
	case cmd == "":
		return w.reply("500 5.5.2 Syntax error, empty command")
	case cmd == "STARTTLS":
		return w.startTLS()
	case !knownCommands[cmd]:
		return w.reply("500 5.5.2 Syntax error, command unrecognized")
	}
	switch cmd {
	case "HELO", "EHLO", "LHLO":
		// Only a greeting go-smtp accepts: LHLO for LMTP, HELO or EHLO for
		// SMTP, with a domain.
		if arg != "" && (cmd == "LHLO") == w.srv.opts.LMTP {
			w.mu.Lock()
			w.helloVerb, w.needHello = cmd, false
			w.mu.Unlock()
		}
	case "MAIL":
		// RFC 1870 SIZE of any size: see size.go.
		line, w.mailSize = rewriteMailSize(line)
	case "DATA":
		if arg == "" {
			w.afterDATA = true
			w.dataGenSeen = w.dataGen.Load()
		}
	case "BDAT":
		if size, last, ok := parseBDAT(arg); ok {
			w.mode = modeChunk
			w.chunkLeft, w.chunkLast = size, last
			w.dataStarted = time.Now()
		}
	}
	w.out = line
	return nil
}

// hasControl reports whether a command line (without its line break)
// holds an ASCII control character other than HTAB: RFC 5321 commands are
// printable text (UTF-8 with SMTPUTF8).
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// parseCommand splits a command line as go-smtp v0.25.1's parseCmd does;
// ok is false where go-smtp would answer "501 Bad command".
func parseCommand(line string) (cmd, arg string, ok bool) {
	l := len(line)
	switch {
	case strings.HasPrefix(strings.ToUpper(line), "STARTTLS"):
		return "STARTTLS", "", true
	case l == 0:
		return "", "", true
	case l < 4, l == 5:
		return "", "", false
	case l == 4:
		return strings.ToUpper(line), "", true
	}
	if line[4] != ' ' {
		return "", "", false
	}
	return strings.ToUpper(line[0:4]), strings.TrimSpace(line[5:]), true
}

// parseBDAT reports the chunk size of a BDAT command (RFC 3030 §2) that
// go-smtp accepts as well-formed: it then consumes the chunk in every case,
// also when it refuses the command.
func parseBDAT(arg string) (size int64, last, ok bool) {
	args := strings.Fields(arg)
	if len(args) == 0 || len(args) > 2 {
		return 0, false, false
	}
	if len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return 0, false, false
	}
	n, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return 0, false, false
	}
	return int64(n), len(args) == 2, true
}

// produceData hands on message data up to and including the end marker,
// checking every byte for bare CR and LF.
//
// A bare CR is also replaced by a space in what go-smtp gets. Such a
// message is refused anyway, and without bare CRs go-smtp's reader ends the
// data exactly where a strict reader does: at CRLF "." CRLF and nowhere
// else. (Left alone, "\r\r\n.\r\n" would not end it, and whatever the
// client sent next would be taken as message data.) To know whether a CR
// is bare, the byte after it is needed: a CR at the end of what has been
// read waits for it.
func (w *wire) produceData() error {
	for {
		if w.r == w.n {
			if err := w.fill(modeData); err != nil {
				return err
			}
		}
		var unstuffed *[]byte // direct: the session gets the unstuffed data
		if w.direct {
			w.unstuffed = w.unstuffed[:0]
			unstuffed = &w.unstuffed
		}
		if i := w.scanDataTo(w.in[w.r:w.n], unstuffed); i > 0 {
			w.out = w.in[w.r : w.r+i]
			if w.direct {
				if err := w.checkDataLines(w.out); err != nil {
					return err
				}
				w.out = w.unstuffed
			}
			w.r += i
			if w.dataState == stateEOF {
				w.mode = modeCommand
				// The session has the data; go-smtp's reader is owed
				// the end marker (produce).
				w.endMarker, w.direct = w.direct, false
			}
			return nil
		}
		// Only a CR so far: read its successor.
		if err := w.fill(modeData); err != nil {
			return err
		}
	}
}

// scanData runs the data reader's state machine over buf and returns how
// many bytes may go to go-smtp.
func (w *wire) scanData(buf []byte) int { return w.scanDataTo(buf, nil) }

// scanDataTo is scanData that also appends to *unstuffed, if not nil, what
// go-smtp's data reader would make of those bytes: the data without the
// dots of dot stuffing (RFC 5321 §4.5.2) and without the end marker.
func (w *wire) scanDataTo(buf []byte, unstuffed *[]byte) int {
	i := 0
	for i < len(buf) && w.dataState != stateEOF {
		if w.dataState == stateData && !w.prevCR {
			// Fast path through the middle of a line.
			j := bytes.IndexByte(buf[i:], '\r')
			if j < 0 {
				j = len(buf) - i
			}
			if bytes.IndexByte(buf[i:i+j], '\n') >= 0 {
				w.bare.Store(true) // LF without CR
			}
			if unstuffed != nil {
				*unstuffed = append(*unstuffed, buf[i:i+j]...)
			}
			i += j
			if i == len(buf) {
				break
			}
		}
		c := buf[i]
		switch {
		case c == '\r' && i+1 == len(buf):
			return i // decide when the next byte is here
		case c == '\r' && buf[i+1] != '\n':
			w.bare.Store(true)
			c = ' '
			buf[i] = c
		case c == '\n' && !w.prevCR:
			w.bare.Store(true)
		}
		i++
		w.prevCR = c == '\r'
		if unstuffed != nil && !dropped(w.dataState, c) {
			*unstuffed = append(*unstuffed, c)
		}
		switch w.dataState {
		case stateBeginLine:
			switch c {
			case '.':
				w.dataState = stateDot
			case '\r':
				w.dataState = stateCR
			default:
				w.dataState = stateData
			}
		case stateDot:
			if c == '\r' {
				w.dataState = stateDotCR
			} else {
				w.dataState = stateData
			}
		case stateDotCR:
			if c == '\n' {
				w.dataState = stateEOF
			} else {
				w.dataState = stateData
			}
		case stateCR:
			if c == '\n' {
				w.dataState = stateBeginLine
			} else {
				w.dataState = stateData
			}
		case stateData:
			if c == '\r' {
				w.dataState = stateCR
			}
		}
	}
	return i
}

// dropped reports whether go-smtp's data reader leaves out byte c read in
// state: a dot that starts a line, and the CR LF after a line's only dot.
func dropped(state int, c byte) bool {
	switch state {
	case stateBeginLine:
		return c == '.'
	case stateDot:
		return c == '\r'
	case stateDotCR:
		return c == '\n'
	}
	return false
}

// checkDataLines applies go-smtp's line length limit (its lineLimitReader,
// which data it reads itself passes through) to data read directly: a
// line longer than MaxLineLength is smtp.ErrTooLongLine. It counts as
// go-smtp does: an LF starts the next line and counts as its first byte.
func (w *wire) checkDataLines(data []byte) error {
	limit := w.srv.opts.MaxLineLength
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			w.lineLen += len(data)
			break
		}
		if w.lineLen+i > limit {
			w.lineLen += i
			break
		}
		w.lineLen = 1
		data = data[i+1:]
	}
	if w.lineLen > limit {
		return smtp.ErrTooLongLine
	}
	return nil
}

// produceChunk hands on the bytes of a BDAT chunk. They are checked for
// bare CR and LF as well: without BINARYMIME (not offered) a message sent
// with BDAT is text with CRLF line ends like any other (RFC 3030 §3).
func (w *wire) produceChunk() error {
	if w.chunkLeft == 0 {
		w.mode = modeCommand
		return nil
	}
	if w.r == w.n {
		if err := w.fill(modeChunk); err != nil {
			return err
		}
	}
	k := min(int64(w.n-w.r), w.chunkLeft)
	buf := w.in[w.r : w.r+int(k)]
	for _, c := range buf {
		if w.prevCR && c != '\n' || c == '\n' && !w.prevCR {
			w.bare.Store(true)
		}
		w.prevCR = c == '\r'
	}
	w.out = buf
	w.r += int(k)
	w.chunkLeft -= k
	if w.chunkLeft == 0 {
		w.mode = modeCommand
		if w.chunkLast && w.prevCR {
			w.bare.Store(true) // the message ends in a bare CR
		}
	}
	return nil
}

// fill reads more from the network into in, under the deadline of m.
func (w *wire) fill(m mode) error {
	if w.r > 0 {
		w.n = copy(w.in, w.in[w.r:w.n])
		w.r = 0
	}
	now := time.Now()
	var deadline time.Time
	if m == modeCommand {
		deadline = now.Add(w.srv.opts.IdleTimeout)
	} else {
		deadline = now.Add(w.srv.opts.DataTimeout)
		if hard := w.dataStarted.Add(w.srv.opts.MaxDataDuration); hard.Before(deadline) {
			deadline = hard
		}
	}
	// Replies wait in pending until the wire has to wait for the client
	// (see Write): from here on it does.
	if err := w.flush(); err != nil {
		return errHungUp
	}
	w.mu.Lock()
	if m == modeCommand && w.closing {
		w.mu.Unlock()
		return w.hangup("421 4.3.2 %s Service shutting down, closing connection", w.srv.opts.Hostname)
	}
	if m == modeCommand && w.evicted {
		w.mu.Unlock()
		return w.hangupEvicted()
	}
	conn := w.conn
	conn.SetReadDeadline(deadline)
	w.waiting = m == modeCommand
	w.mu.Unlock()

	n, err := conn.Read(w.in[w.n:])

	w.mu.Lock()
	w.waiting = false
	w.mu.Unlock()
	w.n += n
	if n > 0 && m != modeCommand {
		// Message data: the reply comes only after the end, so nothing
		// would carry the ACK of these bytes (see ackNow).
		ackNow(w.rawTCP)
	}
	if n > 0 || err == nil {
		return nil // an error comes back on the next read
	}
	return w.readFailed(m, err)
}

// readFailed turns a network read error into a hang-up with the right reply.
func (w *wire) readFailed(m mode, err error) error {
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	host := w.srv.opts.Hostname
	switch {
	case timeout && m == modeCommand && w.isClosing():
		return w.hangup("421 4.3.2 %s Service shutting down, closing connection", host)
	case timeout && m == modeCommand && w.isEvicted():
		return w.hangupEvicted()
	case timeout && m == modeCommand:
		w.failure.Store("idle timeout")
		w.log.Info("idle timeout, disconnecting", "timeout", w.srv.opts.IdleTimeout)
		return w.hangup("421 4.4.2 %s Idle timeout, closing connection", host)
	case timeout && !time.Now().Before(w.dataStarted.Add(w.srv.opts.MaxDataDuration)):
		w.failure.Store("data took too long")
		w.log.Info("message transfer took too long, disconnecting", "limit", w.srv.opts.MaxDataDuration)
		return w.hangup("421 4.4.2 %s Message transfer took too long, closing connection", host)
	case timeout:
		w.failure.Store("data timeout")
		w.log.Info("no message data received in time, disconnecting", "timeout", w.srv.opts.DataTimeout)
		return w.hangup("421 4.4.2 %s Timeout waiting for message data, closing connection", host)
	}
	if m != modeCommand {
		w.failure.Store("connection lost")
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		w.log.Debug("read failed", "err", err)
	}
	w.Close()
	return errHungUp
}

// hangup sends a final reply and closes the connection.
func (w *wire) hangup(format string, args ...any) error {
	w.writeLine(fmt.Sprintf(format, args...))
	w.Close()
	return errHungUp
}

// reply answers a command go-smtp never sees.
func (w *wire) reply(text string) error {
	w.writeLine(text)
	if w.readErr != nil {
		return w.readErr
	}
	return nil
}

func (w *wire) writeLine(text string) {
	w.Write([]byte(text + "\r\n"))
}

func (w *wire) isEvicted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.evicted
}

func (w *wire) isClosing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closing
}

// ---- STARTTLS (RFC 3207) ----

func (w *wire) offersTLS() bool {
	return w.srv.opts.TLSConfig != nil && !w.srv.opts.LMTP
}

func (w *wire) startTLS() error {
	w.mu.Lock()
	isTLS, sess := w.isTLS, w.sess
	w.mu.Unlock()
	switch {
	case !w.offersTLS():
		return w.reply("502 5.5.1 STARTTLS not available")
	case isTLS:
		return w.reply("503 5.5.1 TLS already active")
	case sess != nil && sess.inTransaction():
		return w.reply("503 5.5.1 STARTTLS not allowed during a mail transaction")
	case sess != nil && sess.authenticated() != nil:
		// RFC 3207 §4.2 would have the server forget the login; it is
		// simpler and as safe to refuse TLS after AUTH.
		return w.reply("503 5.5.1 STARTTLS not allowed after AUTH")
	}
	// RFC 3207 §4 (and CVE-2011-0411): anything the client pipelined after
	// STARTTLS was sent in clear text and must not be taken as if it came
	// over TLS.
	if w.r < w.n {
		w.log.Info("discarding data pipelined after STARTTLS", "bytes", w.n-w.r)
	}
	w.r, w.n = 0, 0
	w.writeLine("220 2.0.0 Ready to start TLS")
	if err := w.flush(); err != nil {
		return errHungUp
	}

	tc := tls.Server(w.raw, w.srv.opts.TLSConfig)
	ctx, cancel := context.WithTimeout(context.Background(), w.srv.opts.HandshakeTimeout)
	defer cancel()
	w.raw.SetDeadline(time.Now().Add(w.srv.opts.HandshakeTimeout))
	err := tc.HandshakeContext(ctx)
	w.raw.SetDeadline(time.Time{})
	if err != nil {
		w.log.Info("TLS handshake failed", "err", err)
		w.failure.Store("tls handshake failed")
		w.Close()
		return errHungUp
	}
	w.mu.Lock()
	w.conn, w.isTLS = tc, true
	// RFC 3207 §4.2: forget what the client said before; it must greet again.
	w.needHello, w.helloVerb = true, ""
	w.mu.Unlock()
	w.log.Debug("TLS started", "version", tls.VersionName(tc.ConnectionState().Version))
	return nil
}

// handshake runs the implicit-TLS handshake on first use, bounded by
// HandshakeTimeout, in go-smtp's connection goroutine.
func (w *wire) handshake() error {
	if w.handshook {
		return w.readErr
	}
	w.handshook = true
	tc := w.conn.(*tls.Conn)
	ctx, cancel := context.WithTimeout(context.Background(), w.srv.opts.HandshakeTimeout)
	defer cancel()
	w.raw.SetDeadline(time.Now().Add(w.srv.opts.HandshakeTimeout))
	err := tc.HandshakeContext(ctx)
	w.raw.SetDeadline(time.Time{})
	if err != nil {
		w.log.Info("TLS handshake failed", "err", err)
		w.readErr = errHungUp
		w.Close()
		return errHungUp
	}
	return nil
}

// state the session asks about.
func (w *wire) tlsState() (isTLS bool, helloVerb string, needHello bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.isTLS, w.helloVerb, w.needHello
}

func (w *wire) setSession(s *session) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sess = s
}

// ---- writing ----

// Write takes replies, line by line: it counts error replies, puts the
// real limit into the EHLO SIZE keyword and adds STARTTLS to the EHLO
// keywords when it is offered. It always reports len(p) on success.
//
// Replies are not sent at once: they wait in pending until the wire is
// about to wait for the client (fill), starts TLS or closes, or pending
// passes maxPendingReplies. A client that pipelines (RFC 2920) gets the
// replies to a whole group in one segment, as RFC 2920 §3.2 suggests,
// instead of one write per reply; one that does not is waited for after
// every reply, so it gets each at once. Nothing is held while the wire
// waits for the client.
func (w *wire) Write(p []byte) (int, error) {
	// Only go-smtp's connection goroutine writes before the handshake
	// (the greeting is the first write).
	if !w.handshook && w.readErr == nil {
		if err := w.handshake(); err != nil {
			return 0, err
		}
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.wcarry = append(w.wcarry, p...)
	for {
		i := bytes.IndexByte(w.wcarry, '\n')
		if i < 0 {
			break
		}
		w.pending = w.filterReply(w.pending, w.wcarry[:i+1])
		w.wcarry = w.wcarry[i+1:]
	}
	if len(w.wcarry) == 0 {
		w.wcarry = nil
	}
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		w.pending = w.pending[:0]
		return 0, net.ErrClosed // go-smtp's last words after a hang-up
	}
	if len(w.pending) >= maxPendingReplies {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// maxPendingReplies bounds the replies held back for a pipelining client.
const maxPendingReplies = 16 << 10

// flush sends the pending replies.
func (w *wire) flush() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.flushLocked()
}

func (w *wire) flushLocked() error {
	if len(w.pending) == 0 {
		return nil
	}
	w.mu.Lock()
	conn, closed := w.conn, w.closed
	w.mu.Unlock()
	if closed {
		w.pending = w.pending[:0]
		return net.ErrClosed
	}
	conn.SetWriteDeadline(time.Now().Add(w.srv.opts.IdleTimeout))
	_, err := conn.Write(w.pending)
	w.pending = w.pending[:0]
	if err != nil {
		// A client that does not take its replies is gone: make the next
		// read fail too (go-smtp ignores write errors).
		w.log.Debug("write failed", "err", err)
		w.closeConn()
		return err
	}
	return nil
}

// filterReply appends one reply line to dst, as it should go out.
func (w *wire) filterReply(dst, line []byte) []byte {
	if len(line) >= 4 && line[3] == ' ' && line[0] == '5' {
		w.errors.Add(1)
	}
	if len(line) >= 4 && string(line[:4]) == "334 " {
		w.saslWait.Store(true)
	}
	switch s := string(line); s {
	case "235 2.0.0 Authentication succeeded\r\n":
		return append(dst, "235 2.7.0 Authentication successful\r\n"...) // RFC 4954 §6
	case "250-SIZE\r\n", "250 SIZE\r\n":
		// RFC 1870 §4: the size limit we enforce (session.go).
		return fmt.Appendf(dst, "%sSIZE %d\r\n", s[:4], w.srv.maxSize)
	case "250-CHUNKING\r\n":
		dst = append(dst, line...)
		w.mu.Lock()
		offer := w.offersTLS() && !w.isTLS
		w.mu.Unlock()
		if offer {
			dst = append(dst, "250-STARTTLS\r\n"...)
		}
		return dst
	}
	return append(dst, line...)
}
