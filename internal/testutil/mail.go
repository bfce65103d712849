package testutil

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/roostmail/roost/backend"
)

// SyncBuffer is a goroutine-safe buffer, e.g. for a server's log.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Inbox returns the messages in an account's INBOX, in UID order.
func Inbox(t testing.TB, b *backend.Backend, addr string) []string {
	t.Helper()
	u, err := b.LookupUser(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox(backend.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	uids, err := u.UIDs(mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := u.MessagesByUID(mb.ID, uids)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(msgs))
	for i := range msgs {
		body, err := u.ReadBody(&msgs[i])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(body))
	}
	return out
}
