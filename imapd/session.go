package imapd

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/netlimit"
)

// sessState is the connection state of RFC 9051 §3.
type sessState int

const (
	stateNotAuth sessState = 1 << iota
	stateAuth
	stateSelected
	stateLogout

	anyState     = stateNotAuth | stateAuth | stateSelected
	authOrSelect = stateAuth | stateSelected
)

// session is the protocol state of one connection. Only the connection's
// goroutine touches it (IDLE's reader hands its line over a channel).
type session struct {
	c   *conn
	srv *Server
	log *slog.Logger

	// ctx is cancelled when the connection ends, so that the backend stops
	// work for a client that has gone.
	ctx    context.Context
	cancel context.CancelFunc

	state sessState
	user  *backend.User
	sel   *selected
	// Enabled extensions (RFC 5161 ENABLE, and CONDSTORE by its use).
	rev2, utf8Accept, condstore, qresync bool

	tag, cmd string // the command being run
	badRun   int    // BAD responses in a row
	goneStop chan struct{}
	idleRead chan lineResult // an IDLE's reader, still reading
	contexts []*searchContext
	notify   *notifyState // RFC 5465; nil until NOTIFY
}

func newSession(c *conn) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{c: c, srv: c.srv, log: c.log, ctx: ctx, cancel: cancel, state: stateNotAuth}
	c.sessCancel = cancel
	return s
}

// utf8Names reports whether mailbox names are exchanged in UTF-8 (RFC 6855
// UTF8=ACCEPT, and IMAP4rev2, RFC 9051 §5.1) rather than modified UTF-7.
func (s *session) utf8Names() bool { return s.utf8Accept || s.rev2 }

// run serves the connection until it ends.
func (s *session) run() {
	defer s.end()
	c := s.c
	c.untagged("OK [CAPABILITY %s] Roost IMAP4rev2 ready", s.capabilities())
	if c.out.flush() != nil {
		return
	}
	for {
		if err := s.serveCommand(); err != nil {
			if !errors.Is(err, errCloseConn) && !isNetClosed(err) {
				s.log.Debug("connection ends", "err", err)
			}
			return
		}
	}
}

func isNetClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "closed") || strings.Contains(err.Error(), "reset")
}

// end releases what the session holds, once.
func (s *session) end() {
	s.c.ticket.Done()
	s.cancel()
	if s.idleRead != nil {
		s.c.raw.Close()
		<-s.idleRead
		s.idleRead = nil
	}
	if n := s.notify; n != nil {
		if n.reader != nil {
			s.c.raw.Close()
			<-n.reader
			n.reader = nil
		}
		n.off()
	}
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	if s.goneStop != nil {
		close(s.goneStop)
	}
	if s.user != nil {
		s.user.Release()
		s.user = nil
	}
	s.log.Debug("disconnected")
}

// readFailed turns a failed wait for a command into the right goodbye.
func (s *session) readFailed(err error) error {
	switch {
	case errors.Is(err, errGone):
		s.log.Info("account deleted; closing session")
		s.c.bye("Account deleted")
	case errors.Is(err, errStopping):
		s.c.bye("Server shutting down")
	case errors.Is(err, errEvicted):
		s.log.Info("too many connections not logged in; closing the oldest, this one", "max", s.srv.opts.MaxUnauthenticated)
		s.c.bye("[UNAVAILABLE] Too many connections waiting to log in")
	case isTimeout(err) && s.state == stateNotAuth:
		s.log.Info("login timeout")
		s.c.bye("Login timeout")
	case isTimeout(err):
		s.log.Info("idle timeout")
		s.c.bye("Autologout; idle for too long")
	}
	return errCloseConn
}

