package lmtp

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestUnauthenticatedCap: at MaxUnauthenticated, a new connection evicts
// the oldest one that has had no recipient accepted, with 421 4.7.0; one
// with a recipient accepted no longer counts and is never evicted.
func TestUnauthenticatedCap(t *testing.T) {
	e := newEnv(t, envOptions{opts: Options{MaxUnauthenticated: 2}})
	a := e.dial()
	b := e.dial()
	c := e.dial()
	a.expect("421 4.7.0 ")
	a.expectClosed()
	b.cmd("EHLO client.example", "250 ")
	b.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	b.cmd("RCPT TO:<nobody@example.org>", "550 ") // refused: still counts
	b.cmd("RCPT TO:<alice@example.org>", "250 ")  // now it does not
	e.dial()
	e.dial()
	c.expect("421 4.7.0 ")
	c.expectClosed()
	if r := b.data("Subject: s\r\n\r\nx\r\n", 1); !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("DATA on the connection that had a recipient: %q", r)
	}
	b.cmd("QUIT", "221 ")
	if n := e.count("alice@example.org"); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

// TestFlood: 1,000 idle SMTP connections that never send a command are
// held (per-IP limit lifted), and a normal client still delivers; it
// costs the oldest of them its place, every other stays open.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	const n = 1000
	e := newEnv(t, envOptions{opts: Options{MaxConns: n + 100, MaxConnsPerIP: -1, MaxUnauthenticated: n}})
	flood := make([]*bufio.Reader, n)
	for i := range flood {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(time.Minute))
		flood[i] = bufio.NewReader(conn)
		if l, err := flood[i].ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
			t.Fatalf("flood connection %d: greeting %q, %v", i, l, err)
		}
	}
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	if r := c.data("Subject: s\r\n\r\nx\r\n", 1); !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("DATA: %q", r)
	}
	c.cmd("QUIT", "221 ")
	if l, _ := flood[0].ReadString('\n'); !strings.HasPrefix(l, "421 4.7.0 ") {
		t.Errorf("oldest flood connection: %q, want 421 4.7.0", l)
	}
	c.expectClosed()
	deadline := time.Now().Add(time.Minute)
	for e.srv.conns.Len() != n-1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := e.srv.conns.Len(); got != n-1 {
		t.Errorf("%d connections open after the client left, want %d", got, n-1)
	}
	if got := e.count("alice@example.org"); got != 1 {
		t.Errorf("%d messages, want 1", got)
	}
}
