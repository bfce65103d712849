package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/netlimit"
)

// state is a POP3 session state (RFC 1939 §3). The UPDATE state is the
// QUIT command of the TRANSACTION state and has no value of its own.
type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// message is one entry of the session's fixed message list (RFC 1939 §5:
// message numbers never change during a session).
type message struct {
	backend.Message
	size      int64 // octets RETR sends, CRLF lines, before byte-stuffing
	deleted   bool  // DELE, applied at QUIT
	retrieved bool  // RETR, sets \Seen at QUIT
}

var (
	errLineTooLong = errors.New("line too long")
	// errCommandTimeout: a line was begun and not finished within
	// Options.CommandTimeout.
	errCommandTimeout = errors.New("command not completed in time")
	// errFatal ends a session after a response that already says why.
	errFatal = errors.New("session ended")
)

// session is one POP3 connection.
type session struct {
	srv  *Server
	opts *Options
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc

	raw         net.Conn // as accepted: deadlines are set here
	conn        net.Conn // what br/bw use: raw with write deadlines, maybe under TLS
	br          *bufio.Reader
	bw          *bufio.Writer
	implicitTLS bool
	isTLS       bool
	remoteIP    string

	state    state
	userName string // from USER, waiting for PASS
	failures int    // failed logins on this connection

	// ticket counts the session against MaxUnauthenticated until it logs
	// in; evicted is set when the cap evicts it.
	ticket  *netlimit.Ticket
	evicted atomic.Bool

	user    *backend.User
	release func() // the maildrop lock
	// gone is set when the account is deleted during the session
	// (backend.User.Gone); stopGone ends the goroutine that watches.
	gone     atomic.Bool
	stopGone chan struct{}
	mbox     backend.Mailbox
	msgs     []message

	lineBuf []byte
	copyBuf []byte
}

func (s *Server) newSession(c net.Conn, implicitTLS bool) *session {
	id := s.connID()
	ctx, stop := context.WithCancel(context.Background())
	conn := &writeDeadlineConn{Conn: c, timeout: s.opts.IdleTimeout}
	sess := &session{
		srv:  s,
		opts: &s.opts,
		log:  s.log.With("conn", id, "remote", c.RemoteAddr().String()),
		ctx:  ctx,
		stop: stop,
		raw:  c,
		conn: conn,
		br:   bufio.NewReaderSize(conn, 4096),
		// Small until login: a flood of connections that never log in
		// must cost little memory each. login gives it 64 KiB for RETR.
		bw:          bufio.NewWriterSize(conn, 512),
		implicitTLS: implicitTLS,
		remoteIP:    netlimit.RemoteIP(c),
	}
	sess.ticket = s.preauth.Admit(sess.evict)
	return sess
}

// evict ends a session that has not logged in, to make room under
// MaxUnauthenticated: it is woken like an idle one at Shutdown and says
// why before it closes (readFailed).
func (s *session) evict() {
	s.evicted.Store(true)
	s.raw.SetReadDeadline(time.Now())
}

// interrupted reports whether the session is to end at its next read
// (Shutdown or eviction): whoever sets a read deadline must then set it
// to now instead, or the interrupt would be lost.
func (s *session) interrupted() bool { return s.srv.conns.Closing() || s.evicted.Load() }

// writeDeadlineConn gives every write the idle timeout, so a client that
// stops reading (in the middle of a RETR, say) cannot hold a session forever.
type writeDeadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *writeDeadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// Interrupt wakes a session blocked reading a command, for Shutdown. A
// command in progress finishes first; the next read then fails.
func (s *session) Interrupt() { s.raw.SetReadDeadline(time.Now()) }

// Close is Shutdown's last resort when its context ends: it closes the
// transport, and the session ends on the failed I/O.
func (s *session) Close() error { return s.raw.Close() }

func (s *session) run() {
	defer s.end()
	s.log.Debug("connected", "tls", s.implicitTLS)
	if s.implicitTLS {
		if err := s.startTLS(); err != nil {
			s.log.Info("TLS handshake failed", "err", err)
			return
		}
	}
	s.ok("%s Roost POP3 server ready", s.opts.Hostname)
	if s.bw.Flush() != nil {
		return
	}
	for {
		line, err := s.readCommand()
		switch {
		case errors.Is(err, errLineTooLong):
			s.fail("line too long (at most %d octets with CRLF, RFC 2449 §4)", s.opts.MaxLineLength)
		case s.gone.Load():
			s.accountGone()
			return
		case err != nil:
			s.readFailed(err)
			return
		case s.srv.conns.Closing():
			// Pipelined commands still buffered do not run after Shutdown.
			s.shutdownNotice()
			return
		default:
			if err := s.dispatch(line); err != nil {
				s.bw.Flush()
				return
			}
		}
		// RFC 2449 §6.6 PIPELINING: answer a batch of commands in one write;
		// flush once no complete command is waiting.
		if !s.commandBuffered() {
			if err := s.bw.Flush(); err != nil {
				s.log.Info("write failed", "err", err)
				return
			}
		}
	}
}

func (s *session) commandBuffered() bool {
	n := s.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := s.br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// readFailed ends a session whose command could not be read.
func (s *session) readFailed(err error) {
	var ne net.Error
	switch {
	case s.srv.conns.Closing():
		s.shutdownNotice()
	case s.evicted.Load():
		s.log.Info("too many connections not logged in; closing the oldest, this one", "max", s.opts.MaxUnauthenticated)
		s.fail("[SYS/TEMP] too many connections waiting to log in, closing connection")
		s.bw.Flush()
	case errors.Is(err, errCommandTimeout):
		s.log.Info("command not completed in time; closing", "timeout", s.opts.CommandTimeout, "state", s.stateName())
		s.fail("command not completed within %s, closing connection", s.opts.CommandTimeout)
		s.bw.Flush()
	case errors.As(err, &ne) && ne.Timeout():
		// RFC 1939 §3: the autologout timer closes the connection without
		// a response and without entering the UPDATE state.
		s.log.Info("idle timeout; closing", "state", s.stateName())
	case errors.Is(err, io.EOF):
		s.log.Debug("client closed the connection", "state", s.stateName())
	default:
		s.log.Info("read failed", "err", err, "state", s.stateName())
	}
}

// accountGone ends the session of an account that has been deleted: its
// mail is gone, every later command would fail. Nothing is expunged.
func (s *session) accountGone() {
	s.log.Info("account deleted; closing the session")
	s.fail("[SYS/PERM] this account has been deleted")
	s.bw.Flush()
}

func (s *session) shutdownNotice() {
	s.log.Info("closing for server shutdown", "state", s.stateName())
	s.fail("[SYS/TEMP] server shutting down, try again later")
	s.bw.Flush()
}

func (s *session) stateName() string {
	if s.state == stateTransaction {
		return "transaction"
	}
	return "authorization"
}

// end releases what the session holds. A session that ends other than by
// QUIT never enters the UPDATE state: nothing is deleted (RFC 1939 §6).
func (s *session) end() {
	s.ticket.Done()
	if s.release != nil {
		s.release()
		s.release = nil
	}
	if s.stopGone != nil {
		close(s.stopGone)
	}
	if s.user != nil {
		s.user.Release()
	}
	s.stop()
	s.conn.Close()
	s.log.Debug("disconnected")
}

// readCommand reads one command line with the idle timeout.
func (s *session) readCommand() (string, error) {
	return s.readTimed(s.opts.MaxLineLength)
}

// readTimed reads a line of at most max octets: the idle timeout until its
// first byte, then CommandTimeout for the rest, so that a line begun and
// never finished (slowloris) costs a connection slot for CommandTimeout
// only.
func (s *session) readTimed(max int) (string, error) {
	if err := s.armRead(); err != nil {
		return "", err
	}
	if _, err := s.br.Peek(1); err != nil {
		return "", err
	}
	if !s.commandBuffered() {
		// Begun, not complete: the rest of the line must follow soon.
		if err := s.raw.SetReadDeadline(time.Now().Add(s.opts.CommandTimeout)); err != nil {
			return "", err
		}
		if s.interrupted() {
			s.raw.SetReadDeadline(time.Now()) // Shutdown's or eviction's interrupt may have come first
		}
	}
	line, err := s.readLine(max)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !s.interrupted() {
		return "", errCommandTimeout
	}
	return line, err
}

// armRead starts the autologout timer for the next read.
func (s *session) armRead() error {
	if err := s.raw.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout)); err != nil {
		return err
	}
	if s.gone.Load() || s.interrupted() {
		// Deletion, shutdown or eviction may have set its deadline
		// before ours: look again.
		s.raw.SetReadDeadline(time.Now())
	}
	return nil
}

