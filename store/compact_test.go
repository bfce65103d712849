package store

import (
	"os"
	"sync"
	"testing"
)

// TestCompactReclaimsSpace: a mailbox emptied of big messages keeps its
// file size until Compact, which shrinks the file while deliveries go on
// (they wait, then land in the new file), keeps every message and counter,
// and keeps the sequences: the next mailbox and UID are new ones.
func TestCompactReclaimsSpace(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	for i := 0; i < 60; i++ {
		if _, err := ms.Append("INBOX", bigMsg(i, 200<<10), Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	keep, err := ms.Append("INBOX", msg(1000), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	uids, _ := ms.UIDs(mb.ID)
	if _, err := ms.ExpungeAndPurge(mb.ID, uids[:60], false); err != nil { // no session can read them
		t.Fatal(err)
	}
	size := func() int64 {
		fi, err := os.Stat(ms.path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	if before < 10<<20 {
		t.Fatalf("file is %d bytes before compaction: too small for this test", before)
	}
	// Hold it like a session does: compaction must not need it closed.
	release, err := ms.Hold()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var calls int
	var last [2]int64
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ms.Append("INBOX", msg(2000+i), Limits{}); err != nil {
				t.Error(err)
			}
		}()
	}
	acct, _ := s.Account("a@x.org")
	res, err := s.Compact(acct.ID, func(done, total int64) { calls++; last = [2]int64{done, total} })
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	// An append that lands after the compaction may grow the new file by
	// bbolt's 16 MiB allocation step: the file stays well below before.
	if now := size(); res.Before != before || res.After >= before/4 || now < res.After || now > res.After+17<<20 {
		t.Fatalf("compaction: %+v (file before %d, now %d): want it a quarter the size or less", res, before, size())
	}
	if calls == 0 || last[0] != last[1] {
		t.Fatalf("progress: %d calls, last %v", calls, last)
	}
	info := checkCounters(t, ms, mb.ID)
	if info.Messages != 9 {
		t.Fatalf("%d messages after compaction, want 9", info.Messages)
	}
	if body, err := ms.ReadBody(mustMessage(t, ms, mb.ID, keep.UID).BlobID); err != nil || string(body) != string(msg(1000).Body) {
		t.Fatalf("kept message after compaction: %q, %v", body, err)
	}
	next, err := ms.Append("INBOX", msg(3000), Limits{})
	if err != nil || next.UID != info.UIDNext {
		t.Fatalf("append after compaction: UID %d, %v; want %d", next.UID, err, info.UIDNext)
	}
	nb, err := ms.CreateMailbox("New", "")
	if err != nil {
		t.Fatal(err)
	}
	all, _ := ms.Mailboxes()
	for _, b := range all {
		if b.Name != "New" && b.ID == nb.ID {
			t.Fatalf("mailbox ID %d handed out twice", nb.ID)
		}
	}
	// And a restart sees the compacted file.
	dir := s.Dir()
	release()
	s.Close()
	r := openTest(t, dir)
	defer r.Close()
	rms, _ := r.Mailstore(acct.ID)
	if got := checkCounters(t, rms, mb.ID).Messages; got != 10 {
		t.Fatalf("after restart: %d messages, want 10", got)
	}
}

func mustMessage(t *testing.T, ms *Mailstore, box uint64, uid uint32) *Message {
	t.Helper()
	msgs, err := ms.MessagesByUID(box, []uint32{uid})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("UID %d: %v, %v", uid, msgs, err)
	}
	return &msgs[0]
}
