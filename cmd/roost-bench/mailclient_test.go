package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMTA is a tiny LMTP/SMTP server on 127.0.0.1: it records every command
// and every message (un-stuffed), refuses RCPT for rejectRcpt and, for LMTP,
// fails the delivery after DATA for failRcpt.
type fakeMTA struct {
	ln         net.Listener
	lmtp       bool
	pipelining bool
	rejectRcpt string
	failRcpt   string
	// deliver, if set, also hands each delivered message on (to the test
	// IMAP and POP3 servers).
	deliver func(rcpt string, msg []byte)
	wg      sync.WaitGroup

	mu    sync.Mutex
	cmds  []string
	msgs  map[string][][]byte // by recipient
	conns int
}

func startFakeMTA(t *testing.T, lmtp, pipelining bool) *fakeMTA {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeMTA{ln: ln, lmtp: lmtp, pipelining: pipelining, msgs: map[string][][]byte{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conn.Close()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *fakeMTA) serve(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(conn)
	tp.PrintfLine("220 fake ready")
	var rcpts []string
	hasMail := false
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.cmds = append(s.cmds, line)
		s.mu.Unlock()
		upper := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(upper, "LHLO "), strings.HasPrefix(upper, "EHLO "):
			if (upper[0] == 'L') != s.lmtp {
				tp.PrintfLine("500 wrong protocol")
				continue
			}
			fmt.Fprintf(tp.W, "250-fake\r\n250-SIZE 10000000\r\n")
			if s.pipelining {
				fmt.Fprintf(tp.W, "250-PIPELINING\r\n")
			}
			tp.PrintfLine("250 ENHANCEDSTATUSCODES")
		case strings.HasPrefix(upper, "MAIL FROM:<"):
			hasMail, rcpts = true, nil
			tp.PrintfLine("250 2.1.0 ok")
		case strings.HasPrefix(upper, "RCPT TO:<"):
			rcpt := strings.TrimSuffix(line[len("RCPT TO:<"):], ">")
			switch {
			case !hasMail:
				tp.PrintfLine("503 5.5.1 MAIL first")
			case rcpt == s.rejectRcpt:
				tp.PrintfLine("550 5.1.1 <%s> no such user", rcpt)
			default:
				rcpts = append(rcpts, rcpt)
				tp.PrintfLine("250 2.1.5 ok")
			}
		case upper == "DATA":
			if len(rcpts) == 0 {
				tp.PrintfLine("503 5.5.1 no valid recipients")
				continue
			}
			tp.PrintfLine("354 go ahead")
			var msg bytes.Buffer
			if _, err := readMultiline(tp.R, &msg, nil); err != nil {
				return
			}
			// RFC 2033 §4.2: one reply per accepted recipient (LMTP).
			replies := rcpts
			if !s.lmtp {
				replies = rcpts[:1]
			}
			for _, r := range replies {
				if s.lmtp && r == s.failRcpt {
					tp.PrintfLine("452 4.2.2 <%s> mailbox full", r)
					continue
				}
				tp.PrintfLine("250 2.0.0 <%s> saved", r)
			}
			s.mu.Lock()
			for _, r := range rcpts {
				if !(s.lmtp && r == s.failRcpt) {
					s.msgs[r] = append(s.msgs[r], msg.Bytes())
					if s.deliver != nil {
						s.deliver(r, msg.Bytes())
					}
				}
			}
			s.mu.Unlock()
			hasMail, rcpts = false, nil
		case upper == "RSET":
			hasMail, rcpts = false, nil
			tp.PrintfLine("250 2.0.0 ok")
		case upper == "QUIT":
			tp.PrintfLine("221 2.0.0 bye")
			return
		default:
			tp.PrintfLine("500 5.5.2 unknown command")
		}
	}
}

