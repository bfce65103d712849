// Package imapd is Roost's IMAP server: IMAP4rev1 (RFC 3501) and
// IMAP4rev2 (RFC 9051) per session, over package backend.
//
// The protocol layer is our own: a streaming parser of the command grammar
// (parse.go, with literals of every kind bounded by configurable limits),
// the dispatcher and state machine (session.go, commands.go) and the
// response encoder (encode.go). go-imap's imapserver, which Roost used
// first, cannot carry CONDSTORE/QRESYNC (its Session interface has no
// modseqs), has no ID and no COMPRESS, has a fixed command limit, and runs
// the bytes of a literal it refused as commands; upstream work on these has
// been open for years. go-imap's client (imapclient) drives the tests.
// Modified UTF-7 (internal/mutf7) and the SASL LOGIN exchange are hand-written
// because go-imap's codec is internal and go-sasl has only LOGIN's client;
// PLAIN uses go-sasl's server.
//
// Every device of an account stays in sync: each selected session keeps its
// own sequence-number→UID map and the highest modseq it has reported, wakes
// on the backend's change bus (backend.User.Watch), and turns the mailbox's
// change log (backend.User.ChangesSince) into EXISTS, FETCH FLAGS and
// EXPUNGE (or VANISHED) responses, pushed at once to a client in IDLE.
// A session that asks for NOTIFY (RFC 5465, notify.go) also watches the
// whole account (backend.User.WatchAccount) and is told, between commands
// too, of other mailboxes' changes (STATUS) and of mailbox and
// subscription changes (LIST).
//
// Bad input gets BAD and the connection stays open (until max_bad_commands
// in a row); a literal over a limit is refused before it is read and, if
// the client sends it anyway (LITERAL+), read and dropped, never run; what
// one command may make the server read and drop is bounded in all (also
// over COMPRESS, where a few octets stand for megabytes). Waits are
// bounded: the login, an idle session (RFC 9051 §5.4), the rest of a
// started command (command_timeout), a write to a client that stops
// reading (write_timeout), the TLS handshake. Connection limits come from
// internal/netlimit. A client that goes away stops its command's work:
// SEARCH, SORT, THREAD, LIST and FETCH run with a watch that reads ahead
// and cancels the command's context at the close (TestHostileRequests).
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
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
	// Hostname names this server in the log. Default: Backend.Hostname().
	Hostname string
	// TLSConfig enables STARTTLS (RFC 9051 §6.2.1) on Serve and is required
	// by ServeTLS. nil: no TLS.
	TLSConfig *tls.Config
	// Plaintext says when LOGIN and AUTHENTICATE PLAIN are accepted ([auth]
	// plaintext). Default backend.PlaintextTLSOrLoopback. Where refused, the
	// capability list says LOGINDISABLED (RFC 9051 §6.2.3) until STARTTLS.
	Plaintext backend.PlaintextPolicy
	// MaxConns caps the connections open at once on each listener; one over
	// the limit gets "* BYE Too many connections". Default 1000; negative:
	// unlimited.
	MaxConns int
	// MaxConnsPerIP caps the connections open at once from one remote IP on
	// each listener. Default 50; negative: unlimited.
	MaxConnsPerIP int
	// MaxUnauthenticated caps the connections that have not logged in,
	// over all listeners of the server ([imap] max_unauthenticated): at
	// the cap, a new connection evicts the oldest of them, which gets
	// "* BYE [UNAVAILABLE]" at its next command boundary and is closed
	// (netlimit.PreAuth). Keep it below MaxConns, so that a flood meets it
	// first. Default 500; negative: no cap.
	MaxUnauthenticated int
	// HandshakeTimeout bounds the TLS handshake of ServeTLS and of STARTTLS.
	// Default 30s.
	HandshakeTimeout time.Duration
	// LoginTimeout bounds the time from connect to a successful login; a
	// client that sends nothing, or never logs in, gets "* BYE" and is
	// closed. Default 60s.
	LoginTimeout time.Duration
	// IdleTimeout is the autologout timer (RFC 9051 §5.4: at least 30
	// minutes) of an authenticated session that sends no command, also in
	// IDLE. Default 30m.
	IdleTimeout time.Duration
	// AppendLimit is the largest message APPEND accepts (RFC 7889
	// APPENDLIMIT); a larger literal gets NO [TOOBIG] before it is read.
	// Default Backend.MaxMessageBytes(); at most 4 GiB-1.
	AppendLimit int64
	// AuthFailureDelay is waited before answering a failed login.
	// Default 2s; negative: no delay.
	AuthFailureDelay time.Duration
	// MaxPendingUpdates caps the unilateral updates (FETCH FLAGS, EXPUNGE)
	// one selected session may owe its client; a session that falls further
	// behind gets "* BYE" and is closed (the client resynchronises on
	// reconnect) rather than growing without bound. Default 10000.
	MaxPendingUpdates int
	// MaxPendingNotifications caps what one NOTIFY session (RFC 5465) may
	// have gathered and not yet sent: changed mailboxes plus mailbox-list
	// and subscription events. A session that falls further behind (it
	// is busy with a long command, or its client does not read) gets
	// "* OK [NOTIFICATIONOVERFLOW]" and its notifications are turned off
	// (RFC 5465 §5.8). Default 1000.
	MaxPendingNotifications int
	// MaxLineLength caps a command in octets: its lines and the literals
	// other than APPEND's message data. A longer one gets BAD (its literals
	// are drained, never run) and the connection goes on. RFC 9051 §4 asks
	// servers to accept at least 8000; clients send UID sets of 40 KB and
	// more. Default 65536, at most 1 MiB.
	MaxLineLength int
	// MaxBadCommands closes the connection after that many BAD responses
	// in a row. Default 20.
	MaxBadCommands int
	// CommandTimeout bounds the wait for the rest of a command once its
	// first octet has arrived (an unterminated quoted string, a literal that
	// never comes): then BAD and close. Default 60s.
	CommandTimeout time.Duration
	// WriteTimeout bounds each write of responses to the client: one that
	// stops reading (a FETCH of large messages it never takes) is closed
	// then, rather than holding the session. Output is buffered up to
	// 64 KiB only, so a blocked client holds no more memory meanwhile.
	// Default 5m.
	WriteTimeout time.Duration
	// DisableCompress turns COMPRESS=DEFLATE (RFC 4978) off ([imap]
	// compress = false).
	DisableCompress bool
	// Compress is the effective setting (set by New).
	Compress bool
	// Debug, if set, receives a wire log of every connection (plaintext,
	// after TLS; it includes passwords: for debugging only).
	Debug io.Writer
	// Logger receives the log; every line carries a "conn" attribute.
	// Default: discard.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxConns                = 1000
	DefaultMaxConnsPerIP           = 50
	DefaultMaxUnauth               = 500
	DefaultHandshakeTimeout        = 30 * time.Second
	DefaultLoginTimeout            = 60 * time.Second
	DefaultIdleTimeout             = 30 * time.Minute
	DefaultAuthFailureDelay        = 2 * time.Second
	DefaultMaxPendingUpdates       = 10000
	DefaultMaxPendingNotifications = 1000
	DefaultMaxLineLength           = 65536
	MaxMaxLineLength               = 1 << 20
	DefaultMaxBadCommands          = 20
	DefaultCommandTimeout          = 60 * time.Second
	DefaultWriteTimeout            = 5 * time.Minute
)

