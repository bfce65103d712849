package lifecycle

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/testutil"
)

// testConn is a connection whose run reads until the connection fails.
// With deaf set, Interrupt does nothing, as for a command that never ends.
type testConn struct {
	c           net.Conn
	deaf        bool
	interrupted atomic.Bool
	closed      atomic.Bool
}

func (c *testConn) Interrupt() {
	c.interrupted.Store(true)
	if !c.deaf {
		c.c.SetReadDeadline(time.Now())
	}
}

func (c *testConn) Close() error {
	c.closed.Store(true)
	return c.c.Close()
}

// start serves a tracker on a loopback listener; each connection's run
// reports on started, then reads until its connection fails.
func start(t *testing.T, deaf bool) (tr *Tracker[*testConn], addr string, started <-chan *testConn, served <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr = New[*testConn]()
	if !tr.Listen(l) {
		t.Fatal("Listen refused before Stop")
	}
	st := make(chan *testConn, 8)
	done := make(chan error, 1)
	newConn := func(c net.Conn) *testConn { return &testConn{c: c, deaf: deaf} }
	run := func(c *testConn) {
		st <- c
		io.Copy(io.Discard, c.c)
		c.c.Close()
	}
	go func() { done <- tr.Serve(l, slog.New(slog.DiscardHandler), newConn, run) }()
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr, l.Addr().String(), st, done
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestShutdownInterruptsAndWaits(t *testing.T) {
	tr, addr, started, served := start(t, false)
	dial(t, addr)
	dial(t, addr)
	a, b := <-started, <-started
	if n := tr.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Shutdown = %v, want nil", err)
	}
	for _, c := range []*testConn{a, b} {
		if !c.interrupted.Load() || c.closed.Load() {
			t.Errorf("connection interrupted=%v closed=%v, want interrupted and not force-closed", c.interrupted.Load(), c.closed.Load())
		}
	}
	if n := tr.Len(); n != 0 {
		t.Errorf("Len after Shutdown = %d, want 0", n)
	}
	select {
	case <-tr.Done():
	default:
		t.Error("Done not closed after Shutdown")
	}
	if !tr.Closing() {
		t.Error("Closing = false after Shutdown")
	}
	// The listener is closed: nobody answers any more.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("dial after Shutdown succeeded")
	}
}

func TestShutdownForceClosesOnContext(t *testing.T) {
	tr, addr, started, served := start(t, true)
	dial(t, addr)
	c := <-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	if !c.interrupted.Load() || !c.closed.Load() {
		t.Errorf("connection interrupted=%v closed=%v, want both", c.interrupted.Load(), c.closed.Load())
	}
	if n := tr.Len(); n != 0 {
		t.Errorf("Len after forced Shutdown = %d, want 0", n)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
}

func TestRefusesAfterStop(t *testing.T) {
	tr := New[*testConn]()
	if !tr.Stop() {
		t.Fatal("first Stop = false")
	}
	if tr.Stop() {
		t.Error("second Stop = true")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if tr.Listen(l) {
		t.Error("Listen after Stop = true")
	}
	c := &testConn{}
	if tr.Add(c) {
		t.Error("Add after Stop = true")
	}
	tr.Remove(c) // not tracked: no WaitGroup underflow
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

func TestServeReportsForeignClose(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := New[*testConn]()
	l.Close() // closed by someone else than Stop
	err = tr.Serve(l, slog.New(slog.DiscardHandler), func(c net.Conn) *testConn { return &testConn{c: c} }, func(*testConn) {})
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve = %v, want net.ErrClosed", err)
	}
}

func TestRefuse(t *testing.T) {
	const msg = "-ERR go away\r\n"
	serverTLS := selfSigned(t)
	for _, tc := range []struct {
		name      string
		serverTLS *tls.Config
	}{
		{"plain", nil},
		{"implicit TLS", serverTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			refused := make(chan error, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					refused <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				refused <- Refuse(c, tc.serverTLS, msg)
			}()
			var c net.Conn
			if tc.serverTLS != nil {
				c, err = tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
			} else {
				c, err = net.Dial("tcp", l.Addr().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != msg {
				t.Errorf("read %q, %v; want %q", line, err, msg)
			}
			if err := <-refused; err != nil {
				t.Errorf("Refuse: %v", err)
			}
		})
	}
}

func TestRefuseFailedHandshake(t *testing.T) {
	server, client := net.Pipe()
	defer server.Close()
	go func() {
		client.Write([]byte("not a TLS client hello\r\n"))
		client.Close()
	}()
	if err := Refuse(server, selfSigned(t), "-ERR no\r\n"); err == nil {
		t.Error("Refuse after a failed handshake = nil, want an error")
	}
}

func selfSigned(t *testing.T) *tls.Config { return testutil.SelfSigned(t).Server }

// TestPauseEnds: a login-failure pause of an hour ends at Stop and at the
// end of its context (the test would hang otherwise).
func TestPauseEnds(t *testing.T) {
	for _, end := range []string{"stop", "context"} {
		t.Run(end, func(t *testing.T) {
			tr := New[*testConn]()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() {
				tr.Pause(ctx, time.Hour)
				close(done)
			}()
			if end == "stop" {
				tr.Stop()
			} else {
				cancel()
			}
			<-done
		})
	}
	New[*testConn]().Pause(context.Background(), 0) // returns at once
}
