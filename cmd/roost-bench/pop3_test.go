package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReadMultiline(t *testing.T) {
	long := strings.Repeat("x", 100) // longer than the 16-byte reader below
	tests := []struct {
		name    string
		wire    string
		want    string
		wantErr error
	}{
		{"empty body", ".\r\n", "", nil},
		{"plain", "a\r\nb\r\n.\r\n", "a\r\nb\r\n", nil},
		{"stuffed lone dot", "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", nil},
		{"stuffed leading dot", "...and so on\r\n.\r\n", "..and so on\r\n", nil},
		{"dot inside line untouched", "a.b\r\n.\r\n", "a.b\r\n", nil},
		{"empty lines kept", "\r\n\r\nx\r\n.\r\n", "\r\n\r\nx\r\n", nil},
		{"long line", long + "\r\n..x\r\n.\r\n", long + "\r\n.x\r\n", nil},
		{"dot after long line is not a line start", long[:15] + ".\r\n.\r\n", long[:15] + ".\r\n", nil},
		{"bare LF terminator tolerated", "a\n.\n", "a\n", nil},
		{"trailing data stays unread", "a\r\n.\r\n+OK next\r\n", "a\r\n", nil},
		{"EOF before terminator", "a\r\nb\r\n", "a\r\nb\r\n", errMultilineEOF},
		{"EOF mid-line", "a\r\nb", "a\r\n", errMultilineEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.wire), 16)
			var out bytes.Buffer
			n, err := readMultiline(r, &out, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if out.String() != tt.want || n != int64(len(tt.want)) {
				t.Errorf("got %q (n=%d), want %q", out.String(), n, tt.want)
			}
		})
	}
}

