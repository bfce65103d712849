// Package outbound sends the mail Roost's users submit: it runs the
// outbound queue that the submission server (package lmtp, in submission
// mode) fills through Engine.Enqueue, and delivers every queued message to
// each of its recipients.
//
//   - Local recipients (domains Roost serves) go straight into their
//     mailboxes through the backend.
//   - Remote ones are delivered per recipient domain over SMTP to the
//     domain's MX hosts (RFC 5321 §5.1: by preference, the domain's own
//     A/AAAA when it has no MX, never to a null MX, RFC 7505), or all
//     through one smarthost (Options.Relay). STARTTLS is used when offered
//     (Options.RequireTLS insists on it and on a valid certificate),
//     connections are reused per host within a per-host limit, and every
//     message is DKIM-signed (RFC 6376, github.com/emersion/go-msgauth)
//     for its From: domain when a key exists.
//   - A temporary failure (4xx, no connection) is retried on a schedule;
//     a permanent one (5xx), or a message still undelivered when the
//     schedule runs out, produces a delivery status notification (RFC 3464)
//     in the sender's INBOX. A message leaves the queue when every
//     recipient is delivered or reported.
//
// The queue is durable (backend, store): a message is fsynced before the
// submission is acknowledged, each recipient's state is committed right
// after the remote server's reply, so a restart loses nothing and resends
// only what was in flight and not yet acknowledged.
//
// The SMTP client is go-smtp's; the deadline per read and write
// (deadlineConn) and the LOGIN-free relay authentication are ours. The
// DSN is written with go-message's multipart writer.
package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/roostmail/roost/backend"
)

// Defaults of Options.
const (
	DefaultPort            = 25
	DefaultMaxConcurrent   = 20
	DefaultMaxConnsPerHost = 4
	DefaultConnectTimeout  = 30 * time.Second
	DefaultCommandTimeout  = 5 * time.Minute  // RFC 5321 §4.5.3.2
	DefaultDataTimeout     = 10 * time.Minute // RFC 5321 §4.5.3.2.6
	DefaultIdleTimeout     = 30 * time.Second
	DefaultGiveUpAfter     = 5 * 24 * time.Hour
)

// DefaultRetrySchedule is the wait after each failed attempt: the last
// entry repeats until GiveUpAfter (RFC 5321 §4.5.4.1: at least 30 minutes
// between retries after the first few, and 4-5 days before giving up).
var DefaultRetrySchedule = []time.Duration{
	5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	2 * time.Hour, 4 * time.Hour, 8 * time.Hour,
}

// Options configure an Engine.
type Options struct {
	// Backend holds the queue and the mailboxes. Required.
	Backend *backend.Backend
	// Hostname is this server's name in EHLO, in DSNs and in the
	// Reporting-MTA. Default: Backend.Hostname().
	Hostname string

	// Resolver looks up MX, A and AAAA records. Default: the system's.
	// NewResolver makes one that asks a given DNS server.
	Resolver *net.Resolver
	// Port is the TCP port of remote MX hosts (default 25). Only tests
	// change it: they run their MX on a loopback port.
	Port int
	// Relay, "host:port", sends all remote mail through that smarthost
	// instead of looking up MX records. RelayUsername and RelayPassword,
	// if set, log in with AUTH PLAIN, which needs TLS with a valid
	// certificate.
	Relay                        string
	RelayUsername, RelayPassword string
	// RequireTLS refuses to deliver over a connection without STARTTLS
	// and a certificate valid for the host name (a temporary failure).
	// Without it, TLS is opportunistic: used when offered, certificate
	// not checked (RFC 7435).
	RequireTLS bool
	// RootCAs verifies certificates where they are verified. nil: the
	// system's roots. Tests set their own.
	RootCAs *x509.CertPool

	// RetrySchedule is the wait after each failed attempt; its last entry
	// repeats. Default DefaultRetrySchedule.
	RetrySchedule []time.Duration
	// GiveUpAfter is how long a message may stay queued: after it, the
	// last attempt's temporary failure counts as permanent (default 5 days).
	GiveUpAfter time.Duration

	// MaxConcurrent caps messages being delivered at once (default 20).
	MaxConcurrent int
	// MaxConnsPerHost caps connections open at once to one remote host,
	// idle ones included (default 4).
	MaxConnsPerHost int
	// Timeouts: connecting, waiting for a reply, sending the message
	// (per write, not the whole transfer), and keeping an unused
	// connection open for the next message to the same host.
	ConnectTimeout, CommandTimeout, DataTimeout, IdleTimeout time.Duration

	// DKIM returns the signing keys for a From: domain (none: the message
	// goes unsigned). nil: no signing.
	DKIM func(domain string) []DKIMKey

	// OnResult, if set, is called once per recipient and attempt with the
	// outcome: "delivered", "deferred" or "failed". It must not block.
	OnResult func(result string)
	Logger   *slog.Logger

	// afterAttempt, set by tests only, is told when an attempt has ended
	// and whether the message stays queued.
	afterAttempt func(id uint64, again bool)
}

