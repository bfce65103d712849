package lmtp

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeCounter is a listener whose connections count their writes.
type writeCounter struct {
	net.Listener
	mu     sync.Mutex
	writes []string // what each Write of the last connection sent
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.writes = nil
	l.mu.Unlock()
	return &countingConn{Conn: c, l: l}, nil
}

func (l *writeCounter) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes
	l.writes = nil
	return w
}

type countingConn struct {
	net.Conn
	l *writeCounter
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	c.l.writes = append(c.l.writes, string(p))
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}

// TestPipelinedRepliesShareAWrite: the replies to a pipelined group of
// commands (RFC 2920) go out in one write, not one each, and a client that
// waits for every reply still gets each one (nothing is held while the
// server waits for the client); replies held back for a long pipelined run
// are bounded by maxPendingReplies.
func TestPipelinedRepliesShareAWrite(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		name := map[bool]string{false: "smtp", true: "lmtp"}[lmtp]
		t.Run(name, func(t *testing.T) {
			counter := &writeCounter{}
			e := newEnv(t, envOptions{opts: Options{LMTP: lmtp}, wrap: func(l net.Listener) net.Listener {
				counter.Listener = l
				return counter
			}})
			c, err := net.Dial(e.net, e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			r := bufio.NewReader(c)
			expect := func(codes ...string) {
				t.Helper()
				for _, code := range codes {
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							t.Fatalf("reading the reply %s: %v", code, err)
						}
						if !strings.HasPrefix(line, code) {
							t.Fatalf("got %q, want %s", line, code)
						}
						if line[3] == ' ' {
							break
						}
					}
				}
			}
			send := func(s string) {
				t.Helper()
				if _, err := io.WriteString(c, s); err != nil {
					t.Fatal(err)
				}
			}
			expect("220")
			hello := map[bool]string{false: "EHLO", true: "LHLO"}[lmtp]
			send(hello + " client.example\r\n")
			expect("250")

			// One at a time: every reply comes by itself.
			send("MAIL FROM:<a@remote.example>\r\n")
			expect("250")
			send("RCPT TO:<alice@example.org>\r\n")
			expect("250")
			send("DATA\r\n")
			expect("354")
			send("Subject: one\r\n\r\nbody\r\n.\r\n")
			expect("250")
			counter.take()

			// Pipelined: envelope and DATA in one write, then the message.
			send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
			expect("250", "250", "250", "354")
			if w := counter.take(); len(w) != 1 {
				t.Errorf("the replies to MAIL, RCPT, RCPT, DATA took %d writes, want 1: %q", len(w), w)
			}
			send("Subject: two\r\n\r\nbody\r\n.\r\nNOOP\r\n")
			if lmtp {
				expect("250", "250", "250") // one per recipient, then NOOP
			} else {
				expect("250", "250")
			}
			if w := counter.take(); len(w) != 1 {
				t.Errorf("the replies to the data and NOOP took %d writes, want 1: %q", len(w), w)
			}
			// A long pipelined run: the replies held back are bounded
			// (maxPendingReplies), and all of them come.
			const noops = 2000
			send(strings.Repeat("NOOP\r\n", noops))
			for range noops {
				expect("250")
			}
			writes := counter.take()
			if len(writes) < 2 {
				t.Errorf("%d NOOP replies came in %d write, want them spread over several", noops, len(writes))
			}
			for _, w := range writes {
				if len(w) > maxPendingReplies+512 {
					t.Errorf("one write of %d bytes: more than the %d held back", len(w), maxPendingReplies)
				}
			}
			send("QUIT\r\n")
			expect("221")
			if got := len(e.inbox("alice@example.org")); got != 2 {
				t.Errorf("alice has %d messages, want 2", got)
			}
		})
	}
}
