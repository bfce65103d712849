package backend

import (
	"context"
	"testing"
)

func TestSmoke(t *testing.T) {
	b, err := New(Options{DataDir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if err := b.CreateUser(ctx, "Alice@Example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	r, err := b.ResolveRecipient(ctx, "alice+x@EXAMPLE.org")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: bob@x.org\r\nTo: alice@example.org\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello world\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\nAAAA\r\n--b--\r\n")
	if errs := b.Deliver(ctx, msg, []Recipient{r}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	u, err := b.Login(ctx, "alice@example.org", "pw", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox("inbox")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", mb)
	msgs, _ := u.MessagesByUID(mb.ID, []uint32{1})
	p, _ := u.Parsed(&msgs[0])
	t.Logf("%+v", p)
	uids, err := u.Search(ctx, mb.ID, &SearchCriteria{Body: []string{"WORLD"}, Header: []HeaderMatch{{"subject", "H"}}})
	t.Log(uids, err)
	body, _ := u.ReadBody(&msgs[0])
	if string(body) != string(msg) {
		t.Fatal("body differs")
	}
}
