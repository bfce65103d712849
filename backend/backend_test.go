package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func newTestBackend(t testing.TB, opts Options) *Backend {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	opts.NoSync = true
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func mustUser(t testing.TB, b *Backend, addr string) *User {
	t.Helper()
	ctx := context.Background()
	if err := b.CreateUser(ctx, addr, "secret"); err != nil {
		t.Fatal(err)
	}
	u, err := b.LookupUser(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func deliver(t testing.TB, b *Backend, body string, rcpts ...string) {
	t.Helper()
	ctx := context.Background()
	var rs []Recipient
	for _, r := range rcpts {
		rr, err := b.ResolveRecipient(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, rr)
	}
	for i, err := range b.Deliver(ctx, []byte(body), rs) {
		if err != nil {
			t.Fatalf("deliver to %s: %v", rcpts[i], err)
		}
	}
}

func TestNormalizeAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Alice@Example.ORG", "alice@example.org"},
		{" bob@x.org ", "bob@x.org"},
		{"bob", ""}, {"@x.org", ""}, {"bob@", ""}, {"a@b@c", ""}, {"a b@x.org", ""},
		{"a@x..org", ""}, {"<a@x.org>", ""}, {".a@x.org", ""},
	} {
		got, err := NormalizeAddress(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrInvalidAddress) {
				t.Errorf("%q: got %q, %v; want ErrInvalidAddress", tc.in, got, err)
			}
		} else if got != tc.want || err != nil {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNormalizeMailboxName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"inbox", "INBOX"}, {"InBox/Sub", "INBOX/Sub"}, {"Work/", "Work"}, {"Réunions", "Réunions"},
		{"a&b", "a&b"}, {"Inboxes", "Inboxes"},
		{"", ""}, {"/a", ""}, {"a//b", ""}, {"a*", ""}, {"a%", ""}, {"a\x01", ""}, {"\xff", ""},
	} {
		got, err := NormalizeMailboxName(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrInvalidMailbox) {
				t.Errorf("%q: got %q, %v; want ErrInvalidMailbox", tc.in, got, err)
			}
		} else if got != tc.want || err != nil {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestUsersAndLogin(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	mustUser(t, b, "Alice@Example.org")
	for _, tc := range []struct {
		name, addr, pass string
		want             error
	}{
		{"duplicate", "alice@example.org", "x", ErrExists},
		{"malformed", "alice", "x", ErrInvalidAddress},
		{"empty password", "carol@example.org", "", ErrEmptyPassword},
	} {
		if err := b.CreateUser(ctx, tc.addr, tc.pass); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := b.Login(ctx, "ALICE@example.org", "secret", "127.0.0.1"); err != nil {
		t.Fatalf("login: %v", err)
	}
	// Unknown user and wrong password are indistinguishable.
	_, e1 := b.Login(ctx, "nobody@example.org", "secret", "127.0.0.1")
	_, e2 := b.Login(ctx, "alice@example.org", "wrong", "127.0.0.1")
	if e1 != ErrAuthFailed || e2 != ErrAuthFailed {
		t.Fatalf("failures: %v / %v", e1, e2)
	}
	if err := b.SetPassword(ctx, "alice@example.org", "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Login(ctx, "alice@example.org", "secret", "127.0.0.1"); err != ErrAuthFailed {
		t.Fatal("old password still accepted (login cache not cleared)")
	}
	if _, err := b.Login(ctx, "alice@example.org", "new", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	b.UpdateAccount(ctx, "alice@example.org", 0, true)
	if _, err := b.Login(ctx, "alice@example.org", "new", "127.0.0.1"); err != ErrAuthFailed {
		t.Fatalf("disabled account: %v", err)
	}
	if err := b.SetPassword(ctx, "nobody@example.org", "x"); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("passwd unknown: %v", err)
	}
	if got := b.Domains(); fmt.Sprint(got) != "[example.org]" {
		t.Fatalf("domains = %v", got)
	}
	if err := b.DeleteUser(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if len(b.Domains()) != 0 {
		t.Fatal("domain survived its last account")
	}
}

func TestPasswordHashes(t *testing.T) {
	h, err := HashPassword("pw")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q, %v", h, err)
	}
	// A bcrypt hash (as imported from Dovecot BLF-CRYPT) also verifies.
	bch, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	bc := string(bch)
	for _, tc := range []struct {
		hash, pw string
		ok       bool
	}{{h, "pw", true}, {h, "pW", false}, {bc, "pw", true}, {bc, "x", false}, {"garbage", "pw", false}, {dummyHash, "", false}} {
		if got := VerifyPassword(tc.hash, tc.pw); got != tc.ok {
			t.Errorf("VerifyPassword(%q, %q) = %v", tc.hash, tc.pw, got)
		}
	}
}

func TestLoginThrottled(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := NewAuthLimiter(AuthLimiterOptions{MaxFailures: 3, Delay: time.Millisecond, Now: func() time.Time { return now }})
	b := newTestBackend(t, Options{Limiter: l})
	mustUser(t, b, "a@x.org")
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := b.Login(ctx, "a@x.org", "bad", "192.0.2.1"); err != ErrAuthFailed {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	// The address is locked now: even the right password is refused there,
	// without being checked; not from elsewhere (one address is no
	// distributed attack on the account).
	if _, err := b.Login(ctx, "a@x.org", "secret", "192.0.2.1"); err != ErrAuthLocked {
		t.Fatalf("after 3 failures: %v", err)
	}
	if _, err := b.Login(ctx, "a@x.org", "secret", "192.0.2.2"); err != nil {
		t.Fatalf("from another address: %v", err)
	}
	now = now.Add(5*time.Minute + time.Second)
	if _, err := b.Login(ctx, "a@x.org", "secret", "192.0.2.1"); err != nil {
		t.Fatalf("after lockout: %v", err)
	}
}

func TestResolveRecipient(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	mustUser(t, b, "alice@example.org")
	mustUser(t, b, "full@example.org")
	mustUser(t, b, "off@example.org")
	b.AddAlias(ctx, "postmaster@example.org", "alice@example.org")
	deliver(t, b, "Subject: fill\r\n\r\nmore than ten bytes\r\n", "full@example.org")
	b.UpdateAccount(ctx, "full@example.org", 10, false)
	b.SetDisabled(ctx, "off@example.org", true, true)
	mustUser(t, b, "paused@example.org")
	b.SetDisabled(ctx, "paused@example.org", true, false)
	for _, tc := range []struct {
		rcpt, account string
		err           error
	}{
		{"Alice@EXAMPLE.org", "alice@example.org", nil},
		{"alice+lists@example.org", "alice@example.org", nil},
		{"PostMaster@example.org", "alice@example.org", nil},
		{"postmaster+x@example.org", "alice@example.org", nil},
		{"bob@example.org", "", ErrNoSuchUser},
		{"alice@elsewhere.net", "", ErrRelayDenied},
		{"full@example.org", "", ErrOverQuota},
		{"off@example.org", "", ErrAccountDisabled},
		{"paused@example.org", "paused@example.org", nil}, // disabled, mail still accepted
		{"not an address", "", ErrInvalidAddress},
	} {
		r, err := b.ResolveRecipient(ctx, tc.rcpt)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: %v, want %v", tc.rcpt, err, tc.err)
			}
		} else if err != nil || r.Account != tc.account {
			t.Errorf("%s: %+v %v, want %s", tc.rcpt, r, err, tc.account)
		}
	}
}

// A catch-all alias takes what no account or exact alias (with or
// without the +tag) takes, and only in its own domain.
func TestResolveRecipientCatchAll(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	mustUser(t, b, "alice@example.org")
	mustUser(t, b, "bob@example.org")
	mustUser(t, b, "carol@example.net")
	if err := b.AddAlias(ctx, "sales@example.org", "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAlias(ctx, "*@example.org", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateUser(ctx, "*@example.com", "pw"); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("account *@example.com: %v, want ErrInvalidAddress", err)
	}
	for _, tc := range []struct {
		rcpt, account string
		err           error
	}{
		{"bob@example.org", "bob@example.org", nil},          // the account
		{"bob+news@example.org", "bob@example.org", nil},     // the account, tag removed
		{"sales@example.org", "bob@example.org", nil},        // an exact alias
		{"sales+x@example.org", "bob@example.org", nil},      // the alias, tag removed
		{"nobody@example.org", "alice@example.org", nil},     // the catch-all
		{"nobody+tag@example.org", "alice@example.org", nil}, // the catch-all, tag or not
		{"*@example.org", "alice@example.org", nil},
		{"nobody@example.net", "", ErrNoSuchUser}, // no catch-all there
	} {
		r, err := b.ResolveRecipient(ctx, tc.rcpt)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: %v, want %v", tc.rcpt, err, tc.err)
			}
		} else if err != nil || r.Account != tc.account {
			t.Errorf("%s: %+v %v, want %s", tc.rcpt, r, err, tc.account)
		}
	}
	// The catch-all's target disabled: its mail still arrives, as its own
	// does; disabled with mail refused, refused like its own mail.
	if err := b.SetDisabled(ctx, "alice@example.org", true, false); err != nil {
		t.Fatal(err)
	}
	if r, err := b.ResolveRecipient(ctx, "nobody@example.org"); err != nil || r.Account != "alice@example.org" {
		t.Errorf("catch-all to a disabled account: %+v %v, want delivered", r, err)
	}
	if err := b.SetDisabled(ctx, "alice@example.org", true, true); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ResolveRecipient(ctx, "nobody@example.org"); !errors.Is(err, ErrAccountDisabled) {
		t.Errorf("catch-all to an account refusing mail: %v", err)
	}
}

