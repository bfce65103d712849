package imapd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
)

// BenchmarkNotifyWakeUp measures one notification end to end: another
// session's flag change in one mailbox, until the NOTIFY session's STATUS
// for it has arrived, for an account of 10 and of 1,000 mailboxes. A
// wake-up reads only the mailboxes that changed, so both cost about the
// same.
func BenchmarkNotifyWakeUp(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("mailboxes=%d", n), func(b *testing.B) { benchNotifyWakeUp(b, n) })
	}
}

func benchNotifyWakeUp(b *testing.B, mailboxes int) {
	be, err := backend.New(backend.Options{DataDir: b.TempDir(), NoSync: true, LoginCacheTTL: -1, Hostname: "mx.example.org"})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	ctx := context.Background()
	if err := be.CreateUser(ctx, testUser, testPass); err != nil {
		b.Fatal(err)
	}
	u, err := be.LookupUser(ctx, testUser)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < mailboxes; i++ {
		name := fmt.Sprintf("box%04d", i)
		if err := u.CreateMailbox(name, ""); err != nil {
			b.Fatal(err)
		}
		if _, err := u.Append(ctx, name, strings.NewReader(msgText(name, "x")), nil, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	target, err := u.Mailbox("box0000")
	if err != nil {
		b.Fatal(err)
	}
	addr, stop := benchServer(b, be)
	defer stop()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	until := func(prefix string) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				b.Fatalf("read: %v", err)
			}
			if strings.HasPrefix(line, prefix) {
				return
			}
		}
	}
	until("* OK")
	fmt.Fprintf(c, "a LOGIN %s %q\r\n", testUser, testPass)
	until("a OK")
	fmt.Fprintf(c, "b NOTIFY SET (PERSONAL (MessageNew MessageExpunge FlagChange))\r\n")
	until("b OK")
	op := backend.FlagsAdd
	for b.Loop() {
		if _, _, err := u.StoreFlags(target.ID, []uint32{1}, op, []string{backend.FlagSeen}, 0); err != nil {
			b.Fatal(err)
		}
		until(`* STATUS "box0000"`)
		if op == backend.FlagsAdd {
			op = backend.FlagsRemove
		} else {
			op = backend.FlagsAdd
		}
	}
}
