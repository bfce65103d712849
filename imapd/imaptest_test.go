package imapd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/roostmail/roost/internal/testutil"
)

// imaptestBinary finds Dovecot's imaptest: $ROOST_IMAPTEST (the imaptest
// directory or its wrapper script), or shared/imaptest/imaptest in an
// ancestor of the module root. It skips (fails under
// ROOST_REQUIRE_INTEROP) when imaptest or the libdovecot it links is
// missing.
func imaptestBinary(t *testing.T) (bin, tests string) {
	t.Helper()
	required := os.Getenv(testutil.RequireInteropEnv) == "1"
	missing := func(format string, args ...any) {
		t.Helper()
		if required {
			t.Fatalf(format+" (and %s=1)", append(args, testutil.RequireInteropEnv)...)
		}
		t.Skipf(format, args...)
	}
	if env := os.Getenv("ROOST_IMAPTEST"); env != "" {
		if fi, err := os.Stat(env); err == nil && fi.IsDir() {
			bin = filepath.Join(env, "imaptest")
		} else {
			bin = env
		}
	} else {
		dir, _ := filepath.Abs(".")
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "shared", "imaptest", "imaptest")); err == nil {
				bin = filepath.Join(d, "shared", "imaptest", "imaptest")
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if bin == "" {
		missing("imaptest not found; set ROOST_IMAPTEST")
	}
	if _, err := os.Stat("/usr/lib/dovecot/libdovecot.so.0"); err != nil {
		missing("imaptest needs libdovecot (apt-get install dovecot-core)")
	}
	return bin, filepath.Join(filepath.Dir(bin), "tests")
}

// imaptestEnv is Roost in-process with the accounts imaptest logs in as.
func imaptestEnv(t *testing.T, users int) *env {
	e := newEnv(t, func(o *Options) { o.MaxConnsPerIP = -1 })
	ctx := context.Background()
	if users == 0 {
		for _, u := range []string{"user@example.org", "user2@example.org"} {
			if err := e.b.CreateUser(ctx, u, "pass"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 1; i <= users; i++ {
		if err := e.b.CreateUser(ctx, fmt.Sprintf("user%d@example.org", i), "pass"); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// imaptestNotRunning are the script files that run no command: the
// URLAUTH ones (RFC 4467 is not offered). Every other file runs.
var imaptestNotRunning = []string{"urlauth", "urlauth-binary", "urlauth2"}

var imaptestSummary = regexp.MustCompile(`(?m)^(\d+) test groups: (\d+) failed.*\nbase protocol: (\d+)/(\d+) individual commands failed\nextensions: (\d+)/(\d+) individual commands failed`)

// TestImaptestCompliance runs every script of Dovecot's imaptest against
// Roost, one file at a time, so that a file that runs no command (its
// capability missing) is seen: every file must run, but for
// imaptestNotRunning, and no command may fail.
func TestImaptestCompliance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs imaptest")
	}
	bin, dir := imaptestBinary(t)
	e := imaptestEnv(t, 0)
	host, port, _ := strings.Cut(e.addr, ":")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ran, notRun []string
	totals := [4]int{}
	for _, ent := range entries {
		name := ent.Name()
		if ent.IsDir() || strings.HasSuffix(name, ".mbox") {
			continue
		}
		out, _ := exec.Command(bin, "host="+host, "port="+port, "user=user@example.org", "pass=pass",
			"user2=user2@example.org", "test="+filepath.Join(dir, name)).CombinedOutput()
		m := imaptestSummary.FindSubmatch(out)
		if m == nil {
			t.Errorf("%s: no summary in imaptest's output:\n%s", name, out)
			continue
		}
		n := func(i int) int { v, _ := strconv.Atoi(string(m[i])); return v }
		if n(4)+n(6) == 0 {
			notRun = append(notRun, name)
			if !slices.Contains(imaptestNotRunning, name) {
				t.Errorf("%s ran no command (a capability it needs is missing)", name)
			}
			continue
		}
		ran = append(ran, name)
		totals[0] += n(3)
		totals[1] += n(4)
		totals[2] += n(5)
		totals[3] += n(6)
		if n(2) > 0 || n(3) > 0 || n(5) > 0 {
			t.Errorf("%s: %d failed groups, %d/%d base and %d/%d extension commands failed:\n%s",
				name, n(2), n(3), n(4), n(5), n(6), out)
		}
	}
	for _, name := range imaptestNotRunning {
		if !slices.Contains(notRun, name) && slices.Contains(ran, name) {
			t.Errorf("%s ran: update imaptestNotRunning", name)
		}
	}
	if !slices.Contains(ran, "notify") {
		t.Errorf("notify did not run (NOTIFY, RFC 5465, is offered)")
	}
	t.Logf("imaptest: %d files ran, %d ran nothing (%s); base %d/%d, extensions %d/%d commands failed",
		len(ran), len(notRun), strings.Join(notRun, " "), totals[0], totals[1], totals[2], totals[3])
}

// TestImaptestStress runs imaptest's stress mode, 20 clients for 60
// seconds (ROOST_IMAPTEST_SECS to change), and fails on every "Error:"
// line: an inconsistency between what concurrent sessions were told.
func TestImaptestStress(t *testing.T) {
	if testing.Short() {
		t.Skip("runs imaptest for a minute")
	}
	bin, dir := imaptestBinary(t)
	e := imaptestEnv(t, 20)
	host, port, _ := strings.Cut(e.addr, ":")
	secs := "60"
	if v := os.Getenv("ROOST_IMAPTEST_SECS"); v != "" {
		secs = v
	}
	out, err := exec.Command(bin, "host="+host, "port="+port, "user=user%d@example.org", "pass=pass",
		"users=20", "clients=20", "secs="+secs, "mbox="+filepath.Join(dir, "default.mbox")).CombinedOutput()
	var errs []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Error:") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 {
		t.Errorf("imaptest stress: %d Error lines, first: %s", len(errs), strings.Join(errs[:min(len(errs), 20)], "\n"))
	}
	if err != nil && len(errs) == 0 {
		t.Errorf("imaptest stress: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("imaptest stress (%s s): %s", secs, strings.Join(lines[max(0, len(lines)-3):], " | "))
}
