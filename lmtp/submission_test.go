package lmtp

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/testutil"
)

// queueStub stands in for the outbound queue: it records what is
// submitted.
type queueStub struct {
	mu   sync.Mutex
	msgs []backend.Outgoing
	fail error
}

func (q *queueStub) enqueue(ctx context.Context, m backend.Outgoing) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return "", q.fail
	}
	q.msgs = append(q.msgs, m)
	return itoa(int64(len(q.msgs))), nil
}

func (q *queueStub) all() []backend.Outgoing {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]backend.Outgoing(nil), q.msgs...)
}

// nullMX refuses the domain "nullmx.test" as a null-MX check would.
func nullMX(ctx context.Context, domain string) error {
	if domain == "nullmx.test" {
		return &smtp.SMTPError{Code: 556, EnhancedCode: smtp.EnhancedCode{5, 1, 10}, Message: "Recipient domain accepts no mail (null MX)"}
	}
	return nil
}

// remoteFrom makes every client look as if it connected from addr, for the
// plaintext policy ("" leaves the loopback address).
func remoteFrom(ip string) func(net.Addr) net.Addr {
	if ip == "" {
		return nil
	}
	return func(net.Addr) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
}

type subEnv struct {
	*env
	q         *queueStub
	clientTLS *tls.Config
}

func newSubmissionEnv(t *testing.T, remoteIP string, implicitTLS bool, mod func(*Options)) *subEnv {
	t.Helper()
	cert := testutil.SelfSigned(t, testHostname, "127.0.0.1")
	serverTLS, clientTLS := cert.Server, cert.Client
	q := &queueStub{}
	opts := Options{
		TLSConfig: serverTLS,
		Submission: &SubmissionOptions{
			Enqueue:          q.enqueue,
			CheckDomain:      nullMX,
			AuthFailureDelay: -1,
		},
		testRemoteAddr: remoteFrom(remoteIP),
	}
	if mod != nil {
		mod(&opts)
	}
	e := newEnv(t, envOptions{opts: opts, tls: implicitTLS})
	return &subEnv{env: e, q: q, clientTLS: clientTLS}
}

func plainAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

const submitted = "From: Alice <alice@example.org>\r\n" +
	"To: Someone <someone@elsewhere.test>\r\n" +
	"Subject: submitted\r\n" +
	"\r\n" +
	"Hello.\r\n"

// starttls upgrades a raw client after EHLO.
func (e *subEnv) starttls(c *client) *client {
	e.t.Helper()
	c.cmd("STARTTLS", "220 ")
	tc := tls.Client(c.c, e.clientTLS)
	if err := tc.Handshake(); err != nil {
		e.t.Fatal(err)
	}
	return newClient(e.t, tc)
}

// TestSubmissionThunderbirdOrder: EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL,
// RCPT, DATA, as Thunderbird sends them, from a non-loopback address: AUTH
// appears only after TLS; the message is queued with a Received header
// saying ESMTPSA and the added Date and Message-ID.
func TestSubmissionThunderbirdOrder(t *testing.T) {
	e := newSubmissionEnv(t, "203.0.113.7", false, nil)
	c := e.dial()
	lines := c.cmd("EHLO thunderbird.example", "250 ")
	if !hasKeyword(lines, "STARTTLS") || hasKeyword(lines, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO before TLS: %q", lines)
	}
	// No password before TLS from outside, however the client tries.
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "530 5.7.0")
	c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0")
	c = e.starttls(c)
	lines = c.cmd("EHLO thunderbird.example", "250 ")
	if !hasKeyword(lines, "AUTH PLAIN LOGIN") || hasKeyword(lines, "STARTTLS") {
		t.Fatalf("EHLO after TLS: %q", lines)
	}
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "235 2.7.0")
	c.cmd("MAIL FROM:<alice@example.org> SIZE=100", "250 ")
	c.cmd("RCPT TO:<someone@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	got := c.data(submitted, 1)
	if !strings.HasPrefix(got[0], "250 2.0.0 Ok: queued as 1") {
		t.Fatalf("DATA: %q", got)
	}
	c.cmd("QUIT", "221 ")

	msgs := e.q.all()
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued", len(msgs))
	}
	m := msgs[0]
	if m.From != "alice@example.org" || m.Account != "alice@example.org" ||
		strings.Join(m.Recipients, ",") != "someone@elsewhere.test,bob@example.org" {
		t.Errorf("queued %+v", m)
	}
	body := string(m.Body)
	if strings.HasPrefix(body, "Return-Path:") || !strings.HasPrefix(body, "Received: from thunderbird.example ([127.0.0.1])") ||
		!strings.Contains(body, "with ESMTPSA id ") {
		t.Errorf("trace: %.300q", body)
	}
	for _, h := range []string{"\r\nDate: ", "\r\nMessage-ID: <", "\r\nFrom: Alice <alice@example.org>\r\n"} {
		if !strings.Contains(body, h) {
			t.Errorf("queued message lacks %q: %.400q", h, body)
		}
	}
	if !strings.HasSuffix(body, "\r\n\r\nHello.\r\n") {
		t.Errorf("body changed: %q", body)
	}
}

