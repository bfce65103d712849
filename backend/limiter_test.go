package backend

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// fakeClock is a limiter clock moved by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) advance(d time.Duration) { c.now = c.now.Add(d) }

func newTestLimiter(opts AuthLimiterOptions) (*AuthLimiter, *fakeClock) {
	c := &fakeClock{now: time.Unix(1e9, 0)}
	opts.Now = c.Now
	return NewAuthLimiter(opts), c
}

func mustAllow(t *testing.T, l *AuthLimiter, ip, account string) time.Duration {
	t.Helper()
	wait, ok := l.Allow(ip, account)
	if !ok {
		t.Fatalf("Allow(%s, %s) refused, want allowed", ip, account)
	}
	return wait
}

func mustRefuse(t *testing.T, l *AuthLimiter, ip, account string) {
	t.Helper()
	if _, ok := l.Allow(ip, account); ok {
		t.Fatalf("Allow(%s, %s) allowed, want refused", ip, account)
	}
}

func TestLimiterPairDelayGrows(t *testing.T) {
	l, clock := newTestLimiter(AuthLimiterOptions{MaxFailures: 1000, Delay: time.Second, MaxDelay: 30 * time.Second})
	want := []time.Duration{0, 1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		got := mustAllow(t, l, "192.0.2.1", "a@x.org")
		if got != w*time.Second {
			t.Errorf("after %d failures: wait %v, want %v", i, got, w*time.Second)
		}
		clock.advance(got) // Login waits, then checks the password
		l.Failed("192.0.2.1", "a@x.org")
	}
	// Other pairs are not slowed: another account from that address, the
	// account from another address.
	if got := mustAllow(t, l, "192.0.2.1", "b@x.org"); got != 0 {
		t.Errorf("other account: wait %v", got)
	}
	if got := mustAllow(t, l, "192.0.2.2", "a@x.org"); got != 0 {
		t.Errorf("other address: wait %v", got)
	}
	// A success ends the pair's delay.
	l.Succeeded("192.0.2.1", "a@x.org")
	if got := mustAllow(t, l, "192.0.2.1", "a@x.org"); got != 0 {
		t.Errorf("after a success: wait %v", got)
	}
}

// Parallel attempts of one failing pair queue behind each other, and those
// beyond MaxDelay are refused: opening many connections does not multiply
// the guess rate.
func TestLimiterPairDelayQueuesParallelAttempts(t *testing.T) {
	l, _ := newTestLimiter(AuthLimiterOptions{MaxFailures: 1000, Delay: time.Second, MaxDelay: 3 * time.Second})
	l.Failed("192.0.2.1", "a@x.org")
	for i, want := range []time.Duration{1, 2, 3} {
		if got := mustAllow(t, l, "192.0.2.1", "a@x.org"); got != want*time.Second {
			t.Errorf("parallel attempt %d: wait %v, want %v", i, got, want*time.Second)
		}
	}
	mustRefuse(t, l, "192.0.2.1", "a@x.org")
}

func TestLimiterAddressLock(t *testing.T) {
	l, clock := newTestLimiter(AuthLimiterOptions{MaxFailures: 3, Window: time.Minute, Lockout: 5 * time.Minute})
	for i := range 3 {
		mustAllow(t, l, "192.0.2.1", fmt.Sprintf("u%d@x.org", i))
		l.Failed("192.0.2.1", fmt.Sprintf("u%d@x.org", i))
	}
	mustRefuse(t, l, "192.0.2.1", "other@x.org")
	mustRefuse(t, l, "::ffff:192.0.2.1", "other@x.org") // the same address, IPv4-mapped
	mustAllow(t, l, "192.0.2.2", "other@x.org")
	clock.advance(5*time.Minute + time.Second)
	mustAllow(t, l, "192.0.2.1", "other@x.org")

	// Failures spread beyond the window do not add up.
	for range 4 {
		l.Failed("192.0.2.9", "")
		clock.advance(31 * time.Second)
	}
	mustAllow(t, l, "192.0.2.9", "x@x.org")
}

func TestLimiterIPv6CountsPerPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix    int
		attackers []string // each fails once
		probe     string
		locked    bool
	}{
		{64, []string{"2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"}, "2001:db8::99", true},
		{64, []string{"2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"}, "2001:db8:0:1::1", false},
		{64, []string{"2001:db8::1", "2001:db8:0:1::1", "2001:db8:0:2::1"}, "2001:db8::1", false},
		{48, []string{"2001:db8::1", "2001:db8:0:1::1", "2001:db8:0:2::1"}, "2001:db8:0:3::1", true},
		{128, []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"}, "2001:db8::4", false},
		{64, []string{"fe80::1%eth0", "fe80::2%eth1", "fe80::3"}, "fe80::4", true},
	} {
		t.Run(fmt.Sprintf("/%d %s", tc.prefix, tc.probe), func(t *testing.T) {
			l, _ := newTestLimiter(AuthLimiterOptions{MaxFailures: 3, IPv6Prefix: tc.prefix})
			for i, a := range tc.attackers {
				l.Failed(a, fmt.Sprintf("u%d@x.org", i))
			}
			if _, ok := l.Allow(tc.probe, "v@x.org"); ok == tc.locked {
				t.Errorf("Allow(%s) = %v, want locked=%v", tc.probe, ok, tc.locked)
			}
		})
	}
}

