package pop3d

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roostmail/roost/internal/testutil"
)

// poplibScript drives Python's poplib through a whole session and prints
// what it saw as JSON.
const poplibScript = `
import base64, json, poplib, ssl, sys
host, port, user, pw, cafile = sys.argv[1:6]
p = poplib.POP3(host, int(port), timeout=30)
out = {"welcome": p.getwelcome().decode()}
if cafile:
    ctx = ssl.create_default_context(cafile=cafile)
    p.stls(context=ctx)
out["capa"] = sorted(p.capa().keys())
p.user(user)
p.pass_(pw)
out["stat"] = list(p.stat())
out["list"] = [l.decode() for l in p.list()[1]]
out["uidl"] = [l.decode() for l in p.uidl()[1]]
msgs = []
for i in range(1, out["stat"][0] + 1):
    resp, lines, octets = p.retr(i)
    msgs.append({"resp": resp.decode(), "data": base64.b64encode(b"".join(l + b"\r\n" for l in lines)).decode(), "octets": octets})
out["retr"] = msgs
resp, lines, octets = p.top(1, 1)
out["top"] = base64.b64encode(b"".join(l + b"\r\n" for l in lines)).decode()
p.dele(1)
out["quit"] = p.quit().decode()
print(json.dumps(out))
`

type poplibResult struct {
	Welcome string
	Capa    []string
	Stat    []int
	List    []string
	UIDL    []string
	Retr    []struct {
		Resp   string
		Data   []byte
		Octets int
	}
	Top  []byte
	Quit string
}

