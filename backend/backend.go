// Package backend is Roost's domain layer, the one API every front end
// (SMTP/LMTP, IMAP, POP3, the admin CLI) uses: accounts and aliases,
// authentication, delivery, mailbox and message operations, search, and the
// in-process change bus that lets one session see another's changes at once.
//
// It sits on package store and knows no wire protocol: front ends translate
// their commands into these calls.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/roostmail/roost/store"
)

// Types shared with the store, so front ends need not import it.
type (
	Account      = store.Account
	Mailbox      = store.Mailbox
	Message      = store.Message
	Change       = store.Change
	FlagOp       = store.FlagOp
	AppendResult = store.AppendResult
	CopyResult   = store.CopyResult
	BodyReader   = store.BodyReader
)

// Flag operations and system flags.
const (
	FlagsSet    = store.FlagsSet
	FlagsAdd    = store.FlagsAdd
	FlagsRemove = store.FlagsRemove

	FlagSeen     = store.FlagSeen
	FlagAnswered = store.FlagAnswered
	FlagFlagged  = store.FlagFlagged
	FlagDeleted  = store.FlagDeleted
	FlagDraft    = store.FlagDraft
)

// Errors front ends map to protocol replies. Test with errors.Is.
var (
	ErrAuthFailed        = errors.New("authentication failed")
	ErrAuthLocked        = errors.New("too many failed logins; try again later")
	ErrInvalidAddress    = errors.New("invalid address")
	ErrEmptyPassword     = errors.New("empty password")
	ErrNoSuchUser        = errors.New("no such user")
	ErrRelayDenied       = errors.New("relay denied: domain not served here")
	ErrAccountDisabled   = errors.New("account disabled")
	ErrOverQuota         = store.ErrOverQuota
	ErrNoSuchMailbox     = errors.New("no such mailbox")
	ErrMailboxExists     = errors.New("mailbox already exists")
	ErrInvalidMailbox    = errors.New("invalid mailbox name")
	ErrCannotDeleteInbox = errors.New("INBOX cannot be deleted")
	ErrInUse             = errors.New("maildrop already locked by another session")
	ErrTooBig            = errors.New("message too big")
	ErrExists            = store.ErrExists
	ErrNotFound          = store.ErrNotFound
	ErrNoStore           = store.ErrNoStore
)

// Separator is the mailbox hierarchy separator.
const Separator = "/"

// Inbox is the name of the mailbox where mail is delivered.
const Inbox = "INBOX"

// DefaultMailboxes are created for every new account, with their RFC 6154
// special-use attributes.
var defaultMailboxes = map[string]string{
	Inbox:     "",
	"Sent":    `\Sent`,
	"Drafts":  `\Drafts`,
	"Trash":   `\Trash`,
	"Junk":    `\Junk`,
	"Archive": `\Archive`,
}

// Options configure a Backend.
type Options struct {
	// DataDir holds the store files and the spool of incoming messages.
	DataDir string
	// Hostname is this server's name, used in trace headers.
	Hostname string
	// MaxMessageBytes caps a message (delivery and APPEND). Default 50 MiB.
	MaxMessageBytes int64
	// SpoolMemoryBytes is how much of an incoming message is kept in
	// memory before it goes to a temporary file. Default 1 MiB.
	SpoolMemoryBytes int
	// LoginCacheTTL keeps a successful password check for this long so a
	// client that logs in often does not pay the hash again. 0: 5 minutes;
	// negative disables the cache.
	LoginCacheTTL time.Duration
	// Limiter throttles failed logins; nil means no throttling.
	Limiter LoginLimiter
	// Shards is how many mail files the accounts share (store.Options.Shards):
	// 0 gives each account its own file.
	Shards int
	// DefaultQuota is the quota of accounts that have none of their own
	// (Account.QuotaBytes or QuotaMessages 0); 0: no limit.
	DefaultQuota Limits
	// NoSync skips fsync (tests only).
	NoSync bool
	// IdleClose, MaxOpenFiles and TombstoneRetention are the store's
	// (store.Options; zero: its defaults).
	IdleClose          time.Duration
	MaxOpenFiles       int
	TombstoneRetention time.Duration
	// GroupCommitDelay is store.Options.GroupCommitDelay (zero: its
	// default).
	GroupCommitDelay time.Duration
	// MustExist makes New fail with ErrNoStore where DataDir holds no
	// store, instead of creating one (for admin tools).
	MustExist bool
	// OnDeliver, if set, is called after every Deliver with its
	// per-recipient results (nil: stored), e.g. to count deliveries for
	// metrics. It runs on the delivering goroutine and must not block.
	OnDeliver func(results []error)
	Logger    *slog.Logger
}