// readLine reads a line of at most max octets, line break included, and
// returns it without the line break. A longer line is read to its end and
// discarded, never buffered whole, and errLineTooLong is returned.
func (s *session) readLine(max int) (string, error) {
	s.lineBuf = s.lineBuf[:0]
	tooLong := false
	for {
		frag, err := s.br.ReadSlice('\n')
		if !tooLong {
			if len(s.lineBuf)+len(frag) > max {
				tooLong = true
				s.lineBuf = s.lineBuf[:0]
			} else {
				s.lineBuf = append(s.lineBuf, frag...)
			}
		}
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return "", err
		}
	}
	if tooLong {
		return "", errLineTooLong
	}
	line := bytes.TrimSuffix(s.lineBuf, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return string(line), nil
}

// ok and fail write a status line (RFC 1939 §3). Text never echoes client
// input, so it cannot carry a line break.
func (s *session) ok(format string, args ...any) {
	if format == "" {
		s.bw.WriteString("+OK\r\n")
		return
	}
	s.bw.WriteString("+OK ")
	fmt.Fprintf(s.bw, format, args...)
	s.bw.WriteString("\r\n")
}

func (s *session) fail(format string, args ...any) {
	s.bw.WriteString("-ERR ")
	fmt.Fprintf(s.bw, format, args...)
	s.bw.WriteString("\r\n")
}

func (s *session) plaintextAllowed() bool {
	return s.opts.Plaintext.Allowed(s.isTLS, s.raw.RemoteAddr())
}

func (s *session) stlsAvailable() bool { return s.opts.TLSConfig != nil && !s.isTLS }

// dispatch runs one command. A non-nil error ends the session.
func (s *session) dispatch(line string) error {
	name, arg, _ := strings.Cut(line, " ")
	name = strings.ToUpper(name)
	if name != "PASS" && name != "AUTH" {
		s.log.Debug("command", "line", line)
	} else {
		s.log.Debug("command", "name", name)
	}
	if name == "" {
		s.fail("empty command")
		return nil
	}
	switch name {
	case "CAPA":
		s.capa()
		return nil
	case "QUIT":
		return s.quit()
	}
	if s.state == stateAuthorization {
		switch name {
		case "USER":
			s.cmdUser(arg)
			return nil
		case "PASS":
			return s.cmdPass(arg)
		case "AUTH":
			return s.cmdAuth(arg)
		case "STLS":
			return s.cmdSTLS(arg)
		case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
			s.fail("log in first (USER/PASS or AUTH)")
			return nil
		}
	} else {
		args := strings.Fields(arg)
		switch name {
		case "STAT":
			s.cmdStat(args)
			return nil
		case "LIST":
			s.cmdList(args)
			return nil
		case "UIDL":
			s.cmdUIDL(args)
			return nil
		case "RETR":
			return s.cmdRetr(args)
		case "TOP":
			return s.cmdTop(args)
		case "DELE":
			s.cmdDele(args)
			return nil
		case "NOOP":
			s.ok("")
			return nil
		case "RSET":
			s.cmdRset(args)
			return nil
		case "USER", "PASS", "AUTH", "STLS", "APOP":
			s.fail("command not valid in the TRANSACTION state")
			return nil
		}
	}
	s.fail("unknown command")
	return nil
}

