// Package store is Roost's persistence layer on bbolt: accounts and aliases
// in one small global file (roost.db), mail in one file per account
// (accounts/ID.db) or, with Options.Shards, in a few files the accounts
// share (mail/shard-K.db, a bucket per account): mailboxes, messages,
// flags, modseqs, expunge tombstones and message bodies. A call that
// returns success is durable (fsynced), unless Options.NoSync is set
// (tests only).
//
// The store knows no protocol: flags are plain strings ("\Seen", "$Junk"),
// and the parsed form of a message (envelope, body structure) is an opaque
// blob computed by the caller once, at delivery.
//
// # Writes: group commit, and one journal for all files
//
// Each mail file has one committer goroutine that runs its writes: writes
// that arrive while a commit is under way share the next one (no timer: a
// lone write never waits). A write that fails or panics is left out of its
// group's transaction alone; the others are run again without it and still
// commit together.
//
// A synced bbolt commit costs two fdatasyncs (the pages, then the meta
// page), and different files cannot share them, so deliveries to different
// accounts would each pay two. Appends (deliveries and IMAP APPEND) go
// through a journal instead (journal/*.wal), one for the whole store, whose
// writer makes the records of every file waiting at that moment durable
// with one fdatasync. On a fast disk a sync takes a fraction of the time
// between two deliveries' arrivals, so each would carry only the one or two
// that finished during the previous one: while deliveries are under way
// (Store.AppendsComing: the SMTP and LMTP sessions announce each message
// as its data starts), the writer holds a sync open for up to
// Options.GroupCommitDelay (5 ms) until as many appends are in it as are
// coming. A lone delivery, with nothing else coming, never waits; the
// wait adds at most the delay to a reply. Everything else (flags,
// expunges, mailbox changes, imports) and messages over 1 MiB are direct:
// a synced bbolt commit, as before.
//
// # What is durable when
//
// A mail file is either clean (what is on disk is durable: bbolt's own
// synced commits, or synced since) or pinned. An append to a clean file
// first pins it: a bbolt read transaction is opened on its current state P,
// and a pin record holding a copy of P's meta page goes to the journal with
// the append records. Once the journal write is synced, the appends are
// applied to the file with an unsynced bbolt commit, and the caller gets
// its reply. So the moment an append is acknowledged its record is durable,
// and so is the record of the state it was applied to. Further appends to
// the pinned file are journaled and applied the same way. A direct write to
// a pinned file first makes it clean; so does the upkeep goroutine for
// files pinned for 5 seconds, and closing a file: the file is synced
// (fdatasync, which makes its current state durable, pages and meta page
// together), a clean record is synced to the journal, and only then is the
// pin let go.
//
// # What a restart does
//
// Open reads the journal. For every file whose last record is a pin, it
// writes the recorded meta page of P back into its slot and invalidates the
// other meta page, so bbolt opens the file at P; it then applies again, in
// order, the appends recorded after the pin, in one synced commit. Appends
// are deterministic (appendMessage depends only on the state and on the
// record: body, parsed form, flags, date, quota), and between P and the
// crash the file saw only those appends (any other write would have made it
// clean first), so they get the same UIDs, modseqs and blob IDs as before
// the crash: no UID a client saw is handed out twice. Files whose last
// record is "clean" are used as they are. Then the journal starts afresh.
// Recovering twice (a crash during recovery) gives the same result.
//
// # Why this survives a power cut, not only a killed process
//
// An unsynced bbolt commit is not safe by itself: bbolt writes the data
// pages and then the meta page, and without the sync between them the meta
// page can reach the disk first and point at pages that did not; and pages
// that the last durable state uses are reused by later commits once that
// state is no longer the newest. Neither can hurt here:
//
//   - Nothing after P is trusted: recovery rebuilds the meta pages from the
//     journal's copy of P's, whatever the unsynced commits left in them
//     (torn, old, new, in any order).
//   - P's pages are intact: while the file is pinned, the read transaction
//     on P keeps bbolt from reusing any page P can see (bbolt never hands
//     out a page an open transaction can read). Pages written since P are
//     new ones, unreachable from P's meta page; on open bbolt rebuilds the
//     freelist (NoFreelistSync) from what P reaches. P itself was durable
//     before its pin record was written (clean means synced).
//   - The pin is let go only after a clean record, written after the file
//     was synced, is durable: from then on recovery no longer uses P.
//   - Journal records carry a CRC-32C over the segment number and the
//     payload; a record torn by the crash, or left in a file from earlier,
//     ends the log there. Only records synced before a reply was sent count,
//     and those are whole. New segments are synced, header and directory
//     entry, before they are used.
//   - After a failed write or sync of the journal or of a file, the kernel
//     may have dropped what it could not write, so the store stops
//     accepting writes until it is restarted and recovers.
//
// TestJournalRecoveryAfterPowerLoss simulates this: every page written to a
// file since its pin is kept, reverted or replaced by garbage at random,
// the journal gets a torn tail, and every acknowledged append must come
// back byte for byte.
//
// The pin holds bbolt's mapping too (it could not be remapped while the
// read transaction is open), so a group is journaled only when the file has
// room left in its mapping for it; otherwise it is a direct commit, which
// may grow the mapping. bbolt's file format is relied on in one point, the
// location of the meta pages (pages 0 and 1; transaction t writes page
// t%2), which the store checks (magic and txid) before it uses a copy.
//
// # Files
//
// Mail files are opened on first use and closed when nobody has used them
// for Options.IdleClose, or when more than Options.MaxOpenFiles are open;
// a file that a session holds (Mailstore.Hold) or that an operation uses
// is never closed under it. A deleted account's mail is refused at once
// (ErrAccountDeleted) and its file removed when the last session lets go.
package store

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors returned by the store. Callers test them with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrLocked        = errors.New("store is in use by another process")
	ErrModified      = errors.New("modified since")
	ErrInvalidName   = errors.New("invalid name")
	ErrMailboxLocked = errors.New("mailbox is locked")
	// ErrAccountDeleted: the account was deleted (while a delivery or a
	// session was under way). It matches ErrNotFound too.
	ErrAccountDeleted = fmt.Errorf("account deleted: %w", ErrNotFound)
	// ErrExpunged says a message's body or record is gone because the
	// message was expunged. It matches ErrNotFound too.
	ErrExpunged = fmt.Errorf("message expunged: %w", ErrNotFound)
	// ErrNoStore is returned by Open with Options.MustExist when the
	// directory holds no store.
	ErrNoStore = errors.New("no store here")
)

