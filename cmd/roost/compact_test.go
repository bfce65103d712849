package main

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/roostmail/roost/backend"
)

// TestCompactCommand: `roost compact ADDRESS` gives back the space of
// deleted mail, with no server running and through a running one (whose
// control socket sends progress reports before the answer); `roost
// compact` does every file; the mail that was kept is still there.
func TestCompactCommand(t *testing.T) {
	in := newInstance(t)
	in.mustRun("", "init")
	in.mustRun("pw\n", "user", "add", "alice@example.org")
	in.mustRun("pw\n", "user", "add", "bob@example.org")
	fill := func() {
		b := openBackend(t, in.dataDir)
		defer b.Close()
		ctx := context.Background()
		r, err := b.ResolveRecipient(ctx, "alice@example.org")
		if err != nil {
			t.Fatal(err)
		}
		big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 3000)
		for i := 0; i < 40; i++ {
			if errs := b.Deliver(ctx, []byte(big), []backend.Recipient{r}); errs[0] != nil {
				t.Fatal(errs[0])
			}
		}
		if errs := b.Deliver(ctx, []byte("Subject: keep\r\n\r\nkeep me\r\n"), []backend.Recipient{r}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		u, _ := b.LookupUser(ctx, "alice@example.org")
		mb, _ := u.Mailbox(backend.Inbox)
		uids, _ := u.UIDs(mb.ID)
		if _, err := u.Expunge(mb.ID, uids[:len(uids)-1], false); err != nil {
			t.Fatal(err)
		}
		u.Release()
	}
	sizes := func(out string) (before, after int64) {
		t.Helper()
		f := strings.Split(strings.TrimSpace(out), "\t")
		if len(f) != 3 || !strings.HasPrefix(f[1], "before=") || !strings.HasPrefix(f[2], "after=") {
			t.Fatalf("compact printed %q", out)
		}
		before, _ = strconv.ParseInt(strings.TrimPrefix(f[1], "before="), 10, 64)
		after, _ = strconv.ParseInt(strings.TrimPrefix(f[2], "after="), 10, 64)
		return before, after
	}

	fill()
	res := in.run("", "compact", "Alice@Example.org")
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("compact without a server: exit %d, stderr %q", res.code, res.stderr)
	}
	if before, after := sizes(res.stdout); after*4 > before {
		t.Fatalf("compact: %d -> %d bytes: want a quarter or less", before, after)
	}

	fill()
	srv := in.startServer()
	var reports int
	var last progressReport
	resp, err := callControl(context.Background(), controlSocketPath(in.dataDir), request{Op: opCompact, Args: []string{"alice@example.org"},
		progress: func(done, total int64) { reports++; last = progressReport{done, total} }})
	if err != nil || !resp.OK {
		t.Fatalf("compact through the server: %+v, %v", resp, err)
	}
	if before, after := sizes(strings.Join(resp.Lines, "\n")); after*4 > before {
		t.Fatalf("compact through the server: %d -> %d bytes", before, after)
	}
	if reports == 0 || last.Done != last.Total {
		t.Fatalf("progress: %d reports, last %+v", reports, last)
	}
	all := in.mustRun("", "compact")
	if n := len(strings.Split(strings.TrimSpace(all), "\n")); n != 2 {
		t.Fatalf("compact of every file printed %d lines, want 2:\n%s", n, all)
	}
	if res := in.run("", "compact", "nobody@example.org"); res.code != 1 || !strings.Contains(res.stderr, "no such user") {
		t.Fatalf("compact of an unknown account: exit %d, %q", res.code, res.stderr)
	}
	if res := in.run("", "compact", "a@example.org", "b@example.org"); res.code != 2 {
		t.Fatalf("compact with two addresses: exit %d", res.code)
	}
	srv.stop(syscall.SIGTERM)

	b := openBackend(t, in.dataDir)
	defer b.Close()
	u, err := b.LookupUser(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox(backend.Inbox)
	msgs, _ := u.MessagesByUID(mb.ID, []uint32{mb.UIDNext - 1})
	if mb.Messages != 1 || len(msgs) != 1 {
		t.Fatalf("after compaction: %d messages, want the one kept", mb.Messages)
	}
	if body, err := u.ReadBody(&msgs[0]); err != nil || !strings.HasSuffix(string(body), "keep me\r\n") {
		t.Fatalf("the kept message after compaction: %q, %v", body, err)
	}
}
