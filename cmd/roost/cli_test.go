package main

// End-to-end tests of the roost binary: built once in TestMain, then run
// as a subprocess, with and without a `roost serve` on the same config.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/testutil"
)

// roostBin is the binary under test, built by TestMain.
var roostBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "roost-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	roostBin = filepath.Join(dir, "roost")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	build := exec.Command(goTool, "build", "-o", roostBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building roost:", err)
		return 1
	}
	return m.Run()
}

// Bounds of the waits in these tests: generous, since CI machines are slow;
// they only matter when something hangs.
const (
	cmdTimeout   = time.Minute
	readyTimeout = time.Minute
	stopTimeout  = shutdownTimeout + 30*time.Second
)

// instance is one Roost installation: a temp dir with a config file whose
// listeners are all on free loopback ports.
type instance struct {
	t       *testing.T
	dir     string
	dataDir string
	config  string
	env     []string // extra environment for every command
}

func newInstance(t *testing.T) *instance {
	t.Helper()
	dir := t.TempDir()
	in := &instance{t: t, dir: dir, dataDir: filepath.Join(dir, "data"), config: filepath.Join(dir, "roost.toml")}
	cfg := fmt.Sprintf(`data_dir = %q
hostname = "mail.test"
[log]
format = "json"
[smtp]
listen = "127.0.0.1:0"
[lmtp]
listen = "127.0.0.1:0"
[submission]
listen = "127.0.0.1:0"
tls_listen = "127.0.0.1:0"
[imap]
listen = "127.0.0.1:0"
tls_listen = "127.0.0.1:0"
[pop3]
listen = "127.0.0.1:0"
tls_listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
`, in.dataDir)
	if err := os.WriteFile(in.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return in
}

// environ is the test process's environment without ROOST_ variables
// (a developer's own settings must not leak in), plus extra.
func environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

type result struct {
	stdout, stderr string
	code           int
}

// runIn runs the binary in dir (the test's working directory if "") with
// stdin and the instance's environment plus env.
func (in *instance) runIn(dir, stdin string, env []string, args ...string) result {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, roostBin, args...)
	cmd.Dir = dir
	cmd.Env = environ(append(slices.Clone(in.env), env...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	switch {
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	case err != nil:
		in.t.Fatalf("roost %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// run runs roost with --config pointing at the instance's config.
func (in *instance) run(stdin string, args ...string) result {
	in.t.Helper()
	return in.runIn("", stdin, nil, append(args, "--config", in.config)...)
}

// mustRun is run expecting success.
func (in *instance) mustRun(stdin string, args ...string) string {
	in.t.Helper()
	res := in.run(stdin, args...)
	if res.code != 0 {
		in.t.Fatalf("roost %s: exit %d: %s", strings.Join(args, " "), res.code, res.stderr)
	}
	return res.stdout
}

// server is a running `roost serve` subprocess.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	ready  chan struct{}
	exited chan struct{}
	err    error // of Wait, valid once exited is closed

	mu    sync.Mutex
	lines []string
	wait  map[string]chan struct{} // log message → closed when seen
}

// startServer starts `roost serve` and waits until it logs readyMessage.
func (in *instance) startServer() *server {
	in.t.Helper()
	return in.startServerWith(in.dir, "--config", in.config)
}

func (in *instance) startServerWith(dir string, args ...string) *server {
	t := in.t
	t.Helper()
	cmd := exec.Command(roostBin, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	cmd.Env = environ(in.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, ready: make(chan struct{}), exited: make(chan struct{}), wait: make(map[string]chan struct{})}
	readyCh := s.waitFor(readyMessage)
	go s.readLog(stderr)
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			cmd.Process.Kill()
			<-s.exited
		}
	})
	select {
	case <-readyCh:
	case <-s.exited:
		t.Fatalf("roost serve exited before it was ready (%v):\n%s", s.err, s.log())
	case <-time.After(readyTimeout):
		t.Fatalf("roost serve not ready after %s:\n%s", readyTimeout, s.log())
	}
	return s
}

func (s *server) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec struct {
			Msg string `json:"msg"`
		}
		json.Unmarshal([]byte(line), &rec)
		s.mu.Lock()
		s.lines = append(s.lines, line)
		if ch, ok := s.wait[rec.Msg]; ok {
			delete(s.wait, rec.Msg)
			close(ch)
		}
		s.mu.Unlock()
	}
	io.Copy(io.Discard, r)
	s.err = s.cmd.Wait()
	close(s.exited)
}

