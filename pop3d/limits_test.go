package pop3d

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
)

func TestLineLength(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int // 0: default 255
	}{
		{"default 255", 0},
		{"configured 64", 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{opts: func(o *Options) { o.MaxLineLength = tc.max }})
			limit := tc.max
			if limit == 0 {
				limit = DefaultMaxLineLength
			}
			c := dial(t, e.addr)
			// Exactly at the limit (CRLF included) is fine.
			c.expectOK("USER " + strings.Repeat("u", limit-len("USER \r\n")))
			c.expectErr("USER "+strings.Repeat("u", limit-len("USER \r\n")+1), "line too long")
			// A line far beyond any buffer is read to its end, discarded,
			// and the session goes on.
			c.send("USER " + strings.Repeat("x", 1<<20))
			c.expectErr("", "line too long")
			c.login()
			c.expectOK("STAT")
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, envConfig{opts: func(o *Options) { o.IdleTimeout = 50 * time.Millisecond }})
	e.deliver(msg("one", "1"))
	t.Run("authorization", func(t *testing.T) {
		c := dial(t, e.addr)
		// RFC 1939 §3: closed without a response.
		c.expectClosed(nil)
		e.waitEnded(1)
	})
	t.Run("transaction: nothing deleted", func(t *testing.T) {
		c := dial(t, e.addr)
		c.login()
		c.expectOK("DELE 1")
		c.expectClosed(nil)
		e.waitEnded(1)
		if _, msgs := e.inbox(); len(msgs) != 1 {
			t.Errorf("%d messages after autologout, want 1", len(msgs))
		}
	})
}

func TestMaxConns(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    func(*Options)
		message string
	}{
		{"overall", func(o *Options) { o.MaxConns = 2 }, "-ERR [SYS/TEMP] too many connections, try again later"},
		{"per IP", func(o *Options) { o.MaxConnsPerIP = 2 }, "-ERR [SYS/TEMP] too many connections from your address, try again later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{opts: tc.opts})
			a := dial(t, e.addr)
			dial(t, e.addr)
			over := newClient(t, mustDial(t, e.addr, ""))
			over.expectClosed([]string{tc.message})
			// Closing one makes room again.
			a.expectOK("QUIT")
			e.waitEnded(1)
			dial(t, e.addr).expectOK("QUIT")
		})
	}
	t.Run("per IP is per address", func(t *testing.T) {
		e := newEnv(t, envConfig{opts: func(o *Options) { o.MaxConnsPerIP = 1 }})
		dial(t, e.addr)
		newClient(t, mustDial(t, e.addr, "")).expectClosed([]string{"-ERR [SYS/TEMP] too many connections from your address"})
		conn := mustDial(t, e.addr, "127.0.0.2")
		if conn == nil {
			t.Skip("cannot bind 127.0.0.2")
		}
		newClient(t, conn).expectOK("")
	})
}

// mustDial connects to addr, from local IP from if given (nil if that
// address cannot be bound).
func mustDial(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		if from != "" {
			return nil
		}
		t.Fatal(err)
	}
	return conn
}

func TestMaxFailedLogins(t *testing.T) {
	e := newEnv(t, envConfig{opts: func(o *Options) { o.MaxFailedLogins = 2 }})
	c := dial(t, e.addr)
	c.expectOK("USER " + testUser)
	c.expectErr("PASS wrong", "[AUTH] authentication failed")
	c.expectOK("USER nobody@example.org")
	c.send("PASS wrong")
	c.expectClosed([]string{"-ERR [AUTH] authentication failed; too many failures, closing connection"})

	// Mixed with AUTH PLAIN; the default is 3.
	e = newEnv(t, envConfig{})
	c = dial(t, e.addr)
	for range 2 {
		c.expectErr("AUTH PLAIN AHVzZXIAcGFzcw==", "[AUTH] authentication failed")
	}
	c.expectOK("USER " + testUser)
	c.send("PASS wrong")
	c.expectClosed([]string{"-ERR [AUTH] authentication failed; too many failures"})
}