func TestDeliverDedupesAndWakesWatchers(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	u := mustUser(t, b, "alice@example.org")
	mustUser(t, b, "bob@example.org")
	b.AddAlias(ctx, "a2@example.org", "alice@example.org")
	inbox, _ := u.Mailbox("INBOX")
	w := u.Watch(inbox.ID)
	defer w.Close()
	deliver(t, b, "Subject: x\r\n\r\nhi\r\n", "alice@example.org", "a2@example.org", "bob@example.org")
	select {
	case <-w.C():
	default:
		t.Fatal("watcher not woken by delivery")
	}
	if mb, _ := u.Mailbox("INBOX"); mb.Messages != 1 {
		t.Fatalf("alice has %d messages, want 1 (alias deduplicated)", mb.Messages)
	}
	ch, _ := u.ChangesSince(inbox.ID, inbox.HighestModSeq)
	if len(ch) != 1 || ch[0].UID != 1 || ch[0].Expunged {
		t.Fatalf("changes = %+v", ch)
	}
}

func TestSpoolGoesToFile(t *testing.T) {
	b := newTestBackend(t, Options{SpoolMemoryBytes: 1024, MaxMessageBytes: 1 << 20})
	sp := b.NewSpool()
	defer sp.Close()
	chunk := bytes.Repeat([]byte("0123456789abcde\n"), 64)
	for i := 0; i < 100; i++ {
		if _, err := sp.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if sp.f == nil {
		t.Fatal("spool still in memory past SpoolMemoryBytes")
	}
	got, err := sp.Bytes()
	if err != nil || !bytes.Equal(got, bytes.Repeat(chunk, 100)) {
		t.Fatalf("spooled bytes differ: %v", err)
	}
	big := b.NewSpool()
	defer big.Close()
	for i := 0; i < 1100 && !big.TooBig(); i++ {
		big.Write(chunk)
	}
	if _, err := big.Bytes(); !errors.Is(err, ErrTooBig) {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestMailboxOperations(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	u := mustUser(t, b, "a@x.org")
	names := func() string {
		mbs, _ := u.Mailboxes()
		var s []string
		for _, m := range mbs {
			s = append(s, m.Name)
		}
		return strings.Join(s, ",")
	}
	if got := names(); got != "Archive,Drafts,INBOX,Junk,Sent,Trash" {
		t.Fatalf("default mailboxes: %s", got)
	}
	if mb, _ := u.Mailbox("Sent"); mb.SpecialUse != `\Sent` {
		t.Fatalf("Sent special-use %q", mb.SpecialUse)
	}
	for _, n := range []string{"Work", "Work/2026", "Work/2026/Q1"} {
		if err := u.CreateMailbox(n, ""); err != nil {
			t.Fatal(err)
		}
	}
	deliver(t, b, "Subject: x\r\n\r\nhi\r\n", "a@x.org")
	if err := u.RenameMailbox("Work", "Job"); err != nil {
		t.Fatal(err)
	}
	if got := names(); !strings.Contains(got, "Job,Job/2026,Job/2026/Q1") || strings.Contains(got, "Work") {
		t.Fatalf("after rename: %s", got)
	}
	if err := u.RenameMailbox("Job", "Job/sub"); !errors.Is(err, ErrInvalidMailbox) {
		t.Fatalf("rename into itself: %v", err)
	}
	if err := u.RenameMailbox("nope", "x"); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("rename missing: %v", err)
	}
	// RFC 9051 §6.3.6: renaming INBOX moves its messages and leaves it empty.
	if err := u.RenameMailbox("inbox", "Old"); err != nil {
		t.Fatal(err)
	}
	in, _ := u.Mailbox("INBOX")
	old, _ := u.Mailbox("Old")
	if in.Messages != 0 || old.Messages != 1 {
		t.Fatalf("INBOX %d, Old %d messages", in.Messages, old.Messages)
	}
	if err := u.DeleteMailbox("INBOX"); !errors.Is(err, ErrCannotDeleteInbox) {
		t.Fatalf("delete INBOX: %v", err)
	}
	if err := u.CreateMailbox("job", `\Bogus`); !errors.Is(err, ErrInvalidMailbox) {
		t.Fatalf("bad special-use: %v", err)
	}
	res, err := u.Append(ctx, "Drafts", strings.NewReader("Subject: draft\r\n\r\n..."), []string{FlagDraft}, time.Time{})
	if err != nil || res.UID != 1 {
		t.Fatalf("append: %+v %v", res, err)
	}
	if _, err := u.Append(ctx, "Nope", strings.NewReader("x"), nil, time.Time{}); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("append to missing: %v", err)
	}
	rel, err := u.LockMaildrop()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.LockMaildrop(); !errors.Is(err, ErrInUse) {
		t.Fatalf("second maildrop lock: %v", err)
	}
	rel()
	rel()
	if rel2, err := u.LockMaildrop(); err != nil {
		t.Fatalf("lock after release: %v", err)
	} else {
		rel2()
	}
}

func TestSearch(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	u := mustUser(t, b, "a@x.org")
	msgs := []string{
		"From: Bob <bob@example.com>\r\nSubject: Lunch\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\nPizza at noon?\r\n",
		"From: carol@example.com\r\nSubject: =?iso-8859-1?q?R=E9union?=\r\nDate: Tue, 10 Mar 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=E8me\r\n",
		"From: bob@example.com\r\nSubject: big\r\nX-Tag: blue\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--zz\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + strings.Repeat("QUJD", 500) + "\r\n--zz--\r\n",
	}
	for _, m := range msgs {
		deliver(t, b, m, "a@x.org")
	}
	mb, _ := u.Mailbox("INBOX")
	u.StoreFlags(mb.ID, []uint32{2}, FlagsAdd, []string{FlagSeen, "$Important"}, 0)
	day := func(s string) time.Time { d, _ := time.Parse("2006-01-02", s); return d }
	for _, tc := range []struct {
		name string
		c    SearchCriteria
		want string
	}{
		{"all", SearchCriteria{}, "[1 2 3]"},
		{"from header", SearchCriteria{Header: []HeaderMatch{{"From", "BOB"}}}, "[1 3]"},
		{"encoded subject", SearchCriteria{Header: []HeaderMatch{{"Subject", "réunion"}}}, "[2]"},
		{"header present", SearchCriteria{Header: []HeaderMatch{{"X-Tag", ""}}}, "[3]"},
		{"body latin-1", SearchCriteria{Body: []string{"CAFÉ"}}, "[2]"},
		{"body not in attachment header", SearchCriteria{Body: []string{"application/pdf"}}, "[]"},
		{"text finds header", SearchCriteria{Text: []string{"lunch"}}, "[1]"},
		{"seen", SearchCriteria{Flag: []string{`\seen`}}, "[2]"},
		{"unseen", SearchCriteria{NotFlag: []string{FlagSeen}}, "[1 3]"},
		{"keyword", SearchCriteria{Flag: []string{"$important"}}, "[2]"},
		{"larger", SearchCriteria{Larger: 1000}, "[3]"},
		{"smaller", SearchCriteria{Smaller: 1000}, "[1 2]"},
		{"sent before", SearchCriteria{SentBefore: day("2026-03-10")}, "[1]"},
		{"sent on", SearchCriteria{SentOn: day("2026-03-10")}, "[2]"},
		{"sent since", SearchCriteria{SentSince: day("2026-03-03")}, "[2]"},
		{"uid set", SearchCriteria{UIDs: [][]UIDRange{{{2, 3}}}}, "[2 3]"},
		{"uid set unsorted, reversed, overlapping", SearchCriteria{UIDs: [][]UIDRange{{{9, 12}, {3, 3}, {1, 1}, {3, 2}, {1, 1}}}}, "[1 2 3]"},
		{"uid sets, each must hold", SearchCriteria{UIDs: [][]UIDRange{{{1, 1}, {3, 3}}, {{2, 3}}}}, "[3]"},
		{"uid set in an or", SearchCriteria{Or: [][2]SearchCriteria{{{UIDs: [][]UIDRange{{{3, 3}, {1, 1}}}}, {Flag: []string{"$important"}}}}}, "[1 2 3]"},
		{"not", SearchCriteria{Not: []SearchCriteria{{Header: []HeaderMatch{{"From", "bob"}}}}}, "[2]"},
		{"or", SearchCriteria{Or: [][2]SearchCriteria{{{Larger: 1000}, {Flag: []string{FlagSeen}}}}}, "[2 3]"},
		{"since today", SearchCriteria{Since: time.Now()}, "[1 2 3]"},
		{"before today", SearchCriteria{Before: time.Now()}, "[]"},
	} {
		before := fmt.Sprint(tc.c)
		got, err := u.Search(ctx, mb.ID, &tc.c)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.name, got, err, tc.want)
		}
		if after := fmt.Sprint(tc.c); after != before {
			t.Errorf("%s: the search changed its criteria: %s, was %s", tc.name, after, before)
		}
	}
	// A search given up (its client went) fails with the context's error,
	// never answers with a short result, also when every criterion reads
	// the record only.
	done, cancel := context.WithCancel(ctx)
	cancel()
	for _, c := range []SearchCriteria{{Flag: []string{FlagSeen}}, {NotFlag: []string{FlagSeen}}, {Text: []string{"pizza"}}} {
		if got, err := u.Search(done, mb.ID, &c); !errors.Is(err, context.Canceled) {
			t.Errorf("search %+v with its context done: %v %v", c, got, err)
		}
	}
}

