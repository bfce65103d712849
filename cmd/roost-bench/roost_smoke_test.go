package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/imapd"
	"github.com/roostmail/roost/lmtp"
	"github.com/roostmail/roost/outbound"
	"github.com/roostmail/roost/pop3d"
)

// roostServer is an in-process Roost (LMTP, IMAP, POP3 on one backend) on
// 127.0.0.1, for the CI smoke test of roost-bench: the short version of
// what bench/compare runs against a real `roost serve`.
type roostServer struct {
	lmtp, imap, pop3 string
}

// mailServer is what roostServer needs of each front end.
type mailServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// startRoost starts Roost with accounts user1..userN@example.org, all with
// password pass. Everything is shut down (and checked) at cleanup.
func startRoost(t *testing.T, accounts int, pass string) *roostServer {
	t.Helper()
	b, err := backend.New(backend.Options{DataDir: t.TempDir(), Hostname: "roost.test", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the front ends stop before this.
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
	})
	ctx := context.Background()
	for i := 1; i <= accounts; i++ {
		if err := b.CreateUser(ctx, fmt.Sprintf("user%d@example.org", i), pass); err != nil {
			t.Fatal(err)
		}
	}

	lm, err := lmtp.New(lmtp.Options{Backend: b, LMTP: true})
	if err != nil {
		t.Fatal(err)
	}
	// No delay after a failed login: the wrong-password test stays fast.
	im, err := imapd.New(imapd.Options{Backend: b, AuthFailureDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	po, err := pop3d.New(pop3d.Options{Backend: b, AuthFailureDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	return &roostServer{
		lmtp: serveOnLoopback(t, "lmtp", lm),
		imap: serveOnLoopback(t, "imap", im),
		pop3: serveOnLoopback(t, "pop3", po),
	}
}

// serveOnLoopback runs srv on a fresh 127.0.0.1 port and returns the
// address; at cleanup it shuts srv down and checks that Serve returned nil.
func serveOnLoopback(t *testing.T, name string, srv mailServer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("%s: Shutdown: %v", name, err)
		}
		if err := <-done; err != nil {
			t.Errorf("%s: Serve returned %v after Shutdown", name, err)
		}
	})
	return l.Addr().String()
}

// flags returns the endpoint and account flags for a run against rs.
func (rs *roostServer) flags(pass string, extra ...string) []string {
	return append([]string{"-lmtp", rs.lmtp, "-imap", rs.imap, "-pop3", rs.pop3,
		"-users", "user%d@example.org", "-pass", pass, "-q", "-json"}, extra...)
}

// runTool runs roost-bench and decodes each stdout line as a JSON object.
func runTool(t *testing.T, args ...string) ([]map[string]any, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	var out []map[string]any
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var obj map[string]any
		if jerr := json.Unmarshal(sc.Bytes(), &obj); jerr != nil {
			t.Fatalf("output line is not JSON: %v\n%s", jerr, sc.Text())
		}
		out = append(out, obj)
	}
	if err != nil {
		t.Logf("roost-bench %q: %v\nstderr: %s", args, err, stderr.String())
	}
	return out, err
}

// num returns a JSON number at key, failing the test if it is not one.
func num(t *testing.T, obj map[string]any, key string) float64 {
	t.Helper()
	v, ok := obj[key].(float64)
	if !ok {
		t.Fatalf("%s: %q is %v (%T), want a number", obj["scenario"], key, obj[key], obj[key])
	}
	return v
}

// TestSmokeAgainstRoost is the CI smoke mode of roost-bench: deliver over
// LMTP, IMAP sessions and POP3 downloads against a real Roost, a few
// seconds in all, with no failed operation.
func TestSmokeAgainstRoost(t *testing.T) {
	rs := startRoost(t, 4, "pw")
	out, err := runTool(t, append([]string{"smoke"}, rs.flags("pw", "-n", "4", "-duration", "1m")...)...)
	if err != nil {
		t.Fatalf("smoke against Roost failed: %v", err)
	}
	if len(out) != 3 {
		t.Fatalf("want 3 JSON objects (deliver, imap, pop3), got %d", len(out))
	}
	for i, name := range []string{"deliver", "imap", "pop3"} {
		if out[i]["scenario"] != name {
			t.Fatalf("object %d is %v, want scenario %s", i, out[i]["scenario"], name)
		}
		if n := num(t, out[i], "errors"); n != 0 {
			t.Errorf("%s: %v errors; first: %v", name, n, out[i]["first_error"])
		}
	}
	deliver, imap, pop3 := out[0], out[1], out[2]
	if got := num(t, deliver, "messages"); got != smokeAccounts*smokeMessagesPerAcct {
		t.Errorf("deliver: %v messages, want %d", got, smokeAccounts*smokeMessagesPerAcct)
	}
	if num(t, deliver, "messages_per_sec") <= 0 || num(t, deliver, "p50_ms") <= 0 {
		t.Errorf("deliver: no rate or latency: %v", deliver)
	}
	if num(t, imap, "sessions") != smokeIMAPSessions || num(t, imap, "ops") == 0 || num(t, imap, "body_bytes") == 0 {
		t.Errorf("imap: want %d sessions with commands and body bytes: %v", smokeIMAPSessions, imap)
	}
	if num(t, pop3, "sessions") != smokePOP3Sessions || num(t, pop3, "messages") == 0 || num(t, pop3, "bytes") == 0 {
		t.Errorf("pop3: want %d sessions that retrieved mail: %v", smokePOP3Sessions, pop3)
	}
}

