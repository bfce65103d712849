package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestKeywordsInUse(t *testing.T) {
	type step struct {
		do   func(ms *Mailstore, inbox, other Mailbox) error
		want []string // INBOX's keywords after the step
	}
	appendWith := func(flags ...string) func(ms *Mailstore, inbox, other Mailbox) error {
		return func(ms *Mailstore, inbox, other Mailbox) error {
			m := msg(1)
			m.Flags = flags
			_, err := ms.Append("INBOX", m, Limits{})
			return err
		}
	}
	storeOn := func(uid uint32, op FlagOp, flags ...string) func(ms *Mailstore, inbox, other Mailbox) error {
		return func(ms *Mailstore, inbox, other Mailbox) error {
			_, _, err := ms.StoreFlags(inbox.ID, []uint32{uid}, op, flags, 0)
			return err
		}
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"append with keywords, system flags not listed", []step{
			{appendWith(`\Seen`, "$Junk", "work"), []string{"$Junk", "work"}},
			{appendWith("WORK", "home"), []string{"$Junk", "work", "home"}},
		}},
		{"store add, set and remove; the list only grows", []step{
			{appendWith(), nil},
			{storeOn(1, FlagsAdd, "a"), []string{"a"}},
			{storeOn(1, FlagsSet, `\Flagged`, "b"), []string{"a", "b"}},
			{storeOn(1, FlagsRemove, "b"), []string{"a", "b"}},
		}},
		{"store on a missing message adds nothing", []step{
			{storeOn(7, FlagsAdd, "ghost"), nil},
		}},
		{"copy and move carry keywords into the destination", []step{
			{func(ms *Mailstore, inbox, other Mailbox) error {
				m := msg(1)
				m.Flags = []string{"fromother"}
				if _, err := ms.Append("Other", m, Limits{}); err != nil {
					return err
				}
				_, err := ms.Copy(other.ID, []uint32{1}, inbox.ID, false, Limits{})
				return err
			}, []string{"fromother"}},
			{func(ms *Mailstore, inbox, other Mailbox) error {
				m := msg(2)
				m.Flags = []string{"moved"}
				if _, err := ms.Append("Other", m, Limits{}); err != nil {
					return err
				}
				_, err := ms.Copy(other.ID, []uint32{2}, inbox.ID, true, Limits{})
				return err
			}, []string{"fromother", "moved"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			defer s.Close()
			ms, inbox := newAccount(t, s, "a@x.org")
			other, err := ms.CreateMailbox("Other", "")
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tc.steps {
				if err := st.do(ms, inbox, other); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				mb, err := ms.MailboxByID(inbox.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(mb.Keywords, st.want) {
					t.Fatalf("step %d: keywords %q, want %q", i, mb.Keywords, st.want)
				}
			}
		})
	}
}

func TestClaimRecent(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	appendN := func(n int) {
		for i := 0; i < n; i++ {
			if _, err := ms.Append("INBOX", msg(i), Limits{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	type claim struct{ first, next uint32 }
	claimOf := func() claim {
		f, n, err := ms.ClaimRecent(mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		return claim{f, n}
	}
	recent := func() uint32 {
		n, err := ms.RecentCount(mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := claimOf(); got.first != got.next {
		t.Fatalf("claim in an empty mailbox: %v", got)
	}
	appendN(3)
	if got := recent(); got != 3 {
		t.Fatalf("RecentCount = %d, want 3", got)
	}
	// Session A claims all three; B, claiming next, gets none.
	if got := claimOf(); got != (claim{1, 4}) {
		t.Fatalf("first claim = %v, want [1,4)", got)
	}
	if got := claimOf(); got.first != got.next {
		t.Fatalf("second claim = %v, want empty", got)
	}
	if got := recent(); got != 0 {
		t.Fatalf("RecentCount after claim = %d", got)
	}
	appendN(2)
	if _, err := ms.Expunge(mb.ID, []uint32{4}, false); err != nil {
		t.Fatal(err)
	}
	if got := recent(); got != 1 {
		t.Fatalf("RecentCount with one of two new expunged = %d, want 1", got)
	}
	if got := claimOf(); got != (claim{4, 6}) {
		t.Fatalf("claim of new messages = %v, want [4,6)", got)
	}
	// Copies into the mailbox are new messages, recent again (RFC 3501 §6.4.7).
	if _, err := ms.Copy(mb.ID, []uint32{1}, mb.ID, false, Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := claimOf(); got != (claim{6, 7}) {
		t.Fatalf("claim after copy = %v, want [6,7)", got)
	}
}

func TestClaimRecentConcurrent(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	const sessions, rounds = 8, 20
	claimed := make(chan [2]uint32, sessions*rounds)
	errs := make(chan error, sessions)
	start := make(chan struct{})
	for i := 0; i < sessions; i++ {
		go func() {
			<-start
			for r := 0; r < rounds; r++ {
				if _, err := ms.Append("INBOX", msg(r), Limits{}); err != nil {
					errs <- err
					return
				}
				f, n, err := ms.ClaimRecent(mb.ID)
				if err != nil {
					errs <- err
					return
				}
				claimed <- [2]uint32{f, n}
			}
			errs <- nil
		}()
	}
	close(start)
	for i := 0; i < sessions; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(claimed)
	// Every UID is claimed exactly once.
	seen := make(map[uint32]int)
	for c := range claimed {
		for uid := c[0]; uid < c[1]; uid++ {
			seen[uid]++
		}
	}
	for uid := uint32(1); uid <= sessions*rounds; uid++ {
		if seen[uid] != 1 {
			t.Errorf("UID %d claimed %d times", uid, seen[uid])
		}
	}
}

func TestPurgeList(t *testing.T) {
	s := openTest(t, t.TempDir())
	dir := s.Dir()
	ms, mb := newAccount(t, s, "a@x.org")
	other, err := ms.CreateMailbox("Other", "")
	if err != nil {
		t.Fatal(err)
	}
	pending := func() uint64 {
		v, err := ms.PendingPurge()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for i := 1; i <= 3; i++ {
		if _, err := ms.Append("INBOX", msg(i), Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	recs, _ := ms.MessagesByUID(mb.ID, []uint32{1, 2, 3})
	// Message 1 is copied: expunging the original leaves its body in use.
	if _, err := ms.Copy(mb.ID, []uint32{1}, other.ID, false, Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Expunge(mb.ID, []uint32{1}, false); err != nil {
		t.Fatal(err)
	}
	if p := pending(); p != 0 {
		t.Fatalf("body still in use went on the purge list (at %d)", p)
	}
	if _, err := ms.Expunge(mb.ID, []uint32{2}, false); err != nil {
		t.Fatal(err)
	}
	first := pending()
	if first == 0 {
		t.Fatal("expunge of the last reference left nothing pending")
	}
	if err := ms.DeleteMailbox("Other"); err != nil {
		t.Fatal(err)
	}
	// Both bodies are still readable (a session may address them).
	for _, r := range recs[:2] {
		if got, err := ms.ReadBody(r.BlobID); err != nil || !bytes.Contains(got, []byte(fmt.Sprintf("body %d", r.UID))) {
			t.Fatalf("pending body %d: %q, %v", r.UID, got, err)
		}
	}
	// A horizon below the first pending modseq purges nothing.
	if n, p, err := ms.PurgeBlobs(first - 1); n != 0 || p != first || err != nil {
		t.Fatalf("PurgeBlobs(%d) = %d, %d, %v", first-1, n, p, err)
	}
	// Up to the first: message 2's body goes, message 1's stays pending.
	n, p, err := ms.PurgeBlobs(first)
	if n != 1 || p <= first || err != nil {
		t.Fatalf("PurgeBlobs(%d) = %d, %d, %v", first, n, p, err)
	}
	if _, err := ms.ReadBody(recs[1].BlobID); !errors.Is(err, ErrExpunged) {
		t.Fatalf("purged body: %v", err)
	}
	if _, err := ms.ReadBody(recs[0].BlobID); err != nil {
		t.Fatalf("body purged too early: %v", err)
	}
	if _, err := ms.ReadBody(recs[2].BlobID); err != nil {
		t.Fatalf("live body: %v", err)
	}
	// Reopening keeps the list (sessions may still address its bodies;
	// the backend empties it when it knows none can).
	s.Close()
	s = openTest(t, dir)
	defer s.Close()
	accts, _ := s.Accounts()
	ms, err = s.Mailstore(accts[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if p := pending(); p == 0 {
		t.Fatal("purge list lost on reopen")
	}
	if _, err := ms.ReadBody(recs[0].BlobID); err != nil {
		t.Fatalf("pending body after reopen: %v", err)
	}
	if n, p, err := ms.PurgeBlobs(^uint64(0)); n != 1 || p != 0 || err != nil {
		t.Fatalf("PurgeBlobs(all) = %d, %d, %v", n, p, err)
	}
	if _, err := ms.ReadBody(recs[0].BlobID); !errors.Is(err, ErrExpunged) {
		t.Fatalf("purged body: %v", err)
	}
	if _, err := ms.ReadBody(recs[2].BlobID); err != nil {
		t.Fatalf("live body after reopen: %v", err)
	}
	checkCounters(t, ms, mb.ID)
	// ExpungeAndPurge deletes the bodies in the same transaction, and
	// whatever else was pending.
	if _, err := ms.Append("INBOX", msg(4), Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Expunge(mb.ID, []uint32{4}, false); err != nil {
		t.Fatal(err)
	}
	if p := pending(); p == 0 {
		t.Fatal("nothing pending after Expunge")
	}
	if _, err := ms.ExpungeAndPurge(mb.ID, []uint32{3}, false); err != nil {
		t.Fatal(err)
	}
	if p := pending(); p != 0 {
		t.Fatalf("pending after ExpungeAndPurge: %d", p)
	}
	if _, err := ms.ReadBody(recs[2].BlobID); !errors.Is(err, ErrExpunged) {
		t.Fatalf("body after ExpungeAndPurge: %v", err)
	}
	checkCounters(t, ms, mb.ID)
}

// TestUpgradeAccount opens an account written in layout 1 (no purge list,
// no keyword lists, no RecentUID) and checks what the upgrade fills in.
func TestUpgradeAccount(t *testing.T) {
	s := openTest(t, t.TempDir())
	dir := s.Dir()
	ms, mb := newAccount(t, s, "a@x.org")
	for i, flags := range [][]string{{"one", `\Seen`}, nil, {"two", "ONE"}} {
		m := msg(i)
		m.Flags = flags
		if _, err := ms.Append("INBOX", m, Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	// Turn the account back into layout 1.
	err := ms.update(func(tx *atx) error {
		if err := tx.Bucket(bucketMeta).Delete(keyLayout); err != nil {
			return err
		}
		if err := tx.root.DeleteBucket(bucketPurge); err != nil {
			return err
		}
		b := tx.Bucket(bucketMboxes).Bucket(u64(mb.ID))
		var raw map[string]any
		if err := json.Unmarshal(b.Get(keyInfo), &raw); err != nil {
			return err
		}
		delete(raw, "keywords")
		delete(raw, "recent_uid")
		v, _ := json.Marshal(raw)
		return b.Put(keyInfo, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir)
	defer s.Close()
	accts, _ := s.Accounts()
	ms, err = s.Mailstore(accts[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ms.MailboxByID(mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Keywords, []string{"one", "two"}) {
		t.Errorf("keywords after upgrade: %q", got.Keywords)
	}
	if got.RecentUID != got.UIDNext {
		t.Errorf("RecentUID %d after upgrade, want UIDNEXT %d (old messages are not recent)", got.RecentUID, got.UIDNext)
	}
	// The purge list exists again: an expunged body waits on it.
	if _, err := ms.Expunge(mb.ID, []uint32{1}, false); err != nil {
		t.Fatal(err)
	}
	if p, err := ms.PendingPurge(); p == 0 || err != nil {
		t.Fatalf("pending after expunge in an upgraded account: %d, %v", p, err)
	}
}
