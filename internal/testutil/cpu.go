package testutil

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// ProcessCPU returns the CPU time (user and system) the test process has
// used so far. Tests measure the work a server in the process does with
// it: unlike wall time, it does not grow when the machine is busy.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// IdleWindow and IdleMaxCPU bound RequireIdle: over IdleWindow of wall
// time an idle process uses next to no CPU; a busy loop uses all of it.
const (
	IdleWindow = 500 * time.Millisecond
	IdleMaxCPU = 100 * time.Millisecond
)

// RequireIdle fails t unless the process uses at most IdleMaxCPU of CPU
// time during IdleWindow: no goroutine is still working (on a request
// whose client has gone, say). A garbage collection runs first, so that
// the collector's work on what earlier requests allocated is not counted.
// It returns the CPU time used in the window.
func RequireIdle(t testing.TB, what string) time.Duration {
	t.Helper()
	runtime.GC()
	start := ProcessCPU()
	time.Sleep(IdleWindow) // the passing of time is what is measured
	used := ProcessCPU() - start
	if used > IdleMaxCPU {
		t.Errorf("after %s: the process used %v of CPU in %v, not idle (at most %v)", what, used, IdleWindow, IdleMaxCPU)
	}
	return used
}
