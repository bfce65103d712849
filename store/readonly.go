package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// openReadOnly opens an existing store for reading (Options.ReadOnly):
// it creates nothing and writes nothing, and fails if there is no store in
// opts.Dir.
func openReadOnly(opts Options) (*Store, error) {
	path := filepath.Join(opts.Dir, globalFileName)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("store: %s: %w", opts.Dir, ErrNoStore)
		}
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := openBolt(path, opts, 0)
	if err != nil {
		return nil, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAccounts, bucketAliases, bucketGlobal} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("bucket %q missing", b)
			}
		}
		g := tx.Bucket(bucketGlobal)
		if v := g.Get([]byte("schema")); len(v) == 8 && binary.BigEndian.Uint64(v) > schemaVersion {
			return fmt.Errorf("schema version %d is newer than this binary's %d", binary.BigEndian.Uint64(v), schemaVersion)
		}
		if v := g.Get([]byte("shards")); len(v) == 8 && binary.BigEndian.Uint64(v) != uint64(opts.Shards) {
			if tx.Bucket(bucketAccounts).Stats().KeyN > 0 {
				return fmt.Errorf("created with shards = %d, cannot open with %d", binary.BigEndian.Uint64(v), opts.Shards)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// No journal and no upkeep: nothing is written. (A store left by a
	// crash is read as its files are; recovery from the journal happens
	// at the next read-write open.)
	st := &Store{opts: opts, global: db, log: opts.Logger, accounts: make(map[uint64]*Mailstore),
		files: make(map[string]*mailFile), deleted: make(map[uint64]bool), upgraded: make(map[uint64]bool),
		stop: make(chan struct{}), upkeepDone: make(chan struct{})}
	close(st.upkeepDone)
	return st, nil
}

// ReadOnly reports whether the store was opened with Options.ReadOnly.
func (s *Store) ReadOnly() bool { return s.opts.ReadOnly }
