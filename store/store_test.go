package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newAccount creates an account with an INBOX and returns its mail file.
func newAccount(t testing.TB, s *Store, addr string) (*Mailstore, Mailbox) {
	t.Helper()
	acct, err := s.CreateAccount(addr, "hash")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.Mailstore(acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := ms.CreateMailbox("INBOX", "")
	if err != nil {
		t.Fatal(err)
	}
	return ms, mb
}

func msg(i int) NewMessage {
	return NewMessage{Body: []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)), InternalDate: time.Unix(int64(1e9+i), 0)}
}

// checkCounters recomputes a mailbox's counters from its messages and
// compares them with the stored ones.
func checkCounters(t *testing.T, ms *Mailstore, id uint64) Mailbox {
	t.Helper()
	mb, err := ms.MailboxByID(id)
	if err != nil {
		t.Fatal(err)
	}
	var n, unseen, deleted uint32
	var size int64
	var lastUID uint32
	err = ms.Messages(id, 1, ^uint32(0), func(m Message) error {
		if m.UID <= lastUID {
			t.Errorf("UIDs not ascending: %d after %d", m.UID, lastUID)
		}
		lastUID = m.UID
		n++
		size += m.Size
		if !m.Has(FlagSeen) {
			unseen++
		}
		if m.Has(FlagDeleted) {
			deleted++
		}
		if m.ModSeq > mb.HighestModSeq {
			t.Errorf("message modseq %d > HIGHESTMODSEQ %d", m.ModSeq, mb.HighestModSeq)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if mb.Messages != n || mb.Unseen != unseen || mb.Deleted != deleted || mb.Size != size {
		t.Errorf("counters %d/%d/%d/%d, recomputed %d/%d/%d/%d (messages/unseen/deleted/size)",
			mb.Messages, mb.Unseen, mb.Deleted, mb.Size, n, unseen, deleted, size)
	}
	if lastUID >= mb.UIDNext {
		t.Errorf("UID %d >= UIDNEXT %d", lastUID, mb.UIDNext)
	}
	return mb
}

func TestUIDsAndModSeqsIncrease(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	var lastModSeq uint64
	for i := 1; i <= 10; i++ {
		res, err := ms.Append("INBOX", msg(i), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if res.UID != uint32(i) || res.ModSeq <= lastModSeq || res.UIDValidity != mb.UIDValidity {
			t.Fatalf("append %d: %+v (last modseq %d)", i, res, lastModSeq)
		}
		lastModSeq = res.ModSeq
	}
	// Expunging the newest messages must not let their UIDs come back.
	if _, err := ms.Expunge(mb.ID, []uint32{9, 10}, false); err != nil {
		t.Fatal(err)
	}
	res, err := ms.Append("INBOX", msg(11), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if res.UID != 11 {
		t.Fatalf("UID after expunge = %d, want 11", res.UID)
	}
	// A flag change raises the message's modseq above everything before it.
	upd, _, err := ms.StoreFlags(mb.ID, []uint32{1}, FlagsAdd, []string{`\seen`, "$Work"}, 0)
	if err != nil || len(upd) != 1 || upd[0].ModSeq <= res.ModSeq {
		t.Fatalf("store flags: %+v %v", upd, err)
	}
	if got := upd[0].Flags; len(got) != 2 || got[0] != FlagSeen || got[1] != "$Work" {
		t.Fatalf("flags = %q", got)
	}
	// Storing the same flags again changes nothing, so no new modseq.
	again, _, err := ms.StoreFlags(mb.ID, []uint32{1}, FlagsAdd, []string{FlagSeen}, 0)
	if err != nil || len(again) != 0 {
		t.Fatalf("idempotent store: %+v %v", again, err)
	}
	checkCounters(t, ms, mb.ID)
}

func TestTombstonesAndChangeLog(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	for i := 1; i <= 5; i++ {
		if _, err := ms.Append("INBOX", msg(i), Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	base := checkCounters(t, ms, mb.ID).HighestModSeq
	if _, _, err := ms.StoreFlags(mb.ID, []uint32{2, 4}, FlagsAdd, []string{FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	gone, err := ms.Expunge(mb.ID, nil, true)
	if err != nil || fmt.Sprint(gone) != "[2 4]" {
		t.Fatalf("expunge = %v, %v", gone, err)
	}
	if _, _, err := ms.StoreFlags(mb.ID, []uint32{3}, FlagsAdd, []string{FlagSeen}, 0); err != nil {
		t.Fatal(err)
	}
	ch, err := ms.ChangesSince(mb.ID, base)
	if err != nil {
		t.Fatal(err)
	}
	// Each message appears once, at its latest change, oldest first.
	want := []struct {
		uid      uint32
		expunged bool
	}{{2, true}, {4, true}, {3, false}}
	if len(ch) != len(want) {
		t.Fatalf("changes = %+v", ch)
	}
	for i, w := range want {
		if ch[i].UID != w.uid || ch[i].Expunged != w.expunged || ch[i].ModSeq <= base || (i > 0 && ch[i].ModSeq < ch[i-1].ModSeq) {
			t.Fatalf("change %d = %+v, want %+v", i, ch[i], w)
		}
	}
	// Changes since the very start include the surviving messages.
	all, _ := ms.ChangesSince(mb.ID, 0)
	if len(all) != 5 {
		t.Fatalf("all changes = %+v", all)
	}
	checkCounters(t, ms, mb.ID)
}

func TestCountersThroughEveryOperation(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, inbox := newAccount(t, s, "a@x.org")
	arch, err := ms.CreateMailbox("Archive", `\Archive`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 8; i++ {
		m := msg(i)
		if i%2 == 0 {
			m.Flags = []string{FlagSeen}
		}
		if _, err := ms.Append("INBOX", m, Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"set flags", func() error {
			_, _, err := ms.StoreFlags(inbox.ID, []uint32{1, 2, 3}, FlagsSet, []string{FlagDeleted, "kw"}, 0)
			return err
		}},
		{"remove flags", func() error {
			_, _, err := ms.StoreFlags(inbox.ID, []uint32{3}, FlagsRemove, []string{FlagDeleted}, 0)
			return err
		}},
		{"copy", func() error { _, err := ms.Copy(inbox.ID, []uint32{3, 4, 5}, arch.ID, false, Limits{}); return err }},
		{"move", func() error { _, err := ms.Copy(inbox.ID, []uint32{6, 7}, arch.ID, true, Limits{}); return err }},
		{"expunge deleted", func() error { _, err := ms.Expunge(inbox.ID, nil, true); return err }},
		{"expunge given", func() error { _, err := ms.Expunge(arch.ID, []uint32{1}, false); return err }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		checkCounters(t, ms, inbox.ID)
		checkCounters(t, ms, arch.ID)
	}
	a := checkCounters(t, ms, arch.ID)
	i := checkCounters(t, ms, inbox.ID)
	if i.Messages != 4 || a.Messages != 4 {
		t.Fatalf("inbox %d, archive %d messages; want 4 and 4", i.Messages, a.Messages)
	}
	size, _ := ms.AccountSize()
	if size != i.Size+a.Size {
		t.Fatalf("account size %d, mailboxes %d", size, i.Size+a.Size)
	}
	// Copied bodies are shared; expunging one copy keeps the other readable.
	msgs, _ := ms.MessagesByUID(arch.ID, []uint32{2})
	if len(msgs) != 1 {
		t.Fatal("copy of UID 4 missing")
	}
	if b, err := ms.ReadBody(msgs[0].BlobID); err != nil || !bytes.Contains(b, []byte("body 4")) {
		t.Fatalf("shared body: %q %v", b, err)
	}
}

func TestUnchangedSince(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	r1, _ := ms.Append("INBOX", msg(1), Limits{})
	ms.Append("INBOX", msg(2), Limits{})
	upd, _, _ := ms.StoreFlags(mb.ID, []uint32{2}, FlagsAdd, []string{FlagFlagged}, 0)
	// RFC 7162 §3.1.3: UID 2 changed after r1.ModSeq, so it is refused.
	_, modified, err := ms.StoreFlags(mb.ID, []uint32{1, 2}, FlagsAdd, []string{FlagSeen}, upd[0].ModSeq-1)
	if err != nil || fmt.Sprint(modified) != "[2]" {
		t.Fatalf("modified = %v, %v (r1 %d)", modified, err, r1.ModSeq)
	}
}

func TestRestartPersistence(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ms, mb := newAccount(t, s, "a@x.org")
	for i := 1; i <= 3; i++ {
		ms.Append("INBOX", msg(i), Limits{})
	}
	ms.StoreFlags(mb.ID, []uint32{2}, FlagsAdd, []string{FlagAnswered, "$Label1"}, 0)
	before := checkCounters(t, ms, mb.ID)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, dir)
	defer s.Close()
	acct, err := s.Account("a@x.org")
	if err != nil {
		t.Fatal(err)
	}
	ms, _ = s.Mailstore(acct.ID)
	after := checkCounters(t, ms, mb.ID)
	if before.UIDValidity != after.UIDValidity || before.UIDNext != after.UIDNext || before.HighestModSeq != after.HighestModSeq {
		t.Fatalf("before %+v\nafter %+v", before, after)
	}
	msgs, _ := ms.MessagesByUID(mb.ID, []uint32{2})
	if fmt.Sprint(msgs[0].Flags) != `[\Answered $Label1]` {
		t.Fatalf("flags after restart = %v", msgs[0].Flags)
	}
	// A recreated mailbox gets a new UIDVALIDITY (RFC 9051 §2.3.1.1).
	if err := ms.DeleteMailbox("INBOX"); err != nil {
		t.Fatal(err)
	}
	nb, _ := ms.CreateMailbox("INBOX", "")
	if nb.UIDValidity == before.UIDValidity {
		t.Fatal("UIDVALIDITY reused after recreate")
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	for _, accounts := range []int{1, 20} {
		t.Run(fmt.Sprintf("%d accounts", accounts), func(t *testing.T) {
			s := openTest(t, t.TempDir())
			defer s.Close()
			stores := make([]*Mailstore, accounts)
			for i := range stores {
				stores[i], _ = newAccount(t, s, fmt.Sprintf("u%d@x.org", i))
			}
			const writers, each = 40, 25
			var wg sync.WaitGroup
			errs := make(chan error, writers*each)
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						if _, err := stores[(w+i)%accounts].Append("INBOX", msg(i), Limits{}); err != nil {
							errs <- err
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			total := uint32(0)
			for _, ms := range stores {
				mb, _ := ms.Mailbox("INBOX")
				total += checkCounters(t, ms, mb.ID).Messages
				uids, _ := ms.UIDs(mb.ID)
				for i, uid := range uids {
					if uid != uint32(i+1) {
						t.Fatalf("UIDs not dense: %v...", uids[:i+1])
					}
				}
			}
			if total != writers*each {
				t.Fatalf("stored %d messages, want %d", total, writers*each)
			}
		})
	}
}

func TestFailedWriteDoesNotUndoOthers(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	var wg sync.WaitGroup
	var bad, good sync.Map
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "INBOX"
			if i%3 == 0 {
				name = "Missing" // fails inside the shared transaction
			}
			_, err := ms.Append(name, msg(i), Limits{})
			if name == "INBOX" {
				good.Store(i, err)
			} else {
				bad.Store(i, err)
			}
		}()
	}
	wg.Wait()
	good.Range(func(k, v any) bool {
		if v != nil {
			t.Errorf("good append %v failed: %v", k, v)
		}
		return true
	})
	bad.Range(func(k, v any) bool {
		if !errors.Is(v.(error), ErrNotFound) {
			t.Errorf("bad append %v: %v", k, v)
		}
		return true
	})
	if got := checkCounters(t, ms, mb.ID).Messages; got != 66 {
		t.Fatalf("%d messages, want 66", got)
	}
}

func TestQuota(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	m := msg(1)
	quota := Limits{Bytes: int64(len(m.Body)*2 + 1)}
	for i := 0; i < 2; i++ {
		if _, err := ms.Append("INBOX", m, quota); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ms.Append("INBOX", m, quota); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("third append: %v, want ErrOverQuota", err)
	}
	if got := checkCounters(t, ms, mb.ID).Messages; got != 2 {
		t.Fatalf("%d messages after refused append", got)
	}
	if size, _ := ms.AccountSize(); size != int64(2*len(m.Body)) {
		t.Fatalf("account size %d after refused append", size)
	}
}

func TestLargeMessageStreams(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, mb := newAccount(t, s, "a@x.org")
	body := make([]byte, 5*chunkSize+123)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	res, err := ms.Append("INBOX", NewMessage{Body: body}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := ms.MessagesByUID(mb.ID, []uint32{res.UID})
	r := ms.OpenBody(msgs[0].BlobID, msgs[0].Size)
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("streamed body differs (len %d, err %v)", len(got), err)
	}
	// Reads across a chunk boundary.
	p := make([]byte, 100)
	if _, err := r.ReadAt(p, chunkSize-50); err != nil || !bytes.Equal(p, body[chunkSize-50:chunkSize+50]) {
		t.Fatalf("ReadAt across chunks: %v", err)
	}
	// Expunge puts the body on the purge list; purging frees every chunk.
	ms.Expunge(mb.ID, []uint32{res.UID}, false)
	if got, err := ms.ReadBody(msgs[0].BlobID); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body after expunge, before purge: len %d, %v", len(got), err)
	}
	if n, pending, err := ms.PurgeBlobs(^uint64(0)); n != 1 || pending != 0 || err != nil {
		t.Fatalf("PurgeBlobs = %d, %d, %v; want 1, 0, nil", n, pending, err)
	}
	if _, err := ms.ReadBody(msgs[0].BlobID); !errors.Is(err, ErrExpunged) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("body after purge: %v", err)
	}
	if _, err := r.ReadAt(p, 0); !errors.Is(err, ErrExpunged) {
		t.Fatalf("ReadAt after purge: %v", err)
	}
}

func TestMailboxes(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, _ := newAccount(t, s, "a@x.org")
	if _, err := ms.CreateMailbox("INBOX", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	ms.CreateMailbox("a", "")
	ms.CreateMailbox("a/b", "")
	r, _ := ms.Append("a/b", msg(1), Limits{})
	if err := ms.RenameMailboxes([][2]string{{"a", "c"}, {"a/b", "c/b"}}); err != nil {
		t.Fatal(err)
	}
	cb, err := ms.Mailbox("c/b")
	if err != nil || cb.UIDValidity != r.UIDValidity || cb.Messages != 1 {
		t.Fatalf("renamed: %+v %v", cb, err)
	}
	if _, err := ms.Mailbox("a/b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old name: %v", err)
	}
	if err := ms.RenameMailboxes([][2]string{{"c", "INBOX"}}); !errors.Is(err, ErrExists) {
		t.Fatalf("rename onto existing: %v", err)
	}
	// SetSubscribed reports a change only: a name that is a prefix of a
	// subscribed one is not subscribed itself.
	for _, c := range []struct {
		name        string
		on, changed bool
	}{
		{"nonexistent", true, true}, {"nonexistent", true, false}, {"non", false, false},
		{"non", true, true}, {"non", false, true}, {"zzz", false, false},
	} {
		if changed, err := ms.SetSubscribed(c.name, c.on); err != nil || changed != c.changed {
			t.Fatalf("SetSubscribed(%q, %v) = %v, %v; want changed %v", c.name, c.on, changed, err, c.changed)
		}
	}
	subs, _ := ms.Subscriptions()
	if fmt.Sprint(subs) != "[nonexistent]" {
		t.Fatalf("subs = %v", subs)
	}
}

func TestAccountsAndAliases(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	a, err := s.CreateAccount("a@x.org", "h")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAccount("a@x.org", "h"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := s.PutAlias("al@y.org", "a@x.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAlias("al2@y.org", "nobody@x.org"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alias to unknown: %v", err)
	}
	if _, err := s.CreateAccount("al@y.org", "h"); !errors.Is(err, ErrExists) {
		t.Fatalf("account over alias: %v", err)
	}
	if tgt, _ := s.Alias("al@y.org"); tgt != "a@x.org" {
		t.Fatalf("alias target %q", tgt)
	}
	s.Mailstore(a.ID)
	if err := s.DeleteAccount("a@x.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Alias("al@y.org"); !errors.Is(err, ErrNotFound) {
		t.Fatal("alias survived its account")
	}
	if _, err := os.Stat(filepath.Join(dir, "accounts", "1.db")); !os.IsNotExist(err) {
		t.Fatalf("account file survived: %v", err)
	}
	// A second process cannot open the same store.
	if _, err := Open(Options{Dir: dir, LockTimeout: 10 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

func TestBackupRoundTrip(t *testing.T) {
	s := openTest(t, t.TempDir())
	ms, mb := newAccount(t, s, "a@x.org")
	s.PutAlias("b@x.org", "a@x.org")
	for i := 1; i <= 20; i++ {
		ms.Append("INBOX", msg(i), Limits{})
	}
	// Writers keep going while the backup runs: the copy must still be
	// consistent (counters match the messages it holds).
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				ms.Append("INBOX", msg(100+i), Limits{})
			}
		}
	}()
	bdir := t.TempDir()
	err := s.Backup(bdir, nil)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	r := openTest(t, bdir)
	defer r.Close()
	acct, err := r.Account("a@x.org")
	if err != nil {
		t.Fatal(err)
	}
	if tgt, _ := r.Alias("b@x.org"); tgt != "a@x.org" {
		t.Fatal("alias not restored")
	}
	rms, _ := r.Mailstore(acct.ID)
	got := checkCounters(t, rms, mb.ID)
	if got.Messages < 20 {
		t.Fatalf("restored %d messages, want >= 20", got.Messages)
	}
	msgs, _ := rms.MessagesByUID(mb.ID, []uint32{7})
	if b, err := rms.ReadBody(msgs[0].BlobID); err != nil || !bytes.Contains(b, []byte("body 7")) {
		t.Fatalf("restored body: %q %v", b, err)
	}
}
