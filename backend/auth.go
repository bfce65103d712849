package backend

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2id parameters: the OWASP minimum recommendation (19 MiB, t=2, p=1).
// Hashes are written in the PHC string format that Dovecot's ARGON2ID scheme
// and libsodium also use, so hashes can move between them.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns an argon2id hash of password in PHC format.
func HashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// VerifyPassword checks password against an argon2id (PHC) or bcrypt hash
// in constant time.
func VerifyPassword(hash, password string) bool {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		var version, m, t, p int
		parts := strings.Split(hash, "$")
		if len(parts) != 6 {
			return false
		}
		if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
			return false
		}
		if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m <= 0 || t <= 0 || p <= 0 || p > 255 {
			return false
		}
		enc := base64.RawStdEncoding
		salt, err1 := enc.DecodeString(parts[4])
		want, err2 := enc.DecodeString(parts[5])
		if err1 != nil || err2 != nil || len(want) == 0 {
			return false
		}
		got := argon2.IDKey([]byte(password), salt, uint32(t), uint32(m), uint8(p), uint32(len(want)))
		return subtle.ConstantTimeCompare(got, want) == 1
	case strings.HasPrefix(hash, "$2"):
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	return false
}

// dummyHash is checked for unknown users, so that an unknown user costs as
// much time as a wrong password and the two cannot be told apart.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2A7kTDFv2Zq7rOTFmqz8e7PvVjyGBs4Lr09s4mWwQJk"

// loginCache remembers recent successful password checks, keyed by account,
// as an HMAC of the password under a per-process random key: the password
// itself is never kept. It spares a hash per login for clients that
// reconnect often (Dovecot's auth_cache does the same).
type loginCache struct {
	ttl time.Duration
	key []byte

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	mac     []byte
	hash    string
	expires time.Time
}

func newLoginCache(ttl time.Duration) *loginCache {
	key := make([]byte, 32)
	rand.Read(key)
	return &loginCache{ttl: ttl, key: key, entries: make(map[string]cacheEntry)}
}

func (c *loginCache) mac(addr, password string) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte(addr))
	h.Write([]byte{0})
	h.Write([]byte(password))
	return h.Sum(nil)
}

func (c *loginCache) check(addr, hash, password string) bool {
	if c.ttl < 0 {
		return false
	}
	c.mu.Lock()
	e, ok := c.entries[addr]
	c.mu.Unlock()
	if !ok || e.hash != hash || time.Now().After(e.expires) {
		return false
	}
	return hmac.Equal(e.mac, c.mac(addr, password))
}

func (c *loginCache) remember(addr, hash, password string) {
	if c.ttl < 0 {
		return
	}
	e := cacheEntry{mac: c.mac(addr, password), hash: hash, expires: time.Now().Add(c.ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) > 100000 {
		clear(c.entries)
	}
	c.entries[addr] = e
}

func (c *loginCache) forget(addr string) {
	c.mu.Lock()
	delete(c.entries, addr)
	c.mu.Unlock()
}

// Login checks a username (the account address) and password and returns
// the account's User. Every failure, unknown user or wrong password or
// disabled account, returns ErrAuthFailed, in about the same time; a
// throttled attempt returns ErrAuthLocked without checking the password.
// remoteIP is used for throttling and logs.
func (b *Backend) Login(ctx context.Context, username, password, remoteIP string) (*User, error) {
	addr, err := NormalizeAddress(username)
	if err != nil {
		addr = strings.ToLower(username)
	}
	if b.opts.Limiter != nil && !b.opts.Limiter.Allow(remoteIP, addr) {
		b.log.Warn("login refused: too many failures", "remote_ip", remoteIP, "user", addr)
		return nil, ErrAuthLocked
	}
	acct, lookupErr := b.store.Account(addr)
	ok := false
	switch {
	case lookupErr != nil || err != nil:
		b.verify(ctx, dummyHash, password)
	case b.auth.check(addr, acct.PasswordHash, password):
		ok = true
	case b.verify(ctx, acct.PasswordHash, password):
		ok = true
		b.auth.remember(addr, acct.PasswordHash, password)
	}
	if ok && acct.Disabled {
		ok = false
	}
	if !ok && ctx.Err() != nil {
		// The caller gave up (its client hung up) before the password was
		// checked: not a failed attempt.
		return nil, fmt.Errorf("login: %w", ctx.Err())
	}
	if !ok {
		if b.opts.Limiter != nil {
			b.opts.Limiter.Failed(remoteIP, addr)
		}
		b.log.Warn("authentication failed", "remote_ip", remoteIP, "user", addr)
		return nil, ErrAuthFailed
	}
	if b.opts.Limiter != nil {
		b.opts.Limiter.Succeeded(remoteIP, addr)
	}
	return b.user(acct)
}

// verify checks a password with at most one hash per CPU at a time: an
// argon2id check takes 19 MiB, so a burst of logins (a mail app reconnecting
// many folders, or an attack) must not take memory in proportion to its
// size. Waiting attempts give up when ctx ends.
func (b *Backend) verify(ctx context.Context, hash, password string) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case b.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-b.hashSlots }()
	// A slot and the end of ctx may have come together (select chooses
	// either): a caller that gave up gets no hash.
	if ctx.Err() != nil {
		return false
	}
	return VerifyPassword(hash, password)
}