func TestPasswordChecksAreBounded(t *testing.T) {
	b := newTestBackend(t, Options{LoginCacheTTL: -1})
	mustUser(t, b, "a@x.org")
	// Occupy every hashing slot: a login must wait, and give up with its
	// context instead of hashing beside the others.
	for i := 0; i < cap(b.hashSlots); i++ {
		b.hashSlots <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A caller that gave up has not failed a login (its client hung up).
	if _, err := b.Login(ctx, "a@x.org", "secret", "127.0.0.1"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrAuthFailed) {
		t.Fatalf("login with all slots busy and ctx done: %v, want context.Canceled", err)
	}
	for i := 0; i < cap(b.hashSlots); i++ {
		<-b.hashSlots
	}
	if _, err := b.Login(context.Background(), "a@x.org", "secret", "127.0.0.1"); err != nil {
		t.Fatalf("login with free slots: %v", err)
	}
}

// TestLargeMessageCopies: a 30 MiB message goes from a file-backed spool
// into the store with at most about one copy on the heap (bbolt's page
// buffer at commit), not one per layer.
func TestLargeMessageCopies(t *testing.T) {
	b := newTestBackend(t, Options{})
	mustUser(t, b, "a@x.org")
	r, err := b.ResolveRecipient(context.Background(), "a@x.org")
	if err != nil {
		t.Fatal(err)
	}
	const size = 30 << 20
	sp := b.NewSpool()
	defer sp.Close()
	sp.Write([]byte("Subject: big\r\n\r\n"))
	line := bytes.Repeat([]byte("x"), 998)
	line = append(line, '\r', '\n')
	for sp.Size() < size {
		sp.Write(line)
	}
	body, err := sp.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if errs := b.Deliver(context.Background(), body, []Recipient{r}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d MiB delivering %d MiB", allocated>>20, size>>20)
	if allocated > size*3/2 {
		t.Errorf("delivering %d MiB allocated %d MiB: more than one copy", size>>20, allocated>>20)
	}
}

func TestUserGoneClosedOnDelete(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	for _, a := range []string{"gone@example.org", "stays@example.org"} {
		if err := b.CreateUser(ctx, a, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	u1, err := b.LookupUser(ctx, "gone@example.org")
	if err != nil {
		t.Fatal(err)
	}
	u2, err := b.LookupUser(ctx, "gone@example.org")
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.LookupUser(ctx, "stays@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteUser(ctx, "gone@example.org"); err != nil {
		t.Fatal(err)
	}
	for i, u := range []*User{u1, u2} {
		select {
		case <-u.Gone():
		default:
			t.Errorf("user handle %d: Gone not closed after DeleteUser", i)
		}
	}
	select {
	case <-other.Gone():
		t.Error("another account's Gone was closed")
	default:
	}
	// A new account of the same address is a new account: not gone.
	if err := b.CreateUser(ctx, "gone@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	u3, err := b.LookupUser(ctx, "gone@example.org")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-u3.Gone():
		t.Error("re-created account starts gone")
	default:
	}
}

// TestDeletedAccountStaysDeleted: mail for an account deleted after RCPT
// (the recipient was resolved before) is refused with ErrNoSuchUser, and
// its mail file or bucket is not re-created. With a file per account, the
// file stays while a session holds it and goes with the last Release; a
// deletion that a restart interrupted is finished by the next start.
func TestDeletedAccountStaysDeleted(t *testing.T) {
	for _, shards := range []int{0, 2} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			dir := t.TempDir()
			b := newTestBackend(t, Options{DataDir: dir, Shards: shards})
			ctx := context.Background()
			u := mustUser(t, b, "gone@example.org")
			mustUser(t, b, "stays@example.org").Release()
			acct, _ := b.store.Account("gone@example.org")
			file := filepath.Join(dir, "accounts", fmt.Sprintf("%d.db", acct.ID))
			r, err := b.ResolveRecipient(ctx, "gone@example.org")
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, b, "Subject: before\r\n\r\nx\r\n", "gone@example.org")
			if err := b.DeleteUser(ctx, "gone@example.org"); err != nil {
				t.Fatal(err)
			}
			if errs := b.Deliver(ctx, []byte("Subject: after\r\n\r\nx\r\n"), []Recipient{r}); !errors.Is(errs[0], ErrNoSuchUser) {
				t.Fatalf("delivery to the deleted account: %v, want ErrNoSuchUser", errs[0])
			}
			if _, err := u.Mailbox(Inbox); err == nil {
				t.Fatal("the deleted account's session still reads its INBOX")
			}
			if shards == 0 {
				if _, err := os.Stat(file); err != nil {
					t.Fatalf("file removed while a session holds it: %v", err)
				}
			}
			u.Release()
			u.Release() // a second call does nothing
			if shards == 0 {
				if _, err := os.Stat(file); !os.IsNotExist(err) {
					t.Fatalf("file still there after the last Release: %v", err)
				}
			}
			if _, err := b.LookupUser(ctx, "gone@example.org"); !errors.Is(err, ErrNoSuchUser) {
				t.Fatalf("LookupUser after delete: %v", err)
			}
			// The same address again is a new, empty account.
			nu := mustUser(t, b, "gone@example.org")
			if mb, err := nu.Mailbox(Inbox); err != nil || mb.Messages != 0 {
				t.Fatalf("re-created account's INBOX: %+v, %v", mb, err)
			}
			nu.Release()

			// Deleted while held, then the process ends: the next start
			// removes the file.
			h := mustUser(t, b, "held@example.org")
			hacct, _ := b.store.Account("held@example.org")
			if err := b.DeleteUser(ctx, "held@example.org"); err != nil {
				t.Fatal(err)
			}
			_ = h // never released
			b.Close()
			b2 := newTestBackend(t, Options{DataDir: dir, Shards: shards})
			if shards == 0 {
				if _, err := os.Stat(filepath.Join(dir, "accounts", fmt.Sprintf("%d.db", hacct.ID))); !os.IsNotExist(err) {
					t.Fatalf("deleted account's file survived a restart: %v", err)
				}
			}
			if _, err := b2.LookupUser(ctx, "stays@example.org"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
