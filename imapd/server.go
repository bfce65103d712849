// Package imapd is Roost's IMAP front end: IMAP4rev1 (RFC 3501) and
// IMAP4rev2 (RFC 9051) on github.com/emersion/go-imap/v2's imapserver, with
// sessions adapted to package backend.
//
// Every device of an account stays in sync: each selected session keeps its
// own sequence-number→UID map and the highest modseq it has reported, wakes
// on the backend's change bus (backend.User.Watch), and turns the mailbox's
// change log (backend.User.ChangesSince) into EXISTS, FETCH FLAGS and
// EXPUNGE responses, pushed at once to a client in IDLE.
//
// imapserver has gaps this package closes with a guard on the plaintext
// byte stream between the transport and imapserver (wire.go): a rejected
// non-synchronising literal is never run as commands, the TLS handshake
// (implicit and STARTTLS) and the login are bounded in time, an idle session
// is logged out with BYE after IdleTimeout (RFC 9051 §5.4), command lines
// are bounded, and Shutdown says BYE between commands. Connection limits
// come from internal/netlimit.
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

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
	// MaxLineLength caps a command in octets, literals excluded; a longer
	// one gets "* BYE" (RFC 9051 §4 asks servers to accept at least 8000).
	// Default and maximum: imapserver's own limit, 50 KiB.
	MaxLineLength int
	// Debug, if set, receives a wire log of every connection (plaintext,
	// after TLS; it includes passwords: for debugging only).
	Debug io.Writer
	// Logger receives the log; every line carries a "conn" attribute.
	// Default: discard.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxConns          = 1000
	DefaultMaxConnsPerIP     = 50
	DefaultHandshakeTimeout  = 30 * time.Second
	DefaultLoginTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 30 * time.Minute
	DefaultAuthFailureDelay  = 2 * time.Second
	DefaultMaxPendingUpdates = 10000
)

// Server is an IMAP server. It is safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger
	caps imap.CapSet

	conns   *lifecycle.Tracker[*wire]
	nextID  atomic.Uint64
	debugMu sync.Mutex
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
	// APPENDLIMIT and imapserver's limit are 32-bit.
	opts.AppendLimit = min(opts.AppendLimit, math.MaxUint32)
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = DefaultAuthFailureDelay
	}
	if opts.MaxPendingUpdates <= 0 {
		opts.MaxPendingUpdates = DefaultMaxPendingUpdates
	}
	if opts.MaxLineLength <= 0 || opts.MaxLineLength > maxCommandBytes {
		opts.MaxLineLength = maxCommandBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		opts: opts,
		log:  opts.Logger.With("proto", "imap"),
		// What imapserver derives itself: SASL-IR, LITERAL-, STARTTLS,
		// AUTH=PLAIN/LOGINDISABLED, and for IMAP4rev1 clients UNSELECT,
		// ENABLE, IDLE and UTF8=ACCEPT; APPENDLIMIT=n from the session.
		caps: imap.CapSet{
			imap.CapIMAP4rev1:        {},
			imap.CapIMAP4rev2:        {},
			imap.CapNamespace:        {},
			imap.CapUIDPlus:          {},
			imap.CapESearch:          {},
			imap.CapSearchRes:        {},
			imap.CapListExtended:     {},
			imap.CapListStatus:       {},
			imap.CapMove:             {},
			imap.CapStatusSize:       {},
			imap.CapBinary:           {},
			imap.CapChildren:         {},
			imap.CapSpecialUse:       {},
			imap.CapCreateSpecialUse: {},
			imap.CapLiteralPlus:      {},
		},
		conns:      lifecycle.New[*wire](),
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
	err := s.conns.Serve(ll, s.log, s.newWire, func(w *wire) { w.run(implicitTLS) })
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

// newIMAPServer returns the imapserver for one stretch of a connection: a
// connection starts on one and, after STARTTLS, continues on another, so
// that imapserver's view of TLS (capabilities, LOGINDISABLED) is right.
func (s *Server) newIMAPServer(w *wire) *imapserver.Server {
	var startTLS *tls.Config
	if !w.isTLS && s.opts.TLSConfig != nil {
		// The guard answers STARTTLS itself (wire.go); imapserver only needs
		// a config to advertise it. Should the guard ever let one through,
		// the handshake fails rather than run TLS beneath the guard.
		startTLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return nil, errors.New("imapd: STARTTLS is handled by the guard")
		}}
	}
	return imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return newSession(s, w, c), nil, nil
		},
		Caps:         s.caps,
		Logger:       imapLogger{w.log},
		TLSConfig:    startTLS,
		InsecureAuth: s.opts.Plaintext.Allowed(w.isTLS, w.raw.RemoteAddr()),
	})
}

// imapLogger routes imapserver's log lines to slog, with the connection id.
type imapLogger struct{ log *slog.Logger }

func (l imapLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > 0 && msg[len(msg)-1] == '\n' {
		msg = msg[:len(msg)-1]
	}
	if strings.Contains(msg, "EOF") || strings.Contains(msg, "closed network connection") || strings.Contains(msg, "connection reset") {
		// The client went away mid-command: nothing the operator can act on.
		l.log.Debug("imapserver: " + msg)
		return
	}
	l.log.Warn("imapserver: " + msg)
}

func indexByte(p []byte, c byte) int {
	for i, b := range p {
		if b == c {
			return i
		}
	}
	return -1
}
