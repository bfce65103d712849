package store

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestTombstonePurge: tombstones older than the retention are purged and
// PurgedModSeq says up to where; younger ones stay; a tombstone from before
// tombstones were dated is kept (dated now); messages' own change entries
// are never touched; the next scan does not start over from the beginning.
func TestTombstonePurge(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), NoSync: true, TombstoneRetention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	for i := 0; i < 10; i++ {
		if _, err := ms.Append("INBOX", msg(i), Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ms.Expunge(mb.ID, []uint32{1, 2, 3}, false); err != nil {
		t.Fatal(err)
	}
	// Make those three tombstones 2 days old, and one of them undated (as
	// written before tombstones carried a time).
	old := binary.BigEndian.AppendUint64([]byte{1}, uint64(time.Now().Add(-48*time.Hour).Unix()))
	err = ms.update(func(tx *atx) error {
		m, _ := getMbox(tx, mb.ID)
		c := m.changes().Cursor()
		var keys [][]byte
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v[0] == 1 {
				keys = append(keys, append([]byte(nil), k...))
			}
		}
		for i, k := range keys {
			v := old
			if i == 2 {
				v = []byte{1}
			}
			m.changes().Put(k, v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := ms.ChangesSince(mb.ID, 0)
	// A young expunge (in its transaction, the old tombstones go).
	if _, err := ms.Expunge(mb.ID, []uint32{4}, false); err != nil {
		t.Fatal(err)
	}
	after, _ := ms.ChangesSince(mb.ID, 0)
	info := checkCounters(t, ms, mb.ID)
	tomb := map[uint32]bool{}
	var purgedUpTo uint64
	for _, c := range before {
		if c.Expunged && c.UID != 3 {
			purgedUpTo = max(purgedUpTo, c.ModSeq)
		}
	}
	for _, c := range after {
		if c.Expunged {
			tomb[c.UID] = true
		}
	}
	if tomb[1] || tomb[2] || !tomb[3] || !tomb[4] {
		t.Fatalf("tombstones after purge: %v; want 3 (undated: kept) and 4 (young)", tomb)
	}
	if info.PurgedModSeq != purgedUpTo || purgedUpTo == 0 {
		t.Fatalf("PurgedModSeq %d, want %d", info.PurgedModSeq, purgedUpTo)
	}
	if len(after) != len(before)-2 { // UID 4: its entry became its tombstone
		t.Fatalf("%d change entries after, %d before: live messages' entries lost?", len(after), len(before))
	}
	// Nothing due now: PurgeTombstones writes nothing.
	syncs := s.Syncs()
	if n, err := ms.PurgeTombstones(time.Now()); err != nil || n != 0 || s.Syncs() != syncs {
		t.Fatalf("PurgeTombstones with nothing due: %d, %v, %d syncs", n, err, s.Syncs()-syncs)
	}
	// Two days on, the rest is due.
	if n, err := ms.PurgeTombstones(time.Now().Add(48 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("PurgeTombstones two days on: %d, %v", n, err)
	}
	final, _ := ms.ChangesSince(mb.ID, 0)
	for _, c := range final {
		if c.Expunged {
			t.Fatalf("tombstone of UID %d left after its retention", c.UID)
		}
	}
	if got := checkCounters(t, ms, mb.ID); got.PurgedModSeq < info.HighestModSeq {
		t.Fatalf("PurgedModSeq %d after purging all, want %d", got.PurgedModSeq, info.HighestModSeq)
	}
}
