package lmtp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLMTPDeliver measures deliveries per second over LMTP with fsync
// on (a 250 means durably stored), with 1 and 16 concurrent connections,
// each delivering ~10 kB messages in a loop, one recipient per message,
// round robin over 8 accounts.
//
//	go test -run xxx -bench LMTPDeliver -benchtime 3s ./lmtp/
func BenchmarkLMTPDeliver(b *testing.B) {
	var accounts []string
	for i := range 8 {
		accounts = append(accounts, fmt.Sprintf("bench%d@example.org", i))
	}
	var body strings.Builder
	body.WriteString("From: bench@remote.example\r\nTo: bench@example.org\r\nSubject: benchmark\r\n\r\n")
	for body.Len() < 10<<10 {
		body.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	data := "DATA\r\n"
	msg := dotStuff(body.String()) + ".\r\n"

	for _, conns := range []int{1, 16} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			e := newEnv(b, envOptions{fsync: true, accounts: accounts, opts: Options{LMTP: true, MaxConnsPerIP: -1}})
			clients := make([]*benchClient, conns)
			for i := range clients {
				c, err := dialBench(e)
				if err != nil {
					b.Fatal(err)
				}
				clients[i] = c
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			b.ResetTimer()
			for _, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						// PIPELINING: envelope in one write (RFC 2920).
						to := accounts[int(i)%len(accounts)]
						if err := c.send("MAIL FROM:<bench@remote.example>\r\nRCPT TO:<"+to+">\r\n"+data, "250", "250", "354"); err != nil {
							errs <- err
							return
						}
						if err := c.send(msg, "250"); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			close(errs)
			for err := range errs {
				b.Error(err)
			}
			for _, c := range clients {
				c.c.Close()
			}
		})
	}
}

type benchClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialBench(e *env) (*benchClient, error) {
	c, err := net.Dial(e.net, e.addr)
	if err != nil {
		return nil, err
	}
	bc := &benchClient{c: c, r: bufio.NewReader(c)}
	if err := bc.send("", "220"); err != nil {
		return nil, err
	}
	return bc, bc.send("LHLO bench.example\r\n", "250")
}

// send writes s and reads one reply per code, each expected to start so.
func (c *benchClient) send(s string, codes ...string) error {
	c.c.SetDeadline(time.Now().Add(time.Minute))
	if s != "" {
		if _, err := io.WriteString(c.c, s); err != nil {
			return err
		}
	}
	for _, code := range codes {
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(line, code) {
				return fmt.Errorf("got %q, want %s", line, code)
			}
			if len(line) < 4 || line[3] != '-' {
				break
			}
		}
	}
	return nil
}
