package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/testutil"

	"github.com/roostmail/roost/backend"
)

const (
	testUser = "alice@example.org"
	testPass = "secret pass" // a space: PASS takes the rest of the line
)

// ioTimeout only keeps a broken test from hanging; no assertion depends on it.
const ioTimeout = 20 * time.Second

// testLogWriter sends log lines to t.Log while the test runs.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

type testEnv struct {
	t       testing.TB
	dir     string
	b       *backend.Backend
	srv     *Server
	addr    string // plain listener
	tlsAddr string // implicit TLS listener, when TLSConfig is set
	ended   chan struct{}
	cert    *x509.Certificate
	certPEM []byte
	close   func() // Shutdown and close the backend (also at cleanup)
}

type envConfig struct {
	opts    func(*Options)
	backend func(*backend.Options)
	withTLS bool
	dir     string // reuse a data directory
}

// newEnv starts a backend with one account and a server on loopback.
func newEnv(t testing.TB, cfg envConfig) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: cfg.dir, ended: make(chan struct{}, 10000)}
	if e.dir == "" {
		e.dir = t.TempDir()
	}
	bopts := backend.Options{DataDir: e.dir, NoSync: true, LoginCacheTTL: -1}
	if cfg.backend != nil {
		cfg.backend(&bopts)
	}
	b, err := backend.New(bopts)
	if err != nil {
		t.Fatal(err)
	}
	e.b = b
	if cfg.dir == "" {
		if err := b.CreateUser(context.Background(), testUser, testPass); err != nil {
			t.Fatal(err)
		}
	}
	lw := &testLogWriter{t: t}
	var logger *slog.Logger
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts := Options{
		Backend:          b,
		Hostname:         "pop.example.org",
		AuthFailureDelay: time.Millisecond,
		Logger:           logger,
	}
	if cfg.withTLS {
		opts.TLSConfig, e.cert, e.certPEM = selfSignedTLS(t)
	}
	if cfg.opts != nil {
		cfg.opts(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.sessionEnded = func() { e.ended <- struct{}{} }
	e.srv = srv
	serveErr := make(chan error, 2)
	l := listen(t)
	e.addr = l.Addr().String()
	go func() { serveErr <- srv.Serve(l) }()
	n := 1
	if opts.TLSConfig != nil {
		tl := listen(t)
		e.tlsAddr = tl.Addr().String()
		go func() { serveErr <- srv.ServeTLS(tl) }()
		n++
	}
	var once sync.Once
	e.close = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			for range n {
				if err := <-serveErr; err != nil {
					t.Errorf("Serve returned %v after Shutdown", err)
				}
			}
			b.Close()
			lw.mu.Lock()
			lw.done = true
			lw.mu.Unlock()
		})
	}
	t.Cleanup(e.close)
	return e
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// deliver stores messages in the test account's INBOX and returns their UIDs.
func (e *testEnv) deliver(msgs ...[]byte) []uint32 {
	e.t.Helper()
	ctx := context.Background()
	r, err := e.b.ResolveRecipient(ctx, testUser)
	if err != nil {
		e.t.Fatal(err)
	}
	u := e.user()
	mb, err := u.Mailbox(backend.Inbox)
	if err != nil {
		e.t.Fatal(err)
	}
	next := mb.UIDNext
	var uids []uint32
	for _, m := range msgs {
		if errs := e.b.Deliver(ctx, m, []backend.Recipient{r}); errs[0] != nil {
			e.t.Fatal(errs[0])
		}
		uids = append(uids, next)
		next++
	}
	return uids
}

