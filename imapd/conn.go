package imapd

import (
	"bytes"
	"compress/flate"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roostmail/roost/internal/netlimit"
)

// conn is one client connection: the transport (TCP, TLS after implicit TLS
// or STARTTLS, deflate after COMPRESS), its buffers and its read deadlines.
// One goroutine, the session's, reads and writes it; Interrupt and the
// account-deletion watch only set flags and a read deadline.
type conn struct {
	srv           *Server
	id            string
	log           *slog.Logger
	raw           net.Conn
	transport     net.Conn
	isTLS         bool
	compressed    bool
	loginDeadline time.Time

	in      *inbuf // what commands are read from
	rawIn   *inbuf // beneath the decompressor, once COMPRESS is active
	out     outbuf
	lineBuf []byte

	// sessCancel cancels the running command's context (the client went
	// away). Set by the session.
	sessCancel func()

	dlMu          sync.Mutex // orders deadline changes against Interrupt
	phase         phase
	armedAt       time.Time
	stopping      atomic.Bool // Shutdown asked
	gone          atomic.Bool // the account was deleted
	evicted       atomic.Bool // by MaxUnauthenticated
	authenticated atomic.Bool
	// ticket counts the connection against MaxUnauthenticated until it
	// logs in.
	ticket      *netlimit.Ticket
	monitorStop atomic.Bool // the close monitor is to stop reading
	byeSent     bool
	// linger: the server says BYE to a client that may still be sending
	// (close).
	linger bool
}

type phase int

const (
	phaseWait    phase = iota // waiting for a command
	phaseCommand              // reading or running a command
	phaseIdle                 // in IDLE
)

// Sentinels a read returns when a wait was interrupted.
var (
	errStopping = errors.New("imapd: server shutting down")
	errGone     = errors.New("imapd: account deleted")
	errEvicted  = errors.New("imapd: too many connections not logged in")
)

func (s *Server) newConn(c net.Conn) *conn {
	id := s.connID()
	cn := &conn{
		srv:           s,
		id:            id,
		log:           s.log.With("conn", id, "remote", c.RemoteAddr().String()),
		raw:           c,
		transport:     c,
		loginDeadline: time.Now().Add(s.opts.LoginTimeout),
		sessCancel:    func() {},
	}
	cn.out.c = cn
	cn.setTransport(c)
	cn.ticket = s.preauth.Admit(cn.evict)
	return cn
}

// evict is MaxUnauthenticated's request to end a connection that has not
// logged in: like Shutdown's, at the next command boundary.
func (c *conn) evict() {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.evicted.Store(true)
	c.raw.SetReadDeadline(time.Now())
}

func (c *conn) setTransport(t net.Conn) {
	c.transport = t
	c.in = newInbuf(t)
	c.in.arm, c.in.timeout = c.arm, c.onTimeout
	c.in.maxDiscard = c.srv.drainLimit()
	c.out.w = t
}

// setPhase changes what the read deadline bounds.
func (c *conn) setPhase(p phase) {
	c.dlMu.Lock()
	c.phase = p
	c.dlMu.Unlock()
}

// arm sets the read deadline before a read of the transport.
func (c *conn) arm() {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	now := time.Now()
	c.armedAt = now
	var d time.Time
	switch {
	case c.gone.Load() || (c.stopping.Load() || c.evicted.Load()) && c.phase != phaseCommand || c.monitorStop.Load():
		d = now
	case !c.authenticated.Load():
		d = c.loginDeadline
		if c.phase == phaseCommand {
			d = minTime(d, now.Add(c.srv.opts.CommandTimeout))
		}
	case c.phase == phaseCommand:
		d = now.Add(c.srv.opts.CommandTimeout)
	default:
		d = now.Add(c.srv.opts.IdleTimeout)
	}
	c.raw.SetReadDeadline(d)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// onTimeout decides what a read deadline meant: an interruption to obey, a
// spurious one to read on after, or a real timeout.
func (c *conn) onTimeout(err error) error {
	c.dlMu.Lock()
	ph, armed := c.phase, c.armedAt
	c.dlMu.Unlock()
	switch {
	case c.monitorStop.Load():
		return err
	case c.gone.Load():
		return errGone
	case c.stopping.Load() && ph != phaseCommand:
		return errStopping
	case c.evicted.Load() && ph != phaseCommand:
		return errEvicted
	case (c.stopping.Load() || c.evicted.Load()) && time.Since(armed) < c.srv.opts.CommandTimeout:
		// A command in progress may finish, within its own deadline.
		return nil
	}
	return err
}

// watchClose notices, while a long command runs, that the client went
// away, and cancels the command's context then (a closed connection stops
// its command's work). It reads ahead into the input buffer (beneath the
// decompressor, whose stream a read deadline must not break); what it reads
// is the next commands, kept for later. It goes on reading while the client
// sends more (pipelined commands must not hide a close that follows them),
// until the buffer is full (then the client has sent 64 KiB ahead and the
// command runs to its end, still bounded). The returned stop ends the watch
// and must be called before the connection is read again.
func (c *conn) watchClose(cancel func()) (stop func()) {
	in := c.in
	if c.rawIn != nil {
		in = c.rawIn
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			err := in.fill()
			switch {
			case err == nil:
				continue
			case errors.Is(err, errInbufFull):
				return
			case isTimeout(err):
				if c.monitorStop.Load() {
					return
				}
				continue // command_timeout passed without input: still there
			}
			cancel()
			return
		}
	}()
	return func() {
		c.dlMu.Lock()
		c.monitorStop.Store(true)
		c.raw.SetReadDeadline(time.Now())
		c.dlMu.Unlock()
		<-done
		c.monitorStop.Store(false)
	}
}