// TestSubmissionPolicy: what an authenticated or unauthenticated client may
// and may not do.
func TestSubmissionPolicy(t *testing.T) {
	e := newSubmissionEnv(t, "", false, nil)
	ctx := context.Background()
	if err := e.be.AddAlias(ctx, "alice.smith@example.org", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	login := func() *client {
		c := e.dial()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "235 ")
		return c
	}

	t.Run("unauthenticated relay", func(t *testing.T) {
		c := e.dial()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0")
		c.cmd("RCPT TO:<someone@elsewhere.test>", "502 ")
	})
	t.Run("wrong password", func(t *testing.T) {
		c := e.dial()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "wrong"), "535 5.7.8")
		c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "235 ")
		c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "503 ")
	})
	t.Run("other authorization identity", func(t *testing.T) {
		c := e.dial()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("AUTH PLAIN "+b64("bob@example.org\x00alice@example.org\x00secret"), "535 ")
	})
	t.Run("AUTH LOGIN", func(t *testing.T) {
		c := e.dial()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("AUTH LOGIN", "334 "+b64("Username:"))
		c.cmd(b64("alice@example.org"), "334 "+b64("Password:"))
		c.cmd(b64("secret"), "235 ")
		c.cmd("MAIL FROM:<alice@example.org>", "250 ")
	})
	t.Run("AUTH LOGIN with initial response, cancelled", func(t *testing.T) {
		c := e.dial()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("AUTH LOGIN "+b64("alice@example.org"), "334 "+b64("Password:"))
		c.cmd("*", "501 ")
		c.cmd("NOOP", "250 ") // the response line was not taken as a command, nor this one as a response
	})
	t.Run("spoofed envelope sender", func(t *testing.T) {
		c := login()
		c.cmd("MAIL FROM:<bob@example.org>", "553 5.7.1")
		c.cmd("MAIL FROM:<>", "553 5.7.1")
		c.cmd("MAIL FROM:<alice@elsewhere.test>", "553 5.7.1")
		c.cmd("MAIL FROM:<alice.smith@example.org>", "250 ") // an alias
		c.cmd("RSET", "250 ")
		c.cmd("MAIL FROM:<Alice+lists@Example.org>", "250 ") // a subaddress, any case
	})
	t.Run("spoofed From header", func(t *testing.T) {
		c := login()
		c.cmd("MAIL FROM:<alice@example.org>", "250 ")
		c.cmd("RCPT TO:<someone@elsewhere.test>", "250 ")
		got := c.data(strings.Replace(submitted, "alice@example.org", "ceo@example.org", 1), 1)
		if !strings.HasPrefix(got[0], "553 5.7.1") {
			t.Fatalf("spoofed From: %q", got)
		}
		c.cmd("MAIL FROM:<alice@example.org>", "250 ")
		c.cmd("RCPT TO:<someone@elsewhere.test>", "250 ")
		got = c.data("From: a@example.org, alice@example.org\r\n\r\nx\r\n", 1)
		if !strings.HasPrefix(got[0], "553 5.7.1") {
			t.Fatalf("one of two From addresses spoofed: %q", got)
		}
		c.cmd("MAIL FROM:<alice@example.org>", "250 ")
		c.cmd("RCPT TO:<someone@elsewhere.test>", "250 ")
		got = c.data("Subject: no from\r\n\r\nx\r\n", 1)
		if !strings.HasPrefix(got[0], "550 5.6.0") {
			t.Fatalf("no From: %q", got)
		}
		c.cmd("MAIL FROM:<alice@example.org>", "250 ")
		c.cmd("RCPT TO:<someone@elsewhere.test>", "250 ")
		got = c.data(strings.Replace(submitted, "alice@example.org", "alice.smith@example.org", 1), 1)
		if !strings.HasPrefix(got[0], "250 ") {
			t.Fatalf("From: an alias: %q", got)
		}
	})
	t.Run("recipients", func(t *testing.T) {
		c := login()
		c.cmd("MAIL FROM:<alice@example.org>", "250 ")
		c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1")
		c.cmd("RCPT TO:<someone@nullmx.test>", "556 5.1.10")
		c.cmd("RCPT TO:<not an address>", "501 ")
		c.cmd("RCPT TO:<postmaster@example.org>", "250 ")
	})
	if n := len(e.q.all()); n != 1 {
		t.Errorf("%d messages queued, want 1 (the alias From)", n)
	}
}

