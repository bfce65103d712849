package store

// The life of mail files: opened on first use, kept open while a session
// holds them (Mailstore.Hold) or an operation runs, closed when idle for
// Options.IdleClose or when more than Options.MaxOpenFiles are open (the
// least recently used that nobody holds go first), and removed once the
// last session of a deleted account has let go.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

var errStoreClosed = errors.New("store: closed")

// acquire returns the open mail file at path, opening it if needed, and
// counts it in use until release. id is the account the caller acts for
// (0: none): a deleted account's file is not handed out. A missing file is
// created only when create is set (when the account is created): a file
// that is gone stays gone.
func (s *Store) acquire(path string, id uint64, create bool) (*mailFile, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, errStoreClosed
		}
		if id != 0 && s.deleted[id] {
			s.mu.Unlock()
			return nil, fmt.Errorf("account %d: %w", id, ErrAccountDeleted)
		}
		if f := s.files[path]; f != nil {
			if f.closing {
				c := f.closed
				s.mu.Unlock()
				<-c
				continue
			}
			f.active++
			s.mu.Unlock()
			return f, nil
		}
		s.mu.Unlock()

		// One opener at a time, so a file is never opened twice.
		s.openMu.Lock()
		s.mu.Lock()
		again := s.files[path] != nil || s.closed || (id != 0 && s.deleted[id])
		s.mu.Unlock()
		if again {
			s.openMu.Unlock()
			continue
		}
		f, err := s.open(path, create)
		if err != nil {
			s.openMu.Unlock()
			return nil, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			s.openMu.Unlock()
			f.close()
			return nil, errStoreClosed
		}
		f.active = 1
		s.files[path] = f
		victims := s.evictLocked(len(s.files)-s.opts.MaxOpenFiles, time.Time{})
		s.mu.Unlock()
		s.openMu.Unlock()
		s.closeFiles(victims)
		return f, nil
	}
}

func (s *Store) open(path string, create bool) (*mailFile, error) {
	if !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("store: mail file %s: %w", filepath.Base(path), ErrNotFound)
		}
	}
	rel, err := filepath.Rel(s.opts.Dir, path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return openFile(path, rel, s.opts, s.journal, &s.syncs, &s.failure)
}

// release ends a use begun by acquire.
func (s *Store) release(f *mailFile) {
	s.mu.Lock()
	f.active--
	if f.active == 0 {
		f.lastUsed = time.Now()
	}
	remove := s.freeToRemoveLocked(f)
	s.mu.Unlock()
	if remove {
		s.removeFile(f)
	}
}

// file returns the open mail file at path (opening it if needed). It is
// not counted as in use: for short, store-internal work only.
func (s *Store) file(path string) (*mailFile, error) {
	f, err := s.acquire(path, 0, false)
	if err != nil {
		return nil, err
	}
	s.release(f)
	return f, nil
}

// evictLocked picks up to n files that nobody uses or holds, least
// recently used first, and marks them closing; with idleBefore set, only
// files unused since before it. The caller closes them (closeFiles).
func (s *Store) evictLocked(n int, idleBefore time.Time) []*mailFile {
	if n <= 0 && idleBefore.IsZero() {
		return nil
	}
	var free []*mailFile
	for _, f := range s.files {
		if !f.closing && f.active == 0 && f.holds == 0 && (idleBefore.IsZero() || f.lastUsed.Before(idleBefore)) {
			free = append(free, f)
		}
	}
	slices.SortFunc(free, func(a, b *mailFile) int { return a.lastUsed.Compare(b.lastUsed) })
	if !idleBefore.IsZero() {
		n = len(free)
	}
	free = free[:min(n, len(free))]
	for _, f := range free {
		f.closing = true
	}
	return free
}

// closeFiles closes files marked closing and forgets them.
func (s *Store) closeFiles(files []*mailFile) {
	for _, f := range files {
		if err := f.close(); err != nil {
			s.log.Warn("closing a mail file failed", "file", f.rel, "err", err)
		}
		s.mu.Lock()
		if s.files[f.path] == f {
			delete(s.files, f.path)
		}
		close(f.closed)
		s.mu.Unlock()
	}
}

// OpenFiles returns how many mail files are open.
func (s *Store) OpenFiles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files)
}

// Hold keeps the account's mail file open until release is called (a
// session holds its account's file for as long as it lasts, so that it is
// never closed under it). release may be called more than once.
func (m *Mailstore) Hold() (release func(), err error) {
	f, err := m.s.acquire(m.path, m.id, false)
	if err != nil {
		return nil, err
	}
	m.s.mu.Lock()
	f.holds++
	f.active--
	m.s.mu.Unlock()
	var done bool
	return func() {
		m.s.mu.Lock()
		if done {
			m.s.mu.Unlock()
			return
		}
		done = true
		f.holds--
		if f.holds == 0 && f.active == 0 {
			f.lastUsed = time.Now()
		}
		remove := m.s.freeToRemoveLocked(f)
		m.s.mu.Unlock()
		if remove {
			m.s.removeFile(f)
		}
	}, nil
}

// freeToRemoveLocked reports whether f belongs to a deleted account and
// nobody uses it any more; it then marks it closing.
func (s *Store) freeToRemoveLocked(f *mailFile) bool {
	if f.removeID == 0 || f.active > 0 || f.holds > 0 || f.closing {
		return false
	}
	f.closing = true
	return true
}

// removeFile closes a deleted account's file (marked closing) and removes
// it from disk.
func (s *Store) removeFile(f *mailFile) {
	s.closeFiles([]*mailFile{f})
	if err := s.removeAccountFile(f.path, f.removeID); err != nil {
		s.log.Error("removing a deleted account's mail file failed", "file", f.rel, "err", err)
	}
}

// removeAccountFile deletes the mail file of deleted account id and then
// its entry in the list of deletions still to finish.
func (s *Store) removeAccountFile(path string, id uint64) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if !s.opts.NoSync {
		if err := syncPath(filepath.Dir(path)); err != nil {
			return err
		}
	}
	return s.global.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeleted).Delete(u64(id))
	})
}