func TestPythonPoplib(t *testing.T) {
	python := testutil.RequireBinary(t, "python3")
	for _, stls := range []bool{false, true} {
		t.Run(fmt.Sprint("stls=", stls), func(t *testing.T) {
			e := newEnv(t, envConfig{withTLS: true})
			msgs := [][]byte{
				msg("first", "Hello", ".dotted", "..", "."),
				[]byte("From: bob@example.net\r\nSubject: header only\r\n"),
				[]byte("From: bob@example.net\nSubject: bare LF\n\none\n.two\n"),
				largeMessage(300 << 10),
			}
			e.deliver(msgs...)
			dir := t.TempDir()
			script := writeFile(t, dir, "pop.py", []byte(poplibScript), 0o600)
			cafile := ""
			if stls {
				cafile = writeFile(t, dir, "ca.pem", e.certPEM, 0o600)
			}
			host, port, _ := net.SplitHostPort(e.addr)
			out, err := exec.Command(python, script, host, port, testUser, testPass, cafile).Output()
			if err != nil {
				t.Fatalf("poplib: %v\n%s", err, stderrOf(err))
			}
			var got poplibResult
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			want := []string{"AUTH-RESP-CODE", "EXPIRE", "IMPLEMENTATION", "PIPELINING", "RESP-CODES", "SASL", "STLS", "TOP", "UIDL", "USER"}
			if stls {
				want = []string{"AUTH-RESP-CODE", "EXPIRE", "IMPLEMENTATION", "PIPELINING", "RESP-CODES", "SASL", "TOP", "UIDL", "USER"}
			}
			if strings.Join(got.Capa, " ") != strings.Join(want, " ") {
				t.Errorf("capa %q, want %q", got.Capa, want)
			}
			total := 0
			for i, m := range msgs {
				want := crlfForm(m)
				total += len(want)
				r := got.Retr[i]
				if !bytes.Equal(r.Data, want) {
					t.Errorf("message %d: poplib got %q, want %q", i+1, trunc(r.Data), trunc(want))
				}
				// poplib counts the octets it received, unstuffed.
				if r.Octets != len(want) || r.Resp != fmt.Sprintf("+OK %d octets", len(want)) || got.List[i] != fmt.Sprintf("%d %d", i+1, len(want)) {
					t.Errorf("message %d: octets %d, %q, LIST %q; want %d", i+1, r.Octets, r.Resp, got.List[i], len(want))
				}
			}
			if got.Stat[0] != len(msgs) || got.Stat[1] != total {
				t.Errorf("STAT %v, want %d %d", got.Stat, len(msgs), total)
			}
			if wantTop := "From: bob@example.net\r\nTo: alice@example.org\r\nSubject: first\r\nMessage-ID: <first@example.net>\r\n\r\nHello\r\n"; string(got.Top) != wantTop {
				t.Errorf("TOP 1 1 = %q", got.Top)
			}
			if len(got.UIDL) != len(msgs) {
				t.Errorf("UIDL %q", got.UIDL)
			}
			e.waitEnded(1)
			if _, left := e.inbox(); len(left) != len(msgs)-1 {
				t.Errorf("%d messages left, want %d", len(left), len(msgs)-1)
			}
		})
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// fetchmailRun runs fetchmail once against the test server, delivering into
// mbox with an MDA, and checks its exit code (0: mail fetched, 1: none).
func fetchmailRun(t *testing.T, e *testEnv, home, mbox string, wantCode int, extra ...string) {
	t.Helper()
	fetchmail := testutil.RequireBinary(t, "fetchmail")
	host, port, _ := net.SplitHostPort(e.addr)
	rc := fmt.Sprintf("set no bouncemail\n"+
		"poll %s protocol pop3 port %s auth password\n"+
		"  user %q there with password %q is %q here\n"+
		"  no sslcertck\n", host, port, testUser, testPass, "root")
	rcfile := writeFile(t, home, "fetchmailrc", []byte(rc), 0o600)
	args := append([]string{
		"-f", rcfile, "--nodetach", "--nosyslog", "--verbose",
		"--idfile", filepath.Join(home, "fetchids"),
		"--pidfile", filepath.Join(home, "fetchmail.pid"),
		"--mda", "cat >> " + mbox,
	}, extra...)
	cmd := exec.Command(fetchmail, args...)
	cmd.Env = append(os.Environ(), "HOME="+home, "FETCHMAILHOME="+home, "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("fetchmail: %v", err)
	}
	if code != wantCode {
		t.Fatalf("fetchmail %v: exit %d, want %d\n%s", extra, code, wantCode, out)
	}
}

func fetchmailMessages(t *testing.T) [][]byte {
	return [][]byte{
		msg("fetch one", "first body", ".leading dot", ".", "end"),
		msg("fetch two", "second body"),
		largeMessage(200 << 10),
	}
}

// fetchmail downloads and deletes; a second run finds nothing.
func TestFetchmailDownloadAndDelete(t *testing.T) {
	testutil.RequireBinary(t, "fetchmail")
	e := newEnv(t, envConfig{})
	msgs := fetchmailMessages(t)
	e.deliver(msgs...)
	home := t.TempDir()
	mbox := filepath.Join(home, "mbox")

	fetchmailRun(t, e, home, mbox, 0)
	got, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, msgs, 1)
	e.waitEnded(1)
	if _, left := e.inbox(); len(left) != 0 {
		t.Errorf("%d messages left on the server, want 0", len(left))
	}

	fetchmailRun(t, e, home, mbox, 1)
	again, _ := os.ReadFile(mbox)
	if !bytes.Equal(again, got) {
		t.Errorf("second run delivered more mail")
	}
}

// fetchmail --keep with UIDL, run twice, fetches each message once.
func TestFetchmailKeepUIDL(t *testing.T) {
	testutil.RequireBinary(t, "fetchmail")
	e := newEnv(t, envConfig{})
	msgs := fetchmailMessages(t)
	e.deliver(msgs...)
	home := t.TempDir()
	mbox := filepath.Join(home, "mbox")

	fetchmailRun(t, e, home, mbox, 0, "--keep", "--uidl")
	e.waitEnded(1)
	// A new message arrives between the runs: only it is fetched next time.
	extra := msg("fetch three", "third body")
	e.deliver(extra)
	fetchmailRun(t, e, home, mbox, 0, "--keep", "--uidl")
	e.waitEnded(1)
	fetchmailRun(t, e, home, mbox, 1, "--keep", "--uidl")
	got, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, append(msgs, extra), 1)
	e.waitEnded(1)
	if _, left := e.inbox(); len(left) != len(msgs)+1 {
		t.Fatalf("%d messages on the server, want %d (kept)", len(left), len(msgs)+1)
	}
}

// checkFetched checks that the MDA output holds each message exactly n
// times (fetchmail adds a Received: line at the top, so the header is
// compared from the From: line on).
func checkFetched(t *testing.T, mbox []byte, msgs [][]byte, n int) {
	t.Helper()
	// fetchmail hands the MDA LF line endings.
	lf := bytes.ReplaceAll(mbox, []byte("\r\n"), []byte("\n"))
	for i, m := range msgs {
		want := bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n"))
		if c := bytes.Count(lf, want); c != n {
			t.Errorf("message %d found %d times in the MDA output, want %d", i+1, c, n)
		}
	}
	if t.Failed() {
		t.Logf("MDA output (%d bytes): %s", len(mbox), base64.StdEncoding.EncodeToString(trunc(mbox)))
	}
}
