//go:build manual

// Manual checks against a real server (Dovecot, or a running Roost); not part
// of `go test ./...`. Run with, for instance:
//
//	ROOST_BENCH_LMTP=127.0.0.1:12024 ROOST_BENCH_IMAP=127.0.0.1:12143 \
//	ROOST_BENCH_POP3=127.0.0.1:12110 ROOST_BENCH_USER=user7@example.org \
//	go test -tags manual -run Manual -v ./cmd/roost-bench/
package main

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func manualEnv(t *testing.T) (lmtp, imapAddr, pop3, user, pass string) {
	lmtp, imapAddr, pop3 = os.Getenv("ROOST_BENCH_LMTP"), os.Getenv("ROOST_BENCH_IMAP"), os.Getenv("ROOST_BENCH_POP3")
	user, pass = os.Getenv("ROOST_BENCH_USER"), os.Getenv("ROOST_BENCH_PASS")
	if lmtp == "" || imapAddr == "" || pop3 == "" || user == "" {
		t.Skip("set ROOST_BENCH_LMTP, _IMAP, _POP3, _USER (and _PASS, default secret)")
	}
	if pass == "" {
		pass = "secret"
	}
	return
}

// TestManualRoundTrip delivers generated messages (dot lines, attachments)
// over LMTP and checks that POP3 RETR and IMAP BODY[] give back the same
// bytes, after whatever trace headers the server prepends.
func TestManualRoundTrip(t *testing.T) {
	lmtp, imapAddr, pop3, user, pass := manualEnv(t)
	ctx := context.Background()
	gen := msgGenerator{seed: uint64(time.Now().UnixNano()), size: sizeDist{kind: sizeMixed}}
	var sent [][]byte
	c, err := dialMail(ctx, lmtp, true, 10*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	for seq := range uint64(30) {
		msg := gen.message(seq, "f@example.net", user)
		res, err := c.send("f@example.net", []string{user}, msg)
		if err != nil || res.err != nil {
			t.Fatalf("deliver %d: %v %v", seq, err, res.err)
		}
		sent = append(sent, msg)
	}
	c.quit()

	p, err := dialPOP3(ctx, pop3, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.user(user); err != nil {
		t.Fatal(err)
	}
	if err := p.pass(pass); err != nil {
		t.Fatal(err)
	}
	n, _, err := p.stat()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range sent {
		var got bytes.Buffer
		if _, err := p.retr(n-len(sent)+1+i, &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(got.Bytes(), want) {
			t.Errorf("POP3 message %d differs from what was delivered", n-len(sent)+1+i)
		}
	}
	p.quit()

	s, err := dialIMAP(ctx, imapAddr, 10*time.Second, newLatencyRecorder())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if err := s.login(user, pass); err != nil {
		t.Fatal(err)
	}
	sel, err := s.selectInbox()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := s.c.Fetch(imap.SeqSetNum(sel.NumMessages), &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v (%d messages)", err, len(msgs))
	}
	for _, body := range msgs[0].BodySection {
		if !bytes.HasSuffix(body.Bytes, sent[len(sent)-1]) {
			t.Error("IMAP BODY[] of the newest message differs from what was delivered")
		}
	}
}