// LoginLimiter decides whether a login attempt may proceed and learns of
// failures. It is satisfied by *AuthLimiter.
type LoginLimiter interface {
	// Allow reports whether an attempt from ip for account may be
	// checked, and how long Login waits before checking it.
	Allow(ip, account string) (wait time.Duration, ok bool)
	// Failed records a failed attempt.
	Failed(ip, account string)
	// Succeeded records a successful attempt.
	Succeeded(ip, account string)
}

// Backend is Roost's domain layer. It is safe for concurrent use.
type Backend struct {
	opts  Options
	store *store.Store
	queue *store.Queue // the outbound queue (queue.go)
	log   *slog.Logger
	bus   *bus
	auth  *loginCache
	// hashSlots bounds concurrent password hashing (see verify).
	hashSlots chan struct{}

	mu      sync.Mutex
	domains map[string]bool
	pop3    map[uint64]bool // accounts with a POP3 session in the TRANSACTION state
	// gone holds, per account with live Users, a channel closed when the
	// account is deleted, so sessions end instead of failing (User.Gone).
	gone map[uint64]chan struct{}
	// purgers delete each account's expunged bodies once no Pin needs them.
	purgers map[uint64]*purger

	inflight sync.WaitGroup
}

// New opens the store in opts.DataDir and returns a Backend on it.
func New(opts Options) (*Backend, error) {
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 50 << 20
	}
	if opts.SpoolMemoryBytes == 0 {
		opts.SpoolMemoryBytes = 1 << 20
	}
	if opts.LoginCacheTTL == 0 {
		opts.LoginCacheTTL = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	st, err := store.Open(store.Options{Dir: opts.DataDir, Shards: opts.Shards, NoSync: opts.NoSync, MustExist: opts.MustExist, Logger: opts.Logger,
		IdleClose: opts.IdleClose, MaxOpenFiles: opts.MaxOpenFiles, TombstoneRetention: opts.TombstoneRetention,
		GroupCommitDelay: opts.GroupCommitDelay})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "tmp"), 0o700); err != nil {
		st.Close()
		return nil, fmt.Errorf("backend: %w", err)
	}
	q, err := store.OpenQueue(store.Options{Dir: opts.DataDir, NoSync: opts.NoSync, Logger: opts.Logger})
	if err != nil {
		st.Close()
		return nil, err
	}
	b := &Backend{
		opts:      opts,
		store:     st,
		queue:     q,
		log:       opts.Logger,
		bus:       newBus(),
		auth:      newLoginCache(opts.LoginCacheTTL),
		hashSlots: make(chan struct{}, runtime.GOMAXPROCS(0)),
		pop3:      make(map[uint64]bool),
		gone:      make(map[uint64]chan struct{}),
		purgers:   make(map[uint64]*purger),
	}
	if err := b.loadDomains(); err != nil {
		q.Close()
		st.Close()
		return nil, err
	}
	return b, nil
}

// Close waits for in-flight deliveries and closes the store.
func (b *Backend) Close() error {
	b.inflight.Wait()
	return errors.Join(b.queue.Close(), b.store.Close())
}

// StoreSyncs returns how many fsyncs the store has issued for mail
// (store.Store.Syncs), for the roost_store_syncs_total metric.
func (b *Backend) StoreSyncs() uint64 { return b.store.Syncs() }

