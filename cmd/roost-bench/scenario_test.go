package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// testMailServer is a complete little mail server on 127.0.0.1 for the
// scenario tests: the fake LMTP server hands every message to go-imap's
// in-memory IMAP server and to the fake POP3 server. (A test against an
// in-process Roost can call run the same way.)
type testMailServer struct {
	lmtp, imap, pop3 string
	users            map[string]*imapmemserver.User
}

func startTestMailServer(t *testing.T, accounts int, pass string) *testMailServer {
	t.Helper()
	mem := imapmemserver.New()
	ts := &testMailServer{users: map[string]*imapmemserver.User{}}
	drops := map[string][][]byte{}
	for i := 1; i <= accounts; i++ {
		name := fmt.Sprintf("user%d@example.org", i)
		u := imapmemserver.NewUser(name, pass)
		if err := u.Create("INBOX", nil); err != nil {
			t.Fatal(err)
		}
		mem.AddUser(u)
		ts.users[name] = u
		drops[name] = nil
	}

	imapSrv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go imapSrv.Serve(ln)
	t.Cleanup(func() { imapSrv.Close() })
	ts.imap = ln.Addr().String()

	pop := startFakePOP3(t, pass, drops)
	ts.pop3 = pop.ln.Addr().String()

	mta := startFakeMTA(t, true, true)
	mta.deliver = func(rcpt string, msg []byte) {
		if u := ts.users[rcpt]; u != nil {
			if _, err := u.Append("INBOX", bytes.NewReader(msg), &imap.AppendOptions{}); err != nil {
				t.Errorf("append to %s: %v", rcpt, err)
			}
		}
		pop.mu.Lock()
		pop.drops[rcpt] = append(pop.drops[rcpt], msg)
		pop.mu.Unlock()
	}
	ts.lmtp = mta.ln.Addr().String()
	return ts
}

func (ts *testMailServer) flags(extra ...string) []string {
	return append([]string{"-lmtp", ts.lmtp, "-imap", ts.imap, "-pop3", ts.pop3,
		"-users", "user%d@example.org", "-pass", "pw", "-q"}, extra...)
}

// runJSON runs the tool and decodes each line of stdout as a JSON object.
func runJSON(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run %q: %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
	}
	var out []map[string]any
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Fatalf("output line is not JSON: %v\n%s", err, sc.Text())
		}
		out = append(out, obj)
	}
	return out
}

func TestRunSmoke(t *testing.T) {
	ts := startTestMailServer(t, 4, "pw")
	out := runJSON(t, append([]string{"smoke"}, ts.flags("-n", "4", "-json")...)...)
	if len(out) != 3 {
		t.Fatalf("want 3 JSON objects, got %d", len(out))
	}
	for i, name := range []string{"deliver", "imap", "pop3"} {
		if out[i]["scenario"] != name || out[i]["errors"] != float64(0) {
			t.Errorf("object %d = %v, want scenario %s without errors", i, out[i], name)
		}
	}
	// The table form of the same run.
	var stdout bytes.Buffer
	if err := run(context.Background(), append([]string{"smoke"}, ts.flags("-n", "4")...), &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"messages/s", "fetch_envelope", "MB/s", "retr"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table output lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestRunSmokeFails(t *testing.T) {
	ts := startTestMailServer(t, 4, "pw")
	tests := []struct {
		name string
		args []string
	}{
		{"wrong password", ts.flags("-n", "4", "-pass", "wrong")},
		{"unknown accounts", ts.flags("-n", "4", "-users", "nobody%d@example.org")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			err := run(context.Background(), append([]string{"smoke"}, tt.args...), &stdout, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "smoke failed") {
				t.Fatalf("run = %v, want a smoke failure", err)
			}
		})
	}
}

func TestRunIMAPScenario(t *testing.T) {
	ts := startTestMailServer(t, 3, "pw")
	runJSON(t, append([]string{"deliver"}, ts.flags("-n", "3", "-count", "90", "-c", "3", "-json")...)...)
	out := runJSON(t, append([]string{"imap"}, ts.flags("-n", "3", "-count", "9", "-c", "3", "-idle", "1ms", "-json")...)...)
	res := out[0]
	if res["sessions"] != float64(9) || res["errors"] != float64(0) {
		t.Fatalf("report = %v", res)
	}
	if _, ok := res["ops_per_sec"].(float64); !ok {
		t.Errorf("ops_per_sec missing: %v", res)
	}
	cmds := res["commands"].(map[string]any)
	for _, name := range imapCommandOrder {
		c, ok := cmds[name].(map[string]any)
		if !ok || c["count"] != float64(9) || c["errors"] != float64(0) {
			t.Errorf("commands.%s = %v, want 9 without errors", name, cmds[name])
		}
	}
	// 8 steps per session, 7 of them IMAP commands (connect is not one).
	if res["ops"] != float64(9*7) {
		t.Errorf("ops = %v, want %d", res["ops"], 9*7)
	}
	// STORE +FLAGS \Seen reached the server: 9 sessions marked 1 to 9
	// distinct messages as seen.
	seen := 0
	for _, u := range ts.users {
		st, err := u.Status("INBOX", &imap.StatusOptions{NumMessages: true, NumUnseen: true})
		if err != nil {
			t.Fatal(err)
		}
		seen += int(*st.NumMessages - *st.NumUnseen)
	}
	if seen < 1 || seen > 9 {
		t.Errorf("%d messages seen after 9 sessions, want 1 to 9", seen)
	}
}

func TestRunIdleScenario(t *testing.T) {
	ts := startTestMailServer(t, 2, "pw")
	// The server runs in this process, so its PSS is ours.
	pid := strconv.Itoa(os.Getpid())
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skip("no /proc/PID/smaps_rollup on this system")
	}
	out := runJSON(t, append([]string{"idle"}, ts.flags("-n", "2", "-c", "6", "-duration", "1ms", "-pid", pid, "-json")...)...)
	res := out[0]
	if res["established"] != float64(6) || res["errors"] != float64(0) || res["pss_measured"] != true {
		t.Fatalf("report = %v", res)
	}
	for _, k := range []string{"pss_before_kib", "pss_after_kib", "pss_per_conn_kib"} {
		if v, ok := res[k].(float64); !ok || (k != "pss_per_conn_kib" && v <= 0) {
			t.Errorf("%s = %v", k, res[k])
		}
	}
}

func TestRunBigbox(t *testing.T) {
	ts := startTestMailServer(t, 2, "pw")
	out := runJSON(t, append([]string{"bigbox"}, ts.flags("-n", "2", "-messages", "40", "-c", "4", "-probes", "2", "-json")...)...)
	res := out[0]
	want := map[string]any{"filled": float64(40), "fill_errors": float64(0), "messages": float64(40),
		"fetched_flags": float64(40), "unseen": float64(40), "empty_box_messages": float64(0), "errors": float64(0)}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %v, want %v", k, res[k], v)
		}
	}
	// A second run finds the mailbox full (plus the 2 probes) and fills nothing.
	res = runJSON(t, append([]string{"bigbox"}, ts.flags("-n", "2", "-messages", "40", "-probes", "2", "-json")...)...)[0]
	if res["filled"] != float64(0) || res["messages"] != float64(42) || res["empty_box_messages"] != float64(2) {
		t.Errorf("second run: %v", res)
	}
}