// Options configure Open.
type Options struct {
	// Dir holds roost.db and accounts/*.db. It is created if missing,
	// unless MustExist is set.
	Dir string
	// MustExist makes Open fail with ErrNoStore instead of creating a
	// store where there is none (admin tools must not create a second,
	// empty store beside the server's).
	MustExist bool
	// NoSync skips fsync. Only for tests: a success reply must mean durable.
	NoSync bool
	// Shards is how many mail files the accounts share. 0 gives every
	// account a file of its own (accounts/ID.db); N > 0 spreads accounts
	// over N files (mail/shard-K.db, K = ID mod N), so that concurrent
	// writes to different accounts of one file share a commit and its
	// fsync. It is fixed when the store is created.
	Shards int
	// LockTimeout is how long Open waits for another process's lock on
	// the files (default 500ms). After it, Open returns ErrLocked.
	LockTimeout time.Duration
	// IdleClose closes a mail file nobody has used for this long (default
	// 10 minutes; negative: never). It is opened again on demand.
	IdleClose time.Duration
	// MaxOpenFiles bounds the open mail files (default 1000): past it,
	// the least recently used one that no session holds is closed. Files
	// in use are never closed, so the bound can be passed while they are.
	MaxOpenFiles int
	// TombstoneRetention is how long the tombstone of an expunged message
	// is kept for QRESYNC clients (default 90 days; see Mailbox.PurgedModSeq).
	TombstoneRetention time.Duration
	// ReadOnly opens existing files for reading only (a shared lock, so
	// several readers may open the store, but no writer): nothing is
	// created, and every write fails. For `roost check` and for looking
	// at a backup before it is restored.
	ReadOnly bool
	// GroupCommitDelay is how long the journal writer may hold a sync
	// open for appends that are on their way (see Store.AppendsComing)
	// to join it (default DefaultGroupCommitDelay; negative: never). It
	// is waited only while more are coming than the sync holds, so a
	// lone delivery never waits.
	GroupCommitDelay time.Duration
	Logger           *slog.Logger

	// checkpointAge overrides the constant of that name (tests).
	checkpointAge time.Duration
	// journalSegmentSize overrides walSegmentSize (tests).
	journalSegmentSize int64
	// journalGate, if set, holds the journal writer before each batch
	// until it receives (tests: to make a batch of a known size).
	journalGate chan struct{}
	// onPin, if set, is called with a mail file's path when it has just
	// been pinned, before the pinned state changes (tests: to keep a copy
	// of the state recovery would restore).
	onPin func(path string)
	// mailMmapSize overrides the constant of that name (tests: to pass the
	// first mapping of a file without writing 256 MiB).
	mailMmapSize int
}

