// Package lmtp receives mail for Roost's mailboxes: as a domain's MX over
// SMTP (RFC 5321) from other mail servers on the Internet, or over LMTP
// (RFC 2033) from an MTA such as Postfix or Exim that runs in front of Roost.
// Every accepted message goes to backend.Deliver; a 250 reply means it is
// fsynced for every recipient it was accepted for. With SubmissionOptions
// the same server takes mail from Roost's own users for sending
// (submission.go says why it lives here).
//
// The protocol engine is github.com/emersion/go-smtp. Between it and the
// network sits our own connection layer (wire.go), which closes the gaps the
// library leaves for a server on the open Internet: an idle deadline per read
// during DATA instead of one deadline for the whole transfer, exact detection
// of bare CR and LF (SMTP smuggling), our own STARTTLS (so that layer always
// sees clear text), a configurable error limit, and graceful shutdown.
package lmtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/lifecycle"
	"github.com/roostmail/roost/internal/netlimit"
)

// TraceReserve is how many bytes of the backend's message size limit are
// kept for the Return-Path and Received headers Roost adds (they are at
// most about 1.5 KB: every part of them is bounded). A client may send
// Backend.MaxMessageBytes() - TraceReserve bytes; configure the backend
// with MaxMessageBytes + TraceReserve to accept exactly MaxMessageBytes.
const TraceReserve = 2048

// Defaults of Options.
const (
	DefaultMaxConns         = 1000
	DefaultMaxConnsPerIP    = 20
	DefaultMaxUnauth        = 500
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultDataTimeout      = 5 * time.Minute
	DefaultMaxDataDuration  = 30 * time.Minute
	DefaultMaxRecipients    = 100
	DefaultMaxLineLength    = 4096
	DefaultMaxErrors        = 10

	// MinLineLength is the smallest MaxLineLength accepted: RFC 5321
	// §4.5.3.1.6 requires 1000 octets including CRLF.
	MinLineLength = 1000
)

// Options configure a Server. Zero values mean the documented defaults.
type Options struct {
	// Backend receives the mail. Required.
	Backend *backend.Backend
	// Hostname is this server's name in the greeting and in Received
	// headers. Default: Backend.Hostname().
	Hostname string
	// TLSConfig enables STARTTLS (RFC 3207) on Serve in SMTP mode and is
	// required by ServeTLS. nil: no TLS. STARTTLS is never offered over LMTP.
	TLSConfig *tls.Config
	// LMTP selects the protocol: true for LMTP (RFC 2033, LHLO, one reply
	// per recipient after DATA), false for SMTP as a domain's MX.
	LMTP bool

	// MaxConns caps the connections open at once (default 1000; negative:
	// no limit). Over it a client gets "421 4.7.0" and is disconnected.
	MaxConns int
	// MaxConnsPerIP caps the connections open at once from one IP address
	// (default 20; negative: no limit). It does not apply to unix sockets.
	MaxConnsPerIP int
	// HandshakeTimeout bounds a TLS handshake, implicit or after STARTTLS
	// (default 30s).
	HandshakeTimeout time.Duration
	// IdleTimeout is the command timeout: how long the server waits for the
	// next command, or for a reply to be taken by the client, before it
	// says "421 4.4.2" and closes (default 5m, RFC 5321 §4.5.3.2.7). It is
	// what the [smtp] command_timeout setting configures.
	IdleTimeout time.Duration
	// DataTimeout is the longest time between two reads while a message is
	// received (DATA or a BDAT chunk): a client that sends nothing for this
	// long is dropped, however long the whole transfer takes (default 5m).
	DataTimeout time.Duration
	// MaxDataDuration is a hard cap on receiving one message (DATA) or one
	// BDAT chunk, so that a client trickling a byte now and then cannot
	// hold a connection for ever (default 30m).
	MaxDataDuration time.Duration
	// MaxMessageBytes is the largest message accepted, advertised in the
	// EHLO SIZE keyword (RFC 1870) and enforced on MAIL FROM SIZE= and while
	// reading the data; over it the reply is "552 5.3.4". Default and upper
	// bound: Backend.MaxMessageBytes() - TraceReserve.
	MaxMessageBytes int64
	// MaxRecipients caps RCPT TO per message (default 100); over it the
	// reply is "452 4.5.3" (RFC 5321 §4.5.3.1.10) and the client sends the
	// rest in another transaction.
	MaxRecipients int
	// MaxLineLength caps a command line and a line of message data, in
	// octets including CRLF (default 4096; at least MinLineLength, RFC 5321
	// §4.5.3.1.6). A longer line gets "500" and the connection is closed.
	MaxLineLength int
	// MaxUnauthenticated caps the connections that have not yet had a
	// recipient accepted ([smtp] and [lmtp] max_unauthenticated): at the
	// cap, a new connection evicts the oldest of them, which gets "421
	// 4.7.0" and is closed (netlimit.PreAuth). An SMTP client with mail
	// for Roost reaches RCPT within a second; a flood never does. Keep it
	// below MaxConns. Default 500; negative: no cap.
	MaxUnauthenticated int
	// MaxErrors is how many error replies (5xx) a client may provoke
	// without delivering a message before it gets "421 4.7.0" and is
	// disconnected (default 10). A delivered message resets the count.
	MaxErrors int

	// OverQuotaPermanent answers a recipient whose mailbox is full with
	// "552 5.2.2" (the sender gives up and bounces) instead of the default
	// "452 4.2.2" (the sender retries for days; the user may make room).
	OverQuotaPermanent bool

	// Submission, when set, makes this a message submission server
	// (RFC 6409, submission.go) instead of a receiver: AUTH is required,
	// any recipient domain is accepted, and messages go to
	// Submission.Enqueue. SMTP only.
	Submission *SubmissionOptions

	// Logger gets one line per message and connection-level events.
	// Default: discard.
	Logger *slog.Logger

	// testRemoteAddr, set by tests only, replaces the peer address that
	// the plaintext policy and the login limiter see, so that a loopback
	// test can play a client from elsewhere.
	testRemoteAddr func(net.Addr) net.Addr
}

