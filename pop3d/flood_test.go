package pop3d

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestUnauthenticatedCap: at MaxUnauthenticated, a new connection evicts
// the oldest one that has not logged in (which is told why); logged-in
// sessions do not count and are never evicted.
func TestUnauthenticatedCap(t *testing.T) {
	e := newEnv(t, envConfig{opts: func(o *Options) { o.MaxUnauthenticated = 2 }})
	e.deliver(msg("one", "1"))
	const evicted = "-ERR [SYS/TEMP] too many connections waiting to log in, closing connection"
	a := dial(t, e.addr)
	b := dial(t, e.addr)
	c := dial(t, e.addr)
	a.expectClosed([]string{evicted})
	e.waitEnded(1)
	b.login() // b no longer counts
	d := dial(t, e.addr)
	if got := e.srv.preauth.Waiting(); got != 2 {
		t.Errorf("%d waiting to log in, want 2 (c, d)", got)
	}
	dial(t, e.addr)
	c.expectClosed([]string{evicted})
	e.waitEnded(1)
	b.expectOK("STAT")
	d.expectOK("USER " + testUser) // d, admitted after b's login, is still there
	b.expectOK("QUIT")
}

// TestFlood: 2,000 idle connections that never log in (from one address,
// per-IP limit lifted) are held, and a normal client still logs in, reads
// its mail and quits. It costs the oldest flood connection its place
// (the cap is 2,000); every other stays open. (Memory per held connection:
// BenchmarkFloodMemory in cmd/roost, on the real binary.)
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 connections")
	}
	const n = 2000
	e := newEnv(t, envConfig{opts: func(o *Options) {
		o.MaxConns = n + 100
		o.MaxConnsPerIP = -1
		o.MaxUnauthenticated = n
	}})
	body := msg("for the real client", "hello")
	e.deliver(body)
	flood := make([]*bufio.Reader, n)
	conns := make([]net.Conn, n)
	for i := range flood {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(2 * ioTimeout))
		conns[i], flood[i] = conn, bufio.NewReader(conn)
		if l, err := flood[i].ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK ") {
			t.Fatalf("flood connection %d: greeting %q, %v", i, l, err)
		}
	}
	if got := e.srv.conns.Len(); got != n {
		t.Fatalf("%d sessions open, want %d", got, n)
	}

	c := dial(t, e.addr)
	c.login()
	if r := c.expectOK("STAT"); !strings.HasPrefix(r, "+OK 1 ") {
		t.Errorf("STAT: %q", r)
	}
	c.expectOK("RETR 1")
	if _, data := c.multi(); string(data) != string(crlfForm(body)) {
		t.Errorf("RETR: %q, want %q", data, body)
	}
	c.expectOK("QUIT")
	e.waitEnded(2) // the client, and the evicted flood connection

	if l, err := flood[0].ReadString('\n'); !strings.HasPrefix(l, "-ERR [SYS/TEMP] too many connections waiting to log in") {
		t.Errorf("oldest flood connection: %q, %v; want the eviction notice", l, err)
	}
	if got := e.srv.conns.Len(); got != n-1 {
		t.Errorf("%d sessions open after the client left, want %d (the flood less its oldest)", got, n-1)
	}
	// A held connection still answers.
	conns[n-1].Write([]byte("NOOP\r\n"))
	if l, _ := flood[n-1].ReadString('\n'); !strings.HasPrefix(l, "-ERR log in first") {
		t.Errorf("newest flood connection: %q", l)
	}
}
