package lmtp

// Message submission (RFC 6409): the same server, with SubmissionOptions,
// takes mail from Roost's own users for sending. It lives here rather than
// in package outbound because it is the same SMTP conversation as the MX
// receiver and must sit on the same connection layer (wire.go: per-read
// deadlines, exact bare CR/LF refusal, the smuggling guard, our own
// STARTTLS, error and connection limits, graceful shutdown); what differs
// is policy: AUTH first, any recipient domain, the sender bound to the
// account, and an accepted message goes to the outbound queue (through
// SubmissionOptions.Enqueue, which package outbound provides) instead of
// into mailboxes.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/netlimit"
)

// SubmissionOptions make a Server a message submission agent (RFC 6409)
// for Roost's accounts.
type SubmissionOptions struct {
	// Plaintext says when AUTH is offered and accepted ([auth] plaintext):
	// with the default, after STARTTLS or on an implicit-TLS listener, or
	// from a loopback address.
	Plaintext backend.PlaintextPolicy
	// AuthFailureDelay is waited before answering a failed AUTH (default
	// 2s; negative: none).
	AuthFailureDelay time.Duration
	// Enqueue takes an accepted message and returns its queue ID once the
	// message is durable. Required.
	Enqueue func(ctx context.Context, m backend.Outgoing) (string, error)
	// CheckDomain, if set, is asked at RCPT time about the domain of a
	// recipient Roost does not serve. An *smtp.SMTPError it returns
	// refuses the recipient with that reply (e.g. 556 5.1.10 for a null
	// MX, RFC 7505 §4.2); other errors are logged and the recipient is
	// accepted (the queue retries and reports what happens).
	CheckDomain func(ctx context.Context, domain string) error
}

// DefaultAuthFailureDelay is SubmissionOptions.AuthFailureDelay's default.
const DefaultAuthFailureDelay = 2 * time.Second

// Submission replies.
var (
	replyAuthRequired  = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	replyNeedTLS       = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	replyNotYourSender = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address not owned by the authenticated account"}
	replyNotYourFrom   = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "From: header address not owned by the authenticated account"}
	replyBadFrom       = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message has no valid From: header"}
	replyAuthLocked    = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed logins; try again later"}
	replyAuthTemp      = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	replyAuthIdentity  = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authorization identity must be the user name"}
)

// authAllowed reports whether a password may be taken on this connection.
func (s *session) authAllowed() bool {
	isTLS, _, _ := s.w.tlsState()
	return s.srv.opts.Submission.Plaintext.Allowed(isTLS, s.w.policyAddr())
}

// AuthMechanisms implements smtp.AuthSession: PLAIN and LOGIN where
// passwords are allowed (RFC 4954 §4: not advertised before TLS), nothing
// on the MX and LMTP receivers.
func (s *session) AuthMechanisms() []string {
	if s.srv.opts.Submission == nil || !s.authAllowed() || s.authenticated() != nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.srv.opts.Submission == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if !s.authAllowed() {
		return nil, replyNeedTLS
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			// RFC 4616 §2: an authorization identity other than the
			// user's own would be acting as someone else.
			if identity != "" && !strings.EqualFold(identity, username) {
				return replyAuthIdentity
			}
			return s.login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{login: s.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login checks a password through the backend, as IMAP and POP3 do: the
// same lockout, the same login cache.
func (s *session) login(username, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.IdleTimeout)
	defer cancel()
	u, err := s.srv.be.Login(ctx, username, password, netlimit.AddrIP(s.w.policyAddr()))
	if err != nil {
		s.w.log.Info("login failed", "user", username, "err", err)
		s.delayFailure()
		switch {
		case errors.Is(err, backend.ErrAuthLocked):
			return replyAuthLocked
		case errors.Is(err, backend.ErrAuthFailed):
			return smtp.ErrAuthFailed
		}
		return replyAuthTemp
	}
	s.mu.Lock()
	s.user = u
	s.mu.Unlock()
	s.w.ticket.Done() // logged in: no longer counts against MaxUnauthenticated
	isTLS, _, _ := s.w.tlsState()
	s.w.log = s.w.log.With("user", u.Address())
	s.w.log.Info("logged in", "tls", isTLS)
	return nil
}

// authenticated returns the logged-in user, or nil.
func (s *session) authenticated() *backend.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

// delayFailure slows password guessing (AuthFailureDelay), but not
// Shutdown.
func (s *session) delayFailure() {
	s.srv.conns.Pause(context.Background(), s.srv.opts.Submission.AuthFailureDelay)
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): go-sasl has only its client. The
// challenges are "Username:" and "Password:", as every client expects.
type loginServer struct {
	login    func(username, password string) error
	username string
	step     int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) == 0 {
			return []byte("Username:"), false, nil
		}
		// An initial response (AUTH LOGIN dXNlcg==) is the user name.
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.login(l.username, string(response))
	}
	return nil, false, errors.New("unexpected response")
}

