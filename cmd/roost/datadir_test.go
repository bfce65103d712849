package main

// Issue 15: admin commands run from another working directory than the
// server never create a second store; they refuse, say where they looked,
// and act on the server's store when pointed at it.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// defaultsEnv moves every listener of the built-in defaults to a free
// loopback port, so `roost serve` can run without a config file.
var defaultsEnv = []string{
	"ROOST_SMTP_LISTEN=127.0.0.1:0", "ROOST_LMTP_LISTEN=127.0.0.1:0",
	"ROOST_IMAP_LISTEN=127.0.0.1:0", "ROOST_IMAP_TLS_LISTEN=127.0.0.1:0",
	"ROOST_POP3_LISTEN=127.0.0.1:0", "ROOST_POP3_TLS_LISTEN=127.0.0.1:0",
	"ROOST_HTTP_LISTEN=127.0.0.1:0", "ROOST_METRICS_LISTEN=127.0.0.1:0",
	"ROOST_SUBMISSION_LISTEN=127.0.0.1:0", "ROOST_SUBMISSION_TLS_LISTEN=127.0.0.1:0",
	"ROOST_LOG_FORMAT=json",
}

func TestAdminCommandsNeverCreateAStore(t *testing.T) {
	in := newInstance(t)
	in.env = defaultsEnv
	serverDir := in.dir // `roost serve` runs here, with data in ./roost-data
	storeDir := filepath.Join(serverDir, "roost-data")
	elsewhere := t.TempDir() // the admin's shell is here
	wrongStore := filepath.Join(elsewhere, "roost-data")
	pointer := filepath.Join(elsewhere, "roost.toml")
	if err := os.WriteFile(pointer, []byte(fmt.Sprintf("data_dir = %q\n", storeDir)), 0o600); err != nil {
		t.Fatal(err)
	}

	// refuses checks that a command run from elsewhere with the default
	// config fails with one line naming the absolute path it looked at and
	// the ways to point it at the right store, and creates nothing.
	refuses := func(state string, stdin string, args ...string) {
		t.Helper()
		res := in.runIn(elsewhere, stdin, nil, args...)
		line := strings.TrimSuffix(res.stderr, "\n")
		if res.code != 1 || strings.Contains(line, "\n") {
			t.Errorf("%s: roost %s from another directory: exit %d, stderr %q; want one error line", state, strings.Join(args, " "), res.code, res.stderr)
		}
		for _, want := range []string{wrongStore, "--config", "ROOST_DATA_DIR"} {
			if !strings.Contains(line, want) {
				t.Errorf("%s: roost %s: error %q does not name %q", state, strings.Join(args, " "), line, want)
			}
		}
		if _, err := os.Stat(wrongStore); !os.IsNotExist(err) {
			t.Fatalf("%s: roost %s created %s (%v)", state, strings.Join(args, " "), wrongStore, err)
		}
	}
	// acts runs a command from elsewhere pointed at the server's store,
	// first by --config, then by ROOST_DATA_DIR.
	acts := func(state string, how int, stdin string, wantOut string, args ...string) {
		t.Helper()
		var env []string
		if how == 0 {
			args = append(args, "--config", pointer)
		} else {
			env = []string{"ROOST_DATA_DIR=" + storeDir}
		}
		res := in.runIn(elsewhere, stdin, env, args...)
		if res.code != 0 || !strings.Contains(res.stdout, wantOut) {
			t.Errorf("%s: roost %s: exit %d, stdout %q, stderr %q; want %q", state, strings.Join(args, " "), res.code, res.stdout, res.stderr, wantOut)
		}
	}

	mutating := [][]string{
		{"user", "add", "alice@example.org"}, {"user", "passwd", "alice@example.org"},
		{"user", "del", "alice@example.org"}, {"user", "list"},
		{"alias", "add", "a@example.org", "alice@example.org"}, {"alias", "del", "a@example.org"},
		{"alias", "list"}, {"backup", filepath.Join(elsewhere, "bk")},
	}

	// A running server whose data_dir is relative to its own directory.
	srv := in.startServerWith(serverDir)
	for _, args := range mutating {
		refuses("server running", "pw\n", args...)
	}
	if res := in.runIn(elsewhere, "", nil, "status"); res.code != 1 || !strings.Contains(res.stderr, wrongStore) {
		t.Errorf("status from elsewhere: exit %d, %q; want it to name %s", res.code, res.stderr, wrongStore)
	}
	acts("server running", 0, "alice-pw\n", "added alice@example.org to "+storeDir+"\n", "user", "add", "alice@example.org")
	acts("server running", 1, "", "added alias sales@example.org for alice@example.org to "+storeDir+"\n", "alias", "add", "sales@example.org", "alice@example.org")
	acts("server running", 1, "", "data_dir\t"+storeDir+"\n", "status")
	// It went to the running server (which holds the store locked).
	if !srv.logContains(`"op":"user.add"`, `"ok":true`) {
		t.Errorf("the server did not carry out user.add:\n%s", srv.log())
	}
	srv.stop(syscall.SIGTERM)

	// The server stopped: the same commands still refuse, and act directly
	// on the right store when pointed at it.
	for _, args := range mutating {
		refuses("server stopped", "pw\n", args...)
	}
	acts("server stopped", 0, "bob-pw\n", "added bob@example.org to "+storeDir+"\n", "user", "add", "bob@example.org")
	acts("server stopped", 1, "", "deleted alias sales@example.org from "+storeDir+"\n", "alias", "del", "sales@example.org")

	// The server, started again where it was, sees what was done.
	in.startServerWith(serverDir)
	out := in.runIn(serverDir, "", nil, "user", "list")
	if !strings.HasPrefix(out.stdout, "alice@example.org\t") || !strings.Contains(out.stdout, "\nbob@example.org\t") {
		t.Errorf("user list on the server: %q %q", out.stdout, out.stderr)
	}
	if out := in.runIn(serverDir, "", nil, "alias", "list"); out.stdout != "" || out.code != 0 {
		t.Errorf("alias list on the server: %q %q", out.stdout, out.stderr)
	}
}
