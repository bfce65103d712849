package imapd

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestIdleConnectionMemory measures what one connection idling in IDLE on
// INBOX costs the server in Go memory (heap in use plus goroutine stacks,
// after a GC), over many connections, and holds it to a budget: a hosting
// provider keeps thousands of these open (Dovecot: about 0.5 MiB each).
func TestIdleConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 150 connections")
	}
	if raceEnabled {
		t.Skip("the race detector's instrumentation changes memory use; the budget holds for normal builds")
	}
	e := newEnv(t, func(o *Options) { o.MaxConnsPerIP = -1 })
	usage := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	// Warm up: one full session, so one-time allocations are not counted.
	w := e.dialRaw()
	w.login()
	w.cmd("S", "SELECT INBOX")
	w.cmd("Z", "LOGOUT")

	const n = 150
	g0 := runtime.NumGoroutine()
	var m0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	before := usage()
	conns := make([]*raw, n)
	for i := range conns {
		r := e.dialRaw()
		r.login()
		r.cmd("S", "SELECT INBOX")
		r.send("I IDLE\r\n")
		if l := r.line(); !strings.HasPrefix(l, "+") {
			t.Fatalf("IDLE: %q", l)
		}
		conns[i] = r
	}
	after := usage()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	t.Logf("per connection: %.1f goroutines, heap %.1f KiB, stacks %.1f KiB",
		float64(runtime.NumGoroutine()-g0)/n, float64(m1.HeapInuse-m0.HeapInuse)/n/1024, float64(m1.StackInuse-m0.StackInuse)/n/1024)
	per := float64(after-before) / n / 1024
	t.Logf("server memory per idle IMAP connection: %.1f KiB (client sockets included)", per)
	if per > 40 {
		t.Errorf("an idle connection costs %.1f KiB, budget 40 KiB", per)
	}
	for _, r := range conns {
		// Opening 150 sessions on a loaded machine may take longer than
		// the raw client's first deadline.
		r.c.SetDeadline(time.Now().Add(waitLimit))
		r.send("DONE\r\n")
	}
}
