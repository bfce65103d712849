package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// recover brings every mail file the journal calls pinned back to the
// durable state the journal recorded for it and applies again the appends
// recorded since, each file in one synced commit. Then no file depends on
// the journal any more, and it starts afresh.
//
// Running it twice (a crash during recovery) gives the same result: the
// pinned state's pages are intact until a second commit after it could
// reuse them, and recovery makes one commit per file.
func (s *Store) recover() error {
	files, last, err := s.journal.readAll()
	if err != nil {
		return fmt.Errorf("store: read journal: %w", err)
	}
	for _, rel := range sortedFiles(files) {
		st := files[rel]
		if st.meta == nil {
			continue // clean: the file on disk is what it was
		}
		path := filepath.Join(s.opts.Dir, rel)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue // the account was deleted since
		}
		applied, err := s.recoverFile(path, rel, st)
		if err != nil {
			return fmt.Errorf("store: recover %s from the journal: %w", rel, err)
		}
		s.log.Info("journal: mail file recovered", "file", rel, "appends", len(st.appends), "applied", applied)
	}
	if err := s.journal.removeUpTo(last); err != nil {
		return err
	}
	return s.journal.start(last)
}

func (s *Store) recoverFile(path, rel string, st *fileState) (applied int, err error) {
	if err := restoreMetaPage(path, st.meta, s.opts.NoSync); err != nil {
		return 0, err
	}
	f, err := openFile(path, rel, s.opts, nil, &s.syncs, &s.failure)
	if err != nil {
		return 0, err
	}
	defer f.close()
	reqs := make([]*writeReq, len(st.appends))
	for i, a := range st.appends {
		reqs[i] = &writeReq{fn: inAccount(a.account, func(tx *atx) error {
			_, err := appendMessage(tx, a.mailbox, a.msg, a.quota)
			return err
		})}
	}
	// One commit for all, synced (also when there is nothing to apply: the
	// restored state is then made the file's own again).
	f.db.NoSync = s.opts.NoSync
	if err := f.runGroup(append(reqs, &writeReq{fn: func(*bolt.Tx) error { return nil }}), 2); err != nil {
		return 0, err
	}
	for _, r := range reqs {
		if r.err == nil {
			applied++
		}
	}
	return applied, nil
}
