package backend

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// AuthLimiterOptions configure an AuthLimiter. Zero values take the
// defaults given.
type AuthLimiterOptions struct {
	// MaxFailures failed logins from one address (an IPv4 address, or an
	// IPv6 /IPv6Prefix network) within Window lock that address out for
	// Lockout, except for accounts that logged in from it before (see
	// KnownGoodTTL). Default 10.
	MaxFailures int
	// Window is how far back failures count, for addresses, accounts and
	// (account, address) pairs. Default 5 minutes.
	Window time.Duration
	// Lockout is how long a locked address or account stays locked.
	// Default 5 minutes.
	Lockout time.Duration
	// Delay is the wait before checking the next password of an
	// (account, address) pair after one failure; it doubles with each
	// further failure of the pair, up to MaxDelay. Default 1 second.
	Delay time.Duration
	// MaxDelay caps the pair's delay. An attempt that would have to wait
	// longer (several at once from one pair) is refused. Default 30 seconds.
	MaxDelay time.Duration
	// AccountLockAddresses: when failed logins for one account came from
	// this many different addresses within Window, the account is locked
	// for Lockout, except from its known-good addresses. Default 10, at
	// most 1000.
	AccountLockAddresses int
	// IPv6Prefix is the length of the IPv6 network counted as one address
	// (a host usually has a whole /64). Default 64.
	IPv6Prefix int
	// KnownGoodTTL is how long an address an account logged in from
	// successfully stays exempt from that account's lock and from the
	// address's lock. Default 30 days.
	KnownGoodTTL time.Duration
	// MaxTracked bounds each of the limiter's four tables (addresses,
	// accounts, pairs, known-good pairs); the least recently used entry
	// makes room. An entry takes about 220 bytes, so all four tables full
	// take about 45 MB at the default, 50,000.
	MaxTracked int
	// ExemptLoopback exempts 127.0.0.0/8 and ::1 from the per-address lock
	// (the account lock and the pair delay still apply).
	ExemptLoopback bool
	// Now is the clock (tests may replace it).
	Now func() time.Time
}

// AuthLimiter throttles password guessing without handing attackers a way
// to lock real users out:
//
//   - Each (account, address) pair that fails is slowed down: its next
//     attempt waits Delay, doubling per failure up to MaxDelay.
//   - An address (IPv6 aggregated to a /64) with MaxFailures failures in
//     Window is locked for Lockout.
//   - An account is locked only when failures for it come from
//     AccountLockAddresses different addresses in Window (a distributed
//     attack), and even then not from the addresses it recently logged in
//     from successfully (known-good), so its owner keeps working.
//
// All state is in four LRU tables of at most MaxTracked entries each, and
// every call does a constant amount of work (at most AccountLockAddresses
// steps for the account's address list), whatever the number of entries.
// State is in memory only: a restart forgets locks and known-good
// addresses.
type AuthLimiter struct {
	opts AuthLimiterOptions

	mu        sync.Mutex
	addrs     *simplelru.LRU[netip.Addr, *addrState]
	accounts  *simplelru.LRU[string, *accountState]
	pairs     *simplelru.LRU[pairKey, *pairState]
	knownGood *simplelru.LRU[pairKey, time.Time] // → expiry
}

// pairKey is an account and an address (see addrKey).
type pairKey struct {
	account string
	addr    netip.Addr
}

// addrState counts an address's failures in a fixed window that starts at
// its first failure (a sliding window would need every timestamp).
type addrState struct {
	windowStart time.Time
	failures    int
	lockedUntil time.Time
}

// accountState holds the distinct addresses that failed for an account
// within Window, at most AccountLockAddresses of them.
type accountState struct {
	failedFrom  []addrSeen
	lockedUntil time.Time
}

type addrSeen struct {
	addr netip.Addr
	last time.Time
}

// pairState is one (account, address) pair's failures and the time its
// next attempt may be checked.
type pairState struct {
	failures int
	last     time.Time
	next     time.Time
}

// NewAuthLimiter returns a limiter with opts (defaults filled in).
func NewAuthLimiter(opts AuthLimiterOptions) *AuthLimiter {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 10
	}
	def(&opts.Window, 5*time.Minute)
	def(&opts.Lockout, 5*time.Minute)
	def(&opts.Delay, time.Second)
	def(&opts.MaxDelay, 30*time.Second)
	def(&opts.KnownGoodTTL, 30*24*time.Hour)
	if opts.MaxDelay < opts.Delay {
		opts.MaxDelay = opts.Delay
	}
	if opts.AccountLockAddresses <= 0 {
		opts.AccountLockAddresses = 10
	}
	opts.AccountLockAddresses = min(opts.AccountLockAddresses, 1000)
	if opts.IPv6Prefix <= 0 || opts.IPv6Prefix > 128 {
		opts.IPv6Prefix = 64
	}
	if opts.MaxTracked <= 0 {
		opts.MaxTracked = 50000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// NewLRU fails only for a size <= 0, excluded above.
	addrs, _ := simplelru.NewLRU[netip.Addr, *addrState](opts.MaxTracked, nil)
	accounts, _ := simplelru.NewLRU[string, *accountState](opts.MaxTracked, nil)
	pairs, _ := simplelru.NewLRU[pairKey, *pairState](opts.MaxTracked, nil)
	knownGood, _ := simplelru.NewLRU[pairKey, time.Time](opts.MaxTracked, nil)
	return &AuthLimiter{opts: opts, addrs: addrs, accounts: accounts, pairs: pairs, knownGood: knownGood}
}