// dotStuff prepares msg for a multi-line response (RFC 1939 §3).
func dotStuff(msg []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(msg, []byte("\r\n")) {
		if bytes.HasPrefix(line, []byte(".")) {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	return b.Bytes()
}

// fakePOP3 is a tiny in-memory POP3 server on 127.0.0.1 for the client
// tests: USER, PASS, STAT, RETR, DELE, QUIT, one maildrop per user.
type fakePOP3 struct {
	ln   net.Listener
	pass string
	wg   sync.WaitGroup

	mu    sync.Mutex
	drops map[string][][]byte
	deles int
}

func startFakePOP3(t *testing.T, pass string, drops map[string][][]byte) *fakePOP3 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakePOP3{ln: ln, pass: pass, drops: drops}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
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

func (s *fakePOP3) serve(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(conn)
	tp.PrintfLine("+OK fake POP3 ready")
	var user string
	var drop [][]byte
	deleted := map[int]bool{}
	authed := false
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		cmd, arg, _ := strings.Cut(line, " ")
		n, _ := strconv.Atoi(arg)
		valid := authed && n >= 1 && n <= len(drop) && !deleted[n]
		switch strings.ToUpper(cmd) {
		case "USER":
			user = arg
			tp.PrintfLine("+OK")
		case "PASS":
			s.mu.Lock()
			d, ok := s.drops[user]
			s.mu.Unlock()
			if !ok || arg != s.pass {
				tp.PrintfLine("-ERR [AUTH] invalid login")
				continue
			}
			authed, drop = true, d
			tp.PrintfLine("+OK logged in")
		case "STAT":
			if !authed {
				tp.PrintfLine("-ERR not logged in")
				continue
			}
			size := 0
			for _, m := range drop {
				size += len(m)
			}
			tp.PrintfLine("+OK %d %d", len(drop), size)
		case "RETR":
			if !valid {
				tp.PrintfLine("-ERR no such message")
				continue
			}
			fmt.Fprintf(tp.W, "+OK %d octets\r\n%s.\r\n", len(drop[n-1]), dotStuff(drop[n-1]))
			tp.W.Flush()
		case "DELE":
			if !valid {
				tp.PrintfLine("-ERR no such message")
				continue
			}
			deleted[n] = true
			tp.PrintfLine("+OK")
		case "QUIT":
			s.mu.Lock()
			s.deles += len(deleted)
			s.mu.Unlock()
			tp.PrintfLine("+OK bye")
			return
		default:
			tp.PrintfLine("-ERR unknown command")
		}
	}
}

// trickyMessages need dot-stuffing both ways and include a long line.
var trickyMessages = [][]byte{
	[]byte("Subject: one\r\n\r\n.\r\n..\r\n.leading\r\nend\r\n"),
	[]byte("Subject: two\r\n\r\n" + strings.Repeat("y", 5000) + "\r\n.\r\n"),
	[]byte("Subject: three\r\n\r\nplain\r\n"),
}

func TestPOP3Client(t *testing.T) {
	srv := startFakePOP3(t, "pw", map[string][][]byte{"alice": trickyMessages})
	ctx := context.Background()
	c, err := dialPOP3(ctx, srv.ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if err := c.user("alice"); err != nil {
		t.Fatal(err)
	}
	var perr *pop3Error
	if err := c.pass("wrong"); !errors.As(err, &perr) {
		t.Fatalf("PASS wrong = %v, want a -ERR", err)
	}
	if err := c.pass("pw"); err != nil {
		t.Fatal(err)
	}
	count, size, err := c.stat()
	if err != nil {
		t.Fatal(err)
	}
	wantSize := 0
	for _, m := range trickyMessages {
		wantSize += len(m)
	}
	if count != len(trickyMessages) || size != int64(wantSize) {
		t.Fatalf("STAT = %d %d, want %d %d", count, size, len(trickyMessages), wantSize)
	}
	for i, want := range trickyMessages {
		var got bytes.Buffer
		n, err := c.retr(i+1, &got)
		if err != nil {
			t.Fatalf("RETR %d: %v", i+1, err)
		}
		if !bytes.Equal(got.Bytes(), want) || n != int64(len(want)) {
			t.Errorf("RETR %d = %q (n=%d), want %q", i+1, got.Bytes(), n, want)
		}
	}
	if _, err := c.retr(99, io.Discard); !errors.As(err, &perr) {
		t.Errorf("RETR 99 = %v, want a -ERR", err)
	}
	// The session goes on after -ERR.
	if err := c.dele(1); err != nil {
		t.Fatal(err)
	}
	if err := c.quit(); err != nil {
		t.Fatal(err)
	}
}

func TestRunPOP3Scenario(t *testing.T) {
	drops := map[string][][]byte{}
	for i := 1; i <= 3; i++ {
		drops[fmt.Sprintf("u%d@example.org", i)] = trickyMessages
	}
	srv := startFakePOP3(t, "pw", drops)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"pop3", "-pop3", srv.ln.Addr().String(), "-users", "u%d@example.org",
		"-n", "3", "-pass", "pw", "-c", "2", "-count", "6", "-dele", "-json", "-q"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr: %s", err, stderr.String())
	}
	var res map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
	}
	// Every session retrieves the whole (fake, never shrinking) maildrop.
	size := 0
	for _, m := range trickyMessages {
		size += len(m)
	}
	want := map[string]float64{"sessions": 6, "errors": 0, "messages": 18, "bytes": float64(6 * size)}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %v, want %v", k, res[k], v)
		}
	}
	for _, k := range []string{"mb_per_sec", "messages_per_sec", "duration_sec", "commands"} {
		if _, ok := res[k]; !ok {
			t.Errorf("field %s missing from %s", k, stdout.String())
		}
	}
	retr := res["commands"].(map[string]any)["retr"].(map[string]any)
	if retr["count"] != float64(18) {
		t.Errorf("commands.retr.count = %v, want 18", retr["count"])
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.deles != 18 {
		t.Errorf("server saw %d DELEs committed by QUIT, want 18", srv.deles)
	}
}

func TestRunPOP3WrongPasswordFails(t *testing.T) {
	srv := startFakePOP3(t, "pw", map[string][][]byte{"u1@example.org": trickyMessages})
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"pop3", "-pop3", srv.ln.Addr().String(), "-users", "u%d@example.org",
		"-n", "1", "-pass", "nope", "-c", "1", "-count", "2", "-json", "-q"}, &stdout, &stderr)
	if !errors.Is(err, errAllFailed) {
		t.Fatalf("run = %v, want errAllFailed", err)
	}
	var res pop3Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Errors != 2 || res.Commands["pass"].Errors != 2 || !strings.Contains(res.FirstError, "AUTH") {
		t.Errorf("report = %+v, want 2 failed PASS with the server's text", res)
	}
}