// Server is an IMAP server. It is safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger

	extraCaps []string
	conns     *lifecycle.Tracker[*conn]
	preauth   *netlimit.PreAuth
	nextID    atomic.Uint64
	debugMu   sync.Mutex
	// tlsRejects bounds the TLS handshakes spent on refusing connections.
	tlsRejects chan struct{}
}

// New checks opts, fills in defaults and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("imapd: Options.Backend is required")
	}
	if opts.Hostname == "" {
		opts.Hostname = opts.Backend.Hostname()
	}
	if opts.Plaintext == "" {
		opts.Plaintext = backend.PlaintextTLSOrLoopback
	}
	if _, err := backend.ParsePlaintextPolicy(string(opts.Plaintext)); err != nil {
		return nil, fmt.Errorf("imapd: %w", err)
	}
	opts.MaxConns = netlimit.Limit(opts.MaxConns, DefaultMaxConns)
	opts.MaxConnsPerIP = netlimit.Limit(opts.MaxConnsPerIP, DefaultMaxConnsPerIP)
	opts.MaxUnauthenticated = netlimit.Limit(opts.MaxUnauthenticated, DefaultMaxUnauth)
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.LoginTimeout <= 0 {
		opts.LoginTimeout = DefaultLoginTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.AppendLimit <= 0 {
		opts.AppendLimit = opts.Backend.MaxMessageBytes()
	}
	// APPENDLIMIT is a number of 32 bits (RFC 7889 §4).
	opts.AppendLimit = min(opts.AppendLimit, math.MaxUint32)
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = DefaultAuthFailureDelay
	}
	if opts.MaxPendingUpdates <= 0 {
		opts.MaxPendingUpdates = DefaultMaxPendingUpdates
	}
	if opts.MaxPendingNotifications <= 0 {
		opts.MaxPendingNotifications = DefaultMaxPendingNotifications
	}
	if opts.MaxLineLength <= 0 {
		opts.MaxLineLength = DefaultMaxLineLength
	}
	opts.MaxLineLength = min(opts.MaxLineLength, MaxMaxLineLength)
	if opts.MaxBadCommands <= 0 {
		opts.MaxBadCommands = DefaultMaxBadCommands
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = DefaultCommandTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	opts.Compress = !opts.DisableCompress
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		opts: opts,
		log:  opts.Logger.With("proto", "imap"),
		extraCaps: []string{
			"CONDSTORE", "QRESYNC", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE",
			"SORT", "SORT=DISPLAY", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT", "ESORT", "PARTIAL", "CONTEXT=SEARCH", "CONTEXT=SORT",
			"MULTIAPPEND", "CATENATE", "NOTIFY",
		},
		conns:      lifecycle.New[*conn](),
		preauth:    netlimit.NewPreAuth(opts.MaxUnauthenticated),
		tlsRejects: make(chan struct{}, 16),
	}, nil
}