// Interrupt implements lifecycle.Conn: Shutdown's request. The connection
// says BYE when it next waits for a command, or at once if it waits now.
func (c *conn) Interrupt() {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.stopping.Store(true)
	c.raw.SetReadDeadline(time.Now())
}

// accountGone is the account-deletion watch's request (backend.User.Gone).
func (c *conn) accountGone() {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.gone.Store(true)
	c.raw.SetReadDeadline(time.Now())
}

// A lingering close (close) reads and drops at most this much, this long.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 4 << 20
)

// close ends the connection at the end of its session. After a BYE of the
// server's own in the middle of a command (too many bad commands, a line or
// literal too large) the client may still be sending: a socket closed with
// input unread answers with a reset, and the client's TCP then drops the
// BYE it has not read yet. So the sending side is shut first, and what the
// client still sends is read and dropped until it closes too, for at most
// lingerTime and lingerBytes.
func (c *conn) close() {
	if c.linger {
		if cw := closeWriter(c.raw); cw != nil && cw.CloseWrite() == nil {
			c.raw.SetReadDeadline(time.Now().Add(lingerTime))
			io.CopyN(io.Discard, c.raw, lingerBytes)
		}
	}
	c.raw.Close()
}

// closeWriter finds the TCP connection beneath c's wrappers (netlimit's and
// others that expose it by NetConn, as tls.Conn does).
func closeWriter(c net.Conn) interface{ CloseWrite() error } {
	for {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			return cw
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
}

// Close implements lifecycle.Conn: Shutdown's last resort.
func (c *conn) Close() error { return c.raw.Close() }

// shrinkInput gives back the large input buffers of a bulk transfer (an
// APPEND) once they are drained.
func (c *conn) shrinkInput() {
	c.in.shrink()
	if c.rawIn != nil {
		c.rawIn.shrink()
	}
}

// bye sends "* BYE text" and flushes; the connection then ends.
func (c *conn) bye(text string) {
	if c.byeSent {
		return
	}
	c.byeSent = true
	// In the middle of a command (a line or literal too long, too many bad
	// commands) or with commands read ahead, more input may be coming.
	c.linger = c.out.err == nil && (c.phase == phaseCommand || len(c.in.buffered()) > 0)
	c.out.grab()
	c.out.b = append(c.out.b, "* BYE "...)
	c.out.b = append(c.out.b, text...)
	c.out.b = append(c.out.b, "\r\n"...)
	c.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.out.flush()
}

// handshake runs the server side of TLS, bounded by HandshakeTimeout. early
// holds bytes read past a STARTTLS line (the start of an eager client's
// ClientHello); plaintext sent after STARTTLS is never run as a command
// (it can only be part of the handshake, which then fails).
func (c *conn) handshake(early []byte) error {
	var under net.Conn = c.raw
	if len(early) > 0 {
		under = &prefixConn{Conn: c.raw, r: io.MultiReader(bytes.NewReader(early), c.raw)}
	}
	tc := tls.Server(under, c.srv.opts.TLSConfig)
	c.raw.SetDeadline(time.Now().Add(c.srv.opts.HandshakeTimeout))
	if c.stopping.Load() {
		return errors.New("server shutting down")
	}
	if err := tc.Handshake(); err != nil {
		return err
	}
	c.raw.SetDeadline(time.Time{})
	c.isTLS = true
	c.setTransport(tc)
	st := tc.ConnectionState()
	c.log.Debug("TLS established", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return nil
}

// startCompression puts deflate (RFC 4978, RFC 1951 raw) on both
// directions. Bytes already buffered belong to the compressed stream.
func (c *conn) startCompression() {
	c.compressed = true
	c.rawIn = c.in
	c.in = newInbuf(newInflater(c.rawIn))
	c.in.maxDiscard = c.srv.drainLimit()
	fw, _ := flate.NewWriter(c.transport, flate.BestSpeed)
	c.out.fw = fw
	c.out.w = fw
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// prefixConn reads some bytes before those of its connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }
