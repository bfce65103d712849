package backend

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestAccountWatcher: an account watcher sees every kind of change of its
// account, made through any handle or by delivery, coalesced by mailbox,
// and nothing of other accounts.
func TestAccountWatcher(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	u := mustUser(t, b, "alice@example.org")
	other := mustUser(t, b, "bob@example.org")
	// A second handle of the same account, as a second session has.
	u2, err := b.LookupUser(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	w := u.WatchAccount(0)
	defer w.Close()
	mbID := func(name string) uint64 {
		t.Helper()
		mb, err := u.Mailbox(name)
		if err != nil {
			t.Fatal(err)
		}
		return mb.ID
	}
	msg := "Subject: x\r\n\r\nhi\r\n"
	appendTo := func(name string) uint32 {
		t.Helper()
		res, err := u2.Append(ctx, name, strings.NewReader(msg), nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return res.UID
	}
	take := func() AccountChanges {
		t.Helper()
		select {
		case <-w.C():
		default:
			t.Fatal("account watcher not woken")
		}
		return w.Take()
	}
	inbox := mbID("INBOX")
	steps := []struct {
		name string
		do   func()
		want func() AccountChanges
	}{
		{"create", func() {
			if err := u2.CreateMailbox("Work", ""); err != nil {
				t.Fatal(err)
			}
		}, func() AccountChanges {
			return AccountChanges{Events: []MailboxEvent{{Kind: MailboxCreated, Name: "Work"}}}
		}},
		{"deliveries and appends coalesce", func() {
			deliver(t, b, msg, "alice@example.org")
			deliver(t, b, msg, "alice@example.org")
			appendTo("Work")
		}, func() AccountChanges {
			return AccountChanges{Mailboxes: map[uint64]ChangeKind{inbox: ChangeNew, mbID("Work"): ChangeNew}}
		}},
		{"flags and expunge", func() {
			if _, _, err := u2.StoreFlags(inbox, []uint32{1}, FlagsAdd, []string{FlagDeleted}, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := u2.Expunge(inbox, nil, true); err != nil {
				t.Fatal(err)
			}
		}, func() AccountChanges {
			return AccountChanges{Mailboxes: map[uint64]ChangeKind{inbox: ChangeFlags | ChangeExpunge}}
		}},
		{"move", func() {
			if _, err := u2.Copy(inbox, []uint32{2}, "Work", true); err != nil {
				t.Fatal(err)
			}
		}, func() AccountChanges {
			return AccountChanges{Mailboxes: map[uint64]ChangeKind{inbox: ChangeExpunge, mbID("Work"): ChangeNew}}
		}},
		{"subscribe, twice, and unsubscribe", func() {
			for _, on := range []bool{true, true, false} {
				if err := u2.Subscribe("Work", on); err != nil {
					t.Fatal(err)
				}
			}
		}, func() AccountChanges {
			return AccountChanges{Events: []MailboxEvent{{Kind: MailboxSubscribed, Name: "Work"}, {Kind: MailboxUnsubscribed, Name: "Work"}}}
		}},
		{"rename with a child", func() {
			if err := u2.CreateMailbox("Work/2024", ""); err != nil {
				t.Fatal(err)
			}
			if err := u2.RenameMailbox("Work", "Job"); err != nil {
				t.Fatal(err)
			}
		}, func() AccountChanges {
			return AccountChanges{Events: []MailboxEvent{
				{Kind: MailboxCreated, Name: "Work/2024"},
				{Kind: MailboxRenamed, Name: "Job", OldName: "Work"},
				{Kind: MailboxRenamed, Name: "Job/2024", OldName: "Work/2024"},
			}}
		}},
		{"rename INBOX", func() {
			if err := u2.RenameMailbox("INBOX", "Old"); err != nil {
				t.Fatal(err)
			}
		}, func() AccountChanges {
			return AccountChanges{
				Mailboxes: map[uint64]ChangeKind{inbox: ChangeExpunge, mbID("Old"): ChangeNew},
				Events:    []MailboxEvent{{Kind: MailboxCreated, Name: "Old"}},
			}
		}},
		{"delete", func() {
			if err := u2.DeleteMailbox("Job/2024"); err != nil {
				t.Fatal(err)
			}
		}, func() AccountChanges {
			return AccountChanges{Events: []MailboxEvent{{Kind: MailboxDeleted, Name: "Job/2024"}}}
		}},
	}
	for _, st := range steps {
		st.do()
		got := take()
		if want := st.want(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", st.name, got, want)
		}
	}
	// Another account's changes and a handle's own watcher are apart.
	if err := other.CreateMailbox("Elsewhere", ""); err != nil {
		t.Fatal(err)
	}
	deliver(t, b, msg, "bob@example.org")
	select {
	case <-w.C():
		t.Errorf("woken by another account: %+v", w.Take())
	default:
	}
	w.Close()
	if err := u2.CreateMailbox("After", ""); err != nil {
		t.Fatal(err)
	}
	if got := w.Take(); !got.Empty() {
		t.Errorf("a closed watcher gathered %+v", got)
	}
}

// TestAccountWatcherOverflow: past its limit a watcher drops what it holds
// and says so once; after the Take it gathers again.
func TestAccountWatcherOverflow(t *testing.T) {
	b := newTestBackend(t, Options{})
	u := mustUser(t, b, "alice@example.org")
	w := u.WatchAccount(3)
	defer w.Close()
	for _, n := range []string{"a", "b", "c"} {
		if err := u.CreateMailbox(n, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.Take(); len(got.Events) != 3 || got.Overflow {
		t.Fatalf("at the limit: %+v", got)
	}
	for _, n := range []string{"d", "e", "f", "g"} {
		if err := u.CreateMailbox(n, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.Take(); !reflect.DeepEqual(got, AccountChanges{Overflow: true}) {
		t.Fatalf("over the limit: %+v", got)
	}
	if err := u.Subscribe("a", true); err != nil {
		t.Fatal(err)
	}
	if got := w.Take(); !reflect.DeepEqual(got, AccountChanges{Events: []MailboxEvent{{Kind: MailboxSubscribed, Name: "a"}}}) {
		t.Fatalf("after the overflow: %+v", got)
	}
}