func TestMailClientTransactions(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		lmtp, pipelining, segmented bool
	}{
		{"lmtp pipelined", true, true, false},
		{"lmtp one by one", true, false, false},
		{"smtp pipelined", false, true, false},
		{"smtp one by one", false, false, false},
		// -segmented: no pipelining even where offered, Nagle on.
		{"lmtp segmented", true, true, true},
		{"smtp segmented", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFakeMTA(t, tc.lmtp, tc.pipelining)
			srv.rejectRcpt = "nobody@example.org"
			srv.failRcpt = "full@example.org"
			c, err := dialMail(context.Background(), srv.ln.Addr().String(), tc.lmtp, 5*time.Second, tc.segmented)
			if err != nil {
				t.Fatal(err)
			}
			defer c.quit()
			if c.pipelining() != (tc.pipelining && !tc.segmented) {
				t.Fatalf("pipelining() = %v, want %v", c.pipelining(), tc.pipelining && !tc.segmented)
			}
			gen := msgGenerator{seed: 1, size: sizeDist{kind: sizeFixed, min: 16 << 10, max: 16 << 10}}
			msg := gen.message(0, "f@example.net", "a@example.org")

			// 1: plain success to two recipients.
			res, err := c.send("f@example.net", []string{"a@example.org", "b@example.org"}, msg)
			if err != nil || res.err != nil || res.accepted != 2 || res.rejected != 0 {
				t.Fatalf("send 1 = %+v, %v; want 2 accepted", res, err)
			}
			// 2: one recipient refused at RCPT, the other delivered.
			res, err = c.send("f@example.net", []string{"nobody@example.org", "a@example.org"}, msg)
			if err != nil || res.err == nil || res.accepted != 1 || res.rejected != 1 {
				t.Fatalf("send 2 = %+v, %v; want 1 accepted, 1 rejected", res, err)
			}
			if rerr, ok := res.err.(*replyError); !ok || rerr.code != 550 || rerr.cmd != "RCPT" {
				t.Errorf("send 2 error = %#v, want RCPT 550", res.err)
			}
			// 3: every recipient refused: no DATA body, connection still fine.
			res, err = c.send("f@example.net", []string{"nobody@example.org"}, msg)
			if err != nil || res.err == nil || res.accepted != 0 {
				t.Fatalf("send 3 = %+v, %v; want a refusal", res, err)
			}
			// 4 (LMTP only): per-recipient failure after DATA.
			if tc.lmtp {
				res, err = c.send("f@example.net", []string{"full@example.org", "b@example.org"}, msg)
				if err != nil || res.accepted != 1 || res.rejected != 1 {
					t.Fatalf("send 4 = %+v, %v; want 1 accepted, 1 failed after DATA", res, err)
				}
				if rerr, ok := res.err.(*replyError); !ok || rerr.code != 452 || rerr.cmd != "DATA" {
					t.Errorf("send 4 error = %#v, want DATA 452", res.err)
				}
			}
			// 5: the connection still works after all that.
			res, err = c.send("f@example.net", []string{"b@example.org"}, msg)
			if err != nil || res.err != nil || res.accepted != 1 {
				t.Fatalf("send 5 = %+v, %v; want success", res, err)
			}
			c.quit()

			srv.mu.Lock()
			defer srv.mu.Unlock()
			for rcpt, msgs := range srv.msgs {
				for _, got := range msgs {
					if !bytes.Equal(got, msg) {
						t.Errorf("message to %s arrived changed (dot-stuffing?)", rcpt)
					}
				}
			}
			wantB := 3
			if !tc.lmtp {
				wantB = 2
			}
			if len(srv.msgs["a@example.org"]) != 2 || len(srv.msgs["b@example.org"]) != wantB {
				t.Errorf("server stored a:%d b:%d messages, want 2 and %d",
					len(srv.msgs["a@example.org"]), len(srv.msgs["b@example.org"]), wantB)
			}
			// RSET before every transaction but the first (issue 7).
			var verbs []string
			for _, cmd := range srv.cmds {
				if v, _, _ := strings.Cut(strings.ToUpper(cmd), " "); v == "RSET" || v == "MAIL" {
					verbs = append(verbs, v)
				}
			}
			want := "MAIL RSET MAIL RSET MAIL RSET MAIL"
			if tc.lmtp {
				want += " RSET MAIL"
			}
			if got := strings.Join(verbs, " "); got != want {
				t.Errorf("RSET/MAIL sequence = %q, want %q", got, want)
			}
		})
	}
}

