package main

// Tests of `roost serve` with its front ends: mail in over LMTP (unix
// socket) and out over POP3, the metrics that count them, and a delivery
// in progress when SIGTERM arrives.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
)

// textConn is a line-based client for SMTP/LMTP and POP3 dialogues.
type textConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialText(t *testing.T, network, addr string) *textConn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(cmdTimeout))
	return &textConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (tc *textConn) send(s string) {
	tc.t.Helper()
	if _, err := io.WriteString(tc.c, s); err != nil {
		tc.t.Fatal(err)
	}
}

// reply reads one reply (SMTP multi-line "250-" lines included) and checks
// that it starts with prefix.
func (tc *textConn) reply(prefix string) string {
	tc.t.Helper()
	var all []string
	for {
		line, err := tc.r.ReadString('\n')
		if err != nil {
			tc.t.Fatalf("reading reply (want %q): %v (got so far %q)", prefix, err, all)
		}
		all = append(all, line)
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	got := strings.Join(all, "")
	if !strings.HasPrefix(got, prefix) {
		tc.t.Fatalf("reply %q, want %q", got, prefix)
	}
	return got
}

// metricValue returns the value of one series from /metrics text.
func metricValue(body, series string) string {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

func TestServeLMTPUnixPOP3AndMetrics(t *testing.T) {
	for _, s := range []string{"lmtp", "pop3"} {
		if !strings.Contains(strings.Join(wiredServices(), " "), s) {
			t.Skipf("no %s front end wired in listeners.go", s)
		}
	}
	in := newInstance(t)
	sock := filepath.Join(in.dir, "lmtp.sock")
	in.env = []string{"ROOST_LMTP_LISTEN=unix:" + sock, "ROOST_POP3_AUTH_FAILURE_DELAY=0s"}
	// A stale socket from a killed server is replaced.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()

	srv := in.startServer()
	in.mustRun("alice-pw\n", "user", "add", "alice@example.org")
	st := in.status()
	if st["lmtp"] != "unix:"+sock {
		t.Errorf("status lmtp %q, want unix:%s", st["lmtp"], sock)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("LMTP socket: %v, mode %v (want 0660)", err, fi.Mode().Perm())
	}

	message := "From: bob@example.net\r\nTo: alice@example.org\r\nSubject: over LMTP\r\n\r\nHello Alice.\r\n"
	lm := dialText(t, "unix", sock)
	lm.reply("220 ")
	lm.send("LHLO client.test\r\n")
	lm.reply("250")
	lm.send("MAIL FROM:<bob@example.net>\r\n")
	lm.reply("250 ")
	lm.send("RCPT TO:<alice@example.org>\r\n")
	lm.reply("250 ")
	lm.send("DATA\r\n")
	lm.reply("354 ")
	lm.send(message + ".\r\n")
	lm.reply("250 ")
	lm.send("QUIT\r\n")
	lm.reply("221 ")

	pop := dialText(t, "tcp", st["pop3"])
	pop.reply("+OK")
	pop.send("USER alice@example.org\r\nPASS wrong\r\n")
	pop.reply("+OK")
	pop.reply("-ERR")
	pop.send("USER alice@example.org\r\nPASS alice-pw\r\n")
	pop.reply("+OK")
	pop.reply("+OK")
	pop.send("STAT\r\n")
	stat := pop.reply("+OK ")
	if !strings.HasPrefix(stat, "+OK 1 ") {
		t.Errorf("STAT %q, want one message", stat)
	}
	pop.send("QUIT\r\n")
	pop.reply("+OK")

	resp, err := http.Get("http://" + st["metrics"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for series, want := range map[string]string{
		`roost_deliveries_total{result="ok"}`:     "1",
		`roost_deliveries_total{result="error"}`:  "0",
		`roost_logins_total{result="ok"}`:         "1",
		`roost_logins_total{result="failed"}`:     "1",
		`roost_connections_total{service="lmtp"}`: "1",
		`roost_connections_total{service="pop3"}`: "1",
		`roost_connections_total{service="smtp"}`: "0",
	} {
		if got := metricValue(string(body), series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	// The delivery was synced, so the store counted at least one fsync.
	if got, err := strconv.ParseFloat(metricValue(string(body), "roost_store_syncs_total"), 64); err != nil || got < 1 {
		t.Errorf("roost_store_syncs_total = %v, %v; want at least 1", got, err)
	}

	srv.stop(syscall.SIGTERM)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("LMTP socket left after shutdown: %v", err)
	}
	b := openBackend(t, in.dataDir)
	defer b.Close()
	u, err := b.LookupUser(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox(backend.Inbox)
	if err != nil || mb.Messages != 1 {
		t.Errorf("INBOX %+v, %v; want 1 message", mb, err)
	}
}

// TestServeFinishesDeliveryOnSIGTERM: a message being transferred when
// SIGTERM arrives is still accepted and stored, and the server exits 0.
func TestServeFinishesDeliveryOnSIGTERM(t *testing.T) {
	if !strings.Contains(strings.Join(wiredServices(), " "), "lmtp") {
		t.Skip("no lmtp front end wired in listeners.go")
	}
	in := newInstance(t)
	srv := in.startServer()
	in.mustRun("pw\n", "user", "add", "alice@example.org")
	lm := dialText(t, "tcp", in.status()["lmtp"])
	lm.reply("220 ")
	lm.send("LHLO client.test\r\nMAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	lm.reply("250")
	lm.reply("250 ")
	lm.reply("250 ")
	lm.reply("354 ")
	lm.send("From: bob@example.net\r\nSubject: in flight\r\n\r\nfirst half\r\n")

	shuttingDown := srv.waitFor("shutting down")
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-shuttingDown:
	case <-time.After(readyTimeout):
		t.Fatalf("no shutdown logged:\n%s", srv.log())
	}
	lm.send("second half\r\n.\r\n")
	lm.reply("250 ")
	srv.waitExit("SIGTERM")

	b := openBackend(t, in.dataDir)
	defer b.Close()
	u, err := b.LookupUser(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox(backend.Inbox)
	if err != nil || mb.Messages != 1 {
		t.Fatalf("INBOX %+v, %v; want the in-flight message", mb, err)
	}
	msgs, err := u.MessagesByUID(mb.ID, []uint32{1})
	if err != nil || len(msgs) != 1 {
		t.Fatal(err)
	}
	body, err := u.ReadBody(&msgs[0])
	if err != nil || !strings.HasSuffix(string(body), "first half\r\nsecond half\r\n") {
		t.Errorf("stored %q, %v", body, err)
	}
}

// TestServeIMAPSWithSelfSignedCertificate: IMAPS presents the generated
// certificate whose fingerprint the server reports, and a login works.
func TestServeIMAPSWithSelfSignedCertificate(t *testing.T) {
	if !strings.Contains(strings.Join(wiredServices(), " "), "imaps") {
		t.Skip("no imap front end wired in listeners.go")
	}
	in := newInstance(t)
	in.env = []string{"ROOST_AUTH_PLAINTEXT=tls"}
	srv := in.startServer()
	in.mustRun("alice-pw\n", "user", "add", "alice@example.org")
	st := in.status()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", st["imaps"], &tls.Config{
		InsecureSkipVerify: true, // pinned below by fingerprint, as a user would check it
		ServerName:         "mail.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sum := sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
	if got := hex.EncodeToString(sum[:]); got != st["tls_fingerprint"] {
		t.Errorf("IMAPS certificate fingerprint %s, status says %s", got, st["tls_fingerprint"])
	}
	c.SetDeadline(time.Now().Add(cmdTimeout))
	tc := &textConn{t: t, c: c, r: bufio.NewReader(c)}
	tc.reply("* OK")
	tc.send("a LOGIN alice@example.org alice-pw\r\n")
	for {
		line, err := tc.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "a ") {
			if !strings.HasPrefix(line, "a OK") {
				t.Fatalf("LOGIN over TLS: %q", line)
			}
			break
		}
	}
	tc.send("b LOGOUT\r\n")
	srv.stop(syscall.SIGTERM)
}