// Server is an SMTP or LMTP receiver. It is safe for concurrent use; one
// Server can serve several listeners.
type Server struct {
	opts    Options
	be      *backend.Backend
	log     *slog.Logger
	smtp    *smtp.Server
	proto   string // "smtp" or "lmtp", in logs
	maxSize int64

	nextID  atomic.Uint64
	preauth *netlimit.PreAuth
	// readBufs holds the buffers receive copies message data through
	// (*[]byte of readBufferSize): one per message would be 16 KiB of
	// garbage per delivery. Sessions cannot keep one each: a BDAT
	// transfer's Data may still run when the next transaction's starts.
	readBufs sync.Pool
	// inflight counts messages being received or delivered. go-smtp runs
	// a BDAT transfer's Data in a goroutine of its own that can outlive
	// the connection; Shutdown waits for these too.
	inflight sync.WaitGroup

	conns *lifecycle.Tracker[*wire]
}

// New checks opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("lmtp: Options.Backend is required")
	}
	if opts.Hostname == "" {
		opts.Hostname = opts.Backend.Hostname()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
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
	if opts.DataTimeout <= 0 {
		opts.DataTimeout = DefaultDataTimeout
	}
	if opts.MaxDataDuration <= 0 {
		opts.MaxDataDuration = DefaultMaxDataDuration
	}
	if opts.MaxRecipients <= 0 {
		opts.MaxRecipients = DefaultMaxRecipients
	}
	if opts.MaxLineLength == 0 {
		opts.MaxLineLength = DefaultMaxLineLength
	}
	if opts.MaxLineLength < MinLineLength {
		return nil, fmt.Errorf("lmtp: MaxLineLength %d is below the RFC 5321 minimum of %d", opts.MaxLineLength, MinLineLength)
	}
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = DefaultMaxErrors
	}
	limit := opts.Backend.MaxMessageBytes() - TraceReserve
	if limit <= 0 {
		return nil, fmt.Errorf("lmtp: backend message size limit %d leaves no room for messages", opts.Backend.MaxMessageBytes())
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = limit
	} else if opts.MaxMessageBytes > limit {
		opts.Logger.Warn("message size limit lowered to fit the backend limit with trace headers",
			"configured", opts.MaxMessageBytes, "effective", limit, "backend", opts.Backend.MaxMessageBytes())
		opts.MaxMessageBytes = limit
	}

	if sub := opts.Submission; sub != nil {
		if opts.LMTP {
			return nil, errors.New("lmtp: submission is SMTP, not LMTP")
		}
		if sub.Enqueue == nil {
			return nil, errors.New("lmtp: SubmissionOptions.Enqueue is required")
		}
		c := *sub
		if c.Plaintext == "" {
			c.Plaintext = backend.PlaintextTLSOrLoopback
		}
		if _, err := backend.ParsePlaintextPolicy(string(c.Plaintext)); err != nil {
			return nil, fmt.Errorf("lmtp: %w", err)
		}
		if c.AuthFailureDelay == 0 {
			c.AuthFailureDelay = DefaultAuthFailureDelay
		}
		opts.Submission = &c
	}

	s := &Server{
		opts:    opts,
		be:      opts.Backend,
		log:     opts.Logger,
		proto:   "smtp",
		maxSize: opts.MaxMessageBytes,
		conns:   lifecycle.New[*wire](),
		preauth: netlimit.NewPreAuth(opts.MaxUnauthenticated),
	}
	switch {
	case opts.LMTP:
		s.proto = "lmtp"
	case opts.Submission != nil:
		s.proto = "submission"
	}

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.LMTP = opts.LMTP
	srv.Domain = opts.Hostname
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = opts.MaxLineLength
	srv.EnableSMTPUTF8 = true
	// go-smtp offers AUTH only over its own TLS, which it never sees (the
	// wire does TLS): the session decides (AuthMechanisms, submission.go).
	srv.AllowInsecureAuth = opts.Submission != nil
	// The size limit is ours (session.go): go-smtp's data reader refuses a
	// message of exactly its limit, so it gets none, and the wire writes
	// our figure into the EHLO SIZE keyword.
	srv.MaxMessageBytes = 0
	// Timeouts are the wire's (per read, per phase); go-smtp's ReadTimeout
	// would be one deadline for a whole DATA transfer.
	srv.ReadTimeout, srv.WriteTimeout = 0, 0
	// TLS is the wire's too: go-smtp must never start TLS itself, or the
	// wire would see only ciphertext.
	srv.TLSConfig = nil
	srv.ErrorLog = slogPrinter{log: opts.Logger.With("proto", s.proto)}
	s.smtp = srv
	return s, nil
}

