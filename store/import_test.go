package store

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestMessageQuota(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, inbox := newAccount(t, s, "a@x.org")
	other, err := ms.CreateMailbox("Other", "")
	if err != nil {
		t.Fatal(err)
	}
	q := Limits{Messages: 3}
	for i := 0; i < 2; i++ {
		if _, err := ms.Append("INBOX", msg(i), q); err != nil {
			t.Fatal(err)
		}
	}
	// A copy of both would make 4: refused whole.
	if _, err := ms.Copy(inbox.ID, []uint32{1, 2}, other.ID, false, q); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("copy over the message limit: %v", err)
	}
	if _, err := ms.Copy(inbox.ID, []uint32{1}, other.ID, false, q); err != nil {
		t.Fatalf("copy to the limit: %v", err)
	}
	if _, err := ms.Append("INBOX", msg(9), q); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("append over the message limit: %v", err)
	}
	// A move does not add a message.
	if _, err := ms.Copy(inbox.ID, []uint32{2}, other.ID, true, q); err != nil {
		t.Fatalf("move at the limit: %v", err)
	}
	if n, _ := ms.AccountMessages(); n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}
	checkCounters(t, ms, inbox.ID)
	checkCounters(t, ms, other.ID)
}

func TestImportKeepsUIDs(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, inbox := newAccount(t, s, "a@x.org")
	// The empty INBOX adopts the source's UIDVALIDITY.
	im, err := ms.PrepareImport("INBOX", "", 1234)
	if err != nil || !im.KeepUIDs || im.UIDValidity != 1234 || im.ID != inbox.ID {
		t.Fatalf("PrepareImport INBOX: %+v, %v", im, err)
	}
	batch := []ImportMessage{
		{Key: "a", UID: 5, Body: []byte("Subject: a\r\n\r\n"), Flags: []string{FlagSeen, "$Label1"}, InternalDate: time.Unix(1e9, 0)},
		{Key: "b", UID: 9, Body: []byte("Subject: b\r\n\r\n")},
		{Key: "c", UID: 7, Body: []byte("Subject: c\r\n\r\n")}, // below 9: renumbered
		{Key: "d", Body: []byte("Subject: d\r\n\r\n")},
	}
	res, err := ms.ImportMessages(im.ID, batch, im.KeepUIDs, 20)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.UIDs, []uint32{5, 9, 10, 11}) || res.Renumbered != 1 || res.Skipped != 0 {
		t.Fatalf("import result %+v", res)
	}
	mb := checkCounters(t, ms, im.ID)
	if mb.UIDNext != 20 || mb.Messages != 4 || mb.UIDValidity != 1234 {
		t.Fatalf("mailbox after import %+v", mb)
	}
	msgs, _ := ms.MessagesByUID(im.ID, []uint32{5})
	if len(msgs) != 1 || !slices.Equal(msgs[0].Flags, []string{FlagSeen, "$Label1"}) || !msgs[0].InternalDate.Equal(time.Unix(1e9, 0)) {
		t.Fatalf("imported message %+v", msgs)
	}
	// Again, with one more: only that one is stored, after UIDNEXT.
	again := append(batch, ImportMessage{Key: "e", UID: 15, Body: []byte("Subject: e\r\n\r\n")})
	has, _ := ms.HasImportKeys(im.ID, []string{"a", "e", ""})
	if !slices.Equal(has, []bool{true, false, false}) {
		t.Fatalf("HasImportKeys %v", has)
	}
	im2, _ := ms.PrepareImport("INBOX", "", 1234)
	res, err = ms.ImportMessages(im2.ID, again, im2.KeepUIDs, 20)
	if err != nil || res.Skipped != 4 || !slices.Equal(res.UIDs, []uint32{0, 0, 0, 0, 20}) || res.Renumbered != 1 {
		t.Fatalf("second import %+v, %v", res, err)
	}
	if size, _ := ms.AccountSize(); size != int64(5*len("Subject: a\r\n\r\n")) {
		t.Errorf("account size %d", size)
	}
	// A mailbox that has held mail keeps its UIDVALIDITY: new UIDs.
	im3, err := ms.PrepareImport("INBOX", "", 999)
	if err != nil || im3.KeepUIDs || im3.UIDValidity != 1234 {
		t.Fatalf("PrepareImport with another UIDVALIDITY: %+v %v", im3, err)
	}
	// A new mailbox gets the special-use only if it is free.
	if _, err := ms.CreateMailbox("Sent", `\Sent`); err != nil {
		t.Fatal(err)
	}
	im4, err := ms.PrepareImport("Sent Items", `\Sent`, 77)
	if err != nil || im4.SpecialUse != "" || im4.UIDValidity != 77 || !im4.KeepUIDs {
		t.Fatalf("PrepareImport Sent Items: %+v %v", im4, err)
	}
	im5, _ := ms.PrepareImport("Trash", `\Trash`, 0)
	if im5.SpecialUse != `\Trash` || im5.KeepUIDs {
		t.Fatalf("PrepareImport Trash: %+v", im5)
	}
	// The changes are in the log, as for any append.
	ch, _ := ms.ChangesSince(im.ID, 0)
	if len(ch) != 5 {
		t.Errorf("%d changes logged, want 5", len(ch))
	}
}

func TestExpireOld(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ms, _ := newAccount(t, s, "a@x.org")
	trash, _ := ms.CreateMailbox("Trash", `\Trash`)
	for i := 0; i < 3; i++ {
		if _, err := ms.Append("Trash", msg(i), Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	day := 24 * time.Hour
	t0 := time.Unix(2e9, 0)
	// The first look: a checkpoint, nothing is known to be old yet.
	if got, err := ms.ExpireOld(trash.ID, 30*day, t0); err != nil || len(got) != 0 {
		t.Fatalf("first run: %v %v", got, err)
	}
	ms.Append("Trash", msg(3), Limits{}) // UID 4, after the checkpoint
	if got, _ := ms.ExpireOld(trash.ID, 30*day, t0.Add(10*day)); len(got) != 0 {
		t.Fatalf("after 10 days: expunged %v", got)
	}
	before, _ := ms.MailboxByID(trash.ID)
	got, err := ms.ExpireOld(trash.ID, 30*day, t0.Add(31*day))
	if err != nil || !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("after 31 days: %v %v", got, err)
	}
	mb := checkCounters(t, ms, trash.ID)
	if mb.Messages != 1 || mb.HighestModSeq <= before.HighestModSeq {
		t.Fatalf("after expiry %+v", mb)
	}
	ch, _ := ms.ChangesSince(trash.ID, before.HighestModSeq)
	if len(ch) != 3 || !ch[0].Expunged {
		t.Fatalf("tombstones %+v", ch)
	}
	// UID 4 arrived between the first and the second checkpoint.
	if got, _ := ms.ExpireOld(trash.ID, 30*day, t0.Add(40*day)); !slices.Equal(got, []uint32{4}) {
		t.Fatalf("after 40 days: %v", got)
	}
	if size, _ := ms.AccountSize(); size != 0 {
		t.Errorf("account size %d after expiry", size)
	}
}
