package imapd

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestUnauthenticatedCap: at MaxUnauthenticated, a new connection evicts
// the oldest one that has not logged in (* BYE [UNAVAILABLE]); a logged-in
// session does not count and is never evicted.
func TestUnauthenticatedCap(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxUnauthenticated = 2 })
	a := e.dialRaw()
	a.line()
	b := e.dialRaw()
	b.login()
	c := e.dialRaw()
	c.line()
	d := e.dialRaw()
	d.line() // a and c wait to log in, d is the third: a goes
	if got := a.readEOF(); !strings.Contains(got, "* BYE [UNAVAILABLE] Too many connections waiting to log in") {
		t.Errorf("oldest connection: %q, want the eviction BYE", got)
	}
	e.dialRaw().line()
	if got := c.readEOF(); !strings.Contains(got, "* BYE [UNAVAILABLE]") {
		t.Errorf("next oldest: %q, want the eviction BYE", got)
	}
	if l := b.cmd("N", "NOOP"); !strings.HasPrefix(l[len(l)-1], "N OK") {
		t.Errorf("logged-in session: %q", l)
	}
	if l := d.cmd("N", "NOOP"); !strings.HasPrefix(l[len(l)-1], "N OK") {
		t.Errorf("newer connection not logged in: %q", l)
	}
}

// TestFlood: 2,000 idle connections that never log in (per-IP limit
// lifted) are held, and a normal client still logs in, selects and
// fetches; it costs the oldest flood connection its place.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 connections")
	}
	const n = 2000
	e := newEnv(t, func(o *Options) {
		o.MaxConns = n + 100
		o.MaxConnsPerIP = -1
		o.MaxUnauthenticated = n
	})
	e.deliver("Subject: for the real client\r\n\r\nhello\r\n")
	flood := make([]*bufio.Reader, n)
	for i := range flood {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(2 * time.Minute))
		flood[i] = bufio.NewReader(conn)
		if l, err := flood[i].ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
			t.Fatalf("flood connection %d: greeting %q, %v", i, l, err)
		}
	}
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope.Subject != "for the real client" {
		t.Fatalf("FETCH: %v, %v", msgs, err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	if l, _ := flood[0].ReadString('\n'); !strings.HasPrefix(l, "* BYE [UNAVAILABLE]") {
		t.Errorf("oldest flood connection: %q, want the eviction BYE", l)
	}
	if got := e.srv.preauth.Waiting(); got != n-1 {
		t.Errorf("%d connections waiting to log in, want %d", got, n-1)
	}
}
