package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// twoSessions returns two handles on one account (as two IMAP sessions
// have) and its INBOX.
func twoSessions(t *testing.T) (*Backend, *User, *User, Mailbox) {
	t.Helper()
	b := newTestBackend(t, Options{})
	a := mustUser(t, b, "a@example.org")
	other, err := b.LookupUser(context.Background(), "a@example.org")
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := a.Mailbox(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	return b, a, other, inbox
}

func appendBody(t *testing.T, u *User, body string, flags ...string) AppendResult {
	t.Helper()
	res, err := u.Append(context.Background(), Inbox, strings.NewReader(body), flags, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// bigBody spans several store chunks, so a read takes several transactions.
func bigBody(i int) string {
	return fmt.Sprintf("Subject: big %d\r\n\r\n", i) + strings.Repeat(fmt.Sprintf("line of message %d\r\n", i), 60000)
}

func TestPinKeepsExpungedBodies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pin      bool
		advance  bool // the pinned session learns of the expunge
		readable bool // after the purge had its chance
	}{
		{"no pin: the body goes", false, false, false},
		{"pinned: the body stays", true, false, true},
		{"pin advanced past the expunge: the body goes", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, reader, expunger, inbox := twoSessions(t)
			body := bigBody(1)
			appendBody(t, expunger, body)
			var pin *Pin
			if tc.pin {
				var err error
				if pin, err = reader.Pin(); err != nil {
					t.Fatal(err)
				}
				defer pin.Close()
			}
			recs, err := reader.Records(inbox.ID, []uint32{1})
			if err != nil {
				t.Fatal(err)
			}
			// The reader starts streaming the body, then the message is
			// expunged by the other session.
			r := reader.OpenBody(&recs[0])
			head := make([]byte, 100)
			if _, err := io.ReadFull(r, head); err != nil {
				t.Fatal(err)
			}
			if _, err := expunger.Expunge(inbox.ID, []uint32{1}, false); err != nil {
				t.Fatal(err)
			}
			if tc.advance {
				mb, _ := reader.MailboxByID(inbox.ID)
				pin.Advance(mb.HighestModSeq)
			}
			b.waitPurges()
			rest, err := io.ReadAll(r)
			if tc.readable {
				if err != nil || string(head)+string(rest) != body {
					t.Fatalf("pinned body read after expunge: %d bytes, %v", len(head)+len(rest), err)
				}
				if _, err := reader.Parsed(&recs[0]); err != nil {
					t.Fatalf("parsed form of pinned message: %v", err)
				}
			} else if !errors.Is(err, ErrExpunged) {
				t.Fatalf("read of purged body: %v, want ErrExpunged", err)
			}
			// The record is gone either way: a distinct error, not a bug.
			_, err = reader.Records(inbox.ID, []uint32{1})
			var ee *ExpungedError
			if !errors.Is(err, ErrExpunged) || !errors.As(err, &ee) || !slices.Equal(ee.UIDs, []uint32{1}) {
				t.Fatalf("Records of an expunged message: %v", err)
			}
			if tc.pin && !tc.advance {
				// Closing the last Pin lets the purge run.
				pin.Close()
				b.waitPurges()
				if _, err := reader.ReadBody(&recs[0]); !errors.Is(err, ErrExpunged) {
					t.Fatalf("body after the last pin closed: %v", err)
				}
			}
		})
	}
}

func TestReleaseClosesPins(t *testing.T) {
	b, reader, expunger, inbox := twoSessions(t)
	appendBody(t, expunger, "Subject: x\r\n\r\nx\r\n")
	if _, err := reader.Pin(); err != nil {
		t.Fatal(err)
	}
	recs, _ := reader.Records(inbox.ID, []uint32{1})
	if _, err := expunger.Expunge(inbox.ID, []uint32{1}, false); err != nil {
		t.Fatal(err)
	}
	b.waitPurges()
	if _, err := reader.ReadBody(&recs[0]); err != nil {
		t.Fatalf("pinned body: %v", err)
	}
	// The session ends without closing its Pin: Release does.
	reader.Release()
	reader.Release()
	b.waitPurges()
	if _, err := expunger.ReadBody(&recs[0]); !errors.Is(err, ErrExpunged) {
		t.Fatalf("body after the session's Release: %v", err)
	}
}

func TestPinTakenAfterExpungeDoesNotHold(t *testing.T) {
	b, reader, expunger, inbox := twoSessions(t)
	appendBody(t, expunger, "Subject: x\r\n\r\nx\r\n")
	keep := appendBody(t, expunger, "Subject: y\r\n\r\ny\r\n")
	old, err := reader.Pin()
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := reader.Records(inbox.ID, []uint32{1})
	if _, err := expunger.Expunge(inbox.ID, []uint32{1}, false); err != nil {
		t.Fatal(err)
	}
	// A session selecting now cannot address message 1: its Pin does not
	// hold the body once the older one advances.
	late, err := expunger.Pin()
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	old.Advance(^uint64(0) >> 1)
	b.waitPurges()
	if _, err := reader.ReadBody(&recs[0]); !errors.Is(err, ErrExpunged) {
		t.Fatalf("body held by a pin taken after its expunge: %v", err)
	}
	kept, _ := reader.Records(inbox.ID, []uint32{keep.UID})
	if _, err := reader.ReadBody(&kept[0]); err != nil {
		t.Fatalf("live body: %v", err)
	}
	old.Close()
}

// TestConcurrentExpungeAndRead runs sessions that read every body of the
// mailbox while another appends and expunges: a session that pinned before
// reading its view never sees a read fail (RFC 2180 §4.1).
func TestConcurrentExpungeAndRead(t *testing.T) {
	b, writer, _, inbox := twoSessions(t)
	const readers, rounds = 3, 15
	for i := 0; i < 4; i++ {
		appendBody(t, writer, bigBody(i))
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, readers+1)
	stop := make(chan struct{})
	for r := 0; r < readers; r++ {
		u, err := b.LookupUser(ctx, "a@example.org")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pin, err := u.Pin()
			if err != nil {
				errs <- err
				return
			}
			defer pin.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// As a session syncs: the modseq first, then the view it
				// reflects; only then may the Pin advance to it.
				mb, err := u.MailboxByID(inbox.ID)
				if err != nil {
					errs <- err
					return
				}
				uids, err := u.UIDs(inbox.ID)
				if err != nil {
					errs <- err
					return
				}
				pin.Advance(mb.HighestModSeq)
				recs, err := u.Records(inbox.ID, uids)
				if err != nil && !errors.Is(err, ErrExpunged) {
					errs <- err
					return
				}
				// A record read after the view is a record the view can
				// address: its body must read whole, however long ago the
				// message was expunged meanwhile.
				for i := range recs {
					got, err := io.ReadAll(u.OpenBody(&recs[i]))
					if err != nil {
						errs <- fmt.Errorf("UID %d: %w", recs[i].UID, err)
						return
					}
					if int64(len(got)) != recs[i].Size || !bytes.HasPrefix(got, []byte("Subject: big")) {
						errs <- fmt.Errorf("UID %d: read %d of %d bytes", recs[i].UID, len(got), recs[i].Size)
						return
					}
				}
			}
		}()
	}
	for i := 0; i < rounds; i++ {
		appendBody(t, writer, bigBody(100+i))
		// Expunge from the middle: readers walk the view in UID order,
		// so they are likely reading it or about to.
		uids, _ := writer.UIDs(inbox.ID)
		if _, err := writer.Expunge(inbox.ID, uids[len(uids)/2:len(uids)/2+1], false); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Once every session is gone, nothing is kept.
	b.waitPurges()
	ms := writer.ms
	if p, err := ms.PendingPurge(); p != 0 || err != nil {
		t.Fatalf("bodies still pending after all pins closed: %d, %v", p, err)
	}
}

func TestClaimRecentBetweenSessions(t *testing.T) {
	_, a, bsess, inbox := twoSessions(t)
	for i := 0; i < 2; i++ {
		appendBody(t, a, "Subject: r\r\n\r\nr\r\n")
	}
	if n, _ := a.RecentCount(inbox.ID); n != 2 {
		t.Fatalf("RecentCount before any SELECT = %d, want 2", n)
	}
	f, n, err := a.ClaimRecent(inbox.ID)
	if err != nil || f != 1 || n != 3 {
		t.Fatalf("SELECT by A claims [%d,%d), %v; want [1,3)", f, n, err)
	}
	if f, n, _ := bsess.ClaimRecent(inbox.ID); f != n {
		t.Fatalf("SELECT by B claims [%d,%d), want nothing", f, n)
	}
	appendBody(t, a, "Subject: r\r\n\r\nr\r\n")
	if n, _ := a.RecentCount(inbox.ID); n != 1 {
		t.Fatalf("RecentCount (STATUS) after a new message = %d, want 1", n)
	}
	if f, n, _ := bsess.ClaimRecent(inbox.ID); f != 3 || n != 4 {
		t.Fatalf("B learns of the new message: [%d,%d), want [3,4)", f, n)
	}
	if _, _, err := a.ClaimRecent(12345); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("claim in a missing mailbox: %v", err)
	}
}

func TestKeywordsListedOnMailbox(t *testing.T) {
	_, u, _, inbox := twoSessions(t)
	appendBody(t, u, "Subject: k\r\n\r\nk\r\n", "$Forwarded", FlagSeen)
	appendBody(t, u, "Subject: k\r\n\r\nk\r\n")
	if _, _, err := u.StoreFlags(inbox.ID, []uint32{2}, FlagsAdd, []string{"Project-X", "$forwarded"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Copy(inbox.ID, []uint32{2}, "Archive", false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mailbox string
		want    []string
	}{
		{Inbox, []string{"$Forwarded", "Project-X"}},
		{"Archive", []string{"Project-X", "$forwarded"}},
		{"Sent", nil},
	} {
		mb, err := u.Mailbox(tc.mailbox)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(mb.Keywords, tc.want) {
			t.Errorf("%s keywords %q, want %q", tc.mailbox, mb.Keywords, tc.want)
		}
	}
}

// TestRestartEmptiesPurgeList stops the backend while a session's Pin
// holds an expunged body: after the restart no session can address it,
// and the first use of the account deletes it.
func TestRestartEmptiesPurgeList(t *testing.T) {
	dir := t.TempDir()
	b, err := New(Options{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	u := mustUser(t, b, "a@example.org")
	inbox, _ := u.Mailbox(Inbox)
	appendBody(t, u, "Subject: x\r\n\r\nx\r\n")
	if _, err := u.Pin(); err != nil {
		t.Fatal(err)
	}
	recs, _ := u.Records(inbox.ID, []uint32{1})
	if _, err := u.Expunge(inbox.ID, []uint32{1}, false); err != nil {
		t.Fatal(err)
	}
	if p, _ := u.ms.PendingPurge(); p == 0 {
		t.Fatal("pinned body not on the purge list")
	}
	b.Close() // the session's Pin was never closed
	b, err = New(Options{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	u, err = b.LookupUser(context.Background(), "a@example.org")
	if err != nil {
		t.Fatal(err)
	}
	b.waitPurges()
	if p, _ := u.ms.PendingPurge(); p != 0 {
		t.Fatalf("purge list after restart: %d", p)
	}
	if _, err := u.ReadBody(&recs[0]); !errors.Is(err, ErrExpunged) {
		t.Fatalf("body after restart: %v", err)
	}
}