// serveCommand reads and runs one command.
func (s *session) serveCommand() error {
	c := s.c
	if err := c.out.flush(); err != nil {
		return err
	}
	c.out.release()
	if cap(c.lineBuf) > 64<<10 {
		c.lineBuf = nil
	}
	c.setPhase(phaseWait)
	if c.stopping.Load() {
		return s.readFailed(errStopping)
	}
	// Wait for the first byte as "waiting for a command"; the rest of the
	// line is bounded by command_timeout.
	if len(c.in.buffered()) == 0 {
		c.shrinkInput() // an idle connection holds 4 KiB of input buffer
		if err := s.waitCommand(); err != nil {
			return s.readFailed(err)
		}
	}
	c.setPhase(phaseCommand)
	limit := s.srv.opts.MaxLineLength
	line, err := c.in.readLine(c.lineBuf[:0], limit)
	c.lineBuf = line[:0]
	p := &parser{c: c, line: line, used: len(line) + 2, limit: limit, utf8: s.utf8Names(), lit: parseLitHeader(line)}
	tooLong := err == errLineTooLong
	if err != nil && !tooLong {
		return s.commandReadFailed(err, line)
	}
	if !tooLong {
		s.srv.debug(c.id, "C:", line)
	}
	if len(line) == 0 {
		return nil // a blank line between commands
	}
	tag, name := splitTag(line)
	s.tag, s.cmd = tag, name
	if tooLong {
		p.setTooLong()
		return s.finish(p, tag, badf("Command line too long (limit %d octets)", limit), false)
	}
	if !validTag(tag) {
		p.pos = len(p.line)
		return s.finish(p, "*", badf("Invalid tag"), false)
	}
	p.pos = len(tag)
	if !p.consume(' ') {
		return s.finish(p, tag, badf("Missing command"), false)
	}
	word, err := p.atom()
	if err != nil {
		return s.finish(p, tag, err, false)
	}
	name = strings.ToUpper(word)
	uid := false
	if name == "UID" {
		uid = true
		if err := p.sp(); err != nil {
			return s.finish(p, tag, err, false)
		}
		if word, err = p.atom(); err != nil {
			return s.finish(p, tag, err, false)
		}
		name = "UID " + strings.ToUpper(word)
	}
	s.cmd = name
	cmd, ok := commands[name]
	if !ok {
		return s.finish(p, tag, badf("Unknown command %s", truncate(name, 40)), false)
	}
	if s.state&cmd.states == 0 {
		return s.finish(p, tag, s.wrongState(cmd.states), false)
	}
	_ = uid
	err = cmd.run(s, p)
	return s.finish(p, tag, err, cmd.noExpunge)
}

// backendWork runs fn, a command's long call into the backend, with its
// context cancelled if the client goes away meanwhile.
func (s *session) backendWork(fn func() error) error {
	stop := s.c.watchClose(s.cancel)
	err := fn()
	stop()
	if s.ctx.Err() != nil && err != nil {
		return errCloseConn
	}
	return err
}

