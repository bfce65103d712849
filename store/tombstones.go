package store

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Expunge tombstones are kept for Options.TombstoneRetention so that a
// QRESYNC client can be told exactly which messages vanished since it last
// synced (RFC 7162 §3.2.5). Older ones are purged, and the mailbox's
// PurgedModSeq records the highest modseq purged: a client that last
// synced below it gets the full list of UIDs instead (RFC 7162 §3.2.5.2).
//
// Purging happens with every expunge (for that mailbox, in the same
// transaction) and hourly for every open file (upkeep).

// purgeTombstones removes the mailbox's tombstones written before cutoff
// and dates those from before tombstones carried a time (see
// dueTombstones). It reports whether it changed anything; the caller saves
// the mailbox.
func (mb *mbox) purgeTombstones(cutoff time.Time) (bool, error) {
	purge, stamp, next := mb.dueTombstones(cutoff)
	if next != mb.tombstoneScan() {
		if err := mb.b.Put(keyTombstoneScan, u64(next)); err != nil {
			return false, err
		}
	}
	b := mb.changes()
	for _, k := range purge {
		if err := b.Delete(k); err != nil {
			return false, err
		}
		mb.info.PurgedModSeq = max(mb.info.PurgedModSeq, binary.BigEndian.Uint64(k))
	}
	now := binary.BigEndian.AppendUint64([]byte{1}, uint64(time.Now().Unix()))
	for _, k := range stamp {
		if err := b.Put(k, now); err != nil {
			return false, err
		}
	}
	return len(purge)+len(stamp) > 0, nil
}

// dueTombstones returns the keys of the tombstones to purge (written
// before cutoff) and of those without a time, to be dated now (so they are
// kept for the full retention from here on), and where the next scan may
// start. It walks the change log from the mailbox's scan start on and
// stops at the first tombstone that is young enough: later ones are
// younger still. Below that point there is no tombstone left once these
// are purged, and none can appear there (new entries get new, higher
// modseqs), so the next scan starts there: an expunge does not walk a big
// mailbox's whole log.
func (mb *mbox) dueTombstones(cutoff time.Time) (purge, stamp [][]byte, next uint64) {
	c := mb.changes().Cursor()
	// Not PurgedModSeq+1: tombstones of one expunge share a modseq, and
	// some of those at PurgedModSeq may have been kept (undated ones).
	next = max(mb.tombstoneScan(), mb.info.PurgedModSeq)
	k, v := c.Seek(u64(next))
	for ; k != nil; k, v = c.Next() {
		if len(v) == 0 || v[0] != 1 {
			continue // a message's latest change, not a tombstone
		}
		if len(v) < 9 {
			stamp = append(stamp, append([]byte(nil), k...))
			continue
		}
		if !time.Unix(int64(binary.BigEndian.Uint64(v[1:9])), 0).Before(cutoff) {
			break
		}
		purge = append(purge, append([]byte(nil), k...))
	}
	switch {
	case len(stamp) > 0: // kept, dated now: the next scan stops there
		next = binary.BigEndian.Uint64(stamp[0])
	case k != nil:
		next = binary.BigEndian.Uint64(k)
	default:
		next = mb.info.HighestModSeq + 1
	}
	return purge, stamp, next
}

// keyTombstoneScan (in a mailbox's bucket) is where the next tombstone
// scan starts: no tombstone has a lower modseq.
var keyTombstoneScan = []byte("ts")

func (mb *mbox) tombstoneScan() uint64 {
	if v := mb.b.Get(keyTombstoneScan); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// PurgeTombstones purges, in every mailbox of the account, the tombstones
// older than the store's retention as of now. It returns how many mailboxes
// it changed.
func (m *Mailstore) PurgeTombstones(now time.Time) (int, error) {
	cutoff := now.Add(-m.s.opts.TombstoneRetention)
	each := func(tx *atx, fn func(mb *mbox) error) error {
		return tx.Bucket(bucketMboxes).ForEachBucket(func(id []byte) error {
			mb, err := getMbox(tx, binary.BigEndian.Uint64(id))
			if err != nil {
				return err
			}
			return fn(mb)
		})
	}
	// Look first: mostly nothing is due, and a write costs a commit.
	due := false
	err := m.view(func(tx *atx) error {
		return each(tx, func(mb *mbox) error {
			purge, stamp, _ := mb.dueTombstones(cutoff)
			due = due || len(purge)+len(stamp) > 0
			return nil
		})
	})
	if err != nil || !due {
		return 0, err
	}
	changed := 0
	err = m.update(func(tx *atx) error {
		changed = 0
		return each(tx, func(mb *mbox) error {
			ok, err := mb.purgeTombstones(cutoff)
			if err != nil || !ok {
				return err
			}
			changed++
			return mb.save()
		})
	})
	if err != nil {
		return 0, fmt.Errorf("store: purge tombstones: %w", err)
	}
	return changed, nil
}