func TestAuthLocked(t *testing.T) {
	lim := backend.NewAuthLimiter(backend.AuthLimiterOptions{MaxFailures: 1})
	b, err := backend.New(backend.Options{DataDir: t.TempDir(), NoSync: true, Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.CreateUser(context.Background(), testUser, testPass); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Backend: b, AuthFailureDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	l := listen(t)
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())
	c := dial(t, l.Addr().String())
	c.expectOK("USER " + testUser)
	c.expectErr("PASS wrong", "[AUTH] ")
	c.expectOK("USER " + testUser)
	c.expectErr("PASS "+testPass, "[SYS/TEMP] too many failed logins")
}

func TestPlaintextPolicy(t *testing.T) {
	e := newEnv(t, envConfig{withTLS: true, opts: func(o *Options) { o.Plaintext = backend.PlaintextTLS }})
	e.deliver(msg("one", "1"))
	c := dial(t, e.addr)
	caps := c.multiLines("CAPA")
	for _, cp := range caps {
		if cp == "USER" || strings.HasPrefix(cp, "SASL") {
			t.Errorf("CAPA offers %q where passwords are refused", cp)
		}
	}
	c.expectErr("USER "+testUser, "[SYS/PERM] plaintext authentication disallowed")
	c.expectErr("PASS "+testPass, "[SYS/PERM] plaintext authentication disallowed")
	c.expectErr("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldCBwYXNz", "[SYS/PERM] plaintext authentication disallowed")
	if got := c.multiLines("AUTH"); len(got) != 0 {
		t.Errorf("AUTH lists %q where passwords are refused", got)
	}

	// After STLS all is allowed.
	c.expectOK("STLS")
	tc := tls.Client(c.conn, e.clientTLS())
	c = newClient(t, tc)
	caps = c.multiLines("CAPA")
	if !contains(caps, "USER") || !contains(caps, "SASL PLAIN") || contains(caps, "STLS") {
		t.Errorf("CAPA after STLS %q", caps)
	}
	c.expectErr("STLS", "TLS already active")
	c.login()
	c.expectOK("RETR 1")
	if _, data := c.multi(); !bytes.Equal(data, msg("one", "1")) {
		t.Errorf("RETR over TLS %q", data)
	}
	c.expectOK("QUIT")
}

func TestSTLSForgetsUser(t *testing.T) {
	e := newEnv(t, envConfig{withTLS: true})
	c := dial(t, e.addr)
	c.expectOK("USER " + testUser)
	c.expectErr("STLS x", "STLS takes no argument")
	c.expectOK("STLS")
	c = newClient(t, tls.Client(c.conn, e.clientTLS()))
	// RFC 2595 §4: state from before TLS is forgotten.
	c.expectErr("PASS "+testPass, "send USER first")
	c.login()
	c.expectOK("QUIT")
}

// Commands pipelined behind STLS in plain text must not run as if they had
// come over TLS (CVE-2011-0411).
func TestSTLSInjection(t *testing.T) {
	e := newEnv(t, envConfig{withTLS: true})
	c := dial(t, e.addr)
	c.send("STLS\r\nUSER " + testUser)
	c.expectClosed([]string{"-ERR commands after STLS must wait for TLS"})
}

func TestImplicitTLS(t *testing.T) {
	e := newEnv(t, envConfig{withTLS: true, opts: func(o *Options) { o.Plaintext = backend.PlaintextTLS }})
	e.deliver(msg("one", ".dot"))
	conn, err := tls.Dial("tcp", e.tlsAddr, e.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	c.expectOK("")
	caps := c.multiLines("CAPA")
	if !contains(caps, "USER") || contains(caps, "STLS") {
		t.Errorf("CAPA on implicit TLS %q", caps)
	}
	c.login()
	c.expectOK("RETR 1")
	if _, data := c.multi(); !bytes.Equal(data, msg("one", ".dot")) {
		t.Errorf("RETR %q", data)
	}
	c.expectOK("QUIT")
}

func TestHandshakeTimeout(t *testing.T) {
	e := newEnv(t, envConfig{withTLS: true, opts: func(o *Options) { o.HandshakeTimeout = 50 * time.Millisecond }})
	t.Run("implicit TLS", func(t *testing.T) {
		// A client that connects and never says hello.
		c := newClient(t, mustDial(t, e.tlsAddr, ""))
		c.expectClosed(nil)
	})
	t.Run("STLS", func(t *testing.T) {
		c := dial(t, e.addr)
		c.expectOK("STLS")
		c.expectClosed(nil)
	})
	t.Run("implicit TLS with a plain-text client", func(t *testing.T) {
		c := newClient(t, mustDial(t, e.tlsAddr, ""))
		c.send("USER " + testUser)
		// The server answers the non-TLS bytes with a TLS alert, at most,
		// and closes.
		_, err := io.ReadAll(c.conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection not closed")
		}
	})
}

func TestServeTLSNeedsConfig(t *testing.T) {
	e := newEnv(t, envConfig{})
	if err := e.srv.ServeTLS(listen(t)); err == nil {
		t.Error("ServeTLS without TLSConfig did not fail")
	}
}

func TestNewChecksOptions(t *testing.T) {
	e := newEnv(t, envConfig{})
	for _, o := range []Options{
		{},
		{Backend: e.b, Plaintext: "sometimes"},
		{Backend: e.b, MaxLineLength: 4},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) did not fail", o)
		}
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.deliver(msg("one", "1"))
	idle := dial(t, e.addr)
	idle.login()
	idle.expectOK("DELE 1")
	unauth := dial(t, e.addr)
	e.close() // Shutdown returns once every session has ended
	idle.expectClosed([]string{"-ERR [SYS/TEMP] server shutting down"})
	unauth.expectClosed([]string{"-ERR [SYS/TEMP] server shutting down"})
	if _, err := net.Dial("tcp", e.addr); err == nil {
		t.Error("listener still accepting after Shutdown")
	}
	// Nothing deleted: a shutdown is no QUIT.
	b, err := backend.New(backend.Options{DataDir: e.dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	u, _ := b.LookupUser(context.Background(), testUser)
	mb, _ := u.Mailbox(backend.Inbox)
	if mb.Messages != 1 {
		t.Errorf("%d messages after shutdown, want 1", mb.Messages)
	}
	// Serve after Shutdown returns at once.
	if err := e.srv.Serve(listen(t)); err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCommandTimeout: a command line begun and not finished within
// CommandTimeout gets -ERR and the connection is closed, in either state
// and in a SASL exchange; nothing is deleted. A connection that has sent
// nothing at all is only subject to the idle timeout.
func TestCommandTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	e := newEnv(t, envConfig{opts: func(o *Options) { o.CommandTimeout = timeout }})
	e.deliver(msg("one", "1"))
	const want = "-ERR command not completed within 100ms, closing connection"
	partial := func(c *client, s string) {
		if _, err := io.WriteString(c.conn, s); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("authorization", func(t *testing.T) {
		c := dial(t, e.addr)
		partial(c, "USER ali")
		c.expectClosed([]string{want})
		e.waitEnded(1)
	})
	t.Run("transaction: nothing deleted", func(t *testing.T) {
		c := dial(t, e.addr)
		c.login()
		c.expectOK("DELE 1")
		partial(c, "QU")
		c.expectClosed([]string{want})
		e.waitEnded(1)
		if _, msgs := e.inbox(); len(msgs) != 1 {
			t.Errorf("%d messages after the timeout, want 1", len(msgs))
		}
	})
	t.Run("SASL response", func(t *testing.T) {
		c := dial(t, e.addr)
		c.send("AUTH PLAIN")
		if got := c.line(); got != "+ " {
			t.Fatalf("AUTH PLAIN: %q", got)
		}
		partial(c, "AGFsaWNl")
		c.expectClosed([]string{want})
		e.waitEnded(1)
	})
	t.Run("a line too long, trickled", func(t *testing.T) {
		c := dial(t, e.addr)
		partial(c, "USER "+strings.Repeat("x", 10000))
		c.expectClosed([]string{want})
		e.waitEnded(1)
	})
	t.Run("silence is not a partial command", func(t *testing.T) {
		c := dial(t, e.addr)
		time.Sleep(3 * timeout) // the time passing is what is tested
		c.expectOK("USER " + testUser)
		c.expectOK("PASS " + testPass)
		time.Sleep(3 * timeout)
		c.expectOK("STAT")
		c.expectOK("QUIT")
		e.waitEnded(1)
	})
}