// AuthLimiterOptions configure an AuthLimiter.
type AuthLimiterOptions struct {
	// MaxFailures within Window, per remote IP or per account, engage the
	// lockout. Default 10.
	MaxFailures int
	// Window is how far back failures are counted. Default 5 minutes.
	Window time.Duration
	// Lockout is how long attempts are refused once engaged. Default 5 minutes.
	Lockout time.Duration
	// ExemptLoopback exempts 127.0.0.0/8 and ::1 from the per-IP count
	// (the per-account count still applies).
	ExemptLoopback bool
	// Now is the clock (tests may replace it).
	Now func() time.Time
}

// AuthLimiter counts failed logins per remote IP and per account in a
// sliding window and refuses further attempts for a while once either
// count reaches the limit (fail2ban-style, inside the server).
type AuthLimiter struct {
	opts AuthLimiterOptions

	mu    sync.Mutex
	state map[string]*failState
}

type failState struct {
	failures    []time.Time
	lockedUntil time.Time
}

// NewAuthLimiter returns a limiter with opts (defaults filled in).
func NewAuthLimiter(opts AuthLimiterOptions) *AuthLimiter {
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 10
	}
	if opts.Window <= 0 {
		opts.Window = 5 * time.Minute
	}
	if opts.Lockout <= 0 {
		opts.Lockout = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &AuthLimiter{opts: opts, state: make(map[string]*failState)}
}

func (l *AuthLimiter) keys(ip, account string) []string {
	var keys []string
	if ip != "" && !(l.opts.ExemptLoopback && isLoopbackIP(ip)) {
		keys = append(keys, "ip:"+ip)
	}
	if account != "" {
		keys = append(keys, "acct:"+account)
	}
	return keys
}

// Allow implements LoginLimiter.
func (l *AuthLimiter) Allow(ip, account string) bool {
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.keys(ip, account) {
		if s := l.state[k]; s != nil && now.Before(s.lockedUntil) {
			return false
		}
	}
	return true
}

// Failed implements LoginLimiter.
func (l *AuthLimiter) Failed(ip, account string) {
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.state) > 100000 {
		l.gc(now)
	}
	for _, k := range l.keys(ip, account) {
		s := l.state[k]
		if s == nil {
			s = &failState{}
			l.state[k] = s
		}
		cut := 0
		for cut < len(s.failures) && now.Sub(s.failures[cut]) > l.opts.Window {
			cut++
		}
		s.failures = append(s.failures[cut:], now)
		if len(s.failures) >= l.opts.MaxFailures {
			s.lockedUntil = now.Add(l.opts.Lockout)
			s.failures = nil
		}
	}
}

// Succeeded implements LoginLimiter: a good login clears its IP's count.
func (l *AuthLimiter) Succeeded(ip, account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.state["ip:"+ip]; s != nil && s.lockedUntil.IsZero() {
		delete(l.state, "ip:"+ip)
	}
}

func (l *AuthLimiter) gc(now time.Time) {
	for k, s := range l.state {
		if now.After(s.lockedUntil) && (len(s.failures) == 0 || now.Sub(s.failures[len(s.failures)-1]) > l.opts.Window) {
			delete(l.state, k)
		}
	}
}

func isLoopbackIP(ip string) bool {
	return strings.HasPrefix(ip, "127.") || ip == "::1"
}