// Engine runs the outbound queue. It is safe for concurrent use.
type Engine struct {
	opts Options
	be   *backend.Backend
	log  *slog.Logger
	pool *pool

	// runCtx is cancelled when Shutdown gives up waiting: in-flight
	// attempts are then abandoned (and retried after a restart).
	runCtx    context.Context
	cancelRun context.CancelFunc

	mu       sync.Mutex
	due      map[uint64]time.Time // queued messages not in flight, by next attempt
	inflight map[uint64]bool
	started  bool
	stopping bool

	wake    chan struct{}
	stopped chan struct{} // closed when the scheduler has returned
	slots   chan struct{}
	wg      sync.WaitGroup // attempts
}

// New checks opts and returns an Engine. Run starts it.
func New(opts Options) (*Engine, error) {
	if opts.Backend == nil {
		return nil, errors.New("outbound: Options.Backend is required")
	}
	if opts.Hostname == "" {
		opts.Hostname = opts.Backend.Hostname()
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.Relay != "" {
		if _, _, err := net.SplitHostPort(opts.Relay); err != nil {
			return nil, fmt.Errorf("outbound: relay %q: want host:port", opts.Relay)
		}
	}
	if (opts.RelayUsername == "") != (opts.RelayPassword == "") {
		return nil, errors.New("outbound: relay username and password go together")
	}
	if len(opts.RetrySchedule) == 0 {
		opts.RetrySchedule = DefaultRetrySchedule
	}
	for _, d := range opts.RetrySchedule {
		if d <= 0 {
			return nil, fmt.Errorf("outbound: retry schedule entry %s is not positive", d)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.GiveUpAfter, DefaultGiveUpAfter)
	def(&opts.ConnectTimeout, DefaultConnectTimeout)
	def(&opts.CommandTimeout, DefaultCommandTimeout)
	def(&opts.DataTimeout, DefaultDataTimeout)
	def(&opts.IdleTimeout, DefaultIdleTimeout)
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.MaxConnsPerHost <= 0 {
		opts.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		opts:      opts,
		be:        opts.Backend,
		log:       opts.Logger,
		runCtx:    ctx,
		cancelRun: cancel,
		due:       make(map[uint64]time.Time),
		inflight:  make(map[uint64]bool),
		wake:      make(chan struct{}, 1),
		stopped:   make(chan struct{}),
		slots:     make(chan struct{}, opts.MaxConcurrent),
	}
	e.pool = newPool(opts.MaxConnsPerHost, opts.IdleTimeout)
	return e, nil
}

// Run loads the queue and delivers until Shutdown. It returns nil after
// Shutdown, or the error that kept it from loading the queue.
func (e *Engine) Run() error {
	e.mu.Lock()
	if e.started || e.stopping {
		e.mu.Unlock()
		return errors.New("outbound: Run called twice or after Shutdown")
	}
	e.started = true
	e.mu.Unlock()
	defer close(e.stopped)

	list, err := e.be.QueuedList(e.runCtx)
	if err != nil {
		return fmt.Errorf("outbound: load queue: %w", err)
	}
	e.mu.Lock()
	for _, m := range list {
		// A Retry that ran between QueuedList and here has already set an
		// earlier time; the list's copy of NextAttempt is older than it.
		if cur, ok := e.due[m.ID]; ok && cur.Before(m.NextAttempt) {
			continue
		}
		e.due[m.ID] = m.NextAttempt
	}
	e.mu.Unlock()
	if len(list) > 0 {
		e.log.Info("outbound queue loaded", "messages", len(list))
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, stop := e.dispatch()
		if stop {
			return nil
		}
		timer.Reset(max(time.Until(next), 0))
		select {
		case <-e.wake:
		case <-timer.C:
		}
	}
}

// dispatch starts every due message that a slot is free for and returns
// when the next one is due.
func (e *Engine) dispatch() (next time.Time, stop bool) {
	now := time.Now()
	next = now.Add(time.Hour)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return next, true
	}
	for id, at := range e.due {
		if at.After(now) {
			if at.Before(next) {
				next = at
			}
			continue
		}
		select {
		case e.slots <- struct{}{}:
		default:
			// Every slot is busy: a finishing attempt wakes us.
			continue
		}
		delete(e.due, id)
		e.inflight[id] = true
		e.wg.Add(1)
		go e.run(id)
	}
	return next, false
}

func (e *Engine) kick() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run makes one attempt at a message and schedules what follows.
func (e *Engine) run(id uint64) {
	defer e.wg.Done()
	next, again := e.attempt(e.runCtx, id)
	if f := e.opts.afterAttempt; f != nil {
		f(id, again)
	}
	<-e.slots
	e.mu.Lock()
	delete(e.inflight, id)
	if again && !e.stopping {
		e.due[id] = next
	}
	e.mu.Unlock()
	e.kick()
}

// Enqueue puts a submitted message into the queue (durably) and starts
// its delivery. It returns the queue ID. It is what the submission server
// calls (lmtp.SubmissionOptions.Enqueue).
func (e *Engine) Enqueue(ctx context.Context, m backend.Outgoing) (string, error) {
	entry, err := e.be.Enqueue(ctx, m, time.Now())
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	// Run may have loaded it from the queue and started it already.
	if !e.stopping && !e.inflight[entry.ID] {
		e.due[entry.ID] = entry.NextAttempt
	}
	e.mu.Unlock()
	e.kick()
	return strconv.FormatUint(entry.ID, 10), nil
}

// Retry makes a queued message due now.
func (e *Engine) Retry(ctx context.Context, id uint64) error {
	if _, err := e.be.UpdateQueued(ctx, id, func(q *backend.QueueEntry) error {
		q.NextAttempt = time.Now().UTC()
		return nil
	}); err != nil {
		return err
	}
	e.mu.Lock()
	if !e.inflight[id] && !e.stopping {
		e.due[id] = time.Now()
	}
	e.mu.Unlock()
	e.kick()
	return nil
}

// Delete removes a queued message; nobody is told. An attempt in
// progress finishes, but its result is not recorded.
func (e *Engine) Delete(ctx context.Context, id uint64) error {
	if err := e.be.DeleteQueued(ctx, id); err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.due, id)
	e.mu.Unlock()
	return nil
}

// Shutdown stops starting attempts, waits for those in flight (each
// commits what the remote side acknowledged), and closes idle
// connections. When ctx ends first, attempts are abandoned and ctx's
// error returned; what they had not committed is retried after a restart.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.stopping = true
	started := e.started
	e.mu.Unlock()
	e.kick()
	if started {
		<-e.stopped
	}
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		e.cancelRun()
		<-done
		err = ctx.Err()
	}
	e.cancelRun()
	e.pool.closeAll()
	return err
}

// tlsConfig returns the client TLS configuration for host: verified
// (RequireTLS, or a relay we log in to) or opportunistic.
func (e *Engine) tlsConfig(host string, verify bool) *tls.Config {
	return &tls.Config{
		ServerName:         host,
		RootCAs:            e.opts.RootCAs,
		InsecureSkipVerify: !verify, // RFC 7435 opportunistic security
		MinVersion:         tls.VersionTLS12,
	}
}