// capa answers CAPA (RFC 2449 §5). Capabilities of the AUTHORIZATION state
// are listed in both states (§5); USER and SASL PLAIN only where a password
// would be accepted on this connection, so clients go for STLS first.
func (s *session) capa() {
	s.ok("capability list follows")
	caps := []string{"TOP", "UIDL"}
	if s.plaintextAllowed() {
		caps = append(caps, "USER", "SASL PLAIN")
	}
	caps = append(caps, "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING")
	if s.stlsAvailable() {
		caps = append(caps, "STLS")
	}
	caps = append(caps, "EXPIRE NEVER", "IMPLEMENTATION Roost")
	for _, c := range caps {
		s.bw.WriteString(c)
		s.bw.WriteString("\r\n")
	}
	s.bw.WriteString(".\r\n")
}

func (s *session) refusePlaintext() {
	if s.stlsAvailable() {
		s.fail("[SYS/PERM] plaintext authentication disallowed on non-TLS connections; use STLS first")
	} else {
		s.fail("[SYS/PERM] plaintext authentication disallowed on non-TLS connections; use the TLS port")
	}
}

// cmdUser: RFC 1939 §7 USER. The name is not checked yet, so that a
// client cannot learn which accounts exist.
func (s *session) cmdUser(arg string) {
	if !s.plaintextAllowed() {
		s.refusePlaintext()
		return
	}
	if arg = strings.TrimSpace(arg); arg == "" {
		s.fail("USER needs a name")
		return
	}
	s.userName = arg
	s.ok("send PASS")
}

// cmdPass: RFC 1939 §7 PASS. The whole rest of the line is the password,
// spaces included (§7).
func (s *session) cmdPass(arg string) error {
	if !s.plaintextAllowed() {
		s.refusePlaintext()
		return nil
	}
	if s.userName == "" {
		s.fail("send USER first")
		return nil
	}
	name := s.userName
	s.userName = ""
	return s.login(name, arg)
}

// cmdAuth: RFC 5034 AUTH, mechanism PLAIN (RFC 4616) only. Without an
// argument it lists the mechanisms, as RFC 1734 clients expect.
func (s *session) cmdAuth(arg string) error {
	mech, initial, hasInitial := strings.Cut(strings.TrimSpace(arg), " ")
	if mech == "" {
		s.ok("SASL mechanisms follow")
		if s.plaintextAllowed() {
			s.bw.WriteString("PLAIN\r\n")
		}
		s.bw.WriteString(".\r\n")
		return nil
	}
	if !strings.EqualFold(mech, "PLAIN") {
		s.fail("unsupported SASL mechanism (PLAIN is supported)")
		return nil
	}
	if !s.plaintextAllowed() {
		s.refusePlaintext()
		return nil
	}
	if !hasInitial {
		// RFC 5034 §4: an empty challenge, then the client's response.
		s.bw.WriteString("+ \r\n")
		if err := s.bw.Flush(); err != nil {
			return err
		}
		line, err := s.readTimed(max(s.opts.MaxLineLength, minSASLLine))
		if errors.Is(err, errLineTooLong) {
			s.fail("SASL response too long")
			return nil
		}
		if err != nil {
			s.readFailed(err)
			return errFatal
		}
		if line == "*" {
			s.fail("authentication cancelled")
			return nil
		}
		initial = line
	}
	var resp []byte
	if initial != "=" { // RFC 5034 §4: "=" is an empty initial response
		var err error
		if resp, err = base64.StdEncoding.DecodeString(initial); err != nil {
			s.fail("invalid base64 in SASL response")
			return nil
		}
	}
	// RFC 4616 §2: [authzid] NUL authcid NUL passwd
	parts := strings.Split(string(resp), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		s.fail("malformed PLAIN response")
		return nil
	}
	authz, authc, pass := parts[0], parts[1], parts[2]
	if authz != "" && !strings.EqualFold(authz, authc) {
		// No proxy authorization: count it as a failed login.
		return s.loginFailed(authc, backend.ErrAuthFailed)
	}
	return s.login(authc, pass)
}

