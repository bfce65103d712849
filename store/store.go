// Package store is Roost's persistence layer on bbolt: accounts and aliases
// in one small global file, and one file per account holding its mailboxes,
// messages, flags, modseqs, expunge tombstones and message bodies.
//
// One file per account means deliveries to different accounts never wait for
// the same writer; writes to one account are group-committed (see
// Mailstore.update), so concurrent deliveries share one fsync. A call that
// returns success has fsynced, unless Options.NoSync is set (tests only).
//
// The store knows no protocol: flags are plain strings ("\Seen", "$Junk"),
// and the parsed form of a message (envelope, body structure) is an opaque
// blob computed by the caller once, at delivery.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
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
	// ReadOnly opens existing files for reading only (a shared lock, so
	// several readers may open the store, but no writer): nothing is
	// created, and every write fails. For `roost check` and for looking
	// at a backup before it is restored.
	ReadOnly bool
	Logger   *slog.Logger
}

// Store is the root of Roost's persistent state.
type Store struct {
	opts   Options
	global *bolt.DB
	log    *slog.Logger

	mu       sync.Mutex
	accounts map[uint64]*Mailstore
	files    map[string]*mailFile // by path
	closed   bool

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
		for _, b := range [][]byte{bucketAccounts, bucketAliases, bucketGlobal} {
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
	return &Store{opts: opts, global: db, log: opts.Logger, accounts: make(map[uint64]*Mailstore), files: make(map[string]*mailFile)}, nil
}

// mailMmapSize is the address space reserved for a mail file when it is
// opened. bbolt copies every dirty node to the heap each time it has to
// remap a growing file (node.dereference), which during the commit of one
// large message meant several heap copies of it; with room reserved up front
// a file grows without remapping until it passes this size. It costs
// address space only, not memory.
const mailMmapSize = 256 << 20

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

// Close closes every open file. In-flight calls must have returned.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for path, f := range s.files {
		errs = append(errs, f.close())
		delete(s.files, path)
	}
	clear(s.accounts)
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
	return acct, nil
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
// mail file.
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
		return b.Delete([]byte(address))
	})
	if err != nil {
		return fmt.Errorf("store: delete account: %w", err)
	}
	return s.dropMail(acct.ID)
}

// dropMail removes an account's mail: its file, or its bucket in a shared one.
func (s *Store) dropMail(id uint64) error {
	path := s.mailPath(id)
	if s.opts.Shards == 0 {
		s.mu.Lock()
		if f := s.files[path]; f != nil {
			f.close()
			delete(s.files, path)
		}
		delete(s.accounts, id)
		s.mu.Unlock()
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("store: delete account file: %w", err)
		}
		return nil
	}
	s.mu.Lock()
	delete(s.accounts, id)
	s.mu.Unlock()
	f, err := s.file(path)
	if err != nil {
		return err
	}
	err = f.update(func(tx *bolt.Tx) error {
		if tx.Bucket(accountKey(id)) == nil {
			return nil
		}
		return tx.DeleteBucket(accountKey(id))
	})
	if err != nil {
		return fmt.Errorf("store: delete account mail: %w", err)
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

// file returns the open mail file at path, opening it on first use.
func (s *Store) file(path string) (*mailFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("store: closed")
	}
	if f := s.files[path]; f != nil {
		return f, nil
	}
	f, err := openMailFile(path, s.opts)
	if err != nil {
		return nil, err
	}
	s.files[path] = f
	return f, nil
}

// Mailstore returns the mail of the account with the given ID, opening its
// file on first use. Files stay open until Close.
func (s *Store) Mailstore(id uint64) (*Mailstore, error) {
	s.mu.Lock()
	m := s.accounts[id]
	s.mu.Unlock()
	if m != nil {
		return m, nil
	}
	f, err := s.file(s.mailPath(id))
	if err != nil {
		return nil, err
	}
	key := accountKey(id)
	if err := f.ensureAccount(key); err != nil {
		return nil, fmt.Errorf("store: account %d: %w", id, err)
	}
	m = &Mailstore{f: f, key: key}
	if err := m.upgradeAccount(); err != nil {
		return nil, fmt.Errorf("store: account %d: %w", id, err)
	}
	s.mu.Lock()
	s.accounts[id] = m
	s.mu.Unlock()
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
