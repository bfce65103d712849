package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestSharedFiles: with Shards, accounts share mail files but nothing else:
// UIDs, counters, quotas and deletion stay per account, concurrent writes to
// accounts of one file all land, a backup restores, and the shard count
// cannot change under existing accounts.
func TestSharedFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, NoSync: true, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	stores := make([]*Mailstore, 5)
	boxes := make([]Mailbox, 5)
	for i := range stores {
		stores[i], boxes[i] = newAccount(t, s, fmt.Sprintf("u%d@x.org", i))
	}
	var wg sync.WaitGroup
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := stores[(w+i)%5].Append("INBOX", msg(i), Limits{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for i, ms := range stores {
		if got := checkCounters(t, ms, boxes[i].ID).Messages; got != 40 {
			t.Fatalf("account %d: %d messages, want 40", i, got)
		}
		if uids, _ := ms.UIDs(boxes[i].ID); uids[len(uids)-1] != 40 {
			t.Fatalf("account %d: UIDs not per account: last %d", i, uids[len(uids)-1])
		}
	}
	// Deleting one account leaves its file-mates alone.
	if err := s.DeleteAccount("u2@x.org"); err != nil {
		t.Fatal(err)
	}
	if got := checkCounters(t, stores[0], boxes[0].ID).Messages; got != 40 {
		t.Fatalf("file-mate lost mail: %d", got)
	}
	if _, err := stores[2].Mailboxes(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted account's mail: %v", err)
	}
	bdir := t.TempDir()
	if err := s.Backup(bdir, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()

	if _, err := Open(Options{Dir: dir, NoSync: true, Shards: 3}); err == nil {
		t.Fatal("opened with a different shard count")
	}
	r, err := Open(Options{Dir: bdir, NoSync: true, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	acct, _ := r.Account("u4@x.org")
	ms, _ := r.Mailstore(acct.ID)
	if got := checkCounters(t, ms, boxes[4].ID).Messages; got != 40 {
		t.Fatalf("restored %d messages, want 40", got)
	}
}