// TestSubmissionQueueFailure: a message the queue cannot take gets a 451,
// never a 250.
func TestSubmissionQueueFailure(t *testing.T) {
	e := newSubmissionEnv(t, "", false, nil)
	e.q.fail = errors.New("disk on fire")
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "235 ")
	c.cmd("MAIL FROM:<alice@example.org>", "250 ")
	c.cmd("RCPT TO:<someone@elsewhere.test>", "250 ")
	if got := c.data(submitted, 1); !strings.HasPrefix(got[0], "451 4.3.0") || strings.Contains(got[0], "fire") {
		t.Fatalf("DATA with a failing queue: %q", got)
	}
}

// TestSubmissionLimits: the recipient and size limits apply as on the MX.
func TestSubmissionLimits(t *testing.T) {
	e := newSubmissionEnv(t, "", false, func(o *Options) {
		o.MaxRecipients = 2
		o.MaxMessageBytes = 2000
	})
	c := e.dial()
	lines := c.cmd("EHLO client.example", "250 ")
	if !hasKeyword(lines, "SIZE 2000") {
		t.Errorf("EHLO: %q", lines)
	}
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "235 ")
	c.cmd("MAIL FROM:<alice@example.org> SIZE=3000", "552 5.3.4")
	c.cmd("MAIL FROM:<alice@example.org>", "250 ")
	c.cmd("RCPT TO:<a@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<b@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<c@elsewhere.test>", "452 4.5.3")
	got := c.data(submitted+strings.Repeat("x", 2000)+"\r\n", 1)
	if !strings.HasPrefix(got[0], "552 5.3.4") {
		t.Fatalf("too big: %q", got)
	}
	if n := len(e.q.all()); n != 0 {
		t.Errorf("%d queued", n)
	}
}

// TestSubmissionPlaintextPolicy: AUTH over plain text is refused from a
// non-loopback address by default and under "tls", taken from loopback
// by default, and everywhere under "always"; over implicit TLS always.
func TestSubmissionPlaintextPolicy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   backend.PlaintextPolicy
		remoteIP string
		tls      bool
		allowed  bool
	}{
		{"default, loopback", "", "", false, true},
		{"default, remote", "", "198.51.100.9", false, false},
		{"default, remote, implicit TLS", "", "198.51.100.9", true, true},
		{"tls, loopback", backend.PlaintextTLS, "", false, false},
		{"tls, loopback, implicit TLS", backend.PlaintextTLS, "", true, true},
		{"always, remote", backend.PlaintextAlways, "198.51.100.9", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSubmissionEnv(t, tc.remoteIP, tc.tls, func(o *Options) { o.Submission.Plaintext = tc.policy })
			var c *client
			if tc.tls {
				conn, err := tls.Dial("tcp", e.addr, e.clientTLS)
				if err != nil {
					t.Fatal(err)
				}
				c = newClient(t, conn)
				c.expect("220 ")
			} else {
				c = e.dial()
			}
			lines := c.cmd("EHLO client.example", "250 ")
			if hasKeyword(lines, "AUTH PLAIN LOGIN") != tc.allowed {
				t.Errorf("EHLO %q: AUTH offered = %v", lines, !tc.allowed)
			}
			if tc.allowed {
				c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "235 ")
			} else {
				c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "530 5.7.0")
			}
		})
	}
}

