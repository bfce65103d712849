package imapd

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// injected is a literal's content made of commands: if a literal were ever
// read as commands, the mailbox Trash would go, Hacked would appear, or
// the connection would log out.
func injected(n int) string {
	s := "x1 CREATE Hacked\r\nx2 DELETE Trash\r\nx3 LOGOUT\r\n"
	return s + strings.Repeat("z", n-len(s))
}

// TestLiteralGuard: imapserver reads a refused non-synchronising literal as
// commands (or as the rest of the command); the guard swallows it.
func TestLiteralGuard(t *testing.T) {
	cases := []struct {
		name  string
		auth  bool
		send  string
		want  []string // prefixes of the responses to tag "a", untagged included
		alive bool
	}{
		{"LOGIN with a 9000-byte literal+ (buffered, over max_line_length)", false,
			"a LOGIN {9000+}\r\n" + injected(9000) + " pw\r\n",
			[]string{"* NO [TOOBIG] Literal of 9000 bytes refused", "a BAD"}, true},
		{"LOGIN's second literal refused", false,
			"a LOGIN {5+}\r\nalice {9000+}\r\n" + injected(9000) + "\r\n",
			[]string{"* NO [TOOBIG]", "a BAD"}, true},
		{"synchronising literal over max_line_length gets an answer", false,
			"a LOGIN {9000}\r\n",
			[]string{"* NO [TOOBIG]", "a BAD"}, true},
		{"APPEND over AppendLimit, literal+", true,
			"a APPEND INBOX (\\Seen) {3000+}\r\n" + injected(3000) + "\r\n",
			[]string{"a NO [TOOBIG]"}, true},
		{"APPEND over AppendLimit, synchronising", true,
			"a APPEND INBOX {3000}\r\n",
			[]string{"a NO [TOOBIG]"}, true},
		{"APPEND with a mailbox literal over max_line_length", true,
			"a APPEND {9000+}\r\n" + injected(9000) + " {11+}\r\nx9 LOGOUT\r\n\r\n",
			[]string{"* NO [TOOBIG]", "a BAD"}, true},
		{"SELECT with a literal over max_line_length", true,
			"a SELECT {9000+}\r\n" + injected(9000) + "\r\n",
			[]string{"* NO [TOOBIG]", "a BAD"}, true},
		{"syntax error before a literal+", true,
			"a NOOP {100+}\r\n" + injected(100) + "\r\n",
			[]string{"a BAD"}, true},
		{"literal+ far beyond what is worth reading", true,
			"a APPEND INBOX {999999999+}\r\n" + injected(100),
			[]string{"a NO [TOOBIG]", "* BYE Literal too large"}, false},
		{"literal size that is no number", true,
			"a LOGIN {9999999999999999999999+}\r\n" + injected(100),
			[]string{"* BYE Literal too large"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.AppendLimit = 2000; o.MaxLineLength = 8000 })
			r := e.dialRaw()
			if tc.auth {
				r.login()
			} else {
				r.line()
			}
			r.send(tc.send)
			var got []string
			for len(got) < len(tc.want) {
				got = append(got, r.line())
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("response %d: %q, want %q…", i, got[i], w)
				}
			}
			if tc.alive {
				if got := r.cmd("b", "NOOP"); !slices.Equal(got, []string{"b OK NOOP completed"}) {
					t.Errorf("after the refusal: %q", got)
				}
			} else if rest := r.readEOF(); rest != "" {
				t.Errorf("after BYE: %q", rest)
			}
			all, _ := e.user().Mailboxes()
			var names []string
			for _, mb := range all {
				names = append(names, mb.Name)
			}
			if slices.Contains(names, "Hacked") || !slices.Contains(names, "Trash") {
				t.Errorf("a literal ran as commands: mailboxes %v", names)
			}
		})
	}
}

// TestLiteralsAccepted: the guard passes literals imapserver accepts,
// synchronising or not, in every position.
func TestLiteralsAccepted(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AppendLimit = 100000 })
	r := e.dialRaw()
	r.line()
	r.send("a LOGIN {17+}\r\nalice@example.org {9}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("synchronising literal: %q", l)
	}
	r.send("secret pw\r\n")
	if got := r.until("a "); !strings.HasPrefix(got[len(got)-1], "a OK") {
		t.Fatalf("LOGIN with literals: %q", got)
	}
	body := msgText("literal", strings.Repeat("line of text\r\n", 4000)) // > 4096: streamed
	r.send(fmt.Sprintf("b APPEND {5+}\r\nINBOX (\\Flagged) {%d+}\r\n%s\r\nc NOOP\r\n", len(body), body))
	if got := r.until("b "); !strings.HasPrefix(got[len(got)-1], "b OK [APPENDUID") {
		t.Fatalf("APPEND: %q", got)
	}
	r.until("c OK")
	r.cmd("s", "SELECT INBOX")
	r.send("d SEARCH BODY {12+}\r\nline of text\r\n")
	if got := r.until("d "); got[0] != "* SEARCH 1" {
		t.Errorf("SEARCH with a literal: %q", got)
	}
	u := e.user()
	inbox, _ := u.Mailbox("INBOX")
	msgs, _ := u.MessagesByUID(inbox.ID, []uint32{1})
	if got, _ := u.ReadBody(&msgs[0]); string(got) != body || !msgs[0].Has(`\Flagged`) {
		t.Errorf("appended message differs")
	}
}

func TestLoginTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LoginTimeout = 300 * time.Millisecond })
	// Silent after connecting.
	r := e.dialRaw()
	r.line()
	if out := r.readEOF(); out != "* BYE Login timeout\r\n" {
		t.Errorf("silent client: %q", out)
	}
	// Busy, but never logging in: the deadline counts from the connection.
	r = e.dialRaw()
	r.line()
	var out string
	for i := 0; ; i++ {
		if _, err := io.WriteString(r.c, "n NOOP\r\n"); err != nil {
			break
		}
		l, err := r.r.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(l, "* BYE") {
			out = l
			break
		}
		if i > 100000 {
			t.Fatal("never timed out")
		}
	}
	if out != "* BYE Login timeout\r\n" {
		t.Errorf("client that never logs in: %q", out)
	}
	// After login the login deadline no longer applies.
	c := e.client()
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
	r := e.dialRaw()
	r.login()
	if out := r.readEOF(); out != "* BYE Autologout; idle for too long\r\n" {
		t.Errorf("idle session: %q", out)
	}
	r = e.dialRaw()
	r.login()
	r.cmd("s", "SELECT INBOX")
	r.send("i IDLE\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	if out := r.readEOF(); out != "* BYE Autologout; idle for too long\r\n" {
		t.Errorf("IDLE past IdleTimeout: %q", out)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	tlsConf := selfSigned(t)
	e := newEnv(t, func(o *Options) {
		o.TLSConfig = tlsConf
		o.HandshakeTimeout = 300 * time.Millisecond
		o.LoginTimeout = time.Hour
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.ServeTLS(l) }()
	defer func() {
		e.stop()
		if err := <-done; err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
	}()
	// Implicit TLS: a client that never sends a ClientHello is dropped.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("silent TLS client: read %d, %v; want EOF", n, err)
	}
	// A real TLS client works.
	tc, err := imapclient.DialTLS(l.Addr().String(), &imapclient.Options{TLSConfig: clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if tc.Caps().Has(imap.CapStartTLS) {
		t.Errorf("STARTTLS offered on implicit TLS: %v", tc.Caps())
	}
	if err := tc.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	// STARTTLS, then silence: dropped as well.
	r := e.dialRaw()
	r.line()
	if got := r.cmd("a", "STARTTLS"); got[0] != "a OK Begin TLS negotiation now" {
		t.Fatalf("STARTTLS: %q", got)
	}
	if out := r.readEOF(); out != "" {
		t.Errorf("after STARTTLS without a handshake: %q", out)
	}
}

// TestStartTLSInjection: plaintext pipelined after STARTTLS is never run
// as a command of the TLS session (CVE-2011-0411).
func TestStartTLSInjection(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.TLSConfig = selfSigned(t) })
	r := e.dialRaw()
	r.line()
	r.send("a STARTTLS\r\nb CREATE Injected\r\n")
	if l := r.line(); l != "a OK Begin TLS negotiation now" {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(r.c, clientTLS())
	tc.SetDeadline(time.Now().Add(waitLimit))
	if err := tc.Handshake(); err == nil {
		io.WriteString(tc, "c LOGIN alice@example.org \"secret pw\"\r\nd NOOP\r\n")
		io.ReadAll(tc)
	}
	if _, err := e.user().Mailbox("Injected"); err == nil {
		t.Error("a command sent before the TLS handshake ran after it")
	}
}

func TestMaxConns(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  envOption
		want string
	}{
		{"overall", func(o *Options) { o.MaxConns = 2 }, "* BYE [UNAVAILABLE] Too many connections, try again later"},
		{"per-ip", func(o *Options) { o.MaxConnsPerIP = 2 }, "* BYE [UNAVAILABLE] Too many connections from your address, try again later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opt)
			a, b := e.dialRaw(), e.dialRaw()
			a.line()
			b.line()
			c := e.dialRaw()
			if l := c.line(); l != tc.want {
				t.Errorf("third connection: %q", l)
			}
			a.cmd("l", "LOGOUT")
			a.readEOF()
			// A slot is free again once the first one is gone.
			for i := 0; ; i++ {
				d := e.dialRaw()
				if l := d.line(); strings.HasPrefix(l, "* OK") {
					break
				}
				if i > 1000 {
					t.Fatal("slot never freed")
				}
			}
		})
	}
}

// TestMaxConnsTLS: on the implicit-TLS listener the refusal comes over TLS.
func TestMaxConnsTLS(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.TLSConfig = selfSigned(t); o.MaxConns = 1 })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.ServeTLS(l) }()
	defer func() {
		e.stop()
		<-done
	}()
	first, err := imapclient.DialTLS(l.Addr().String(), &imapclient.Options{TLSConfig: clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := first.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", l.Addr().String(), clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	if b, _ := io.ReadAll(c); string(b) != "* BYE [UNAVAILABLE] Too many connections, try again later\r\n" {
		t.Errorf("second TLS connection: %q", b)
	}
}

