package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/roostmail/roost/internal/testutil"
)

// TestVersionOfABuildFromAClone builds roost from a fresh `git clone` of
// this repository, as a user would, and checks that `roost version` names
// a version and the commit: once with a plain `go build` (the toolchain's
// own record of the module version and VCS revision) and once with the
// -ldflags line the README and the Dockerfile use.
func TestVersionOfABuildFromAClone(t *testing.T) {
	gitBin := testutil.RequireBinary(t, "git")
	top, err := exec.Command(gitBin, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		if os.Getenv(testutil.RequireInteropEnv) != "" {
			t.Fatalf("the source is not a git checkout: %v", err)
		}
		t.Skipf("the source is not a git checkout: %v", err)
	}
	clone := filepath.Join(t.TempDir(), "roost")
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(gitBin, append([]string{"-C", clone}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out, err := exec.Command(gitBin, "clone", "-q", strings.TrimSpace(string(top)), clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	head := git("rev-parse", "HEAD")
	describe := git("describe", "--tags", "--always", "--dirty")

	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	build := func(name string, flags ...string) string {
		t.Helper()
		bin := filepath.Join(t.TempDir(), name)
		// -buildvcs=true: a GOFLAGS=-buildvcs=false in the environment
		// must not hide what a user's build records.
		args := append([]string{"build", "-buildvcs=true", "-o", bin}, flags...)
		cmd := exec.Command(goTool, append(args, "./cmd/roost")...)
		cmd.Dir = clone
		cmd.Env = os.Environ()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			t.Fatalf("%s version: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}

	// The toolchain's record: a module version derived from the tags
	// (v0.2.0 on a tagged commit, a pseudo-version after it) and the
	// revision.
	got := build("roost-plain")
	t.Logf("plain build: %s", got)
	m := regexp.MustCompile(`^roost (v\d+\.\d+\.\d+\S*) \(commit ([0-9a-f]{12}), go\d`).FindStringSubmatch(got)
	if m == nil || m[2] != head[:12] {
		t.Errorf("plain build from a clone: %q; want a module version and commit %s", got, head[:12])
	}

	// The documented release build.
	got = build("roost-release", "-ldflags", "-X main.version="+describe+" -X main.commit="+head)
	t.Logf("release build: %s", got)
	if want := "roost " + describe + " (commit " + head[:12] + ", go"; !strings.HasPrefix(got, want) {
		t.Errorf("release build: %q; want it to start with %q", got, want)
	}
}