// TestSmokeAgainstRoostWrongPassword: a refused login is a failure of the
// smoke run, not a silent zero.
func TestSmokeAgainstRoostWrongPassword(t *testing.T) {
	rs := startRoost(t, 2, "pw")
	if _, err := runTool(t, append([]string{"smoke"}, rs.flags("wrong", "-n", "2")...)...); err == nil {
		t.Fatal("smoke with a wrong password succeeded")
	}
}

// TestIdleAndBigboxAgainstRoost runs the other two scenarios of bench/compare
// with tiny sizes: IDLE connections measured through this very process (the
// server is in-process) and a small "big" mailbox.
func TestIdleAndBigboxAgainstRoost(t *testing.T) {
	rs := startRoost(t, 2, "pw")

	out, err := runTool(t, append([]string{"idle"}, rs.flags("pw", "-n", "2", "-c", "6", "-duration", "0s",
		"-pid", strconv.Itoa(os.Getpid()))...)...)
	if err != nil || len(out) != 1 {
		t.Fatalf("idle: %v (%d objects)", err, len(out))
	}
	idle := out[0]
	if num(t, idle, "established") != 6 || num(t, idle, "errors") != 0 {
		t.Errorf("idle: want 6 connections idling, no errors: %v", idle)
	}
	if idle["pss_measured"] != true || num(t, idle, "pss_after_kib") <= 0 {
		t.Errorf("idle: PSS of this process not measured: %v", idle)
	}

	const messages = 40
	out, err = runTool(t, append([]string{"bigbox"}, rs.flags("pw", "-n", "2", "-c", "4",
		"-messages", strconv.Itoa(messages), "-probes", "2")...)...)
	if err != nil || len(out) != 1 {
		t.Fatalf("bigbox: %v (%d objects)", err, len(out))
	}
	big := out[0]
	if num(t, big, "errors") != 0 || num(t, big, "messages") != messages || num(t, big, "fetched_flags") != messages {
		t.Errorf("bigbox: want %d messages, all FETCHed, no errors: %v", messages, big)
	}
	// Every message was just delivered: none is \Seen.
	if num(t, big, "unseen") != messages {
		t.Errorf("bigbox: UID SEARCH UNSEEN found %v, want %d", big["unseen"], messages)
	}
	for _, k := range []string{"select_ms", "fetch_flags_ms", "fetch_one_ms", "deliver_ms", "deliver_empty_ms"} {
		if num(t, big, k) <= 0 {
			t.Errorf("bigbox: %s not measured: %v", k, big)
		}
	}
	// A second run finds the mailbox full and fills nothing.
	out, err = runTool(t, append([]string{"bigbox"}, rs.flags("pw", "-n", "2", "-messages", "10", "-probes", "1")...)...)
	if err != nil || len(out) != 1 || num(t, out[0], "filled") != 0 {
		t.Errorf("bigbox rerun: err %v, %v", err, out)
	}
}

// TestDeliverToSubmission: deliver with -auth against Roost's submission
// server (in-process, with its outbound engine delivering to local
// accounts), as the submission throughput is measured.
func TestDeliverToSubmission(t *testing.T) {
	b, err := backend.New(backend.Options{DataDir: t.TempDir(), Hostname: "roost.test", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	for _, a := range []string{"sender@example.org", "user1@example.org", "user2@example.org"} {
		if err := b.CreateUser(ctx, a, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	eng, err := outbound.New(outbound.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	go eng.Run()
	t.Cleanup(func() { eng.Shutdown(context.Background()) })
	sub, err := lmtp.New(lmtp.Options{Backend: b, Submission: &lmtp.SubmissionOptions{Enqueue: eng.Enqueue, AuthFailureDelay: -1}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOnLoopback(t, "submission", sub)
	out, err := runTool(t, "deliver", "-smtp", addr, "-auth", "sender@example.org", "-pass", "pw", "-from", "sender@example.org",
		"-users", "user%d@example.org", "-n", "2", "-c", "2", "-count", "10", "-q", "-json")
	if err != nil || len(out) != 1 {
		t.Fatalf("deliver: %v (%d objects)", err, len(out))
	}
	if num(t, out[0], "messages") != 10 || num(t, out[0], "errors") != 0 {
		t.Errorf("deliver to submission: %v", out[0])
	}
	// Without the right password every transaction fails.
	if _, err := runTool(t, "deliver", "-smtp", addr, "-auth", "sender@example.org", "-pass", "wrong", "-from", "sender@example.org",
		"-users", "user%d@example.org", "-n", "2", "-c", "1", "-count", "1", "-q", "-json"); err == nil {
		t.Error("deliver with a wrong password succeeded")
	}
}