// Defaults of Options.
const (
	DefaultGroupCommitDelay   = 5 * time.Millisecond
	DefaultIdleClose          = 10 * time.Minute
	DefaultMaxOpenFiles       = 1000
	DefaultTombstoneRetention = 90 * 24 * time.Hour
)

// checkpointAge is how long a file stays pinned before the upkeep makes it
// clean again: it bounds the journal's length, what recovery replays, and
// the file growth a pin causes (the pinned state's pages cannot be
// reused). Each checkpoint costs a sync of the file, so it is not short.
const checkpointAge = 5 * time.Second

// Store is the root of Roost's persistent state.
type Store struct {
	opts    Options
	global  *bolt.DB
	log     *slog.Logger
	journal *journal
	// syncs counts the fsyncs issued for mail (journal and mail files).
	syncs   atomic.Uint64
	failure writeFailure

	openMu   sync.Mutex // one mail file opened at a time
	mu       sync.Mutex
	accounts map[uint64]*Mailstore // unused; kept for code that builds a Store by hand
	files    map[string]*mailFile  // open mail files, by path
	deleted  map[uint64]bool       // accounts deleted while this process runs
	closed   bool

	stop       chan struct{}
	upkeepDone chan struct{}
	upgraded   map[uint64]bool // accounts brought to the current layout (upgradeAccount)

	// backupHook, if set (tests), runs before each file of a backup is
	// copied; an error makes the backup fail there.
	backupHook func(rel string) error
}

// Account is a mail account.
type Account struct {
	ID           uint64    `json:"id"`
	Address      string    `json:"address"`
	PasswordHash string    `json:"password_hash"`
	Created      time.Time `json:"created"`
	QuotaBytes   int64     `json:"quota_bytes,omitempty"` // 0: no quota
	// QuotaMessages caps the number of messages over all mailboxes (0: none).
	QuotaMessages int64 `json:"quota_messages,omitempty"`
	Disabled      bool  `json:"disabled,omitempty"`
	// RejectMail, with Disabled, refuses mail for the account too.
	RejectMail   bool          `json:"reject_mail,omitempty"`
	AppPasswords []AppPassword `json:"app_passwords,omitempty"`
}