// Serve accepts plain IMAP connections on l (STARTTLS offered when
// TLSConfig is set) until Shutdown, after which it returns nil.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts connections on l and runs implicit TLS on each (port
// 993, RFC 8314 §3.3); the handshake is bounded by HandshakeTimeout.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("imapd: ServeTLS needs Options.TLSConfig")
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
	s.log.Info("listening", "addr", l.Addr().String(), "tls", implicitTLS, "hostname", s.opts.Hostname)
	err := s.conns.Serve(ll, s.log, s.newConn, func(c *conn) { c.serve(implicitTLS) })
	if err != nil {
		return fmt.Errorf("imapd: %w", err)
	}
	return nil
}

// reject answers a connection over a limit (netlimit) before it is closed.
func (s *Server) reject(implicitTLS bool) func(net.Conn, string) {
	return func(c net.Conn, reason string) {
		msg := "* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
		if reason == "per-ip" {
			msg = "* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n"
		}
		s.log.Warn("connection refused", "remote", c.RemoteAddr().String(), "reason", reason)
		var tlsConfig *tls.Config
		if implicitTLS {
			// A handshake costs CPU: spend it on a few refusals at a time
			// only, and just close the others.
			select {
			case s.tlsRejects <- struct{}{}:
				defer func() { <-s.tlsRejects }()
			default:
				return
			}
			tlsConfig = s.opts.TLSConfig
		}
		lifecycle.Refuse(c, tlsConfig, msg)
	}
}

// Shutdown stops accepting, lets commands in progress finish, says BYE to
// every connection between commands (also in IDLE) and waits for the
// connections to end, at most until ctx is done, when the remaining ones
// are closed forcibly.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.conns.Shutdown(ctx); err != nil {
		return fmt.Errorf("imapd: shutdown: %w", err)
	}
	return nil
}

// openConns reports the connections being served (for tests).
func (s *Server) openConns() int { return s.conns.Len() }

// connID returns a short identifier for log lines.
func (s *Server) connID() string {
	return "i" + strconv.FormatUint(s.nextID.Add(1), 36)
}

// debugf writes to the wire log, if any.
func (s *Server) debug(id, dir string, p []byte) {
	if s.opts.Debug == nil || len(p) == 0 {
		return
	}
	s.debugMu.Lock()
	defer s.debugMu.Unlock()
	for len(p) > 0 {
		line := p
		if i := indexByte(p, '\n'); i >= 0 {
			line = p[:i+1]
		}
		p = p[len(line):]
		fmt.Fprintf(s.opts.Debug, "%s %s %s", id, dir, line)
		if line[len(line)-1] != '\n' {
			io.WriteString(s.opts.Debug, "\n")
		}
	}
}

// drainLimit is the largest refused literal that is read and dropped so
// that the session can go on; a larger one ends the connection.
func (s *Server) drainLimit() int64 {
	return max(2*s.opts.AppendLimit, 1<<20)
}

// serve runs the connection until it ends.
func (c *conn) serve(implicitTLS bool) {
	defer c.close()
	c.log.Debug("connected", "tls", implicitTLS)
	if implicitTLS {
		if err := c.handshake(nil); err != nil {
			c.log.Info("TLS handshake failed", "err", err)
			return
		}
	}
	newSession(c).run()
}
