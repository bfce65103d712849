package store

import "time"

// upkeep runs in the background while the store is open: it checkpoints
// files that have been pinned for checkpointAge (so the journal stays
// short) and closes files idle for Options.IdleClose.
func (s *Store) upkeep() {
	defer close(s.upkeepDone)
	tick := time.NewTicker(min(s.opts.checkpointAge/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-tick.C:
			s.checkpointDue(now)
			if s.opts.IdleClose > 0 {
				s.mu.Lock()
				idle := s.evictLocked(0, now.Add(-s.opts.IdleClose))
				s.mu.Unlock()
				s.closeFiles(idle)
			}
		}
	}
}

// checkpointDue asks the committers of files pinned for longer than
// Options.checkpointAge to checkpoint.
func (s *Store) checkpointDue(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		if at := f.pinnedAt.Load(); at != 0 && now.Sub(time.Unix(0, at)) >= s.opts.checkpointAge {
			select {
			case f.ckpt <- struct{}{}:
			default:
			}
		}
	}
}