func (s *session) wrongState(allowed sessState) error {
	switch {
	case s.state == stateNotAuth && allowed&stateNotAuth == 0:
		return badf("Log in first")
	case allowed == stateSelected:
		return badf("No mailbox selected")
	case allowed == stateNotAuth:
		return badf("Already logged in")
	}
	return badf("Command not valid in this state")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// commandReadFailed handles a read error inside a command.
func (s *session) commandReadFailed(err error, partial []byte) error {
	if isTimeout(err) {
		tag, _ := splitTag(partial)
		if !validTag(tag) {
			tag = "*"
		}
		s.log.Info("timeout waiting for the rest of a command")
		s.c.writeStatus(tag, badf("Timeout waiting for the rest of the command"))
		s.c.bye("Command timeout")
		return errCloseConn
	}
	if errors.Is(err, errLineFlood) {
		tag, _ := splitTag(partial)
		if !validTag(tag) {
			tag = "*"
		}
		s.log.Info("command line far too long; closing", "limit", s.srv.opts.MaxLineLength, "discarded", s.srv.drainLimit())
		s.c.writeStatus(tag, badf("Command line too long (limit %d octets)", s.srv.opts.MaxLineLength))
		s.c.bye("Command line too long")
		return errCloseConn
	}
	if errors.Is(err, errGone) || errors.Is(err, errStopping) || errors.Is(err, errEvicted) {
		return s.readFailed(err)
	}
	return err
}

// finish completes a command: what is left of it is skipped, pending
// updates go out, then the tagged response.
func (s *session) finish(p *parser, tag string, err error, noExpunge bool) error {
	var st *status
	switch {
	case err == nil:
		st = &status{typ: "OK", text: commandDone(s.cmd)}
	case errors.As(err, &st):
	case errors.Is(err, errCloseConn):
		return err
	case isTimeout(err), errors.Is(err, errLineFlood):
		return s.commandReadFailed(err, []byte(tag))
	case errors.Is(err, errGone), errors.Is(err, errStopping), errors.Is(err, errEvicted):
		return s.readFailed(err)
	default:
		return err
	}
	if st.typ != "OK" || p.stream != nil || !p.atEOL() || p.lit.ok {
		if serr := p.skipRest(); serr != nil {
			if errors.Is(serr, errDrainTooLarge) {
				s.c.writeStatus(tag, st)
				s.c.bye("Literal too large")
				return errCloseConn
			} else if isStatus(serr) {
				// The command's tail was too long too: it is skipped all
				// the same.
			} else if errors.Is(serr, errCloseConn) {
				return serr
			} else {
				return s.commandReadFailed(serr, []byte(tag))
			}
		}
	}
	if st == errAnswered {
		return nil
	}
	if st.typ == "BAD" {
		s.badRun++
	} else {
		s.badRun = 0
	}
	if s.state == stateLogout {
		s.c.writeStatus(tag, st)
		s.c.out.flush()
		return errCloseConn
	}
	if s.sel != nil {
		if err := s.sync(!noExpunge); err != nil {
			if errors.Is(err, errCloseConn) {
				return err
			}
			s.log.Warn("sync failed", "err", err)
		}
		if len(s.contexts) > 0 {
			s.updateContexts()
		}
	}
	if s.notify != nil {
		// Other mailboxes' notifications (RFC 5465): STATUS and LIST may
		// come with any command.
		if err := s.notifyOthers(); err != nil {
			return err
		}
	}
	s.c.writeStatus(tag, st)
	if max := s.srv.opts.MaxBadCommands; s.badRun >= max {
		s.log.Info("too many invalid commands in a row; closing", "limit", max)
		s.c.bye("Too many invalid commands")
		return errCloseConn
	}
	if s.c.byeSent {
		return errCloseConn
	}
	return s.c.out.flush()
}

func commandDone(name string) string {
	if name == "" {
		return "Completed"
	}
	return name + " completed"
}

// splitTag returns the tag and the rest of a command line.
func splitTag(line []byte) (tag, rest string) {
	i := indexByte(line, ' ')
	if i < 0 {
		return string(line), ""
	}
	return string(line[:i]), string(line[i+1:])
}

// validTag reports a tag (RFC 9051 §9: 1*<any ASTRING-CHAR except "+">).
func validTag(tag string) bool {
	if tag == "" {
		return false
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; !isAstringChar(c) || c == '+' {
			return false
		}
	}
	return true
}

// Commands valid in any state.

func cmdCapability(s *session, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	s.c.untagged("CAPABILITY %s", s.capabilities())
	return nil
}

func cmdNoop(s *session, p *parser) error { return p.end() }

func cmdLogout(s *session, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	s.c.untagged("BYE Logging out")
	s.c.byeSent = true
	s.state = stateLogout
	return nil
}

// Not authenticated state.

func cmdStartTLS(s *session, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	c := s.c
	if c.isTLS || s.srv.opts.TLSConfig == nil {
		return badf("TLS is not available here")
	}
	c.writeStatus(s.tag, okf("", "Begin TLS negotiation now"))
	if err := c.out.flush(); err != nil {
		return err
	}
	early := append([]byte(nil), c.in.buffered()...)
	if err := c.handshake(early); err != nil {
		s.log.Info("STARTTLS handshake failed", "err", err)
		return errCloseConn
	}
	// The tagged OK has gone out; nothing more for this command.
	return errAnswered
}

func (s *session) plaintextAllowed() bool {
	return s.srv.opts.Plaintext.Allowed(s.c.isTLS, s.c.raw.RemoteAddr())
}

func cmdLogin(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	user, err := p.astring()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	pass, err := p.astring()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if !s.plaintextAllowed() {
		return nof("PRIVACYREQUIRED", "Use TLS to log in (STARTTLS)")
	}
	return s.login(user, pass)
}

func (s *session) login(username, password string) error {
	u, err := s.srv.opts.Backend.Login(s.ctx, username, password, netlimit.RemoteIP(s.c.raw))
	if err != nil {
		s.log.Info("login failed", "user", username, "err", err)
		s.delayFailure()
		switch {
		case errors.Is(err, backend.ErrAuthLocked):
			return nof("UNAVAILABLE", "Too many failed logins; try again later")
		case errors.Is(err, backend.ErrAuthFailed):
			return nof("AUTHENTICATIONFAILED", "Invalid credentials")
		}
		return s.mapErr("login", err, false)
	}
	s.user = u
	s.state = stateAuth
	s.c.authenticated.Store(true)
	s.c.ticket.Done() // if evicted meanwhile, the next command boundary ends it
	s.log = s.log.With("user", u.Address())
	s.c.log = s.log
	s.log.Info("logged in", "tls", s.c.isTLS)
	s.watchGone()
	return okf("CAPABILITY "+s.capabilities(), "Logged in")
}

// watchGone ends the session when the account is deleted.
func (s *session) watchGone() {
	stop := make(chan struct{})
	s.goneStop = stop
	gone, c := s.user.Gone(), s.c
	go func() {
		select {
		case <-gone:
			c.accountGone()
		case <-stop:
		}
	}()
}

// delayFailure slows password guessing (AuthFailureDelay), but not
// Shutdown, and not past the connection's end.
func (s *session) delayFailure() {
	s.srv.conns.Pause(s.ctx, s.srv.opts.AuthFailureDelay)
}

// cmdAuthenticate implements AUTHENTICATE (RFC 9051 §6.2.2) with SASL-IR
// (RFC 4959): PLAIN (RFC 4616, go-sasl's server) and LOGIN (the
// draft-murchison-sasl-login exchange Outlook and old clients use; go-sasl
// has only its client side).
func cmdAuthenticate(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	mech, err := p.atom()
	if err != nil {
		return err
	}
	mech = strings.ToUpper(mech)
	var ir []byte
	hasIR := false
	if p.consume(' ') {
		a, err := p.atom()
		if err != nil {
			return err
		}
		hasIR = true
		if a != "=" {
			if ir, err = base64.StdEncoding.DecodeString(a); err != nil {
				return badf("Invalid base64 in the initial response")
			}
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if mech != "PLAIN" && mech != "LOGIN" {
		return nof("", "Unsupported authentication mechanism")
	}
	if !s.plaintextAllowed() {
		return nof("PRIVACYREQUIRED", "Use TLS to log in (STARTTLS)")
	}
	var username, password string
	switch mech {
	case "PLAIN":
		resp := ir
		if !hasIR {
			if resp, err = s.saslStep(""); err != nil {
				return err
			}
		}
		var authErr error
		srv := sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return errors.New("authorization identity must be empty or the user")
			}
			username, password = user, pass
			return nil
		})
		if _, _, authErr = srv.Next(resp); authErr != nil {
			return badf("Invalid PLAIN response")
		}
	case "LOGIN":
		u := ir
		if !hasIR {
			if u, err = s.saslStep("VXNlcm5hbWU6"); err != nil { // "Username:"
				return err
			}
		}
		pw, err := s.saslStep("UGFzc3dvcmQ6") // "Password:"
		if err != nil {
			return err
		}
		username, password = string(u), string(pw)
	}
	return s.login(username, password)
}

