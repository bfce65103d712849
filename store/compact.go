package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// Compaction: bbolt never gives space back to the file system (freed pages
// are reused, the file does not shrink), so a mailbox emptied of big
// messages keeps its size on disk. Compact rewrites a mail file with only
// what is live, packed, and puts it in place of the old one while the
// server runs:
//
//   - It runs in the file's committer, so writes to the file wait until it
//     is done (the "write lock", as long as copying the file takes); reads
//     go on from the old file meanwhile.
//   - The file is made clean first (journal checkpoint), so the journal
//     does not speak of it; the copy is synced before it is renamed over
//     the old file and the directory is synced after, so a crash leaves
//     either the old file or the new one, both complete.
//   - For the swap itself readers are held off for a moment (mailFile.swap).
//
// Bucket sequences (the next mailbox, blob and account IDs) are copied, so
// no ID is handed out twice.

// CompactResult is what compacting one file did.
type CompactResult struct {
	File          string // relative to the data directory
	Before, After int64  // file sizes in bytes
}

// compactCommitBytes bounds what one transaction of the copy holds.
const compactCommitBytes = 32 << 20

// Compact rewrites the mail file of account id (with Options.Shards, the
// shared file it is in). progress, if not nil, is called now and then with
// the bytes copied so far and an estimate of the total.
func (s *Store) Compact(id uint64, progress func(done, total int64)) (CompactResult, error) {
	f, err := s.acquire(s.mailPath(id), id, false)
	if err != nil {
		return CompactResult{}, err
	}
	defer s.release(f)
	var res CompactResult
	err = f.submit(&writeReq{exclusive: func() error {
		var err error
		res, err = f.compact(progress)
		return err
	}})
	return res, err
}

// MailFileSize returns the size of account id's mail file (0 if unknown).
func (s *Store) MailFileSize(id uint64) int64 {
	fi, err := os.Stat(s.mailPath(id))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// CompactFiles lists the mail files of the store: for each, one account in
// it (to pass to Compact), in file order.
func (s *Store) CompactFiles() ([]Account, error) {
	accts, err := s.Accounts()
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool)
	var out []Account
	for _, a := range accts {
		if p := s.mailPath(a.ID); !seen[p] {
			seen[p] = true
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return s.mailPath(out[i].ID) < s.mailPath(out[j].ID) })
	return out, nil
}

// compact runs in the committer goroutine.
func (f *mailFile) compact(progress func(done, total int64)) (CompactResult, error) {
	res := CompactResult{File: f.rel}
	if err := f.checkpoint(); err != nil {
		return res, err
	}
	fi, err := f.fd.Stat()
	if err != nil {
		return res, fmt.Errorf("store: compact %s: %w", f.rel, err)
	}
	res.Before = fi.Size()
	tmp := f.path + ".compact"
	os.Remove(tmp)
	if err := f.copyTo(tmp, progress); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("store: compact %s: %w", f.rel, err)
	}
	if err := f.swapIn(tmp); err != nil {
		return res, fmt.Errorf("store: compact %s: %w", f.rel, err)
	}
	if fi, err := os.Stat(f.path); err == nil {
		res.After = fi.Size()
	}
	return res, nil
}

// copyTo writes a compact copy of the file's current state to path, synced.
func (f *mailFile) copyTo(path string, progress func(done, total int64)) error {
	dst, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	defer dst.Close()
	return f.viewDB(func(src *bolt.Tx) error {
		c := &copier{dst: dst, total: src.Size(), progress: progress}
		if err := c.begin(); err != nil {
			return err
		}
		err := src.ForEach(func(name []byte, b *bolt.Bucket) error {
			return c.bucket([][]byte{append([]byte(nil), name...)}, b)
		})
		if err == nil {
			err = c.commit()
		} else {
			c.tx.Rollback()
		}
		if err != nil {
			return err
		}
		if progress != nil {
			progress(c.total, c.total)
		}
		if f.opts.NoSync {
			return nil
		}
		return dst.Sync()
	})
}

// copier copies buckets into dst in transactions of bounded size.
type copier struct {
	dst      *bolt.DB
	tx       *bolt.Tx
	pending  int64 // bytes in tx
	done     int64
	total    int64
	progress func(done, total int64)
}

func (c *copier) begin() error {
	tx, err := c.dst.Begin(true)
	c.tx, c.pending = tx, 0
	return err
}

func (c *copier) commit() error {
	err := c.tx.Commit()
	c.tx = nil
	return err
}

// open returns the bucket at path in the current transaction.
func (c *copier) open(path [][]byte) *bolt.Bucket {
	b := c.tx.Bucket(path[0])
	for _, name := range path[1:] {
		b = b.Bucket(name)
	}
	b.FillPercent = 1.0 // keys come in order: fill each page
	return b
}

func (c *copier) bucket(path [][]byte, src *bolt.Bucket) error {
	var err error
	if len(path) == 1 {
		_, err = c.tx.CreateBucket(path[0])
	} else {
		_, err = c.open(path[:len(path)-1]).CreateBucket(path[len(path)-1])
	}
	if err != nil {
		return err
	}
	dst := c.open(path)
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	cur := src.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if v == nil { // a nested bucket
			sub := append(append([][]byte(nil), path...), append([]byte(nil), k...))
			if err := c.bucket(sub, src.Bucket(k)); err != nil {
				return err
			}
			dst = c.open(path) // the transaction may have changed
			continue
		}
		if err := dst.Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
			return err
		}
		n := int64(len(k) + len(v))
		c.pending += n
		c.done += n
		if c.pending >= compactCommitBytes {
			if err := c.commit(); err != nil {
				return err
			}
			if err := c.begin(); err != nil {
				return err
			}
			dst = c.open(path)
			if c.progress != nil {
				c.progress(min(c.done, c.total), c.total)
			}
		}
	}
	return nil
}

// swapIn puts the file at tmp in place of this one and reopens it.
func (f *mailFile) swapIn(tmp string) error {
	f.swap.Lock()
	defer f.swap.Unlock()
	if err := f.db.Close(); err != nil {
		return err
	}
	f.fd.Close()
	renameErr := os.Rename(tmp, f.path)
	if renameErr == nil && !f.opts.NoSync {
		renameErr = syncPath(filepath.Dir(f.path))
	}
	// Reopen what is there: the new file, or the old one if the rename
	// failed.
	db, err := openBolt(f.path, f.opts, f.opts.mailReserve())
	if err != nil {
		return errors.Join(renameErr, err)
	}
	fd, err := os.OpenFile(f.path, os.O_RDWR, 0)
	if err != nil {
		db.Close()
		return errors.Join(renameErr, err)
	}
	f.db, f.fd = db, fd
	f.mappedLB = 0
	f.journalOK = f.journal != nil
	f.noteSize(true)
	if renameErr != nil {
		os.Remove(tmp)
	}
	return renameErr
}
