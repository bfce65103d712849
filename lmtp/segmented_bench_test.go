package lmtp

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// BenchmarkSegmentedSender is a sender as stdio-buffered MTAs and many load
// tools are: Nagle's algorithm on (no TCP_NODELAY), and every command, the
// message body and the final "." written separately, each in a segment of
// its own. Against a receiver that delays its ACKs while it waits for the
// rest of a message, Nagle holds back the "." until the delayed ACK comes
// (40 ms on Linux): this measures that no such stall happens. It reports
// ms per message (fsync on: each 250 is a durable delivery), over LMTP and
// over SMTP, one connection.
//
//	go test -run xxx -bench SegmentedSender ./lmtp/
func BenchmarkSegmentedSender(b *testing.B) {
	var body strings.Builder
	body.WriteString("From: bench@remote.example\r\nTo: bench@example.org\r\nSubject: benchmark\r\n\r\n")
	for body.Len() < 10<<10 {
		body.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	msg := dotStuff(body.String())
	for _, tc := range []struct {
		name     string
		lmtp     bool
		pipeline bool // MAIL, RCPT, DATA written back to back (RFC 2920), still one write each
	}{
		{"lmtp", true, false},
		{"lmtp-pipelined", true, true},
		{"smtp", false, false},
		{"smtp-pipelined", false, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, envOptions{fsync: true, accounts: []string{"bench@example.org"}, opts: Options{LMTP: tc.lmtp, MaxConnsPerIP: -1}})
			c, err := net.Dial(e.net, e.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if err := c.(*net.TCPConn).SetNoDelay(false); err != nil {
				b.Fatal(err)
			}
			s := &segmentedSender{c: c, r: bufio.NewReader(c)}
			hello := "EHLO"
			if tc.lmtp {
				hello = "LHLO"
			}
			if err := s.expect("220"); err != nil {
				b.Fatal(err)
			}
			if err := s.cmd(hello+" bench.example\r\n", "250"); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var slowest time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if err := s.transaction(msg, tc.pipeline); err != nil {
					b.Fatal(err)
				}
				slowest = max(slowest, time.Since(start))
			}
			b.StopTimer()
			b.ReportMetric(float64(slowest.Microseconds())/1000, "max-ms")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/msg")
			b.ReportMetric(0, "ns/op")
		})
	}
}

type segmentedSender struct {
	c net.Conn
	r *bufio.Reader
}

// write sends s in one write call (one segment, unless Nagle holds it).
func (s *segmentedSender) write(p string) error {
	s.c.SetDeadline(time.Now().Add(time.Minute))
	_, err := s.c.Write([]byte(p))
	return err
}

func (s *segmentedSender) expect(code string) error {
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, code) {
			return fmt.Errorf("got %q, want %s", line, code)
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
}

func (s *segmentedSender) cmd(p, code string) error {
	if err := s.write(p); err != nil {
		return err
	}
	return s.expect(code)
}

func (s *segmentedSender) transaction(msg string, pipeline bool) error {
	cmds := []struct{ line, code string }{
		{"RSET\r\n", "250"},
		{"MAIL FROM:<bench@remote.example>\r\n", "250"},
		{"RCPT TO:<bench@example.org>\r\n", "250"},
		{"DATA\r\n", "354"},
	}
	if pipeline {
		for _, c := range cmds {
			if err := s.write(c.line); err != nil {
				return err
			}
		}
		for _, c := range cmds {
			if err := s.expect(c.code); err != nil {
				return err
			}
		}
	} else {
		for _, c := range cmds {
			if err := s.cmd(c.line, c.code); err != nil {
				return err
			}
		}
	}
	if err := s.write(msg); err != nil {
		return err
	}
	return s.cmd(".\r\n", "250")
}