// submitMail checks MAIL FROM on the submission server.
func (s *session) submitMail(from string) error {
	u := s.authenticated()
	if u == nil {
		return replyAuthRequired
	}
	// RFC 6409 §6.1: the MSA may insist on a sender the account owns.
	if from == "" || !s.srv.be.MaySendAs(context.Background(), u.Address(), from) {
		s.w.log.Info("sender refused", "from", from)
		return replyNotYourSender
	}
	return nil
}

// submitRcpt checks a recipient on the submission server: local ones as
// the MX does, remote ones through CheckDomain.
func (s *session) submitRcpt(to string) (backend.Recipient, error) {
	if s.authenticated() == nil {
		return backend.Recipient{}, replyAuthRequired
	}
	addr, err := backend.NormalizeAddress(to)
	if err != nil {
		return backend.Recipient{}, replyBadRcpt
	}
	_, domain, _ := strings.Cut(addr, "@")
	if s.srv.be.ServesDomain(domain) {
		r, err := s.srv.be.ResolveRecipient(context.Background(), addr)
		if err != nil {
			reply := s.srv.rcptReply(err)
			if reply == replyLocalError {
				s.w.log.Error("recipient lookup failed", "rcpt", to, "err", err)
			}
			return backend.Recipient{}, reply
		}
		r.Address = addr
		return r, nil
	}
	if check := s.srv.opts.Submission.CheckDomain; check != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.IdleTimeout)
		defer cancel()
		if err := check(ctx, domain); err != nil {
			var reply *smtp.SMTPError
			if errors.As(err, &reply) {
				s.w.log.Info("recipient refused", "rcpt", addr, "reply", reply.Message)
				return backend.Recipient{}, reply
			}
			s.w.log.Debug("recipient domain check failed; accepted for the queue", "rcpt", addr, "err", err)
		}
	}
	return backend.Recipient{Address: addr}, nil
}

// submit checks the received message and hands it to the queue.
func (t *transfer) submit(s *session, env *envelope) (string, *smtp.SMTPError) {
	u := s.authenticated()
	body, err := t.spool.Bytes()
	if err != nil {
		t.why, t.cause = "spool failed", err
		return "", replyLocalError
	}
	trace, msg := body[:t.traceLen], body[t.traceLen:]
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		t.why = "unparsable header"
		return "", replyBadFrom
	}
	from, err := (&mail.Header{Header: message.Header{Header: h}}).AddressList("From")
	if err != nil || len(from) == 0 {
		t.why = "no From"
		return "", replyBadFrom
	}
	for _, a := range from {
		if !s.srv.be.MaySendAs(context.Background(), u.Address(), a.Address) {
			t.why = "From not owned: " + a.Address
			return "", replyNotYourFrom
		}
	}
	// RFC 6409 §8.2, §8.3: the MSA may add a missing Date and Message-ID.
	var added []byte
	if !h.Has("Date") {
		added = fmt.Appendf(added, "Date: %s\r\n", t.start.Format(time.RFC1123Z))
	}
	if !h.Has("Message-Id") {
		_, domain, _ := strings.Cut(u.Address(), "@")
		added = fmt.Appendf(added, "Message-ID: <%s.%s@%s>\r\n", strings.ToLower(t.queueID), newQueueID()[:8], domain)
	}
	if len(added) > 0 {
		whole := make([]byte, 0, len(body)+len(added))
		whole = append(append(append(whole, trace...), added...), msg...)
		body = whole
	}
	rcpts := make([]string, 0, len(env.rcpts))
	seen := make(map[string]bool)
	for _, rc := range env.rcpts {
		if !seen[rc.to.Address] {
			seen[rc.to.Address] = true
			rcpts = append(rcpts, rc.to.Address)
		}
	}
	sender, _ := backend.NormalizeAddress(env.from)
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.IdleTimeout)
	defer cancel()
	id, err := s.srv.opts.Submission.Enqueue(ctx, backend.Outgoing{From: sender, Account: u.Address(), Recipients: rcpts, Body: body})
	if err != nil {
		t.why, t.cause = "enqueue failed", err
		if errors.Is(err, backend.ErrTooBig) {
			return "", &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big"}
		}
		return "", replyLocalError
	}
	s.w.errors.Store(0)
	return id, nil
}

// policyAddr is the remote address the plaintext policy and the login
// limiter see: the peer's, or in tests what Options.testRemoteAddr says.
func (w *wire) policyAddr() net.Addr {
	if f := w.srv.opts.testRemoteAddr; f != nil {
		return f(w.raw.RemoteAddr())
	}
	return w.raw.RemoteAddr()
}