func TestRunDeliverScenario(t *testing.T) {
	for _, tc := range []struct {
		label string
		name  string
		lmtp  bool
		flags []string
	}{
		{"lmtp", "lmtp", true, nil},
		{"smtp", "smtp", false, []string{"-smtp"}},
		{"lmtp segmented", "lmtp", true, []string{"-lmtp", "-segmented"}}, // DotWriter, not the stuffed buffer
	} {
		t.Run(tc.label, func(t *testing.T) {
			srv := startFakeMTA(t, tc.lmtp, true)
			addr := srv.ln.Addr().String()
			endpoint := append([]string{}, tc.flags...)
			if len(endpoint) == 0 {
				endpoint = []string{"-lmtp"}
			}
			args := append([]string{"deliver"}, endpoint[0], addr)
			args = append(args, endpoint[1:]...)
			args = append(args, "-users", "user%d@example.org", "-n", "5", "-c", "3",
				"-count", "40", "-size", "4k", "-json", "-q")
			var stdout, stderr bytes.Buffer
			if err := run(context.Background(), args, &stdout, &stderr); err != nil {
				t.Fatalf("run: %v\nstderr: %s", err, stderr.String())
			}
			var res map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
			}
			for _, k := range []string{"messages_per_sec", "p50_ms", "p99_ms", "duration_sec", "bytes"} {
				if _, ok := res[k].(float64); !ok {
					t.Errorf("field %s missing or not a number in %s", k, stdout.String())
				}
			}
			if res["messages"] != float64(40) || res["errors"] != float64(0) || res["protocol"] != tc.name ||
				res["bytes"] != float64(40*4096) || res["connections"] != float64(3) {
				t.Errorf("report = %s", stdout.String())
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			// Round-robin: 40 messages over 5 accounts, 8 each, and each
			// arrived as the generator makes it for -seed 1 (the reused
			// buffers and the dot-stuffing change nothing).
			gen := msgGenerator{seed: 1, size: sizeDist{kind: sizeFixed, min: 4096, max: 4096}}
			for i := 1; i <= 5; i++ {
				user := fmt.Sprintf("user%d@example.org", i)
				want := map[string]bool{}
				for seq := i - 1; seq < 40; seq += 5 {
					want[string(gen.message(uint64(seq), "loadgen@example.net", user))] = true
				}
				got := srv.msgs[user]
				if len(got) != 8 {
					t.Errorf("user%d got %d messages, want 8", i, len(got))
				}
				for _, msg := range got {
					if !want[string(msg)] {
						t.Errorf("user%d got a message that is none of the 8 generated for it", i)
					}
					delete(want, string(msg))
				}
			}
			if srv.conns != 3 {
				t.Errorf("server saw %d connections, want 3 (reused)", srv.conns)
			}
		})
	}
}

func TestRunDeliverCountsRefusals(t *testing.T) {
	srv := startFakeMTA(t, true, true)
	srv.rejectRcpt = "user2@example.org"
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"deliver", "-lmtp", srv.ln.Addr().String(), "-n", "4", "-c", "2",
		"-count", "20", "-size", "1k", "-json", "-q"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var res deliverResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Messages != 15 || res.Errors != 5 || res.Connections != 2 || !strings.Contains(res.FirstError, "550") {
		t.Errorf("report = %+v, want 15 delivered, 5 refused, connections kept", res)
	}
}

func TestRunDeliverServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"deliver", "-lmtp", addr, "-count", "3", "-c", "1", "-q"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no operation succeeded") {
		t.Fatalf("run = %v, want a failure", err)
	}
}