// AppPassword is a password for one mail app, usable instead of the
// account's own and revocable alone. ID is the public prefix of the
// password, so a login checks one hash, not all of them.
type AppPassword struct {
	ID      string    `json:"id"`
	Label   string    `json:"label"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
}

var (
	bucketAccounts = []byte("accounts") // address -> Account JSON
	bucketAliases  = []byte("aliases")  // alias address -> account address
	bucketGlobal   = []byte("global")   // "schema" -> version
	// deleted accounts whose mail file (or bucket) is still to be removed:
	// ID -> nothing. Open finishes what a crash interrupted.
	bucketDeleted = []byte("deleted")
)

const schemaVersion = 1

// globalFileName is the file of accounts and aliases inside Dir; its
// presence is what makes a directory a store.
const globalFileName = "roost.db"

// Exists reports whether dir holds a store.
func Exists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, globalFileName))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Open opens (creating if needed) the store in opts.Dir.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: no directory given")
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.IdleClose == 0 {
		opts.IdleClose = DefaultIdleClose
	}
	if opts.MaxOpenFiles <= 0 {
		opts.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if opts.checkpointAge == 0 {
		opts.checkpointAge = checkpointAge
	}
	if opts.TombstoneRetention <= 0 {
		opts.TombstoneRetention = DefaultTombstoneRetention
	}
	if opts.Shards < 0 {
		return nil, fmt.Errorf("store: shards must be >= 0, not %d", opts.Shards)
	}
	if opts.ReadOnly {
		return openReadOnly(opts)
	}
	if opts.MustExist {
		ok, err := Exists(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("store: %s: %w", opts.Dir, ErrNoStore)
		}
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "accounts"), 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "mail"), 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", opts.Dir, err)
	}
	db, err := openBolt(filepath.Join(opts.Dir, globalFileName), opts, 0)
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAccounts, bucketAliases, bucketGlobal, bucketDeleted} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		g := tx.Bucket(bucketGlobal)
		if v := g.Get([]byte("schema")); v != nil && binary.BigEndian.Uint64(v) > schemaVersion {
			return fmt.Errorf("store: schema version %d is newer than this binary's %d", binary.BigEndian.Uint64(v), schemaVersion)
		}
		// Which file holds an account depends on the shard count, so it
		// cannot change once accounts exist.
		if v := g.Get([]byte("shards")); v != nil && binary.BigEndian.Uint64(v) != uint64(opts.Shards) {
			if tx.Bucket(bucketAccounts).Stats().KeyN > 0 {
				return fmt.Errorf("store: created with shards = %d, cannot open with %d", binary.BigEndian.Uint64(v), opts.Shards)
			}
		}
		if err := g.Put([]byte("shards"), u64(uint64(opts.Shards))); err != nil {
			return err
		}
		return g.Put([]byte("schema"), u64(schemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", db.Path(), err)
	}
	s := &Store{opts: opts, global: db, log: opts.Logger, accounts: make(map[uint64]*Mailstore),
		files: make(map[string]*mailFile), deleted: make(map[uint64]bool), upgraded: make(map[uint64]bool),
		stop: make(chan struct{}), upkeepDone: make(chan struct{})}
	jdir := filepath.Join(opts.Dir, "journal")
	if err := os.MkdirAll(jdir, 0o700); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: create %s: %w", jdir, err)
	}
	s.journal = openJournal(jdir, opts.NoSync, &s.syncs, s.log)
	s.journal.gate = opts.journalGate
	s.journal.delay = cmp.Or(opts.GroupCommitDelay, DefaultGroupCommitDelay)
	s.journal.onRotate = func() { s.checkpointPinned(0) }
	if opts.journalSegmentSize > 0 {
		s.journal.segMax = opts.journalSegmentSize
	}
	if err := s.recover(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.finishDeletions(); err != nil {
		s.journal.close()
		db.Close()
		return nil, err
	}
	go s.upkeep()
	return s, nil
}

// AppendsComing tells the store that an append is on its way: a delivery
// has begun to receive its message. Until the returned func is called
// (when the delivery is over, whatever its result), the journal writer
// counts it among the appends worth holding a sync open for, up to
// Options.GroupCommitDelay: concurrent deliveries to different accounts
// then share one fdatasync instead of finding only the one or two that
// finished during the previous sync.
func (s *Store) AppendsComing() (done func()) {
	s.journal.coming.Add(1)
	var once sync.Once
	return func() { once.Do(func() { s.journal.coming.Add(-1) }) }
}

// Syncs returns how many fsyncs the store has issued for mail: journal
// syncs, mail file syncs at checkpoints, and two per synced bbolt commit
// of a mail file (with Options.NoSync they are counted but skipped).
// Deliveries divided by Syncs is how many deliveries shared one.
func (s *Store) Syncs() uint64 { return s.syncs.Load() }

// mailMmapSize is the address space reserved for a mail file when it is
// opened. bbolt copies every dirty node to the heap each time it has to
// remap a growing file (node.dereference), which during the commit of one
// large message meant several heap copies of it; with room reserved up front
// a file grows without remapping until it passes this size. It costs
// address space only, not memory.
const mailMmapSize = 256 << 20

// mailReserve is the address space reserved for a mail file: mailMmapSize
// unless a test set another.
func (o Options) mailReserve() int {
	if o.mailMmapSize > 0 {
		return o.mailMmapSize
	}
	return mailMmapSize
}

func openBolt(path string, opts Options, mmapSize int) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		InitialMmapSize: mmapSize,
		Timeout:         opts.LockTimeout,
		NoSync:          opts.NoSync,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  true,
		ReadOnly:        opts.ReadOnly,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return db, nil
}

// Dir returns the directory the store lives in.
func (s *Store) Dir() string { return s.opts.Dir }

// Close checkpoints and closes every open file and the journal, so that
// the next Open has nothing to recover. In-flight calls must have returned.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var files []*mailFile
	for _, f := range s.files {
		if !f.closing {
			f.closing = true
			files = append(files, f)
		}
	}
	s.mu.Unlock()
	close(s.stop)
	<-s.upkeepDone
	s.closeFiles(files)
	// Files being closed by someone else (idle, deletion) finish first.
	for {
		s.mu.Lock()
		var c chan struct{}
		for _, f := range s.files {
			c = f.closed
			break
		}
		s.mu.Unlock()
		if c == nil {
			break
		}
		<-c
	}
	var errs []error
	if s.journal != nil {
		errs = append(errs, s.journal.close())
	}
	errs = append(errs, s.global.Close())
	return errors.Join(errs...)
}

// CreateAccount adds an account. The address must already be normalised by
// the caller (the backend lower-cases it).
func (s *Store) CreateAccount(address, passwordHash string) (Account, error) {
	var acct Account
	err := s.global.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		if b.Get([]byte(address)) != nil {
			return fmt.Errorf("account %s: %w", address, ErrExists)
		}
		if tx.Bucket(bucketAliases).Get([]byte(address)) != nil {
			return fmt.Errorf("%s is an alias: %w", address, ErrExists)
		}
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		acct = Account{ID: id, Address: address, PasswordHash: passwordHash, Created: time.Now().UTC().Truncate(time.Second)}
		return putJSON(b, []byte(address), acct)
	})
	if err != nil {
		return Account{}, fmt.Errorf("store: create account: %w", err)
	}
	// The mail file or bucket is made here and only here: one that is
	// missing later is not silently re-created (a deleted account's mail
	// must not come back, ErrAccountDeleted).
	if err := s.createMail(acct.ID); err != nil {
		s.global.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAccounts).Delete([]byte(address)) })
		return Account{}, fmt.Errorf("store: create account %s: %w", address, err)
	}
	return acct, nil
}

// createMail creates account id's file or bucket and its buckets.
func (s *Store) createMail(id uint64) error {
	f, err := s.acquire(s.mailPath(id), id, true)
	if err != nil {
		return err
	}
	defer s.release(f)
	key := accountKey(id)
	return f.update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(key)
		if err != nil {
			return err
		}
		for _, b := range accountBuckets {
			if _, err := root.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return root.Bucket(bucketMeta).Put(keyLayout, u64(accountLayout))
	})
}

// Account returns the account with the given address.
func (s *Store) Account(address string) (Account, error) {
	var acct Account
	err := s.global.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAccounts).Get([]byte(address))
		if v == nil {
			return fmt.Errorf("account %s: %w", address, ErrNotFound)
		}
		return json.Unmarshal(v, &acct)
	})
	return acct, err
}

// UpdateAccount changes an account in one transaction.
func (s *Store) UpdateAccount(address string, fn func(*Account) error) error {
	return s.global.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		v := b.Get([]byte(address))
		if v == nil {
			return fmt.Errorf("account %s: %w", address, ErrNotFound)
		}
		var acct Account
		if err := json.Unmarshal(v, &acct); err != nil {
			return err
		}
		if err := fn(&acct); err != nil {
			return err
		}
		acct.Address = address
		return putJSON(b, []byte(address), acct)
	})
}

// DeleteAccount removes an account, the aliases that point to it, and its
// mail. From this call on the account's mail is refused to everyone
// (ErrAccountDeleted): deliveries to it fail, its sessions' calls fail. A
// mail file of its own is removed once the last session holding it has
// released it (Mailstore.Hold); a bucket in a shared file goes at once.
func (s *Store) DeleteAccount(address string) error {
	var acct Account
	err := s.global.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		v := b.Get([]byte(address))
		if v == nil {
			return fmt.Errorf("account %s: %w", address, ErrNotFound)
		}
		if err := json.Unmarshal(v, &acct); err != nil {
			return err
		}
		al := tx.Bucket(bucketAliases)
		var drop [][]byte
		_ = al.ForEach(func(k, v []byte) error {
			if string(v) == address {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range drop {
			if err := al.Delete(k); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketDeleted).Put(u64(acct.ID), nil); err != nil {
			return err
		}
		return b.Delete([]byte(address))
	})
	if err != nil {
		return fmt.Errorf("store: delete account: %w", err)
	}
	s.mu.Lock()
	s.deleted[acct.ID] = true
	s.mu.Unlock()
	return s.dropMail(acct.ID)
}

// dropMail removes a deleted account's mail: its bucket in a shared file at
// once, its own file when nobody uses it any more.
func (s *Store) dropMail(id uint64) error {
	path := s.mailPath(id)
	if s.opts.Shards > 0 {
		f, err := s.acquire(path, 0, false)
		if errors.Is(err, ErrNotFound) {
			return s.forgetDeletion(id)
		}
		if err != nil {
			return err
		}
		defer s.release(f)
		err = f.update(func(tx *bolt.Tx) error {
			if tx.Bucket(accountKey(id)) == nil {
				return nil
			}
			return tx.DeleteBucket(accountKey(id))
		})
		if err != nil {
			return fmt.Errorf("store: delete account mail: %w", err)
		}
		return s.forgetDeletion(id)
	}
	s.openMu.Lock() // no one opens it meanwhile
	s.mu.Lock()
	f := s.files[path]
	var remove bool
	if f != nil {
		f.removeID = id
		remove = s.freeToRemoveLocked(f)
	}
	s.mu.Unlock()
	s.openMu.Unlock()
	switch {
	case f == nil:
		if err := s.removeAccountFile(path, id); err != nil {
			return fmt.Errorf("store: delete account file: %w", err)
		}
	case remove:
		s.removeFile(f)
	}
	return nil
}

func (s *Store) forgetDeletion(id uint64) error {
	return s.global.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDeleted).Delete(u64(id)) })
}

// finishDeletions removes the mail of accounts deleted before a crash or
// while their sessions still held it.
func (s *Store) finishDeletions() error {
	var ids []uint64
	s.global.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeleted).ForEach(func(k, _ []byte) error {
			if len(k) == 8 {
				ids = append(ids, binary.BigEndian.Uint64(k))
			}
			return nil
		})
	})
	for _, id := range ids {
		s.deleted[id] = true
		if err := s.dropMail(id); err != nil {
			return fmt.Errorf("store: finish deleting account %d: %w", id, err)
		}
	}
	return nil
}

// Accounts lists all accounts, sorted by address.
func (s *Store) Accounts() ([]Account, error) {
	var out []Account
	err := s.global.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("account %s: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// PutAlias makes alias deliver to the account target. The target must exist
// and the alias must not be an account.
func (s *Store) PutAlias(alias, target string) error {
	return s.global.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketAccounts).Get([]byte(target)) == nil {
			return fmt.Errorf("account %s: %w", target, ErrNotFound)
		}
		if tx.Bucket(bucketAccounts).Get([]byte(alias)) != nil {
			return fmt.Errorf("%s is an account: %w", alias, ErrExists)
		}
		al := tx.Bucket(bucketAliases)
		if al.Get([]byte(alias)) != nil {
			return fmt.Errorf("alias %s: %w", alias, ErrExists)
		}
		return al.Put([]byte(alias), []byte(target))
	})
}

// DeleteAlias removes an alias.
func (s *Store) DeleteAlias(alias string) error {
	return s.global.Update(func(tx *bolt.Tx) error {
		al := tx.Bucket(bucketAliases)
		if al.Get([]byte(alias)) == nil {
			return fmt.Errorf("alias %s: %w", alias, ErrNotFound)
		}
		return al.Delete([]byte(alias))
	})
}

// Alias returns the account address an alias points to.
func (s *Store) Alias(alias string) (string, error) {
	var target string
	err := s.global.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAliases).Get([]byte(alias))
		if v == nil {
			return fmt.Errorf("alias %s: %w", alias, ErrNotFound)
		}
		target = string(v)
		return nil
	})
	return target, err
}

// Aliases returns every alias with its target, sorted by alias.
func (s *Store) Aliases() ([][2]string, error) {
	var out [][2]string
	err := s.global.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			out = append(out, [2]string{string(k), string(v)})
			return nil
		})
	})
	return out, err
}

// mailPath is the file that holds account id's mail.
func (s *Store) mailPath(id uint64) string {
	if s.opts.Shards == 0 {
		return filepath.Join(s.opts.Dir, "accounts", strconv.FormatUint(id, 10)+".db")
	}
	return filepath.Join(s.opts.Dir, "mail", fmt.Sprintf("shard-%d.db", id%uint64(s.opts.Shards)))
}

// Mailstore returns the mail of the account with the given ID. The file is
// opened when it is used (and may be closed when idle, see Options); a
// session that wants it kept open holds it (Mailstore.Hold).
func (s *Store) Mailstore(id uint64) (*Mailstore, error) {
	s.mu.Lock()
	gone, closed := s.deleted[id], s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return nil, errStoreClosed
	case gone:
		return nil, fmt.Errorf("store: account %d: %w", id, ErrAccountDeleted)
	}
	m := &Mailstore{s: s, id: id, path: s.mailPath(id), key: accountKey(id)}
	s.mu.Lock()
	done := s.upgraded[id]
	s.mu.Unlock()
	if !done {
		if err := m.upgradeAccount(); err != nil {
			return nil, fmt.Errorf("store: account %d: %w", id, err)
		}
		s.mu.Lock()
		s.upgraded[id] = true
		s.mu.Unlock()
	}
	return m, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func u32(v uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return b[:]
}