// The lockout attack: wrong passwords for one account from many addresses
// lock it, but not for its owner at the address it logs in from.
func TestLimiterAccountLockSparesKnownGoodAddresses(t *testing.T) {
	l, clock := newTestLimiter(AuthLimiterOptions{MaxFailures: 3, AccountLockAddresses: 5, Lockout: 5 * time.Minute})
	l.Succeeded("198.51.100.7", "alice@x.org") // her usual address
	for i := 1; i <= 4; i++ {
		l.Failed(fmt.Sprintf("192.0.2.%d", i), "alice@x.org")
	}
	mustAllow(t, l, "203.0.113.1", "alice@x.org") // four addresses: not yet
	l.Failed("192.0.2.5", "alice@x.org")
	mustRefuse(t, l, "203.0.113.1", "alice@x.org") // a new address: locked
	mustAllow(t, l, "203.0.113.1", "bob@x.org")    // other accounts are not
	if wait := mustAllow(t, l, "198.51.100.7", "alice@x.org"); wait != 0 {
		t.Errorf("known-good address waits %v", wait)
	}
	// Her own typos from there slow her down, but neither lock the
	// account nor need the attack to stop.
	for range 10 {
		l.Failed("198.51.100.7", "alice@x.org")
	}
	mustAllow(t, l, "198.51.100.7", "alice@x.org")
	clock.advance(5*time.Minute + time.Second)
	mustAllow(t, l, "203.0.113.1", "alice@x.org")

	// Known-good also exempts from the address lock (an attacker behind the
	// same NAT), but only for that account.
	for i := range 3 {
		l.Failed("198.51.100.7", fmt.Sprintf("guess%d@x.org", i))
	}
	mustRefuse(t, l, "198.51.100.7", "bob@x.org")
	mustAllow(t, l, "198.51.100.7", "alice@x.org")

	// Known-good expires.
	clock.advance(31 * 24 * time.Hour)
	for i := 1; i <= 5; i++ {
		l.Failed(fmt.Sprintf("192.0.2.%d", i), "alice@x.org")
	}
	mustRefuse(t, l, "198.51.100.7", "alice@x.org")
}

func TestLimiterExemptLoopback(t *testing.T) {
	l, _ := newTestLimiter(AuthLimiterOptions{MaxFailures: 2, ExemptLoopback: true, AccountLockAddresses: 2})
	for i := range 5 {
		l.Failed("127.0.0.1", fmt.Sprintf("u%d@x.org", i))
	}
	mustAllow(t, l, "127.0.0.1", "v@x.org")
	mustAllow(t, l, "::1", "v@x.org")
	l.Failed("127.0.0.2", "a@x.org")
	l.Failed("127.0.0.3", "a@x.org")
	mustRefuse(t, l, "127.0.0.1", "a@x.org") // the account lock still applies
}

// Memory stays bounded however many addresses and accounts an attacker
// uses, and the oldest entries make room.
func TestLimiterStateBounded(t *testing.T) {
	l, clock := newTestLimiter(AuthLimiterOptions{MaxTracked: 1000, MaxFailures: 3})
	l.Succeeded("198.51.100.7", "alice@x.org")
	for i := range 20000 {
		ip := fmt.Sprintf("2001:db8:%x:%x::1", i>>16, i&0xffff)
		l.Failed(ip, fmt.Sprintf("u%d@x.org", i))
		clock.advance(time.Millisecond)
	}
	addrs, accounts, pairs, good := l.tracked()
	if addrs > 1000 || accounts > 1000 || pairs > 1000 || good > 1000 {
		t.Errorf("tables hold %d addresses, %d accounts, %d pairs, %d known-good; want <= 1000 each", addrs, accounts, pairs, good)
	}
	if addrs != 1000 || good != 1 {
		t.Errorf("addresses %d (want full, 1000), known-good %d (want 1: failures must not evict it)", addrs, good)
	}
}

// BenchmarkLimiterFailed: the cost of one failed attempt (Allow + Failed)
// with full tables of 1,000 and of 100,000 entries each (the same cost:
// O(1) per attempt), and the memory the full tables take.
//
//	go test -run XXX -bench LimiterFailed -benchmem ./backend/
func BenchmarkLimiterFailed(b *testing.B) {
	for _, tracked := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("tracked=%d", tracked), func(b *testing.B) { benchmarkLimiterFailed(b, tracked) })
	}
}

func benchmarkLimiterFailed(b *testing.B, tracked int) {
	ips := make([]string, 4*tracked)
	accts := make([]string, len(ips))
	for i := range ips {
		ips[i] = fmt.Sprintf("2001:db8:%x:%x::1", i>>16, i&0xffff)
		accts[i] = fmt.Sprintf("user%d@example.org", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l, clock := newTestLimiter(AuthLimiterOptions{MaxTracked: tracked})
	for i := range tracked {
		l.Failed(ips[i], accts[i])
		l.Succeeded(ips[i], accts[i])
		l.Failed(ips[i], accts[i])
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	tablesMB := float64(after.HeapAlloc-before.HeapAlloc) / 1e6
	addrs, accounts, pairs, good := l.tracked()
	for i := 0; b.Loop(); i++ {
		ip, acct := ips[i%len(ips)], accts[i%len(accts)]
		l.Allow(ip, acct)
		l.Failed(ip, acct)
		clock.advance(time.Microsecond)
	}
	b.ReportMetric(tablesMB, "MB-full-tables")
	b.ReportMetric(float64(addrs+accounts+pairs+good), "entries")
}
