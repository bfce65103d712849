package lmtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/testutil"

	"github.com/roostmail/roost/backend"
)

// The accounts every test environment has.
var testAccounts = []string{"alice@example.org", "bob@example.org", "carol@example.org", "dave@example.net"}

const testHostname = "mx.roost.test"

// env is a backend and a Server listening on a real socket.
type env struct {
	t    testing.TB
	be   *backend.Backend
	srv  *Server
	net  string // "tcp" or "unix"
	addr string
	logs *syncBuffer
	done chan error // Serve's result
}

type envOptions struct {
	opts     Options
	unix     bool
	tls      bool // ServeTLS
	fsync    bool
	accounts []string
	beMax    int64
	// wrap, if set, wraps the listener the server serves (to watch its
	// connections).
	wrap func(net.Listener) net.Listener
}

// newEnv starts a server with opts (Backend, Hostname and Logger filled in).
func newEnv(t testing.TB, eo envOptions) *env {
	t.Helper()
	be, err := backend.New(backend.Options{
		DataDir:         t.TempDir(),
		Hostname:        testHostname,
		NoSync:          !eo.fsync,
		LoginCacheTTL:   -1,
		MaxMessageBytes: eo.beMax,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	accounts := eo.accounts
	if accounts == nil {
		accounts = testAccounts
	}
	// Password hashing (Argon2id) is most of a test's setup time: in
	// parallel it takes half as long on two cores.
	ctx := context.Background()
	errs := make(chan error, len(accounts))
	for _, a := range accounts {
		go func() { errs <- be.CreateUser(ctx, a, "secret") }()
	}
	for range accounts {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if eo.accounts == nil {
		if err := be.AddAlias(ctx, "postmaster@example.org", "alice@example.org"); err != nil {
			t.Fatal(err)
		}
	}

	e := &env{t: t, be: be, logs: &syncBuffer{}, done: make(chan error, 1)}
	opts := eo.opts
	opts.Backend = be
	opts.Hostname = testHostname
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e.srv, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	if eo.unix {
		// Short path: unix socket paths are limited to about 100 bytes.
		dir, derr := newShortTempDir(t)
		if derr != nil {
			t.Fatal(derr)
		}
		l, err = net.Listen("unix", filepath.Join(dir, "lmtp.sock"))
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	e.net, e.addr = l.Addr().Network(), l.Addr().String()
	if eo.wrap != nil {
		l = eo.wrap(l)
	}
	go func() {
		if eo.tls {
			e.done <- e.srv.ServeTLS(l)
		} else {
			e.done <- e.srv.Serve(l)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-e.done; err != nil {
			t.Errorf("Serve returned %v after Shutdown", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", e.logs.String())
		}
	})
	return e
}

func newShortTempDir(t testing.TB) (string, error) {
	dir, err := os.MkdirTemp("", "roost-lmtp-")
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir, nil
}

// inbox returns the raw messages in an account's INBOX, in UID order.
func (e *env) inbox(addr string) [][]byte {
	e.t.Helper()
	u, err := e.be.LookupUser(context.Background(), addr)
	if err != nil {
		e.t.Fatal(err)
	}
	mb, err := u.Mailbox("INBOX")
	if err != nil {
		e.t.Fatal(err)
	}
	uids, err := u.UIDs(mb.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	msgs, err := u.MessagesByUID(mb.ID, uids)
	if err != nil {
		e.t.Fatal(err)
	}
	var out [][]byte
	for i := range msgs {
		body, err := u.ReadBody(&msgs[i])
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, body)
	}
	return out
}

// count returns the number of messages in an account's INBOX.
func (e *env) count(addr string) uint32 {
	e.t.Helper()
	u, err := e.be.LookupUser(context.Background(), addr)
	if err != nil {
		e.t.Fatal(err)
	}
	mb, err := u.Mailbox("INBOX")
	if err != nil {
		e.t.Fatal(err)
	}
	return mb.Messages
}

// splitTrace separates the Return-Path and Received headers Roost adds
// from the message as the client sent it.
func splitTrace(t testing.TB, stored []byte) (returnPath, received string, rest []byte) {
	t.Helper()
	rp, after, ok := bytes.Cut(stored, []byte("\r\n"))
	if !ok || !bytes.HasPrefix(rp, []byte("Return-Path: ")) {
		t.Fatalf("stored message does not start with Return-Path: %.200q", stored)
	}
	if !bytes.HasPrefix(after, []byte("Received: ")) {
		t.Fatalf("no Received header after Return-Path: %.200q", after)
	}
	// The Received header ends at the first line that does not start with
	// white space (RFC 5322 §2.2.3 folding).
	i := 0
	for {
		j := bytes.Index(after[i:], []byte("\r\n"))
		if j < 0 {
			t.Fatalf("unterminated Received header")
		}
		i += j + 2
		if i >= len(after) || (after[i] != ' ' && after[i] != '\t') {
			break
		}
	}
	return string(rp), string(after[:i-2]), after[i:]
}

// client is a raw SMTP/LMTP client for exact control over the bytes.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func (e *env) dial() *client {
	e.t.Helper()
	c, err := net.Dial(e.net, e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	cl := newClient(e.t, c)
	cl.expect("220 ")
	return cl
}

func newClient(t testing.TB, c net.Conn) *client {
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	return cl
}

// write sends raw bytes.
func (c *client) write(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply and returns its lines.
func (c *client) reply() ([]string, error) {
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines, nil
		}
	}
}

// expect reads a reply whose last line starts with prefix.
func (c *client) expect(prefix string) []string {
	c.t.Helper()
	lines, err := c.reply()
	if err != nil {
		c.t.Fatalf("reading reply (want %q): %v (got %q)", prefix, err, lines)
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, prefix) {
		c.t.Fatalf("reply %q, want %q", lines, prefix)
	}
	return lines
}

// cmd sends a command line and expects a reply starting with prefix.
func (c *client) cmd(line, prefix string) []string {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.expect(prefix)
}

// expectClosed checks that the server closes the connection now.
func (c *client) expectClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := c.r.ReadString('\n')
	if err == nil {
		c.t.Fatalf("got %q, want the connection closed", line)
	}
	if !errors.Is(err, io.EOF) && !isReset(err) {
		c.t.Fatalf("want EOF, got %v", err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// data sends DATA and the dot-stuffed message and returns the reply lines
// (LMTP: one per recipient).
func (c *client) data(msg string, replies int) []string {
	c.t.Helper()
	c.cmd("DATA", "354 ")
	c.write(dotStuff(msg) + ".\r\n")
	var all []string
	for range replies {
		lines, err := c.reply()
		if err != nil {
			c.t.Fatalf("reading DATA reply: %v (got %q)", err, lines)
		}
		all = append(all, lines...)
	}
	return all
}

// dotStuff applies RFC 5321 §4.5.2 transparency to a CRLF message.
func dotStuff(msg string) string {
	if strings.HasPrefix(msg, ".") {
		msg = "." + msg
	}
	return strings.ReplaceAll(msg, "\r\n.", "\r\n..")
}

// sampleMessage is a message with 8-bit text, a dot-stuffed line and
// header folding: everything that must come out byte for byte.
func sampleMessage(subject string) string {
	return "From: Sender <sender@remote.example>\r\n" +
		"To: Alice <alice@example.org>\r\n" +
		"Subject: " + subject + "\r\n" +
		"X-Folded: one\r\n\ttwo\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" +
		"Grüße aus Köln.\r\n" +
		".a line starting with a dot\r\n" +
		"..two dots\r\n" +
		"\r\n" +
		"trailing spaces   \r\n"
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testTLS returns a server config with a fresh self-signed certificate for
// testHostname and a client config that trusts it.
func testTLS(t testing.TB) (server, client *tls.Config) {
	c := testutil.SelfSigned(t, testHostname)
	return c.Server, c.Client
}

// hasLine reports whether lines contain one equal to want after the code.
func hasKeyword(lines []string, want string) bool {
	for _, l := range lines {
		if len(l) > 4 && l[4:] == want {
			return true
		}
	}
	return false
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
