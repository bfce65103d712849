// Package testutil holds helpers shared by Roost's tests.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireInteropEnv is the environment variable that CI sets to turn every
// "client binary missing" skip into a failure.
const RequireInteropEnv = "ROOST_REQUIRE_INTEROP"

// RequireBinary returns the path of the named program. When the program is
// missing the test is skipped on a developer machine, and fails when
// ROOST_REQUIRE_INTEROP=1 (as in CI), so CI can never pass by skipping.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(RequireInteropEnv) == "1" {
		t.Fatalf("%s not found and %s=1: install it (see .ci/run)", name, RequireInteropEnv)
	}
	t.Skipf("%s not installed; skipping interop test", name)
	return ""
}