// addrKey is the unit an address is counted in: an IPv4 address (IPv4
// mapped into IPv6 included), or the IPv6 network of IPv6Prefix bits. An
// unparsable address (not from a TCP connection) maps to the zero Addr,
// one shared bucket.
func (l *AuthLimiter) addrKey(ip string) netip.Addr {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, err := a.Prefix(l.opts.IPv6Prefix)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}

// delay is the pair's wait after n failures: Delay·2^(n-1), at most MaxDelay.
func (l *AuthLimiter) delay(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := l.opts.Delay
	for i := 1; i < n && d < l.opts.MaxDelay; i++ {
		d *= 2
	}
	return min(d, l.opts.MaxDelay)
}

func (l *AuthLimiter) isKnownGood(k pairKey, now time.Time) bool {
	exp, ok := l.knownGood.Get(k)
	if ok && now.After(exp) {
		l.knownGood.Remove(k)
		return false
	}
	return ok
}

func (l *AuthLimiter) exemptAddr(a netip.Addr) bool {
	return l.opts.ExemptLoopback && a.IsLoopback()
}

// Allow implements LoginLimiter: it reports whether an attempt from ip for
// account may be checked, and how long to wait first (the pair's delay).
func (l *AuthLimiter) Allow(ip, account string) (time.Duration, bool) {
	now := l.opts.Now()
	k := pairKey{account: account, addr: l.addrKey(ip)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.isKnownGood(k, now) {
		if s, ok := l.addrs.Get(k.addr); ok && now.Before(s.lockedUntil) && !l.exemptAddr(k.addr) {
			return 0, false
		}
		if s, ok := l.accounts.Get(account); ok && now.Before(s.lockedUntil) {
			return 0, false
		}
	}
	p, ok := l.pairs.Get(k)
	if !ok || p.failures == 0 {
		return 0, true
	}
	wait := max(p.next.Sub(now), 0)
	if wait > l.opts.MaxDelay {
		return 0, false // several attempts at once from one failing pair
	}
	// Reserve: a concurrent attempt of the same pair waits behind this one.
	p.next = now.Add(wait + l.delay(p.failures))
	return wait, true
}

// Failed implements LoginLimiter.
func (l *AuthLimiter) Failed(ip, account string) {
	now := l.opts.Now()
	k := pairKey{account: account, addr: l.addrKey(ip)}
	l.mu.Lock()
	defer l.mu.Unlock()

	p, ok := l.pairs.Get(k)
	if !ok {
		p = &pairState{}
		l.pairs.Add(k, p)
	}
	if now.Sub(p.last) > l.opts.Window {
		p.failures = 0
	}
	p.failures++
	p.last = now
	if next := now.Add(l.delay(p.failures)); next.After(p.next) {
		p.next = next
	}

	if !l.exemptAddr(k.addr) {
		s, ok := l.addrs.Get(k.addr)
		if !ok {
			s = &addrState{}
			l.addrs.Add(k.addr, s)
		}
		if now.Sub(s.windowStart) > l.opts.Window {
			s.windowStart, s.failures = now, 0
		}
		s.failures++
		if s.failures >= l.opts.MaxFailures {
			s.lockedUntil = now.Add(l.opts.Lockout)
			s.windowStart, s.failures = now, 0
		}
	}

	// The owner's own typos from a known-good address do not count
	// towards locking the account.
	if l.isKnownGood(k, now) {
		return
	}
	a, ok := l.accounts.Get(account)
	if !ok {
		a = &accountState{}
		l.accounts.Add(account, a)
	}
	live := a.failedFrom[:0]
	seen := false
	for _, f := range a.failedFrom {
		if now.Sub(f.last) > l.opts.Window {
			continue
		}
		if f.addr == k.addr {
			f.last, seen = now, true
		}
		live = append(live, f)
	}
	if !seen {
		live = append(live, addrSeen{addr: k.addr, last: now})
	}
	a.failedFrom = live
	if len(a.failedFrom) >= l.opts.AccountLockAddresses {
		a.lockedUntil = now.Add(l.opts.Lockout)
		a.failedFrom = a.failedFrom[:0]
	}
}

// Succeeded implements LoginLimiter: the pair's delay ends and the address
// becomes known-good for the account. (The address's failure count stays:
// a login to an account of one's own must not reset the count of guesses
// at others' accounts.)
func (l *AuthLimiter) Succeeded(ip, account string) {
	now := l.opts.Now()
	k := pairKey{account: account, addr: l.addrKey(ip)}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pairs.Remove(k)
	l.knownGood.Add(k, now.Add(l.opts.KnownGoodTTL))
}

// tracked returns the number of entries in each table (for tests).
func (l *AuthLimiter) tracked() (addrs, accounts, pairs, knownGood int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addrs.Len(), l.accounts.Len(), l.pairs.Len(), l.knownGood.Len()
}
