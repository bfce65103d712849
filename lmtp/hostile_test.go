package lmtp

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/testutil"
)

// waitNoConns waits until the server has no connection left open and no
// message in transfer or delivery.
func (e *env) waitNoConns(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.srv.conns.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", e.srv.conns.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { e.srv.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a message transfer is still in progress")
	}
}

// TestHostileRequests sends SMTP and LMTP requests meant to make the
// server work hard and checks that each is answered or refused, that the
// work is bounded (logged: CPU time of the process from the request to
// the end of its connection), and that the CPU is back to idle afterwards
// (testutil.RequireIdle measures CPU time, not wall time).
func TestHostileRequests(t *testing.T) {
	const limit = 1 << 20
	for _, lmtp := range []bool{false, true} {
		e := newEnv(t, envOptions{opts: Options{LMTP: lmtp, MaxMessageBytes: limit}})
		hello := "EHLO client.example"
		if lmtp {
			hello = "LHLO client.example"
		}
		greet := func(t *testing.T) *client {
			e.t = t
			c := e.dial()
			c.cmd(hello, "250 ")
			return c
		}
		steps := []struct {
			name string
			run  func(t *testing.T)
		}{
			{"a command line of 16 MiB", func(t *testing.T) {
				c := greet(t)
				go io.WriteString(c.c, "NOOP "+strings.Repeat("x", 16<<20)+"\r\n")
				c.expect("500 ")
				c.expectClosed()
			}},
			{"100,000 pipelined commands", func(t *testing.T) {
				c := greet(t)
				const n = 100000
				go io.WriteString(c.c, strings.Repeat("NOOP\r\n", n)+"QUIT\r\n")
				br := bufio.NewReader(c.r)
				for i := range n {
					l, err := br.ReadSlice('\n')
					if err != nil || !strings.HasPrefix(string(l), "250 ") {
						t.Fatalf("reply %d: %q %v", i, l, err)
					}
				}
				c.r = br
				c.expect("221 ")
			}},
			{"MAIL with a declared size of 900 digits and many parameters", func(t *testing.T) {
				c := greet(t)
				c.cmd("MAIL FROM:<a@remote.example> SIZE="+strings.Repeat("9", 900)+strings.Repeat(" BODY=8BITMIME", 200), "552 5.3.4 ")
				c.cmd("QUIT", "221 ")
			}},
			{"1,000 recipients", func(t *testing.T) {
				c := greet(t)
				c.cmd("MAIL FROM:<a@remote.example>", "250 ")
				var b strings.Builder
				for range 1000 {
					b.WriteString("RCPT TO:<alice@example.org>\r\n")
				}
				go io.WriteString(c.c, b.String())
				for i := range 1000 {
					want := "250 "
					if i >= DefaultMaxRecipients {
						want = "452 4.5.3 "
					}
					c.expect(want)
				}
				c.cmd("RSET", "250 ")
				c.cmd("QUIT", "221 ")
			}},
			{"DATA of 32 MiB over a 1 MiB limit", func(t *testing.T) {
				c := greet(t)
				c.cmd("MAIL FROM:<a@remote.example>", "250 ")
				c.cmd("RCPT TO:<alice@example.org>", "250 ")
				c.cmd("DATA", "354 ")
				go io.WriteString(c.c, strings.Repeat(strings.Repeat("y", 1022)+"\r\n", 32<<10)+".\r\n")
				c.expect("552 5.3.4 ")
				c.cmd("NOOP", "250 ")
				c.cmd("QUIT", "221 ")
			}},
			{"DATA of 1 MiB with bare CRs", func(t *testing.T) {
				c := greet(t)
				c.cmd("MAIL FROM:<a@remote.example>", "250 ")
				c.cmd("RCPT TO:<alice@example.org>", "250 ")
				c.cmd("DATA", "354 ")
				go io.WriteString(c.c, strings.Repeat("\r\r\r\r\r\r\r\r\r\rx\r\n", limit/13)+".\r\n")
				c.expect("550 5.6.0 ")
				c.cmd("QUIT", "221 ")
			}},
			{"BDAT of 4 GiB, abandoned after 8 MiB", func(t *testing.T) {
				c := greet(t)
				c.cmd("MAIL FROM:<a@remote.example>", "250 ")
				c.cmd("RCPT TO:<alice@example.org>", "250 ")
				c.write("BDAT 4294967295 LAST\r\n")
				c.write(strings.Repeat("z", 8<<20))
				c.c.Close()
			}},
			{"1,000 unknown commands", func(t *testing.T) {
				c := greet(t)
				go io.WriteString(c.c, strings.Repeat("XYZZY "+strings.Repeat("q", 500)+"\r\n", 1000))
				for range DefaultMaxErrors {
					c.expect("500 5.5.2 ")
				}
				c.expect("421 4.7.0 ")
				c.expectClosed()
			}},
			{"a greeting with a 3,000-byte domain", func(t *testing.T) {
				e.t = t
				c := e.dial()
				verb := strings.Fields(hello)[0]
				c.cmd(verb+" "+strings.Repeat("d", 3000), "250 ")
				c.cmd("QUIT", "221 ")
			}},
			{"a connection that never reads its replies", func(t *testing.T) {
				e.t = t
				conn, err := net.Dial(e.net, e.addr)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					io.WriteString(conn, strings.Repeat("NOOP\r\n", 500000))
					conn.Close()
				}()
			}},
		}
		for _, step := range steps {
			t.Run(map[bool]string{false: "smtp", true: "lmtp"}[lmtp]+"/"+step.name, func(t *testing.T) {
				start := testutil.ProcessCPU()
				step.run(t)
				e.waitNoConns(t)
				used := testutil.ProcessCPU() - start
				idle := testutil.RequireIdle(t, step.name)
				t.Logf("CPU: %v for the request, %v in the %v after it", used, idle, testutil.IdleWindow)
			})
		}
		if n := e.count("alice@example.org"); n != 0 {
			t.Errorf("%d messages stored from hostile requests, want 0", n)
		}
	}
}
