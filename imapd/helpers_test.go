package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/testutil"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/roostmail/roost/backend"
)

const (
	testUser = "alice@example.org"
	testPass = "secret pw"
)

// env is one backend and one IMAP server on a loopback port.
type env struct {
	t    *testing.T
	dir  string
	b    *backend.Backend
	srv  *Server
	addr string
	opts Options
	// served ends when Serve returns.
	served chan error
}

type envOption func(*Options)

// newEnv starts a server over a fresh backend with one account.
func newEnv(t *testing.T, mods ...envOption) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.openBackend()
	if err := e.b.CreateUser(context.Background(), testUser, testPass); err != nil {
		t.Fatal(err)
	}
	e.start(mods...)
	return e
}

func (e *env) openBackend() {
	b, err := backend.New(backend.Options{DataDir: e.dir, NoSync: true, LoginCacheTTL: -1, Hostname: "mx.example.org"})
	if err != nil {
		e.t.Fatal(err)
	}
	e.b = b
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("IMAPD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (e *env) start(mods ...envOption) {
	t := e.t
	opts := Options{Backend: e.b, AuthFailureDelay: -1, Logger: testLogger(t)}
	if os.Getenv("IMAPD_TEST_WIRE") != "" {
		opts.Debug = os.Stderr
	}
	for _, m := range mods {
		m(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.opts, e.addr = srv, opts, l.Addr().String()
	e.served = make(chan error, 1)
	go func() { e.served <- srv.Serve(l) }()
	t.Cleanup(e.stop)
}

// stop shuts the server and the backend down (idempotent).
func (e *env) stop() {
	if e.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			e.t.Errorf("shutdown: %v", err)
		}
		if err := <-e.served; err != nil {
			e.t.Errorf("serve: %v", err)
		}
		e.srv = nil
	}
	if e.b != nil {
		e.b.Close()
		e.b = nil
	}
}

// user returns the backend's handle of the test account.
func (e *env) user() *backend.User {
	u, err := e.b.LookupUser(context.Background(), testUser)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// deliver delivers a message to the test account's INBOX as LMTP would.
func (e *env) deliver(msg string) {
	e.t.Helper()
	r, err := e.b.ResolveRecipient(context.Background(), testUser)
	if err != nil {
		e.t.Fatal(err)
	}
	if errs := e.b.Deliver(context.Background(), []byte(msg), []backend.Recipient{r}); errs[0] != nil {
		e.t.Fatal(errs[0])
	}
}

// client dials and logs in with imapclient.
func (e *env) client(opts ...*imapclient.Options) *imapclient.Client {
	e.t.Helper()
	var o *imapclient.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	c, err := imapclient.DialInsecure(e.addr, o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// raw is a line-level client for exact wire checks.
type raw struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (e *env) dialRaw() *raw {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	r := &raw{t: e.t, c: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return r
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) line() string {
	r.t.Helper()
	l, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// until reads lines up to one starting with prefix and returns them all.
func (r *raw) until(prefix string) []string {
	r.t.Helper()
	var lines []string
	for {
		l := r.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, prefix) {
			return lines
		}
	}
}

// cmd sends a tagged command and returns its responses, the tagged one last.
func (r *raw) cmd(tag, command string) []string {
	r.t.Helper()
	r.send(tag + " " + command + "\r\n")
	return r.until(tag + " ")
}

func (r *raw) login() {
	r.t.Helper()
	r.line() // greeting
	if l := r.cmd("L", fmt.Sprintf("LOGIN %s %q", testUser, testPass)); !strings.HasPrefix(l[len(l)-1], "L OK") {
		r.t.Fatalf("login: %q", l)
	}
}

// readEOF reads until the server closes and returns what it said.
func (r *raw) readEOF() string {
	r.t.Helper()
	b, err := io.ReadAll(r.r)
	if err != nil && !isClosedErr(err) {
		r.t.Fatalf("read to EOF: %v (got %q)", err, b)
	}
	return string(b)
}

func isClosedErr(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// selfSigned returns a TLS config with a fresh certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Config {
	return testutil.SelfSigned(t, "mx.example.org", "127.0.0.1").Server
}

func msgText(subject, body string) string {
	return "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.net>\r\n\r\n" + body + "\r\n"
}

// flagsOf returns a message's stored flags: \Recent, which an IMAP4rev1
// session is told of but nobody stores, is left out.
func flagsOf(m *imapclient.FetchMessageBuffer) []string {
	var out []string
	for _, f := range m.Flags {
		if f != `\Recent` {
			out = append(out, string(f))
		}
	}
	return out
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

func clientTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }
