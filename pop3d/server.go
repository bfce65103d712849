// Package pop3d is Roost's POP3 front end: RFC 1939 (download and delete)
// with the RFC 2449 extension mechanism (CAPA, response codes, PIPELINING),
// RFC 2595 STLS and RFC 5034 SASL AUTH PLAIN. There is no maintained Go
// POP3 server library, so this is our own code over net/textproto-style
// line handling.
//
// The maildrop is the account's INBOX. A session takes the account's
// exclusive maildrop lock at login (RFC 1939 §8), fixes its message list
// for the whole session, and applies DELE only in the UPDATE state at QUIT,
// in one store transaction, which IMAP sessions on INBOX see as EXPUNGE.
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/lifecycle"
	"github.com/roostmail/roost/internal/netlimit"
)

// Options configure a Server. Zero values mean the documented defaults.
type Options struct {
	// Backend is the domain layer. Required.
	Backend *backend.Backend
	// Hostname is named in the greeting. Default: Backend.Hostname().
	Hostname string
	// TLSConfig enables STLS (RFC 2595) on Serve and is required by
	// ServeTLS. nil: no TLS.
	TLSConfig *tls.Config
	// Plaintext says when USER/PASS and AUTH PLAIN are accepted ([auth]
	// plaintext). Default ""/backend.PlaintextTLSOrLoopback: over TLS, or
	// from loopback. Where refused, CAPA omits USER and SASL PLAIN and the
	// commands get "-ERR [SYS/PERM]".
	Plaintext backend.PlaintextPolicy
	// MaxConns caps the connections open at once on each listener.
	// Default 1000; negative: unlimited.
	MaxConns int
	// MaxConnsPerIP caps the connections open at once from one remote IP
	// on each listener. Default 50; negative: unlimited.
	MaxConnsPerIP int
	// HandshakeTimeout bounds the TLS handshake of ServeTLS and of STLS.
	// Default 30s.
	HandshakeTimeout time.Duration
	// IdleTimeout is the autologout timer (RFC 1939 §3: at least 10
	// minutes): a session that sends no command for this long, or does not
	// read a response for this long, is closed without entering the UPDATE
	// state. Default 10m.
	IdleTimeout time.Duration
	// CommandTimeout bounds the wait for the rest of a command line once
	// its first byte has arrived ([pop3] command_timeout): a client that
	// starts a line and does not finish it within this time gets -ERR and
	// is disconnected, instead of holding the session for the whole
	// IdleTimeout. It applies to SASL responses too. Default 60s.
	CommandTimeout time.Duration
	// MaxLineLength caps a command line, CRLF included (RFC 2449 §4: 255).
	// A longer line is discarded (never buffered) and answered with -ERR.
	// SASL responses may be up to max(MaxLineLength, 8192) octets.
	// Default 255.
	MaxLineLength int
	// MaxUnauthenticated caps the connections that have not logged in,
	// over all listeners of the server ([pop3] max_unauthenticated): at
	// the cap, a new connection evicts the oldest of them, which gets
	// "-ERR [SYS/TEMP]" and is closed (netlimit.PreAuth). Keep it below
	// MaxConns, so that a flood meets it first. Default 500; negative: no
	// cap.
	MaxUnauthenticated int
	// MaxFailedLogins is how many failed logins a connection may make; the
	// last one is answered with -ERR [AUTH] and the connection is closed.
	// Default 3.
	MaxFailedLogins int
	// AuthFailureDelay is waited before answering a failed login.
	// Default 2s; negative: no delay.
	AuthFailureDelay time.Duration
	// KeepFlags ([pop3] keep_flags) stops RETR from setting \Seen.
	KeepFlags bool
	// Logger receives the log; every line carries a "conn" attribute.
	// Default: discard.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxConns         = 1000
	DefaultMaxConnsPerIP    = 50
	DefaultMaxUnauth        = 500
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultCommandTimeout   = 60 * time.Second
	DefaultMaxLineLength    = 255
	DefaultMaxFailedLogins  = 3
	DefaultAuthFailureDelay = 2 * time.Second

	// minSASLLine is the least line length accepted for SASL responses.
	minSASLLine = 8192
)

