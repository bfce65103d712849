package lmtp

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/testutil"
)

// interopMessage is what the real clients send; CRLF throughout, so the
// stored copy must equal it byte for byte.
const interopMessage = "From: Interop <interop@remote.example>\r\n" +
	"To: alice@example.org\r\n" +
	"Subject: interop test\r\n" +
	"Message-ID: <interop-1@remote.example>\r\n" +
	"\r\n" +
	"Hello from a real client.\r\n" +
	".a line that starts with a dot\r\n" +
	"\r\n" +
	"Bye.\r\n"

// run runs a client program with a deadline and returns its output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func (e *env) checkStored(t *testing.T, who string, n int, want string) {
	t.Helper()
	got := e.inbox(who)
	if len(got) != n {
		t.Fatalf("%s has %d messages, want %d", who, len(got), n)
	}
	if _, _, rest := splitTrace(t, got[n-1]); !bytes.Equal(rest, []byte(want)) {
		t.Errorf("%s: stored message differs:\n got %q\nwant %q", who, rest, want)
	}
}

const pythonClient = `
import smtplib, sys
mode, target, msg_path = sys.argv[1], sys.argv[2], sys.argv[3]
msg = open(msg_path, "rb").read()
if mode == "smtp":
    host, port = target.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), local_hostname="python.example", timeout=30) as s:
        code, _ = s.ehlo()
        assert code == 250, code
        for ext in ("pipelining", "8bitmime", "enhancedstatuscodes", "size", "smtputf8", "chunking"):
            assert s.has_extn(ext), ext
        refused = s.sendmail("interop@remote.example",
                             ["alice@example.org", "nobody@example.org", "bob@example.org"], msg)
        for rcpt, (code, text) in sorted(refused.items()):
            print("refused", rcpt, code, text.decode())
        try:
            s.sendmail("interop@remote.example", ["someone@elsewhere.net"], msg)
        except smtplib.SMTPRecipientsRefused as e:
            for rcpt, (code, text) in e.recipients.items():
                print("refused", rcpt, code, text.decode())
else:
    with smtplib.LMTP(target, local_hostname="python.example", timeout=30) as s:
        refused = s.sendmail("interop@remote.example", ["alice@example.org"], msg)
        print("lmtp refused", len(refused))
print("done")
`

// TestPythonSmtplib: Python's smtplib over SMTP (TCP) and LMTP (unix socket).
func TestPythonSmtplib(t *testing.T) {
	python := testutil.RequireBinary(t, "python3")
	dir := t.TempDir()
	script := filepath.Join(dir, "client.py")
	msgFile := filepath.Join(dir, "msg.eml")
	must(t, os.WriteFile(script, []byte(pythonClient), 0o600))
	must(t, os.WriteFile(msgFile, []byte(interopMessage), 0o600))

	t.Run("smtp", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		out, err := run(t, python, script, "smtp", e.addr, msgFile)
		if err != nil {
			t.Fatalf("python: %v\n%s", err, out)
		}
		for _, want := range []string{
			"refused nobody@example.org 550 5.1.1",
			"refused someone@elsewhere.net 550 5.7.1",
			"done",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		e.checkStored(t, "alice@example.org", 1, interopMessage)
		e.checkStored(t, "bob@example.org", 1, interopMessage)
	})
	t.Run("lmtp unix", func(t *testing.T) {
		e := newEnv(t, envOptions{unix: true, opts: Options{LMTP: true}})
		out, err := run(t, python, script, "lmtp", e.addr, msgFile)
		if err != nil || !strings.Contains(out, "lmtp refused 0") {
			t.Fatalf("python: %v\n%s", err, out)
		}
		e.checkStored(t, "alice@example.org", 1, interopMessage)
	})
}

// TestSwaks: the swaks SMTP test tool over SMTP (plain, pipelined, STARTTLS,
// refused recipient) and LMTP on a unix socket.
func TestSwaks(t *testing.T) {
	swaks := testutil.RequireBinary(t, "swaks")
	// With --no-data-fixup swaks sends the file as it is: dot-stuffed,
	// with the end marker.
	msgFile := filepath.Join(t.TempDir(), "msg.eml")
	must(t, os.WriteFile(msgFile, []byte(dotStuff(interopMessage)+".\r\n"), 0o600))
	common := []string{"--helo", "swaks.example", "--from", "interop@remote.example",
		"--data", "@" + msgFile, "--no-data-fixup", "--timeout", "30"}

	serverTLS, _ := testTLS(t)
	e := newEnv(t, envOptions{opts: Options{TLSConfig: serverTLS}})
	host, port, _ := strings.Cut(e.addr, ":")
	server := []string{"--server", host, "--port", port}

	for i, tc := range []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"pipelining", []string{"--pipeline"}},
		{"starttls", []string{"--tls"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append(append([]string{}, server...), common...), "--to", "alice@example.org")
			out, err := run(t, swaks, append(args, tc.args...)...)
			if err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			if !strings.Contains(out, "250 2.0.0 Ok: queued as ") {
				t.Errorf("no 250 for the message:\n%s", out)
			}
			e.checkStored(t, "alice@example.org", i+1, interopMessage)
		})
	}
	t.Run("starttls trace", func(t *testing.T) {
		stored := e.inbox("alice@example.org")
		if len(stored) != 3 {
			t.Fatalf("%d messages stored", len(stored))
		}
		_, received, _ := splitTrace(t, stored[2])
		if !strings.Contains(received, "with ESMTPS") {
			t.Errorf("Received after --tls: %q", received)
		}
	})
	t.Run("unknown recipient", func(t *testing.T) {
		args := append(append(append([]string{}, server...), common...), "--to", "nobody@example.org")
		out, err := run(t, swaks, args...)
		if err == nil {
			t.Fatalf("swaks succeeded for an unknown recipient:\n%s", out)
		}
		if !strings.Contains(out, "550 5.1.1") {
			t.Errorf("no 550 5.1.1:\n%s", out)
		}
	})
	t.Run("lmtp unix", func(t *testing.T) {
		le := newEnv(t, envOptions{unix: true, opts: Options{LMTP: true}})
		args := append([]string{"--protocol", "LMTP", "--socket", le.addr, "--to", "alice@example.org,bob@example.org"}, common...)
		out, err := run(t, swaks, args...)
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		if strings.Count(out, "250 2.0.0 <") != 2 {
			t.Errorf("want a 250 per recipient:\n%s", out)
		}
		le.checkStored(t, "alice@example.org", 1, interopMessage)
		le.checkStored(t, "bob@example.org", 1, interopMessage)
	})
}