// Serve accepts connections on l until Shutdown. STARTTLS is offered when
// Options.TLSConfig is set (SMTP only). It returns nil after Shutdown.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts connections on l that start with a TLS handshake
// (implicit TLS, RFC 8314), bounded by Options.HandshakeTimeout.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("lmtp: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	perIP := s.opts.MaxConnsPerIP
	if l.Addr().Network() == "unix" {
		perIP = 0 // every local process shares the empty "IP"
	}
	ll := &listener{
		Listener: netlimit.Wrap(l, netlimit.Options{
			MaxConns:      s.opts.MaxConns,
			MaxConnsPerIP: perIP,
			Reject: func(c net.Conn, reason string) {
				s.reject(c, reason, implicitTLS)
			},
		}),
		srv:         s,
		implicitTLS: implicitTLS,
	}
	if !s.conns.Listen(ll) {
		l.Close()
		return nil
	}
	err := s.smtp.Serve(ll)
	s.conns.Unlisten(ll)
	if s.conns.Closing() {
		return nil
	}
	return err
}

// reject tells a client over a connection limit why it is turned away.
func (s *Server) reject(c net.Conn, reason string, implicitTLS bool) {
	var tlsConfig *tls.Config
	if implicitTLS {
		tlsConfig = s.opts.TLSConfig
	}
	lifecycle.Refuse(c, tlsConfig, fmt.Sprintf("421 4.7.0 %s Too many connections (%s), try again later\r\n", s.opts.Hostname, reason))
	s.log.Warn("connection refused: limit reached", "conn", s.nextID.Add(1), "proto", s.proto,
		"remote", c.RemoteAddr().String(), "limit", reason)
}

// Shutdown stops accepting connections, closes idle ones with "421 4.3.2",
// lets a command or message transfer in progress finish and then closes
// that connection too. When ctx ends first, every connection is closed at
// once and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.conns.Stop() {
		return nil
	}
	err := s.smtp.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = nil // we closed the listeners first
	}
	if err == nil {
		idle := make(chan struct{})
		go func() {
			s.inflight.Wait()
			close(idle)
		}()
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		s.conns.CloseAll()
		return ctx.Err()
	}
	return err
}

// listener hands go-smtp our wire instead of the raw connection.
type listener struct {
	net.Listener
	srv         *Server
	implicitTLS bool
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := newWire(l.srv, c, l.implicitTLS)
	if !l.srv.conns.Add(w) {
		w.Interrupt() // Shutdown has begun: "421 4.3.2" at the first command
	}
	return w, nil
}

// slogPrinter adapts go-smtp's ErrorLog (which reports panics and
// unexpected connection errors) to slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) { p.log.Error(fmt.Sprintf(format, v...)) }
func (p slogPrinter) Println(v ...any)               { p.log.Error(fmt.Sprintln(v...)) }
