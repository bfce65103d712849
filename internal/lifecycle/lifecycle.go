// Package lifecycle tracks a server's listeners and live connections so
// Shutdown can stop accepting, interrupt idle connections and wait, then
// force-close. It is the part of Serve and Shutdown that imapd, pop3d and
// lmtp share, together with Refuse, the answer to a connection that
// internal/netlimit turns away.
package lifecycle

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is a live connection as a Tracker sees it (a protocol's wire or
// session; a pointer, so that it can key a set).
type Conn interface {
	comparable
	// Interrupt asks the connection to end at its next command boundary,
	// and wakes it if it is waiting for a command now. It must not block.
	Interrupt()
	// Close ends the connection at once.
	Close() error
}

// Tracker holds the listeners and connections of one server. Create it with
// New; it is safe for concurrent use.
type Tracker[C Conn] struct {
	closing  atomic.Bool
	done     chan struct{} // closed by Stop
	doneOnce sync.Once

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[C]struct{}
	wg        sync.WaitGroup // connections added and not yet removed
}

// New returns an empty Tracker.
func New[C Conn]() *Tracker[C] {
	return &Tracker[C]{
		done:      make(chan struct{}),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[C]struct{}),
	}
}

// Listen tracks l so that Stop closes it. It reports false, tracking
// nothing, once Stop has been called: the caller should close l and return.
func (t *Tracker[C]) Listen(l net.Listener) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing.Load() {
		return false
	}
	t.listeners[l] = struct{}{}
	return true
}

// Unlisten forgets l.
func (t *Tracker[C]) Unlisten(l net.Listener) {
	t.mu.Lock()
	delete(t.listeners, l)
	t.mu.Unlock()
}

// Add tracks c until Remove. It reports false, tracking nothing, once Stop
// has been called; the caller should then end c itself.
func (t *Tracker[C]) Add(c C) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing.Load() {
		return false
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

// Remove forgets c, a connection that has ended. Removing a connection
// that is not tracked (again, or one Add refused) does nothing.
func (t *Tracker[C]) Remove(c C) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[c]; ok {
		delete(t.conns, c)
		t.wg.Done()
	}
}

// Len reports the number of connections tracked.
func (t *Tracker[C]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// Closing reports whether Stop has been called.
func (t *Tracker[C]) Closing() bool { return t.closing.Load() }

// Done returns a channel that Stop closes.
func (t *Tracker[C]) Done() <-chan struct{} { return t.done }

// Pause waits for d, or less if Stop is called or ctx ends first. The
// protocols use it for the delay after a failed login, which slows
// password guessing but must not hold up Shutdown or outlive its client.
func (t *Tracker[C]) Pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.done:
	case <-ctx.Done():
	}
}

// Stop stops accepting: it closes every tracked listener and interrupts
// every tracked connection; Listen and Add refuse from now on. It reports
// whether this was the first call.
func (t *Tracker[C]) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	first := !t.closing.Swap(true)
	t.doneOnce.Do(func() { close(t.done) })
	for l := range t.listeners {
		l.Close()
	}
	for c := range t.conns {
		c.Interrupt()
	}
	return first
}

// Wait waits until every tracked connection has been removed, or until ctx
// is done, when it returns ctx.Err().
func (t *Tracker[C]) Wait(ctx context.Context) error {
	finished := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CloseAll closes every tracked connection at once. The connections'
// Close may call Remove.
func (t *Tracker[C]) CloseAll() {
	t.mu.Lock()
	cs := make([]C, 0, len(t.conns))
	for c := range t.conns {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// Shutdown stops accepting and interrupts every connection (Stop), then
// waits for the connections to be removed, at most until ctx is done, when
// it closes the remaining ones, waits for their removal and returns
// ctx.Err(). It may be called more than once.
func (t *Tracker[C]) Shutdown(ctx context.Context) error {
	t.Stop()
	if err := t.Wait(ctx); err != nil {
		t.CloseAll()
		t.wg.Wait()
		return err
	}
	return nil
}

// Serve accepts connections on l (which the caller has tracked with
// Listen) until Stop, after which it returns nil. Each connection is
// wrapped by newConn, tracked, and served by run in a goroutine of its own;
// it is removed when run returns. One accepted after Stop is closed. A
// failing Accept other than on a closed listener (EMFILE and the like) is
// logged and retried with a growing backoff, up to a second.
func (t *Tracker[C]) Serve(l net.Listener, log *slog.Logger, newConn func(net.Conn) C, run func(C)) error {
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if t.closing.Load() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept on %s: %w", l.Addr(), err)
			}
			// Resource shortage: wait it out.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-t.done:
			}
			continue
		}
		backoff = 0
		c := newConn(nc)
		if !t.Add(c) {
			nc.Close()
			continue
		}
		go func() {
			defer t.Remove(c)
			run(c)
		}()
	}
}

// Refuse writes msg, a protocol's refusal, to c, a connection that
// internal/netlimit turns away (netlimit bounds the time and closes c).
// With tlsConfig set (implicit TLS) it first completes the TLS handshake,
// so that the client can read the refusal.
func Refuse(c net.Conn, tlsConfig *tls.Config, msg string) error {
	if tlsConfig != nil {
		tc := tls.Server(c, tlsConfig)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("refusal TLS handshake: %w", err)
		}
		c = tc
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("writing refusal: %w", err)
	}
	return nil
}
