package backend

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestQuotaDefaultsAndLimits(t *testing.T) {
	b := newTestBackend(t, Options{DefaultQuota: Limits{Messages: 2}})
	ctx := context.Background()
	u := mustUser(t, b, "alice@example.org")
	mustUser(t, b, "free@example.org")
	if err := b.SetQuota(ctx, "free@example.org", NoLimit, NoLimit); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		deliver(t, b, "Subject: x\r\n\r\nx\r\n", "alice@example.org", "free@example.org")
	}
	if _, err := b.ResolveRecipient(ctx, "alice@example.org"); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("alice at the default message limit: %v", err)
	}
	if _, err := b.ResolveRecipient(ctx, "free@example.org"); err != nil {
		t.Fatalf("free has no limit: %v", err)
	}
	// APPEND and COPY are held to it too, for a session already open.
	if _, err := u.Append(ctx, "Drafts", strings.NewReader("Subject: d\r\n\r\n"), nil, time.Time{}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("append over the message limit: %v", err)
	}
	inbox, _ := u.Mailbox(Inbox)
	if _, err := u.Copy(inbox.ID, []uint32{1}, "Archive", false); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("copy over the message limit: %v", err)
	}
	if _, err := u.Copy(inbox.ID, []uint32{1}, "Archive", true); err != nil {
		t.Fatalf("move at the limit: %v", err)
	}
	// Its own limit replaces the default.
	if err := b.SetQuota(ctx, "alice@example.org", 40, 10); err != nil {
		t.Fatal(err)
	}
	q, err := u.Quota()
	if err != nil || q.LimitBytes != 40 || q.LimitMessages != 10 || q.UsedMessages != 2 || q.UsedBytes != 2*int64(len("Subject: x\r\n\r\nx\r\n")) {
		t.Fatalf("quota %+v %v", q, err)
	}
	if _, err := u.Append(ctx, "Drafts", strings.NewReader("Subject: a much longer draft\r\n\r\n"), nil, time.Time{}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("append over the byte limit: %v", err)
	}
	st, err := b.Status(ctx, "alice@example.org")
	if err != nil || st.Quota != q || len(st.Mailboxes) != 6 {
		t.Fatalf("status %+v %v", st, err)
	}
}

func TestAppPasswords(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	mustUser(t, b, "alice@example.org")
	ap, pw, err := b.AddAppPassword(ctx, "alice@example.org", "Phone")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := splitAppPassword(pw); !ok || id != ap.ID || ap.Hash != "" {
		t.Fatalf("app password %q, record %+v", pw, ap)
	}
	if _, _, err := b.AddAppPassword(ctx, "alice@example.org", "phone"); !errors.Is(err, ErrAppPasswordExists) {
		t.Fatalf("duplicate label: %v", err)
	}
	_, laptop, err := b.AddAppPassword(ctx, "alice@example.org", "Laptop")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pw string
		ok bool
	}{
		{"secret", true}, {pw, true}, {laptop, true},
		{wrongLast(pw), false},      // right ID, wrong secret
		{"zzzzzz-" + pw[7:], false}, // unknown ID
	} {
		_, err := b.Login(ctx, "alice@example.org", tc.pw, "127.0.0.1")
		if (err == nil) != tc.ok {
			t.Errorf("login with %q: %v, want ok=%v", tc.pw, err, tc.ok)
		}
	}
	list, _ := b.AppPasswords(ctx, "alice@example.org")
	if len(list) != 2 || list[0].Label != "Phone" || list[1].Hash != "" {
		t.Fatalf("list %+v", list)
	}
	if err := b.DeleteAppPassword(ctx, "alice@example.org", "Phone"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Login(ctx, "alice@example.org", pw, "127.0.0.1"); err != ErrAuthFailed {
		t.Fatalf("revoked app password (it was in the login cache): %v", err)
	}
	for _, p := range []string{"secret", laptop} {
		if _, err := b.Login(ctx, "alice@example.org", p, "127.0.0.1"); err != nil {
			t.Fatalf("after revoking Phone, %q: %v", p, err)
		}
	}
	if err := b.DeleteAppPassword(ctx, "alice@example.org", "Phone"); !errors.Is(err, ErrNoAppPassword) {
		t.Fatalf("deleting twice: %v", err)
	}
	b.SetDisabled(ctx, "alice@example.org", true, false)
	if _, err := b.Login(ctx, "alice@example.org", laptop, "127.0.0.1"); err != ErrAuthFailed {
		t.Fatalf("app password of a disabled account: %v", err)
	}
}

func TestImportAndRetention(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	u := mustUser(t, b, "alice@example.org")
	im, err := u.PrepareImport("Trash", `\Trash`, 4242, true)
	if err != nil || !im.KeepUIDs || im.UIDValidity != 4242 {
		t.Fatalf("prepare: %+v %v", im, err)
	}
	w := u.Watch(im.ID)
	defer w.Close()
	res, err := u.ImportMessages(ctx, im.ID, []ImportMessage{
		{Key: "k1", UID: 3, Body: []byte("Subject: old\r\n\r\n"), Flags: []string{FlagSeen}},
		{Key: "k2", UID: 8, Body: []byte("Subject: older\r\n\r\n")},
	}, true, 12)
	if err != nil || !slices.Equal(res.UIDs, []uint32{3, 8}) {
		t.Fatalf("import %+v %v", res, err)
	}
	select {
	case <-w.C():
	default:
		t.Fatal("the import woke no watcher")
	}
	mb, _ := u.MailboxByID(im.ID)
	if mb.UIDNext != 12 || mb.Messages != 2 {
		t.Fatalf("after import %+v", mb)
	}
	policy := RetentionPolicy{`\Trash`: 30 * 24 * time.Hour, `\Junk`: 0}
	now := time.Now()
	if n, err := b.ExpireOld(ctx, policy, now); err != nil || n != 0 {
		t.Fatalf("first retention run: %d %v", n, err)
	}
	n, err := b.ExpireOld(ctx, policy, now.Add(31*24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("retention after 31 days: %d %v", n, err)
	}
	select {
	case <-w.C():
	default:
		t.Fatal("retention woke no watcher")
	}
	ch, _ := u.ChangesSince(im.ID, mb.HighestModSeq)
	if len(ch) != 2 || !ch[0].Expunged || !ch[1].Expunged {
		t.Fatalf("changes after retention %+v", ch)
	}
}

// wrongLast returns pw with its last character replaced by another one.
func wrongLast(pw string) string {
	last := byte('x')
	if pw[len(pw)-1] == last {
		last = 'y'
	}
	return pw[:len(pw)-1] + string(last)
}
