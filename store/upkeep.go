package store

import (
	"encoding/binary"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// purgeInterval is how often the upkeep purges old tombstones in the open
// files (expunges purge their own mailbox as well).
const purgeInterval = time.Hour

// upkeep runs in the background while the store is open: it checkpoints
// files that have been pinned for checkpointAge (so the journal stays
// short) and closes files idle for Options.IdleClose.
func (s *Store) upkeep() {
	defer close(s.upkeepDone)
	tick := time.NewTicker(min(s.opts.checkpointAge/4, time.Second))
	defer tick.Stop()
	lastPurge := time.Now()
	var purging sync.WaitGroup
	defer purging.Wait()
	for {
		select {
		case <-s.stop:
			return
		case now := <-tick.C:
			s.checkpointPinned(s.opts.checkpointAge)
			if s.opts.IdleClose > 0 {
				s.mu.Lock()
				idle := s.evictLocked(0, now.Add(-s.opts.IdleClose))
				s.mu.Unlock()
				s.closeFiles(idle)
			}
			if now.Sub(lastPurge) >= purgeInterval {
				lastPurge = now
				purging.Wait() // the last one has finished
				purging.Add(1)
				go func() {
					defer purging.Done()
					s.purgeOpenFiles(now)
				}()
			}
		}
	}
}

// checkpointPinned asks the committers of files pinned for age or longer
// to checkpoint (it does not wait for them).
func (s *Store) checkpointPinned(age time.Duration) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		if at := f.pinnedAt.Load(); at != 0 && now.Sub(time.Unix(0, at)) >= age {
			select {
			case f.ckpt <- struct{}{}:
			default:
			}
		}
	}
}

// purgeOpenFiles purges old tombstones of every account in the open files.
func (s *Store) purgeOpenFiles(now time.Time) {
	s.mu.Lock()
	var files []*mailFile
	for _, f := range s.files {
		if !f.closing {
			f.active++
			files = append(files, f)
		}
	}
	s.mu.Unlock()
	var ids []uint64
	for _, f := range files {
		f.viewDB(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				if len(name) == 9 && name[0] == 'a' {
					ids = append(ids, binary.BigEndian.Uint64(name[1:]))
				}
				return nil
			})
		})
		s.release(f)
	}
	for _, id := range ids {
		select {
		case <-s.stop:
			return
		default:
		}
		if ms, err := s.Mailstore(id); err == nil {
			if _, err := ms.PurgeTombstones(now); err != nil {
				s.log.Warn("purging tombstones failed", "account", id, "err", err)
			}
		}
	}
}
