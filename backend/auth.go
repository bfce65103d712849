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
	if err := b.throttle(ctx, remoteIP, addr); err != nil {
		return nil, err
	}
	acct, lookupErr := b.store.Account(addr)
	ok := false
	switch {
	case lookupErr != nil || err != nil:
		b.verify(ctx, dummyHash, password)
	case b.checkAppPassword(ctx, acct, password):
		ok = true
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

// throttle asks the limiter whether an attempt may be checked, and waits
// the delay it sets (see AuthLimiter) before the password is checked.
func (b *Backend) throttle(ctx context.Context, remoteIP, addr string) error {
	if b.opts.Limiter == nil {
		return nil
	}
	wait, ok := b.opts.Limiter.Allow(remoteIP, addr)
	if !ok {
		b.log.Warn("login refused: too many failures", "remote_ip", remoteIP, "user", addr)
		return ErrAuthLocked
	}
	if wait <= 0 {
		return nil
	}
	b.log.Info("login delayed after failures", "remote_ip", remoteIP, "user", addr, "delay", wait.String())
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ErrAuthLocked
	}
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