// TestSubmissionLockout: failed AUTHs count in the backend's limiter, per
// (policy) remote IP, as for IMAP and POP3.
func TestSubmissionLockout(t *testing.T) {
	e := newSubmissionEnv(t, "192.0.2.50", true, nil)
	// newEnv's backend has no limiter; this one does.
	be, err := backend.New(backend.Options{DataDir: t.TempDir(), NoSync: true, LoginCacheTTL: -1,
		Limiter: backend.NewAuthLimiter(backend.AuthLimiterOptions{MaxFailures: 2})})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := be.CreateUser(context.Background(), "alice@example.org", "secret"); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Backend: be, TLSConfig: e.srv.opts.TLSConfig, Submission: e.srv.opts.Submission,
		testRemoteAddr: remoteFrom("192.0.2.50")})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(l)
	defer srv.Shutdown(context.Background())
	dial := func() *client {
		conn, err := tls.Dial("tcp", l.Addr().String(), e.clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, conn)
		c.expect("220 ")
		c.cmd("EHLO client.example", "250 ")
		return c
	}
	c := dial()
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "bad1"), "535 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "bad2"), "535 ")
	c = dial()
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "secret"), "454 4.7.0")
}

const pythonSubmission = `
import smtplib, ssl, sys
host, port, cafile, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
msg = b"From: Alice <alice@example.org>\r\nTo: bob@elsewhere.test\r\nSubject: from python\r\n\r\nHi Bob.\r\n"
if mode == "implicit":
    s = smtplib.SMTP_SSL(host, port, local_hostname="python.example", context=ctx, timeout=30)
    s.ehlo()
else:
    s = smtplib.SMTP(host, port, local_hostname="python.example", timeout=30)
    s.ehlo()
    print("before tls auth", s.has_extn("auth"))
    if mode == "plain-login":
        try:
            s.login("alice@example.org", "secret")
            print("plain login accepted")
        except smtplib.SMTPNotSupportedError:
            print("plain login refused")
    s.starttls(context=ctx)
    s.ehlo()
print("auth", s.esmtp_features.get("auth", "").strip())
s.login("alice@example.org", "secret")
try:
    s.sendmail("bob@example.org", ["x@elsewhere.test"], msg)
except smtplib.SMTPSenderRefused as e:
    print("spoof refused", e.smtp_code, e.smtp_error.decode())
refused = s.sendmail("alice@example.org", ["bob@elsewhere.test", "nobody@example.org"], msg)
for rcpt, (code, text) in refused.items():
    print("refused", rcpt, code)
s.quit()
print("done")
`