func (e *testEnv) user() *backend.User {
	e.t.Helper()
	u, err := e.b.LookupUser(context.Background(), testUser)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *testEnv) inbox() (backend.Mailbox, []backend.Message) {
	e.t.Helper()
	u := e.user()
	mb, err := u.Mailbox(backend.Inbox)
	if err != nil {
		e.t.Fatal(err)
	}
	var msgs []backend.Message
	if err := u.Messages(mb.ID, 1, ^uint32(0), func(m backend.Message) error {
		msgs = append(msgs, m)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return mb, msgs
}

// waitEnded waits until n more sessions have ended (and released their lock).
func (e *testEnv) waitEnded(n int) {
	e.t.Helper()
	for range n {
		select {
		case <-e.ended:
		case <-time.After(ioTimeout):
			e.t.Fatal("session did not end")
		}
	}
}

// client is a minimal, strict POP3 client for the tests.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	c.expectOK("")
	return c
}

func newClient(t testing.TB, conn net.Conn) *client {
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(ioTimeout))
	return &client{t: t, conn: conn, br: bufio.NewReader(conn)}
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command (unless "") and returns its status line.
func (c *client) cmd(line string) string {
	c.t.Helper()
	if line != "" {
		c.send(line)
	}
	return c.line()
}

func (c *client) expectOK(line string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%q: got %q, want +OK", line, r)
	}
	return r
}

func (c *client) expectErr(line, prefix string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, "-ERR "+prefix) {
		c.t.Fatalf("%q: got %q, want -ERR %s...", line, r, prefix)
	}
	return r
}

// multi reads a multi-line response body: the raw octets (still stuffed,
// without the terminating line) and the unstuffed data.
func (c *client) multi() (raw, data []byte) {
	c.t.Helper()
	var l []byte
	for {
		l = l[:0]
		for {
			frag, err := c.br.ReadSlice('\n')
			l = append(l, frag...)
			if err == nil {
				break
			}
			if err != bufio.ErrBufferFull {
				c.t.Fatalf("read multi-line: %v", err)
			}
		}
		if !bytes.HasSuffix(l, []byte("\r\n")) {
			c.t.Fatalf("multi-line response line without CRLF: %q", l)
		}
		if string(l) == ".\r\n" {
			return raw, data
		}
		raw = append(raw, l...)
		if l[0] == '.' {
			data = append(data, l[1:]...)
		} else {
			data = append(data, l...)
		}
	}
}

func (c *client) multiLines(cmd string) []string {
	c.t.Helper()
	c.expectOK(cmd)
	_, data := c.multi()
	s := strings.TrimSuffix(string(data), "\r\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\r\n")
}

func (c *client) login() {
	c.t.Helper()
	c.expectOK("USER " + testUser)
	c.expectOK("PASS " + testPass)
}

// expectClosed asserts the server closes the connection, having sent
// nothing more than want (nil: nothing).
func (c *client) expectClosed(want []string) {
	c.t.Helper()
	for _, w := range want {
		if got := c.line(); got != w && !strings.HasPrefix(got, w) {
			c.t.Fatalf("got %q, want %q", got, w)
		}
	}
	b, err := c.br.ReadByte()
	if err == nil {
		rest, _ := c.br.ReadString('\n')
		c.t.Fatalf("server sent %q, want the connection closed", string(b)+rest)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatalf("connection still open: %v", err)
	}
}

// selfSignedTLS makes a server TLS config with a fresh certificate for
// 127.0.0.1 and localhost.
func selfSignedTLS(t testing.TB) (*tls.Config, *x509.Certificate, []byte) {
	c := testutil.SelfSigned(t)
	return c.Server, c.Leaf, c.CertPEM
}

func (e *testEnv) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(e.cert)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// writeFile writes a file in a temporary directory and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// msg builds a CRLF test message.
func msg(subject string, bodyLines ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: bob@example.net\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.net>\r\n\r\n", testUser, subject, strings.ReplaceAll(subject, " ", "."))
	for _, l := range bodyLines {
		b.WriteString(l + "\r\n")
	}
	return []byte(b.String())
}

// crlfForm is what RETR must send for raw: bare LFs as CRLF and a final
// line break added.
func crlfForm(raw []byte) []byte {
	var out []byte
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}