// login checks credentials, takes the maildrop lock and fixes the message
// list, entering the TRANSACTION state (RFC 1939 §4). Its work (a password
// hash, perhaps after waiting for a hashing slot; reading a big maildrop)
// stops when the client hangs up meanwhile (watchPeer).
func (s *session) login(name, pass string) error {
	stop := s.watchPeer()
	u, err := s.opts.Backend.Login(s.ctx, name, pass, s.remoteIP)
	if s.ctx.Err() != nil {
		stop()
		if err == nil {
			u.Release()
		}
		return s.hungUp()
	}
	if err != nil {
		stop()
		return s.loginFailed(name, err)
	}
	defer stop()
	log := s.log.With("user", u.Address())
	release, err := u.LockMaildrop()
	if err != nil {
		u.Release()
	}
	if errors.Is(err, backend.ErrInUse) {
		log.Info("maildrop in use by another session")
		s.fail("[IN-USE] maildrop already in use by another POP3 session")
		return nil
	}
	if err != nil {
		log.Error("lock maildrop", "err", err)
		s.fail("[SYS/TEMP] cannot lock maildrop, try again later")
		return nil
	}
	mbox, msgs, err := loadMaildrop(s.ctx, u)
	if err != nil && s.ctx.Err() != nil {
		release()
		u.Release()
		return s.hungUp()
	}
	if err != nil {
		release()
		u.Release()
		log.Error("open maildrop", "err", err)
		s.fail("[SYS/TEMP] cannot open maildrop, try again later")
		return nil
	}
	s.user, s.release, s.mbox, s.msgs = u, release, mbox, msgs
	s.state = stateTransaction
	s.stopGone = make(chan struct{})
	go func() {
		select {
		case <-u.Gone():
			s.gone.Store(true)
			s.Interrupt() // wakes the command read
		case <-s.stopGone:
		}
	}()
	s.ticket.Done() // if it was evicted meanwhile, the next read ends it
	if err := s.bw.Flush(); err != nil {
		return err
	}
	s.bw = bufio.NewWriterSize(s.conn, 64<<10)
	s.log = log
	n, size := s.stat()
	log.Info("logged in", "tls", s.isTLS, "messages", n, "octets", size)
	s.ok("maildrop has %d messages (%d octets)", n, size)
	return nil
}

// hungUp answers a login that was not carried out because the client
// closed its side of the connection meanwhile (watchPeer). It may only
// have half-closed it and still read: it is told so, and the session ends.
func (s *session) hungUp() error {
	s.log.Info("client closed the connection during login; not checked")
	s.fail("[SYS/TEMP] connection closed by the client before the login was checked")
	return errFatal
}

func (s *session) loginFailed(name string, err error) error {
	switch {
	case errors.Is(err, backend.ErrAuthFailed), errors.Is(err, backend.ErrAuthLocked):
		s.failures++
		s.log.Info("login failed", "user", name, "err", err, "failures", s.failures)
		s.authDelay()
		if s.failures >= s.opts.MaxFailedLogins {
			s.fail("[AUTH] authentication failed; too many failures, closing connection")
			return errFatal
		}
		if errors.Is(err, backend.ErrAuthLocked) {
			s.fail("[SYS/TEMP] too many failed logins, try again later")
		} else {
			s.fail("[AUTH] authentication failed")
		}
		return nil
	default:
		s.log.Error("login", "user", name, "err", err)
		s.fail("[SYS/TEMP] internal error, try again later")
		return nil
	}
}

// authDelay slows down password guessing; Shutdown cuts it short, and so
// does the client hanging up (watchPeer).
func (s *session) authDelay() {
	if s.opts.AuthFailureDelay <= 0 {
		return
	}
	defer s.watchPeer()()
	s.srv.conns.Pause(s.ctx, s.opts.AuthFailureDelay)
}

// watchPeer watches the connection while the session works on a command
// without reading (a login): if the client hangs up, it cancels the
// session's context, so that the work stops instead of being done for
// nobody. The returned function ends the watch; call it before reading
// again. When the client has already sent more (pipelining), there is
// nothing to watch: the session will read it next.
func (s *session) watchPeer() (stop func()) {
	if s.br.Buffered() > 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The session goroutine does not touch br until stop returns.
		if _, err := s.br.Peek(1); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				s.stop() // EOF or reset: the client is gone
			}
		}
	}()
	return func() {
		s.raw.SetReadDeadline(time.Now()) // wakes the Peek; readCommand re-arms it
		<-done
	}
}

// loadMaildrop reads the INBOX message list with the octet count of each
// message as RETR sends it. It gives up when ctx ends.
func loadMaildrop(ctx context.Context, u *backend.User) (backend.Mailbox, []message, error) {
	mbox, err := u.Mailbox(backend.Inbox)
	if err != nil {
		return mbox, nil, fmt.Errorf("INBOX: %w", err)
	}
	recs := make([]backend.Message, 0, mbox.Messages)
	err = u.Messages(mbox.ID, 1, math.MaxUint32, func(m backend.Message) error {
		recs = append(recs, m)
		return nil
	})
	if err != nil {
		return mbox, nil, fmt.Errorf("INBOX messages: %w", err)
	}
	msgs := make([]message, 0, len(recs))
	for i, m := range recs {
		if i%1024 == 0 && ctx.Err() != nil {
			return mbox, nil, ctx.Err()
		}
		p, err := u.Parsed(&m)
		if errors.Is(err, backend.ErrNotFound) {
			continue // expunged meanwhile (IMAP)
		}
		if err != nil {
			return mbox, nil, fmt.Errorf("INBOX message %d: %w", m.UID, err)
		}
		msgs = append(msgs, message{Message: m, size: p.CRLFSize(m.Size)})
	}
	return mbox, msgs, nil
}

func (s *session) stat() (n int, size int64) {
	for i := range s.msgs {
		if !s.msgs[i].deleted {
			n++
			size += s.msgs[i].size
		}
	}
	return n, size
}

// cmdSTLS: RFC 2595 §4.
func (s *session) cmdSTLS(arg string) error {
	switch {
	case s.opts.TLSConfig == nil:
		s.fail("STLS not available")
		return nil
	case s.isTLS:
		s.fail("TLS already active")
		return nil
	case arg != "":
		s.fail("STLS takes no argument")
		return nil
	case s.br.Buffered() > 0:
		// Commands pipelined behind STLS would cross into TLS from plain
		// text (the CVE-2011-0411 injection): refuse the whole lot.
		s.fail("commands after STLS must wait for TLS; closing connection")
		return errFatal
	}
	s.ok("begin TLS negotiation")
	if err := s.bw.Flush(); err != nil {
		return err
	}
	if err := s.startTLS(); err != nil {
		s.log.Info("STLS handshake failed", "err", err)
		return errFatal
	}
	// RFC 2595 §4: the client must forget what it knew, the server too.
	s.userName = ""
	return nil
}