// Server is a POP3 server. It is safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger

	conns   *lifecycle.Tracker[*session]
	preauth *netlimit.PreAuth
	nextID  atomic.Uint64

	// sessionEnded, if set (tests), is called after a session has ended and
	// released its maildrop lock.
	sessionEnded func()
}

// New checks opts, fills in defaults and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("pop3d: Options.Backend is required")
	}
	if opts.Hostname == "" {
		opts.Hostname = opts.Backend.Hostname()
	}
	if opts.Plaintext == "" {
		opts.Plaintext = backend.PlaintextTLSOrLoopback
	}
	if _, err := backend.ParsePlaintextPolicy(string(opts.Plaintext)); err != nil {
		return nil, fmt.Errorf("pop3d: %w", err)
	}
	opts.MaxConns = netlimit.Limit(opts.MaxConns, DefaultMaxConns)
	opts.MaxConnsPerIP = netlimit.Limit(opts.MaxConnsPerIP, DefaultMaxConnsPerIP)
	opts.MaxUnauthenticated = netlimit.Limit(opts.MaxUnauthenticated, DefaultMaxUnauth)
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = DefaultCommandTimeout
	}
	if opts.MaxLineLength <= 0 {
		opts.MaxLineLength = DefaultMaxLineLength
	}
	if opts.MaxLineLength < 8 {
		return nil, fmt.Errorf("pop3d: MaxLineLength %d is too small for any command", opts.MaxLineLength)
	}
	if opts.MaxFailedLogins <= 0 {
		opts.MaxFailedLogins = DefaultMaxFailedLogins
	}
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = DefaultAuthFailureDelay
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		opts:    opts,
		log:     opts.Logger.With("proto", "pop3"),
		conns:   lifecycle.New[*session](),
		preauth: netlimit.NewPreAuth(opts.MaxUnauthenticated),
	}, nil
}

// Serve accepts plain POP3 connections on l (STLS offered when TLSConfig is
// set) until Shutdown, after which it returns nil.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts connections on l and runs implicit TLS on each (port
// 995, RFC 8314 §3.3); the handshake is bounded by HandshakeTimeout.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("pop3d: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	ll := netlimit.Wrap(l, netlimit.Options{
		MaxConns:      s.opts.MaxConns,
		MaxConnsPerIP: s.opts.MaxConnsPerIP,
		Reject:        s.reject(implicitTLS),
	})
	if !s.conns.Listen(ll) {
		l.Close()
		return nil
	}
	defer s.conns.Unlisten(ll)
	s.log.Info("listening", "addr", l.Addr().String(), "tls", implicitTLS)
	newSession := func(c net.Conn) *session { return s.newSession(c, implicitTLS) }
	err := s.conns.Serve(ll, s.log, newSession, func(sess *session) {
		sess.run()
		if s.sessionEnded != nil {
			s.sessionEnded()
		}
	})
	if err != nil {
		return fmt.Errorf("pop3d: %w", err)
	}
	return nil
}

// reject answers a connection over a limit (netlimit) before it is closed.
func (s *Server) reject(implicitTLS bool) func(net.Conn, string) {
	return func(c net.Conn, reason string) {
		msg := "-ERR [SYS/TEMP] too many connections, try again later\r\n"
		if reason == "per-ip" {
			msg = "-ERR [SYS/TEMP] too many connections from your address, try again later\r\n"
		}
		s.log.Warn("connection refused", "remote", c.RemoteAddr().String(), "reason", reason)
		var tlsConfig *tls.Config
		if implicitTLS {
			tlsConfig = s.opts.TLSConfig
		}
		lifecycle.Refuse(c, tlsConfig, msg)
	}
}

// Shutdown stops accepting, lets commands in progress finish, closes every
// connection (idle ones at once, without entering the UPDATE state: RFC
// 1939 §6) and waits for the sessions to end, at most until ctx is done,
// when the remaining connections are closed forcibly.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.conns.Shutdown(ctx); err != nil {
		return fmt.Errorf("pop3d: shutdown: %w", err)
	}
	return nil
}

// connID returns a short identifier for log lines.
func (s *Server) connID() string {
	return "p" + strconv.FormatUint(s.nextID.Add(1), 36)
}