// waitFor returns a channel closed when the server logs msg (after the
// call).
func (s *server) waitFor(msg string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.wait[msg] = ch
	return ch
}

func (s *server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// logContains reports whether some log line contains every one of subs.
func (s *server) logContains(subs ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(l, sub)
		}
		if all {
			return true
		}
	}
	return false
}

// stop sends sig and expects a clean exit with status 0.
func (s *server) stop(sig os.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	s.waitExit(sig.String())
}

// waitExit waits for the server to exit (after what) with status 0.
func (s *server) waitExit(what string) {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Fatalf("roost serve did not stop within %s after %s:\n%s", stopTimeout, what, s.log())
	}
	if s.err != nil {
		s.t.Fatalf("roost serve after %s: %v (want exit status 0):\n%s", what, s.err, s.log())
	}
}

// status returns the running server's listeners from `roost status`.
func (in *instance) status() map[string]string {
	in.t.Helper()
	out := in.mustRun("", "status")
	m := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "\t")
		m[k] = v
	}
	return m
}

// openBackend opens the instance's store in the test process (no server
// may run).
func openBackend(t *testing.T, dataDir string) *backend.Backend {
	t.Helper()
	b, err := backend.New(backend.Options{DataDir: dataDir, LoginCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cliStep is one command of the CLI table and what it must produce.
type cliStep struct {
	args      []string
	stdin     string
	code      int      // expected exit status
	stdout    []string // expected stdout lines, first tab-separated field only; nil: not checked
	stdoutHas string   // substring of stdout
	stderrHas string   // substring of stderr (errors are one line)
}

// cliSteps exercise every command and every bad input, in an order where
// each step sees the state the previous ones left.
var cliSteps = []cliStep{
	{args: []string{"user", "list"}, stdout: []string{}},
	{args: []string{"user", "add", "alice@example.org"}, stdin: "secret\n", stdoutHas: "added alice@example.org to /"},
	{args: []string{"user", "add", "Bob@Example.ORG"}, stdin: "bobs-pw\r\n"},
	{args: []string{"user", "add", "dave@example.net"}, stdin: "no newline at the end"},
	{args: []string{"user", "add", "alice@example.org"}, stdin: "other\n", code: 1, stderrHas: "user alice@example.org already exists"},
	{args: []string{"user", "add", "ALICE@example.org"}, stdin: "other\n", code: 1, stderrHas: "already exists"},
	{args: []string{"user", "add", "not-an-address"}, stdin: "pw\n", code: 1, stderrHas: "invalid address"},
	{args: []string{"user", "add", "a b@example.org"}, stdin: "pw\n", code: 1, stderrHas: "invalid address"},
	{args: []string{"user", "add", "carol@example.org"}, stdin: "", code: 1, stderrHas: "empty password"},
	{args: []string{"user", "add", "carol@example.org"}, stdin: "\n", code: 1, stderrHas: "empty password"},
	{args: []string{"user", "add", "carol@example.org"}, stdin: strings.Repeat("x", 5000) + "\n", code: 1, stderrHas: "password longer than"},
	{args: []string{"user", "list"}, stdout: []string{"alice@example.org", "bob@example.org", "dave@example.net"}},
	{args: []string{"user", "passwd", "alice@example.org"}, stdin: "newsecret\n", stdoutHas: "changed the password of alice@example.org in /"},
	{args: []string{"user", "passwd", "nobody@example.org"}, stdin: "pw\n", code: 1, stderrHas: "no such user: nobody@example.org"},
	{args: []string{"user", "passwd", "alice@example.org"}, stdin: "", code: 1, stderrHas: "empty password"},
	{args: []string{"user", "passwd", "@example.org"}, stdin: "pw\n", code: 1, stderrHas: "invalid address"},
	{args: []string{"alias", "add", "sales@example.org", "alice@example.org"}, stdoutHas: "added alias sales@example.org for alice@example.org to /"},
	{args: []string{"alias", "add", "info@example.com", "Bob@example.org"}},
	{args: []string{"alias", "add", "sales@example.org", "bob@example.org"}, code: 1, stderrHas: "alias sales@example.org already exists"},
	{args: []string{"alias", "add", "help@example.org", "nobody@example.org"}, code: 1, stderrHas: "no such user: nobody@example.org"},
	{args: []string{"alias", "add", "alice@example.org", "bob@example.org"}, code: 1, stderrHas: "alice@example.org is a user"},
	{args: []string{"alias", "add", "bad", "alice@example.org"}, code: 1, stderrHas: "invalid address"},
	{args: []string{"alias", "add", "x@example.org", "bad"}, code: 1, stderrHas: "invalid address"},
	{args: []string{"user", "add", "sales@example.org"}, stdin: "pw\n", code: 1, stderrHas: "sales@example.org is an alias"},
	{args: []string{"alias", "list"}, stdout: []string{"info@example.com", "sales@example.org"}, stdoutHas: "sales@example.org\talice@example.org\n"},
	{args: []string{"alias", "del", "info@example.com"}, stdoutHas: "deleted alias info@example.com from /"},
	{args: []string{"alias", "del", "info@example.com"}, code: 1, stderrHas: "no such alias: info@example.com"},
	{args: []string{"alias", "del", "bad"}, code: 1, stderrHas: "invalid address"},
	{args: []string{"user", "del", "dave@example.net"}, stdoutHas: "deleted dave@example.net and its mail from /"},
	{args: []string{"user", "del", "dave@example.net"}, code: 1, stderrHas: "no such user: dave@example.net"},
	{args: []string{"user", "del", "bad"}, code: 1, stderrHas: "invalid address"},
	{args: []string{"user", "list"}, stdout: []string{"alice@example.org", "bob@example.org"}},
	{args: []string{"alias", "list"}, stdout: []string{"sales@example.org"}},
	{args: []string{"dns", "Example.org"}, stdoutHas: "example.org.\t3600\tIN\tMX\t10 mail.test.\n"},
	{args: []string{"dns", "not a domain"}, code: 1, stderrHas: "invalid domain name"},
	{args: []string{"version"}, stdoutHas: " (commit "},
	{args: []string{"help"}, stdoutHas: "roost user add ADDRESS"},
	{args: []string{"--help"}, stdoutHas: "roost alias list"},
	// Wrong command lines: exit status 2.
	{args: []string{}, code: 2},
	{args: []string{"frobnicate"}, code: 2, stderrHas: `unknown command "frobnicate"`},
	{args: []string{"user"}, code: 2, stderrHas: "user needs a subcommand"},
	{args: []string{"user", "rename", "a@b.c"}, code: 2, stderrHas: `unknown command "user rename"`},
	{args: []string{"user", "add"}, code: 2, stderrHas: "usage: roost user add ADDRESS"},
	{args: []string{"user", "add", "a@example.org", "b@example.org"}, code: 2, stderrHas: "usage: roost user add ADDRESS"},
	{args: []string{"user", "add", "a@example.org", "--password", "pw"}, code: 2, stderrHas: "unknown flag --password"},
	{args: []string{"alias", "add", "x@example.org"}, code: 2, stderrHas: "usage: roost alias add ALIAS ADDRESS"},
	{args: []string{"alias", "list", "extra"}, code: 2},
	{args: []string{"backup"}, code: 2, stderrHas: "usage: roost backup DIR"},
	{args: []string{"dns"}, code: 2},
	{args: []string{"version", "now"}, code: 2},
	{args: []string{"serve", "now"}, code: 2},
	// Nothing above was half-written.
	{args: []string{"user", "list"}, stdout: []string{"alice@example.org", "bob@example.org"}},
}

// configArgs places the config in one of the ways the CLI accepts, varied
// by step: first, last, in the middle (--config=F), or $ROOST_CONFIG.
func configArgs(i int, args []string, config string) ([]string, []string) {
	switch i % 4 {
	case 0:
		return append([]string{"--config", config}, args...), nil
	case 1:
		return append(slices.Clone(args), "--config", config), nil
	case 2:
		if len(args) > 0 {
			return append([]string{args[0], "--config=" + config}, args[1:]...), nil
		}
		return []string{"-config", config}, nil
	default:
		return args, []string{"ROOST_CONFIG=" + config}
	}
}

func runSteps(t *testing.T, in *instance) {
	for i, st := range cliSteps {
		if strings.HasSuffix(st.stdoutHas, " /") {
			st.stdoutHas += strings.TrimPrefix(in.dataDir, "/") + "\n" // the store acted on, absolute
		}
		args, env := configArgs(i, st.args, in.config)
		res := in.runIn("", st.stdin, env, args...)
		name := fmt.Sprintf("step %d: roost %s", i, strings.Join(args, " "))
		if res.code != st.code {
			t.Errorf("%s: exit %d, want %d; stdout %q, stderr %q", name, res.code, st.code, res.stdout, res.stderr)
			continue
		}
		if st.code != 0 {
			if strings.Count(strings.TrimSuffix(res.stderr, "\n"), "\n") != 0 && st.code == 1 {
				t.Errorf("%s: error is not one line: %q", name, res.stderr)
			}
			if !strings.HasPrefix(res.stderr, "roost: ") && len(st.args) > 0 {
				t.Errorf("%s: stderr %q does not start with \"roost: \"", name, res.stderr)
			}
			if res.stdout != "" && st.stdout == nil && st.stdoutHas == "" {
				t.Errorf("%s: failure printed %q on stdout", name, res.stdout)
			}
		}
		if !strings.Contains(res.stderr, st.stderrHas) {
			t.Errorf("%s: stderr %q does not contain %q", name, res.stderr, st.stderrHas)
		}
		if !strings.Contains(res.stdout, st.stdoutHas) {
			t.Errorf("%s: stdout %q does not contain %q", name, res.stdout, st.stdoutHas)
		}
		if st.stdout != nil {
			got := []string{}
			for _, l := range strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n") {
				if l != "" {
					first, _, _ := strings.Cut(l, "\t")
					got = append(got, first)
				}
			}
			if !slices.Equal(got, st.stdout) {
				t.Errorf("%s: stdout %q, want first fields %q", name, res.stdout, st.stdout)
			}
		}
	}
}

// checkAccounts verifies in the store what the CLI table left behind.
func checkAccounts(t *testing.T, dataDir string) {
	t.Helper()
	b := openBackend(t, dataDir)
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Login(ctx, "alice@example.org", "newsecret", "127.0.0.1"); err != nil {
		t.Errorf("alice's new password: %v", err)
	}
	if _, err := b.Login(ctx, "alice@example.org", "secret", "127.0.0.1"); err == nil {
		t.Error("alice's old password still works")
	}
	if _, err := b.Login(ctx, "bob@example.org", "bobs-pw", "127.0.0.1"); err != nil {
		t.Errorf("bob's password (given with CRLF): %v", err)
	}
	rcpt, err := b.ResolveRecipient(ctx, "sales@example.org")
	if err != nil || rcpt.Account != "alice@example.org" {
		t.Errorf("sales@example.org resolves to %q, %v", rcpt.Account, err)
	}
	if got := b.Domains(); !slices.Equal(got, []string{"example.org"}) {
		t.Errorf("domains %q, want just example.org", got)
	}
}

func TestCLIWithoutServer(t *testing.T) {
	in := newInstance(t)
	if out := in.mustRun("", "init"); out != "created a store in "+in.dataDir+"\n" {
		t.Errorf("init: %q", out)
	}
	if out := in.mustRun("", "init"); !strings.Contains(out, "already exists in "+in.dataDir) {
		t.Errorf("second init: %q", out)
	}
	runSteps(t, in)
	if _, err := os.Stat(controlSocketPath(in.dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a control socket exists without a server: %v", err)
	}
	res := in.run("", "status")
	if res.code != 1 || !strings.Contains(res.stderr, "not running on data_dir "+in.dataDir+" ") {
		t.Errorf("status without a server: exit %d, %q", res.code, res.stderr)
	}
	checkAccounts(t, in.dataDir)
}

func TestCLIWithServer(t *testing.T) {
	in := newInstance(t)
	srv := in.startServer()
	runSteps(t, in)
	// The commands went through the server (the store is locked, so they
	// could not have opened it), and it logged them.
	if !srv.logContains(`"msg":"control request"`, `"op":"user.add"`, `"ok":true`) {
		t.Errorf("the server logged no user.add:\n%s", srv.log())
	}
	st := in.status()
	if st["pid"] != fmt.Sprint(srv.cmd.Process.Pid) || st["http"] == "" || st["tls_fingerprint"] == "" || st["data_dir"] != in.dataDir {
		t.Errorf("status: %q", st)
	}
	srv.stop(syscall.SIGTERM)
	if _, err := os.Stat(controlSocketPath(in.dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control socket is left after shutdown: %v", err)
	}
	checkAccounts(t, in.dataDir)
}

// TestBackupRestore backs up while the server runs, restores the copy into
// a fresh data_dir, and finds accounts, aliases and mail there.
func TestBackupRestore(t *testing.T) {
	in := newInstance(t)
	ctx := context.Background()
	message := "From: x@example.net\r\nTo: alice@example.org\r\nSubject: before the backup\r\n\r\nHello.\r\n"
	b := openBackend(t, in.dataDir)
	if err := b.CreateUser(ctx, "alice@example.org", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	rcpt, err := b.ResolveRecipient(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if errs := b.Deliver(ctx, []byte(message), []backend.Recipient{rcpt}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	b.Close()

	srv := in.startServer()
	in.mustRun("bob-pw\n", "user", "add", "bob@example.org")
	in.mustRun("", "alias", "add", "sales@example.org", "alice@example.org")
	// A relative DIR is relative to the CLI's working directory, not the
	// server's.
	res := in.runIn(in.dir, "", nil, "backup", "bk", "--config", in.config)
	if res.code != 0 {
		t.Fatalf("backup: exit %d: %s", res.code, res.stderr)
	}
	backupDir := filepath.Join(in.dir, "bk")
	if !strings.Contains(res.stdout, backupDir) {
		t.Errorf("backup output %q does not name %s", res.stdout, backupDir)
	}
	if res := in.run("", "backup", in.dataDir); res.code != 1 || !strings.Contains(res.stderr, "is the data directory") {
		t.Errorf("backup into the data directory: exit %d, %q", res.code, res.stderr)
	}
	in.mustRun("", "user", "del", "bob@example.org") // after the backup: must come back
	srv.stop(syscall.SIGTERM)

	restored := newInstance(t)
	// A partial or altered backup is refused, and nothing is restored.
	partial := filepath.Join(in.dir, "partial")
	copyDir(t, backupDir, partial)
	os.Remove(filepath.Join(partial, "manifest.json"))
	altered := filepath.Join(in.dir, "altered")
	copyDir(t, backupDir, altered)
	if err := os.WriteFile(filepath.Join(altered, "roost.db"), []byte("not a store"), 0o600); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{
		partial: "is not a complete Roost backup: it has no manifest.json",
		altered: "is incomplete or altered: roost.db has 11 bytes, the manifest says",
	} {
		res := restored.run("", "restore", dir)
		if res.code != 1 || !strings.Contains(res.stderr, want) || strings.Count(res.stderr, "\n") != 1 {
			t.Errorf("restore %s: exit %d, stderr %q; want one line with %q", filepath.Base(dir), res.code, res.stderr, want)
		}
		if _, err := os.Stat(restored.dataDir); !os.IsNotExist(err) {
			t.Fatalf("a refused restore created %s: %v", restored.dataDir, err)
		}
	}
	// Not over a live store.
	if res := in.run("", "restore", backupDir); res.code != 1 || !strings.Contains(res.stderr, "already holds a store") {
		t.Errorf("restore over the original store: exit %d, %q", res.code, res.stderr)
	}
	res = restored.run("", "restore", backupDir)
	if res.code != 0 || !strings.Contains(res.stdout, "into "+restored.dataDir+"\n") {
		t.Fatalf("restore: exit %d, %q %q", res.code, res.stdout, res.stderr)
	}
	srv2 := restored.startServer()
	if res := restored.run("", "restore", backupDir); res.code != 1 || !strings.Contains(res.stderr, "stop it before restoring") {
		t.Errorf("restore while the server runs: exit %d, %q", res.code, res.stderr)
	}
	if got := restored.mustRun("", "user", "list"); !strings.HasPrefix(got, "alice@example.org\t") || !strings.Contains(got, "\nbob@example.org\t") {
		t.Errorf("restored user list: %q", got)
	}
	if got := restored.mustRun("", "alias", "list"); got != "sales@example.org\talice@example.org\n" {
		t.Errorf("restored alias list: %q", got)
	}
	srv2.stop(syscall.SIGTERM)

	b = openBackend(t, restored.dataDir)
	defer b.Close()
	if _, err := b.Login(ctx, "bob@example.org", "bob-pw", "127.0.0.1"); err != nil {
		t.Fatalf("bob after restore: %v", err)
	}
	alice, err := b.LookupUser(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := alice.Mailbox(backend.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	uids, err := alice.UIDs(mb.ID)
	if err != nil || len(uids) != 1 {
		t.Fatalf("restored INBOX: UIDs %v, %v; want one message", uids, err)
	}
	msgs, err := alice.MessagesByUID(mb.ID, uids)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("message %v: %v", uids, err)
	}
	body, err := alice.ReadBody(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(body, []byte(message)) {
		t.Errorf("restored message:\n%s\nwant it to end with:\n%s", body, message)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStaleControlSocket: a socket file left by a killed server is no
// server; the CLI works directly, and a new server replaces the socket.
func TestStaleControlSocket(t *testing.T) {
	in := newInstance(t)
	if err := os.MkdirAll(in.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: controlSocketPath(in.dataDir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	in.mustRun("", "init")
	in.mustRun("pw\n", "user", "add", "alice@example.org")
	srv := in.startServer()
	if got := in.mustRun("", "user", "list"); !strings.HasPrefix(got, "alice@example.org\t") {
		t.Errorf("user list: %q", got)
	}
	fi, err := os.Stat(controlSocketPath(in.dataDir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v, mode %v (want 0600)", err, fi.Mode().Perm())
	}
	srv.stop(syscall.SIGTERM)
}

// TestStoreLockedWithoutControlSocket: another process holds the store but
// no server answers; the CLI says so instead of hanging or failing vaguely.
func TestStoreLockedWithoutControlSocket(t *testing.T) {
	in := newInstance(t)
	b := openBackend(t, in.dataDir)
	defer b.Close()
	for _, args := range [][]string{{"user", "list"}, {"user", "add", "x@example.org"}, {"backup", filepath.Join(in.dir, "bk")}} {
		res := in.run("pw\n", args...)
		if res.code != 1 || !strings.Contains(res.stderr, "no server answers on its control socket") {
			t.Errorf("roost %s: exit %d, stderr %q", strings.Join(args, " "), res.code, res.stderr)
		}
	}
}

// TestServeStartupErrors: bad configuration and unusable addresses stop
// `roost serve` at once with a message naming the cause.
func TestServeStartupErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	running := newInstance(t)
	running.startServer()

	notSocket := filepath.Join(t.TempDir(), "lmtp.sock")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		file      string // extra config file content ("" uses the instance's)
		env       []string
		stderrHas string
		needs     string // a service that must be wired in listeners.go
	}{
		{name: "unknown key", file: "[imap]\nlisten_tls = \":993\"\n", stderrHas: `unknown key "imap.listen_tls"`},
		{name: "malformed duration", file: "[pop3]\nidle_timeout = \"ten minutes\"\n", stderrHas: "pop3.idle_timeout"},
		{name: "unknown env", env: []string{"ROOST_IMAP_LISTENER=:1"}, stderrHas: "ROOST_IMAP_LISTENER"},
		{name: "negative size in env", env: []string{"ROOST_SMTP_MAX_MESSAGE_BYTES=-5"}, stderrHas: "ROOST_SMTP_MAX_MESSAGE_BYTES"},
		{name: "unknown plaintext policy", env: []string{"ROOST_AUTH_PLAINTEXT=sometimes"}, stderrHas: "auth.plaintext"},
		{name: "port in use", env: []string{"ROOST_HTTP_LISTEN=" + busy.Addr().String()}, stderrHas: "http.listen"},
		{name: "lmtp socket path is a file", env: []string{"ROOST_LMTP_LISTEN=unix:" + notSocket}, stderrHas: "not a socket", needs: "lmtp"},
		{name: "second server on one data_dir", env: []string{"ROOST_DATA_DIR=" + running.dataDir}, stderrHas: "in use by another process"},
		{name: "missing config file", env: []string{"ROOST_CONFIG=/nonexistent/roost.toml"}, stderrHas: "/nonexistent/roost.toml"},
		{name: "tls files missing", env: []string{"ROOST_TLS_CERT=/nonexistent/c.pem", "ROOST_TLS_KEY=/nonexistent/k.pem"}, stderrHas: "/nonexistent/c.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needs != "" && !slices.Contains(wiredServices(), tt.needs) {
				t.Skipf("no %s front end wired in listeners.go", tt.needs)
			}
			in := newInstance(t)
			args := []string{"serve", "--config", in.config}
			if tt.file != "" {
				args = []string{"serve", "--config", writeFile(t, "bad.toml", tt.file)}
			}
			if slices.ContainsFunc(tt.env, func(s string) bool { return strings.HasPrefix(s, "ROOST_CONFIG=") }) {
				args = []string{"serve"}
			}
			res := in.runIn("", "", tt.env, args...)
			if res.code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", res.code, res.stderr)
			}
			lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "roost: ") || !strings.Contains(last, tt.stderrHas) {
				t.Errorf("last stderr line %q does not name %q", last, tt.stderrHas)
			}
		})
	}
}

// TestServeDefaults: with no config file at all, `roost serve` runs with
// data in ./roost-data (listeners moved to free ports by environment).
func TestServeDefaults(t *testing.T) {
	in := newInstance(t)
	in.env = []string{
		"ROOST_SMTP_LISTEN=127.0.0.1:0", "ROOST_LMTP_LISTEN=127.0.0.1:0",
		"ROOST_IMAP_LISTEN=127.0.0.1:0", "ROOST_IMAP_TLS_LISTEN=127.0.0.1:0",
		"ROOST_POP3_LISTEN=", "ROOST_POP3_TLS_LISTEN=127.0.0.1:0",
		"ROOST_HTTP_LISTEN=127.0.0.1:0", "ROOST_METRICS_LISTEN=127.0.0.1:0", "ROOST_LOG_FORMAT=json",
		"ROOST_SUBMISSION_LISTEN=127.0.0.1:0", "ROOST_SUBMISSION_TLS_LISTEN=127.0.0.1:0",
	}
	srv := in.startServerWith(in.dir)
	if _, err := os.Stat(filepath.Join(in.dir, "roost-data", controlSocketName)); err != nil {
		t.Errorf("no control socket in ./roost-data: %v", err)
	}
	res := in.runIn(in.dir, "pw\n", nil, "user", "add", "alice@example.org")
	if res.code != 0 {
		t.Errorf("user add: %s", res.stderr)
	}
	res = in.runIn(in.dir, "", nil, "status")
	if _, ok := strings.CutPrefix(res.stdout, "pid\t"); !ok || strings.Contains(res.stdout, "pop3\t") {
		t.Errorf("status (pop3 disabled by ROOST_POP3_LISTEN=): %q", res.stdout)
	}
	srv.stop(syscall.SIGINT)
}

// TestServeHTTPAndSignals: the HTTP listener serves /healthz and
// autoconfiguration, the metrics listener /metrics and /healthz (and the
// HTTP listener, which is published, no metrics); SIGHUP reloads the
// certificate; SIGINT stops cleanly.
func TestServeHTTPAndSignals(t *testing.T) {
	in := newInstance(t)
	srv := in.startServer()
	in.mustRun("pw\n", "user", "add", "alice@example.org")
	st := in.status()
	base, metricsBase := "http://"+st["http"], "http://"+st["metrics"]
	if st["metrics"] == "" || st["metrics"] == st["http"] {
		t.Fatalf("status: metrics listener %q, http %q: want two listeners", st["metrics"], st["http"])
	}
	getFrom := func(base, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := getFrom(metricsBase, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("metrics /healthz: %d %q", code, body)
	}
	if code, body := getFrom(base, "/metrics"); code != 404 || strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics on the published HTTP listener: %d %q; want 404", code, body)
	}
	get := func(path string) (int, string) {
		t.Helper()
		if path == "/metrics" {
			return getFrom(metricsBase, path)
		}
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{"roost_accounts 1\n", "roost_domains 1\n", "go_goroutines", "process_resident_memory_bytes", `roost_build_info{commit="`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	if code, body := get("/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.org"); code != 200 || !strings.Contains(body, "mail.test") {
		t.Errorf("autoconfig: %d %q", code, body)
	}
	if code, _ := get("/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=x@elsewhere.example"); code != 404 {
		t.Errorf("autoconfig for a domain not served: %d, want 404", code)
	}

	reloaded := srv.waitFor("SIGHUP: TLS certificate reloaded")
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reloaded:
	case <-srv.exited:
		t.Fatalf("SIGHUP stopped the server:\n%s", srv.log())
	case <-time.After(readyTimeout):
		t.Fatalf("no reload logged after SIGHUP:\n%s", srv.log())
	}
	if st := in.status(); st["http"] == "" {
		t.Errorf("status after SIGHUP: %q", st)
	}
	if !srv.logContains(`"msg":"starting roost"`, `"version":"`, `"commit":"`, `"go":"go`) {
		t.Errorf("no start-up line with the version:\n%s", srv.log())
	}
	srv.stop(syscall.SIGINT)
	if !srv.logContains(`"msg":"stopped"`) {
		t.Errorf("no \"stopped\" log line:\n%s", srv.log())
	}
}

// TestPasswordPromptOnTerminal runs `user add` on a pseudo-terminal (with
// util-linux script(1)): the password is asked twice without echo.
func TestPasswordPromptOnTerminal(t *testing.T) {
	scriptBin := testutil.RequireBinary(t, "script")
	in := newInstance(t)
	tests := []struct {
		addr, typed string
		code        int
		stderrHas   string
	}{
		{"alice@example.org", "pw-1\npw-1\n", 0, ""},
		{"bob@example.org", "pw-1\npw-2\n", 1, "the passwords do not match"},
		{"carol@example.org", "\n", 1, "empty password"},
	}
	in.mustRun("", "init")
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		command := fmt.Sprintf("'%s' user add %s --config '%s'", roostBin, tt.addr, in.config)
		cmd := exec.CommandContext(ctx, scriptBin, "-q", "-e", "-c", command, "/dev/null")
		cmd.Env = environ()
		cmd.Stdin = strings.NewReader(tt.typed)
		out, err := cmd.CombinedOutput()
		cancel()
		code := 0
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code || !strings.Contains(string(out), tt.stderrHas) || !strings.Contains(string(out), "Password for "+tt.addr) {
			t.Errorf("user add %s on a terminal: exit %d, output %q", tt.addr, code, out)
		}
	}
	if got := in.mustRun("", "user", "list"); !strings.HasPrefix(got, "alice@example.org\t") || strings.Count(got, "\n") != 1 {
		t.Errorf("user list: %q", got)
	}
	b := openBackend(t, in.dataDir)
	defer b.Close()
	if _, err := b.Login(context.Background(), "alice@example.org", "pw-1", "127.0.0.1"); err != nil {
		t.Errorf("password typed on the terminal: %v", err)
	}
}