// startTLS runs the server side of a TLS handshake on the connection,
// bounded by HandshakeTimeout.
func (s *session) startTLS() error {
	tc := tls.Server(s.conn, s.opts.TLSConfig)
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.HandshakeTimeout)
	defer cancel()
	// Bound reads too: Shutdown's interrupt must reach the handshake.
	s.raw.SetReadDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	if s.interrupted() {
		return errors.New("server shutting down, or too many connections not logged in")
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	s.conn = tc
	s.isTLS = true
	s.br.Reset(tc)
	s.bw.Reset(tc)
	st := tc.ConnectionState()
	s.log.Debug("TLS established", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return nil
}

// msgArg parses a message-number argument (RFC 1939 §3) and returns the
// message, or writes -ERR and returns nil. Deleted messages may not be
// referred to (§5).
func (s *session) msgArg(arg string) *message {
	n, err := strconv.ParseUint(arg, 10, 32)
	if err != nil || n == 0 {
		s.fail("invalid message number")
		return nil
	}
	if n > uint64(len(s.msgs)) {
		s.fail("no such message, only %d messages in maildrop", len(s.msgs))
		return nil
	}
	m := &s.msgs[n-1]
	if m.deleted {
		s.fail("message %d already deleted", n)
		return nil
	}
	return m
}

func (s *session) argCount(args []string, lo, hi int) bool {
	if len(args) < lo || len(args) > hi {
		s.fail("wrong number of arguments")
		return false
	}
	return true
}

// cmdStat: RFC 1939 §5 STAT.
func (s *session) cmdStat(args []string) {
	if s.argCount(args, 0, 0) {
		n, size := s.stat()
		s.ok("%d %d", n, size)
	}
}

// cmdList: RFC 1939 §5 LIST [msg].
func (s *session) cmdList(args []string) {
	if !s.argCount(args, 0, 1) {
		return
	}
	if len(args) == 1 {
		if m := s.msgArg(args[0]); m != nil {
			s.ok("%s %d", args[0], m.size)
		}
		return
	}
	n, size := s.stat()
	s.ok("%d messages (%d octets)", n, size)
	var b []byte
	for i := range s.msgs {
		if m := &s.msgs[i]; !m.deleted {
			b = strconv.AppendInt(b[:0], int64(i+1), 10)
			b = append(b, ' ')
			b = strconv.AppendInt(b, m.size, 10)
			b = append(b, '\r', '\n')
			s.bw.Write(b)
		}
	}
	s.bw.WriteString(".\r\n")
}

// uidl is the unique-id of a message (RFC 1939 §7): Dovecot's default
// pop3_uidl_format "%08Xu%08Xv", so "leave on server" state survives a
// migration from Dovecot that keeps UIDs.
func (s *session) uidl(m *message) string {
	return fmt.Sprintf("%08x%08x", m.UID, s.mbox.UIDValidity)
}

// cmdUIDL: RFC 1939 §7 UIDL [msg].
func (s *session) cmdUIDL(args []string) {
	if !s.argCount(args, 0, 1) {
		return
	}
	if len(args) == 1 {
		if m := s.msgArg(args[0]); m != nil {
			s.ok("%s %s", args[0], s.uidl(m))
		}
		return
	}
	s.ok("unique-id listing follows")
	for i := range s.msgs {
		if m := &s.msgs[i]; !m.deleted {
			fmt.Fprintf(s.bw, "%d %s\r\n", i+1, s.uidl(m))
		}
	}
	s.bw.WriteString(".\r\n")
}

// cmdDele: RFC 1939 §5 DELE: only marks; QUIT deletes.
func (s *session) cmdDele(args []string) {
	if !s.argCount(args, 1, 1) {
		return
	}
	if m := s.msgArg(args[0]); m != nil {
		m.deleted = true
		s.ok("message %s deleted", args[0])
	}
}

// cmdRset: RFC 1939 §5 RSET.
func (s *session) cmdRset(args []string) {
	if !s.argCount(args, 0, 0) {
		return
	}
	for i := range s.msgs {
		s.msgs[i].deleted = false
	}
	n, size := s.stat()
	s.ok("maildrop has %d messages (%d octets)", n, size)
}

// cmdRetr: RFC 1939 §5 RETR.
func (s *session) cmdRetr(args []string) error {
	if !s.argCount(args, 1, 1) {
		return nil
	}
	m := s.msgArg(args[0])
	if m == nil {
		return nil
	}
	if err := s.sendMessage(m, -1, fmt.Sprintf("%d octets", m.size)); err != nil {
		return err
	}
	m.retrieved = true
	return nil
}

// cmdTop: RFC 1939 §7 TOP msg n: the header, the blank line and n lines of
// the body. It does not count as retrieval (no \Seen).
func (s *session) cmdTop(args []string) error {
	if !s.argCount(args, 2, 2) {
		return nil
	}
	m := s.msgArg(args[0])
	if m == nil {
		return nil
	}
	lines, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil || lines < 0 {
		s.fail("invalid line count")
		return nil
	}
	return s.sendMessage(m, lines, "top of message follows")
}

// sendMessage answers RETR (lines < 0) or TOP: +OK, the message streamed
// from the store chunk by chunk with CRLF lines and byte-stuffing (RFC 1939
// §3), and the terminating ".". A read error after +OK has been sent
// cannot be reported in the protocol: it ends the session.
func (s *session) sendMessage(m *message, lines int64, okText string) error {
	body := s.user.OpenBody(&m.Message)
	bodyStart := m.Size
	if lines >= 0 {
		p, err := s.user.Parsed(&m.Message)
		if err != nil {
			s.messageGone(m, err)
			return nil
		}
		bodyStart = min(p.Root.BodyStart, m.Size)
	}
	if s.copyBuf == nil {
		s.copyBuf = make([]byte, 64<<10)
	}
	// Read the first chunk before +OK, so that a message expunged by
	// another session meanwhile still gets a clean -ERR.
	if m.Size > 0 {
		if _, err := body.ReadAt(s.copyBuf[:1], 0); err != nil {
			s.messageGone(m, err)
			return nil
		}
	}
	s.ok("%s", okText)
	dw := dotWriter{w: s.bw, bol: true, clean: m.size == m.Size}
	if err := copyLines(&dw, io.NewSectionReader(body, 0, bodyStart), -1, s.copyBuf); err != nil {
		return s.streamFailed(m, err)
	}
	if rest := m.Size - bodyStart; rest > 0 {
		if err := copyLines(&dw, io.NewSectionReader(body, bodyStart, rest), lines, s.copyBuf); err != nil {
			return s.streamFailed(m, err)
		}
	}
	if err := dw.close(); err != nil {
		return s.streamFailed(m, err)
	}
	if lines < 0 && dw.n != m.size {
		// LIST promised m.size octets; a mismatch is a bug in the size
		// computation (backend.Parsed.CRLFSize), worth knowing about.
		s.log.Error("RETR sent a different octet count than LIST announced", "uid", m.UID, "announced", m.size, "sent", dw.n)
	}
	return nil
}

func (s *session) messageGone(m *message, err error) {
	s.log.Warn("message unreadable", "uid", m.UID, "err", err)
	if errors.Is(err, backend.ErrNotFound) {
		s.fail("message was removed by another session")
	} else {
		s.fail("[SYS/TEMP] cannot read message, try again later")
	}
}

func (s *session) streamFailed(m *message, err error) error {
	s.log.Warn("sending message failed", "uid", m.UID, "err", err)
	return errFatal
}

// quit: RFC 1939 §4 QUIT in the AUTHORIZATION state, §6 the UPDATE state
// in the TRANSACTION state: the messages marked deleted are removed in one
// store transaction (which wakes IMAP sessions on INBOX), then retrieved
// messages get \Seen unless KeepFlags.
func (s *session) quit() error {
	if s.state != stateTransaction {
		s.ok("Roost POP3 server signing off")
		return errFatal
	}
	var del, seen []uint32
	for i := range s.msgs {
		m := &s.msgs[i]
		switch {
		case m.deleted:
			del = append(del, m.UID)
		case m.retrieved && !s.opts.KeepFlags && !m.Has(backend.FlagSeen):
			seen = append(seen, m.UID)
		}
	}
	left, _ := s.stat()
	if len(del) > 0 {
		gone, err := s.user.Expunge(s.mbox.ID, del, false)
		if err != nil {
			s.log.Error("UPDATE: expunge failed", "err", err, "uids", len(del))
			s.fail("[SYS/TEMP] some deleted messages not removed")
			return errFatal
		}
		if len(gone) < len(del) {
			s.log.Info("UPDATE: some messages were already gone", "deleted", len(gone), "marked", len(del))
		}
	}
	if len(seen) > 0 {
		if _, _, err := s.user.StoreFlags(s.mbox.ID, seen, backend.FlagsAdd, []string{backend.FlagSeen}, 0); err != nil {
			// The deletions are done; a lost \Seen is not worth an -ERR.
			s.log.Warn("UPDATE: setting \\Seen failed", "err", err)
		}
	}
	s.log.Info("logged out", "deleted", len(del), "seen", len(seen), "left", left)
	// Release the lock before answering: a client that logs in again
	// right after QUIT must not get [IN-USE].
	s.release()
	s.release = nil
	if left == 0 {
		s.ok("Roost POP3 server signing off (maildrop empty)")
	} else {
		s.ok("Roost POP3 server signing off (%d messages left)", left)
	}
	return errFatal
}