// TestCommandTooLong: a command line over max_line_length gets BAD, its
// tail never runs, and the connection goes on.
func TestCommandTooLong(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int // Options.MaxLineLength
		fill  int // length of the search string
	}{
		{"default limit", 0, 70000},
		{"configured limit", 9000, 9500},
		{"raised limit", 1 << 20, 1<<20 + 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.MaxLineLength = tc.limit })
			r := e.dialRaw()
			r.login()
			r.cmd("S", "SELECT INBOX")
			under := tc.limit
			if under == 0 {
				under = DefaultMaxLineLength
			}
			// Just under the limit is fine.
			if l := r.cmd("s", "SEARCH TEXT \""+strings.Repeat("y", under-40)+"\""); !strings.HasPrefix(l[len(l)-1], "s OK") {
				t.Fatalf("command under the limit: %q", l[len(l)-1])
			}
			r.send("a SEARCH TEXT \"" + strings.Repeat("x", tc.fill) + "\r\nx1 DELETE Trash\"\r\n")
			if l := r.line(); !strings.HasPrefix(l, "a BAD Command line too long") {
				t.Errorf("%d-octet command: %q", tc.fill, l)
			}
			// The next line is a command of its own (a BAD one, "x1 DELETE
			// Trash\"" has a stray quote).
			if l := r.line(); !strings.HasPrefix(l, "x1 ") {
				t.Errorf("after the long line: %q", l)
			}
			if got := r.cmd("n", "NOOP"); got[len(got)-1] != "n OK NOOP completed" {
				t.Errorf("connection after a long line: %q", got)
			}
			if _, err := e.user().Mailbox("Trash"); err != nil && tc.fill < 0 {
				t.Error("unreachable")
			}
		})
	}
}

// TestCommandTooLongTail: the tail of an over-long line is never run.
func TestCommandTooLongTail(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxLineLength = 9000 })
	r := e.dialRaw()
	r.login()
	r.send("a SEARCH TEXT \"" + strings.Repeat("x", 9500) + " x1 DELETE Trash\"\r\n")
	if l := r.line(); !strings.HasPrefix(l, "a BAD Command line too long") {
		t.Errorf("long command: %q", l)
	}
	if got := r.cmd("n", "NOOP"); got[len(got)-1] != "n OK NOOP completed" {
		t.Errorf("connection after a long line: %q", got)
	}
	if _, err := e.user().Mailbox("Trash"); err != nil {
		t.Error("the tail of a long line ran as a command")
	}
}

// TestShutdown: a command in progress finishes; idle and idling sessions
// get BYE; Shutdown returns once all are gone.
func TestShutdown(t *testing.T) {
	e := newEnv(t)
	idler := e.dialRaw()
	idler.login()
	idler.cmd("s", "SELECT INBOX")
	idler.send("i IDLE\r\n")
	idler.line()
	quiet := e.dialRaw()
	quiet.login()
	busy := e.dialRaw()
	busy.login()
	body := msgText("in flight", "x")
	busy.send(fmt.Sprintf("a APPEND INBOX {%d}\r\n", len(body)))
	if l := busy.line(); !strings.HasPrefix(l, "+") {
		t.Fatal(l)
	}
	busy.send(body[:10])
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	if out := idler.readEOF(); out != "* BYE Server shutting down\r\n" {
		t.Errorf("idling session: %q", out)
	}
	if out := quiet.readEOF(); out != "* BYE Server shutting down\r\n" {
		t.Errorf("quiet session: %q", out)
	}
	busy.send(body[10:] + "\r\n")
	out := busy.readEOF()
	if !strings.HasPrefix(out, "a OK [APPENDUID") || !strings.HasSuffix(out, "* BYE Server shutting down\r\n") {
		t.Errorf("session in APPEND: %q", out)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-e.served; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	e.srv = nil
	if got := uidsOf(t, e, "INBOX"); len(got) != 1 {
		t.Errorf("the APPEND in flight was lost: %v", got)
	}
}

// TestDisconnectMidCommand: a client that goes away in the middle of an
// APPEND loses nothing that was acknowledged, and stores nothing partial.
func TestDisconnectMidCommand(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	body := msgText("kept", "x")
	cmd := c.Append("INBOX", int64(len(body)), nil)
	cmd.Write([]byte(body))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	r := e.dialRaw()
	r.login()
	r.send("a APPEND INBOX {1000+}\r\n" + strings.Repeat("y", 500))
	r.c.Close()
	// Wait until the server is done with that connection (state, bounded).
	for i := 0; e.srv.openConns() > 1; i++ {
		if i > 10000 {
			t.Fatal("the aborted connection never ended")
		}
		time.Sleep(time.Millisecond)
	}
	// The server goes on; the complete message is there, the partial not.
	c2 := e.client()
	s, err := c2.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *s.NumMessages != 1 {
		t.Errorf("INBOX has %d messages", *s.NumMessages)
	}
}