// OpenMailFiles returns how many mail files the store has open.
func (b *Backend) OpenMailFiles() int { return b.store.OpenFiles() }

// Hostname returns the configured host name.
func (b *Backend) Hostname() string { return b.opts.Hostname }

// MaxMessageBytes returns the message size limit.
func (b *Backend) MaxMessageBytes() int64 { return b.opts.MaxMessageBytes }

// NormalizeAddress lower-cases and checks an address. Roost matches local
// parts case-insensitively, as every mail client user expects.
func NormalizeAddress(addr string) (string, error) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || len(addr) > 254 || !utf8.ValidString(addr) {
		return "", fmt.Errorf("%w: %q", ErrInvalidAddress, addr)
	}
	for _, r := range addr {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`<>()[]\,;:"`, r) {
			return "", fmt.Errorf("%w: %q", ErrInvalidAddress, addr)
		}
	}
	if strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") ||
		strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") {
		return "", fmt.Errorf("%w: %q", ErrInvalidAddress, addr)
	}
	return addr, nil
}

func domainOf(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return d
}

func (b *Backend) loadDomains() error {
	accts, err := b.store.Accounts()
	if err != nil {
		return err
	}
	aliases, err := b.store.Aliases()
	if err != nil {
		return err
	}
	d := make(map[string]bool)
	for _, a := range accts {
		d[domainOf(a.Address)] = true
	}
	for _, a := range aliases {
		d[domainOf(a[0])] = true
	}
	b.mu.Lock()
	b.domains = d
	b.mu.Unlock()
	return nil
}

// Domains returns the domains Roost accepts mail for: those of its accounts
// and aliases, sorted.
func (b *Backend) Domains() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.domains))
	for d := range b.domains {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// ServesDomain reports whether domain is one of Domains.
func (b *Backend) ServesDomain(domain string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.domains[strings.ToLower(domain)]
}

// CreateUser adds an account with the default mailboxes.
func (b *Backend) CreateUser(ctx context.Context, address, password string) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	if strings.HasPrefix(addr, "*@") {
		return fmt.Errorf("%w: %q: \"*@domain\" is a catch-all, which can only be an alias", ErrInvalidAddress, addr)
	}
	if password == "" {
		return ErrEmptyPassword
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	acct, err := b.store.CreateAccount(addr, hash)
	if err != nil {
		return err
	}
	ms, err := b.store.Mailstore(acct.ID)
	if err == nil {
		err = ms.EnsureMailboxes(defaultMailboxes, true)
	}
	if err != nil {
		// Nothing half-written: without its mailboxes the account goes.
		b.store.DeleteAccount(addr)
		return fmt.Errorf("create mailboxes for %s: %w", addr, err)
	}
	b.log.Info("account created", "account", addr)
	return b.loadDomains()
}

// SetPassword changes an account's password.
func (b *Backend) SetPassword(ctx context.Context, address, password string) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	if password == "" {
		return ErrEmptyPassword
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	err = b.store.UpdateAccount(addr, func(a *store.Account) error {
		a.PasswordHash = hash
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
	}
	b.auth.forget(addr)
	return err
}

// UpdateAccount sets an account's byte quota (see SetQuota) and disabled
// state (see SetDisabled: mail is still accepted).
func (b *Backend) UpdateAccount(ctx context.Context, address string, quotaBytes int64, disabled bool) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	err = b.store.UpdateAccount(addr, func(a *store.Account) error {
		a.QuotaBytes, a.Disabled = quotaBytes, disabled
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
	}
	b.auth.forget(addr)
	return err
}

// DeleteUser removes an account, its aliases and all its mail.
func (b *Backend) DeleteUser(ctx context.Context, address string) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	acct, err := b.store.Account(addr)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
	}
	if err := b.store.DeleteAccount(addr); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
		}
		return err
	}
	b.mu.Lock()
	if c := b.gone[acct.ID]; c != nil {
		close(c)
		delete(b.gone, acct.ID)
	}
	delete(b.purgers, acct.ID)
	b.mu.Unlock()
	b.auth.forget(addr)
	b.log.Info("account deleted", "account", addr)
	return b.loadDomains()
}