// TestSubmissionPythonSmtplib: Python's smtplib in Thunderbird's order
// (EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL, RCPT, DATA), from a
// non-loopback address as far as the policy knows, and over implicit TLS.
func TestSubmissionPythonSmtplib(t *testing.T) {
	python := testutil.RequireBinary(t, "python3")
	dir := t.TempDir()
	script := filepath.Join(dir, "submit.py")
	must(t, os.WriteFile(script, []byte(pythonSubmission), 0o600))
	for _, implicit := range []bool{false, true} {
		name, mode := "starttls", "plain-login"
		if implicit {
			name, mode = "implicit tls", "implicit"
		}
		t.Run(name, func(t *testing.T) {
			e := newSubmissionEnv(t, "203.0.113.20", implicit, nil)
			cafile := filepath.Join(dir, name+".pem")
			must(t, os.WriteFile(cafile, certPEM(t, e.srv.opts.TLSConfig), 0o600))
			host, port, _ := strings.Cut(e.addr, ":")
			out, err := run(t, python, script, host, port, cafile, mode)
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			want := []string{"auth PLAIN LOGIN", "spoof refused 553 5.7.1", "refused nobody@example.org 550", "done"}
			if !implicit {
				want = append(want, "before tls auth False", "plain login refused")
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			msgs := e.q.all()
			if len(msgs) != 1 || strings.Join(msgs[0].Recipients, ",") != "bob@elsewhere.test" {
				t.Fatalf("queued %+v", msgs)
			}
		})
	}
}

// TestSubmissionSwaks: swaks with AUTH PLAIN and LOGIN after STARTTLS, and
// over implicit TLS.
func TestSubmissionSwaks(t *testing.T) {
	swaks := testutil.RequireBinary(t, "swaks")
	for _, tc := range []struct {
		name     string
		implicit bool
		args     []string
	}{
		{"starttls plain", false, []string{"--tls", "--auth", "PLAIN"}},
		{"starttls login", false, []string{"--tls", "--auth", "LOGIN"}},
		{"implicit tls", true, []string{"--tls-on-connect", "--auth", "PLAIN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSubmissionEnv(t, "203.0.113.21", tc.implicit, nil)
			host, port, _ := strings.Cut(e.addr, ":")
			args := append([]string{"--server", host, "--port", port, "--helo", "swaks.example",
				"--from", "alice@example.org", "--to", "carol@elsewhere.test",
				"--header", "From: alice@example.org", "--auth-user", "alice@example.org", "--auth-password", "secret",
				"--timeout", "30"}, tc.args...)
			out, err := run(t, swaks, args...)
			if err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			if !strings.Contains(out, "235 2.7.0") || !strings.Contains(out, "250 2.0.0 Ok: queued as 1") {
				t.Errorf("swaks output:\n%s", out)
			}
			if msgs := e.q.all(); len(msgs) != 1 {
				t.Fatalf("%d queued", len(msgs))
			}
		})
	}
	t.Run("no STARTTLS from outside", func(t *testing.T) {
		e := newSubmissionEnv(t, "203.0.113.22", false, nil)
		host, port, _ := strings.Cut(e.addr, ":")
		out, err := run(t, swaks, "--server", host, "--port", port, "--from", "alice@example.org",
			"--to", "carol@elsewhere.test", "--auth", "PLAIN", "--auth-user", "alice@example.org",
			"--auth-password", "secret", "--timeout", "30")
		if err == nil || len(e.q.all()) != 0 {
			t.Fatalf("swaks authenticated in clear text from outside:\n%s", out)
		}
	})
}

// certPEM returns the PEM of the server's certificate.
func certPEM(t *testing.T, c *tls.Config) []byte {
	t.Helper()
	der := c.Certificates[0].Certificate[0]
	return []byte("-----BEGIN CERTIFICATE-----\n" + wrap64(base64.StdEncoding.EncodeToString(der)) + "-----END CERTIFICATE-----\n")
}

func wrap64(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	return b.String() + s + "\n"
}

func TestLoginServer(t *testing.T) {
	var got [2]string
	l := &loginServer{login: func(u, p string) error { got = [2]string{u, p}; return nil }}
	ch, done, err := l.Next(nil)
	if string(ch) != "Username:" || done || err != nil {
		t.Fatal(string(ch), done, err)
	}
	ch, done, _ = l.Next([]byte("user"))
	if string(ch) != "Password:" || done {
		t.Fatal(string(ch), done)
	}
	if _, done, err = l.Next([]byte("pw")); !done || err != nil || got != [2]string{"user", "pw"} {
		t.Fatal(done, err, got)
	}
	if _, _, err = l.Next([]byte("more")); err == nil {
		t.Fatal("a fourth step was accepted")
	}
}

// FuzzLoginServer: any sequence of client responses ends the LOGIN
// exchange properly: at most two challenges, then one login call.
func FuzzLoginServer(f *testing.F) {
	f.Add([]byte(""), []byte("user"), []byte("pw"), []byte("extra"))
	f.Add([]byte("user"), []byte("pw"), []byte(""), []byte(""))
	f.Fuzz(func(t *testing.T, r1, r2, r3, r4 []byte) {
		calls := 0
		l := &loginServer{login: func(u, p string) error { calls++; return nil }}
		done := false
		for i, r := range [][]byte{r1, r2, r3, r4} {
			_, d, err := l.Next(r)
			if done && err == nil {
				t.Fatalf("step %d after done accepted", i)
			}
			done = done || d
		}
		if calls != 1 {
			t.Fatalf("login called %d times", calls)
		}
	})
}
