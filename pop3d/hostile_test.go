package pop3d

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/testutil"
)

// waitNoSessions waits until the server has no connection left.
func (e *testEnv) waitNoSessions() {
	e.t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for e.srv.conns.Len() > 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d sessions still open", e.srv.conns.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHostileRequests sends requests meant to make the server work hard
// and checks that each is answered or refused, that the work it causes is
// bounded (logged: CPU time of the process from the request to the end of
// its sessions), and that the server's CPU is back to idle afterwards
// (testutil.RequireIdle: CPU time, not wall time).
func TestHostileRequests(t *testing.T) {
	e := newEnv(t, envConfig{})
	big := "Subject: big\r\n\r\n" + strings.Repeat("a line of a big message, to be sent whole by TOP\r\n", 80000) // 4 MiB
	e.deliver([]byte(big), msg("small", "x"))

	// The cost of one password check, to compare the login flood with.
	hash := time.Duration(1 << 62)
	for range 3 {
		start := testutil.ProcessCPU()
		e.b.Login(context.Background(), testUser, "wrong", "192.0.2.1")
		hash = min(hash, testutil.ProcessCPU()-start)
	}
	t.Logf("one password check: %v of CPU", hash)

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a command line of 16 MiB", func(t *testing.T) {
			c := dial(t, e.addr)
			go io.WriteString(c.conn, "USER "+strings.Repeat("x", 16<<20)+"\r\n")
			c.expectErr("", "line too long")
			c.multiLines("CAPA")
			c.expectOK("QUIT")
		}},
		{"200,000 pipelined commands", func(t *testing.T) {
			c := dial(t, e.addr)
			const n = 200000
			go io.WriteString(c.conn, strings.Repeat("NOOP\r\n", n)+"QUIT\r\n")
			for i := range n {
				// Read directly: the test client's own checks would cost
				// more CPU than the server's answers.
				l, err := c.br.ReadSlice('\n')
				if err != nil || !strings.HasPrefix(string(l), "-ERR log in first") {
					t.Fatalf("response %d: %q %v", i, l, err)
				}
			}
			c.expectOK("")
		}},
		{"SASL responses: long, malformed, too long", func(t *testing.T) {
			c := dial(t, e.addr)
			for _, tc := range []struct{ resp, err string }{
				{strings.Repeat("A", 8000), "malformed PLAIN response"},
				{strings.Repeat("!", 8000), "invalid base64"},
				{strings.Repeat("A", 1<<20), "SASL response too long"},
			} {
				c.send("AUTH PLAIN")
				if got := c.line(); got != "+ " {
					t.Fatalf("AUTH PLAIN: %q", got)
				}
				c.expectErr(tc.resp, tc.err)
			}
			c.expectOK("QUIT")
		}},
		{"numbers out of range", func(t *testing.T) {
			c := dial(t, e.addr)
			c.login()
			c.expectErr("RETR 99999999999999999999999", "invalid message number")
			c.expectErr("LIST 18446744073709551616", "invalid message number")
			c.expectErr("TOP 1 99999999999999999999999", "invalid line count")
			c.expectErr("TOP 1 -5", "invalid line count")
			c.expectErr("DELE 0", "invalid message number")
			c.expectErr("UIDL 3", "no such message")
			c.expectOK("QUIT")
		}},
		{"TOP with the largest line count, of a 4 MiB message", func(t *testing.T) {
			c := dial(t, e.addr)
			c.login()
			c.expectOK("TOP 1 9223372036854775807")
			if _, data := c.multi(); len(data) != len(big) {
				t.Errorf("TOP sent %d octets, want the whole message (%d)", len(data), len(big))
			}
			c.expectOK("QUIT")
		}},
		{"a reader that stops reading a 4 MiB RETR", func(t *testing.T) {
			c := dial(t, e.addr)
			c.login()
			c.send("RETR 1")
			c.line()
			c.conn.Close() // the rest is never read
		}},
		{"20 logins whose clients hang up at once", func(t *testing.T) {
			var conns []net.Conn
			for i := range 20 {
				conn, err := net.Dial("tcp", e.addr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, conn)
				conn.SetDeadline(time.Now().Add(ioTimeout))
				if l, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
					t.Fatalf("greeting %d: %q %v", i, l, err)
				}
			}
			start := testutil.ProcessCPU()
			for _, conn := range conns {
				io.WriteString(conn, "USER nobody@example.org\r\nPASS wrong\r\n")
				conn.Close()
			}
			e.waitNoSessions()
			used := testutil.ProcessCPU() - start
			t.Logf("20 abandoned logins cost %v of CPU (%.1f password checks)", used, float64(used)/float64(hash))
			// The logins that had a hashing slot when their client left
			// finish (a hash cannot be stopped); the others do not start.
			if used > 8*hash {
				t.Errorf("20 abandoned logins cost %v of CPU, more than 8 password checks (%v each): their work went on after the clients left", used, hash)
			}
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			e.t = t
			start := testutil.ProcessCPU()
			step.run(t)
			e.waitNoSessions()
			used := testutil.ProcessCPU() - start
			idle := testutil.RequireIdle(t, step.name)
			t.Logf("CPU: %v for the request, %v in the %v after it", used, idle, testutil.IdleWindow)
		})
	}
}