// Users lists all accounts, sorted by address.
func (b *Backend) Users(ctx context.Context) ([]Account, error) { return b.store.Accounts() }

// AddAlias makes alias deliver to the account address.
func (b *Backend) AddAlias(ctx context.Context, alias, address string) error {
	al, err := NormalizeAddress(alias)
	if err != nil {
		return err
	}
	addr, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	if err := b.store.PutAlias(al, addr); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
		}
		return err
	}
	return b.loadDomains()
}

// DeleteAlias removes an alias.
func (b *Backend) DeleteAlias(ctx context.Context, alias string) error {
	al, err := NormalizeAddress(alias)
	if err != nil {
		return err
	}
	if err := b.store.DeleteAlias(al); err != nil {
		return err
	}
	return b.loadDomains()
}

// Aliases lists aliases and their targets, sorted by alias.
func (b *Backend) Aliases(ctx context.Context) ([][2]string, error) { return b.store.Aliases() }

// Compacted is what compacting one mail file did.
type Compacted = store.CompactResult

// Compact rewrites the mail file of the account at address (all mail files
// when address is "") to give back the space of deleted mail, while the
// server runs: writes to the file wait while it is copied, reads go on.
// progress, if not nil, gets the bytes copied so far over all files and
// the estimated total. With shared files ([shards]), the account's file is
// the one it shares.
func (b *Backend) Compact(ctx context.Context, address string, progress func(done, total int64)) ([]Compacted, error) {
	var accts []store.Account
	if address == "" {
		var err error
		if accts, err = b.store.CompactFiles(); err != nil {
			return nil, err
		}
	} else {
		addr, err := NormalizeAddress(address)
		if err != nil {
			return nil, err
		}
		acct, err := b.store.Account(addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
		}
		accts = []store.Account{acct}
	}
	// The total is the files' sizes: an upper bound of what is copied.
	sizes := make([]int64, len(accts))
	var total int64
	for i, a := range accts {
		sizes[i] = b.store.MailFileSize(a.ID)
		total += sizes[i]
	}
	var out []Compacted
	var base int64
	for i, a := range accts {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		var cb func(done, _ int64)
		if progress != nil {
			cb = func(done, _ int64) { progress(base+min(done, sizes[i]), total) }
		}
		res, err := b.store.Compact(a.ID, cb)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return out, err
		}
		base += sizes[i]
		out = append(out, res)
	}
	if progress != nil {
		progress(total, total)
	}
	return out, nil
}

// Backup writes a consistent copy of the whole store, the outbound queue
// included, into dir while the server runs, with a manifest
// (store.Backup); store.Restore puts it back.
func (b *Backend) Backup(ctx context.Context, dir string) error {
	return b.store.Backup(dir, b.queue)
}

// user returns the User for an account record. It holds the account's
// mail file open until User.Release.
func (b *Backend) user(acct store.Account) (*User, error) {
	ms, err := b.store.Mailstore(acct.ID)
	if errors.Is(err, store.ErrAccountDeleted) {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchUser, acct.Address)
	}
	if err != nil {
		return nil, err
	}
	release, err := ms.Hold()
	if errors.Is(err, store.ErrAccountDeleted) {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchUser, acct.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("open mail of %s: %w", acct.Address, err)
	}
	b.mu.Lock()
	gone := b.gone[acct.ID]
	if gone == nil {
		gone = make(chan struct{})
		b.gone[acct.ID] = gone
	}
	b.mu.Unlock()
	b.purgerOf(acct.ID, ms) // the first User of the account empties what a restart left pending
	return &User{b: b, acct: acct, ms: ms, gone: gone, release: release}, nil
}

// LookupUser returns the User of an existing account, without a password
// (for trusted callers: delivery, admin tools, tests). Release it when done.
func (b *Backend) LookupUser(ctx context.Context, address string) (*User, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return nil, err
	}
	acct, err := b.store.Account(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
	}
	return b.user(acct)
}