// saslStep sends a challenge and reads the client's base64 response line
// (bounded by max_line_length; "*" cancels, RFC 9051 §6.2.2).
func (s *session) saslStep(challenge string) ([]byte, error) {
	c := s.c
	if err := c.continuation(challenge); err != nil {
		return nil, err
	}
	line, err := c.in.readLine(c.lineBuf[:0], s.srv.opts.MaxLineLength)
	c.lineBuf = line[:0]
	if err == errLineTooLong {
		return nil, badf("Authentication response too long")
	}
	if err != nil {
		return nil, err
	}
	if string(line) == "*" {
		return nil, badf("Authentication cancelled")
	}
	b, err := base64.StdEncoding.DecodeString(string(line))
	if err != nil {
		return nil, badf("Invalid base64 in the authentication response")
	}
	return b, nil
}

// mapErr turns a backend error into the protocol's answer. tryCreate marks
// a missing destination of COPY, MOVE or APPEND (RFC 9051 §7.1: TRYCREATE).
func (s *session) mapErr(op string, err error, tryCreate bool) error {
	switch {
	case err == nil:
		return nil
	case isStatus(err):
		return err
	case errors.Is(err, backend.ErrNoSuchMailbox) && tryCreate:
		return nof("TRYCREATE", "No such mailbox")
	case errors.Is(err, backend.ErrNoSuchMailbox):
		return nof("NONEXISTENT", "No such mailbox")
	case errors.Is(err, backend.ErrMailboxExists):
		return nof("ALREADYEXISTS", "Mailbox already exists")
	case errors.Is(err, backend.ErrInvalidMailbox):
		return nof("CANNOT", "%s", capitalise(err.Error()))
	case errors.Is(err, backend.ErrCannotDeleteInbox):
		return nof("CANNOT", "INBOX cannot be deleted")
	case errors.Is(err, backend.ErrOverQuota):
		return nof("OVERQUOTA", "Quota exceeded")
	case errors.Is(err, backend.ErrTooBig):
		return nof("TOOBIG", "Message too big (limit %d octets)", s.srv.opts.AppendLimit)
	case errors.Is(err, context.Canceled):
		return nof("UNAVAILABLE", "Command cancelled")
	case errors.Is(err, backend.ErrExpunged), errors.Is(err, backend.ErrNotFound):
		// A message expunged by another session meanwhile (RFC 2180 §4.1).
		return nof("EXPUNGEISSUED", "Some messages were expunged meanwhile")
	}
	if s.user != nil {
		// An account deleted under the session (roost user del) fails
		// its calls before Gone is closed: that is no server bug.
		if s.accountDeleted() {
			s.log.Info("account deleted; closing session")
			s.c.bye("Account deleted")
			return errCloseConn
		}
	}
	s.log.Error(op+" failed", "err", err)
	return nof("SERVERBUG", "Internal error")
}

// accountDeleted reports whether the session's account is gone.
func (s *session) accountDeleted() bool {
	select {
	case <-s.user.Gone():
		return true
	default:
	}
	_, err := s.srv.opts.Backend.LookupUser(s.ctx, s.user.Address())
	return errors.Is(err, backend.ErrNoSuchUser)
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

var _ = fmt.Sprint
