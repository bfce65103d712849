package backend

import (
	"context"
	"io"
	"time"

	"github.com/roostmail/roost/store"
)

// AppendMessage is one message of AppendMany.
type AppendMessage struct {
	Body  io.Reader
	Flags []string
	Date  time.Time // zero: now
}

// AppendMany stores several messages in the named mailbox at once: all or
// none (IMAP MULTIAPPEND, RFC 3502 §6.3.11). Each message is at most
// MaxMessageBytes.
func (u *User) AppendMany(ctx context.Context, mailbox string, msgs []AppendMessage) ([]AppendResult, error) {
	n, err := NormalizeMailboxName(mailbox)
	if err != nil {
		return nil, err
	}
	if _, err := u.ms.Mailbox(n); err != nil {
		return nil, mapStoreErr(err, n)
	}
	nms := make([]store.NewMessage, len(msgs))
	inMemory := 0 // what the spools hold in memory: bounded in all
	for i, m := range msgs {
		sp := u.b.NewSpoolSharing(inMemory)
		defer sp.Close()
		if _, err := io.Copy(sp, m.Body); err != nil {
			return nil, err
		}
		inMemory += sp.MemoryBytes()
		if sp.TooBig() {
			return nil, ErrTooBig
		}
		body, err := sp.Bytes()
		if err != nil {
			return nil, err
		}
		date := m.Date
		if date.IsZero() {
			date = time.Now()
		}
		nms[i] = store.NewMessage{Body: body, Parsed: ParseMessage(body).marshal(), Flags: m.Flags, InternalDate: date}
	}
	u.b.inflight.Add(1)
	defer u.b.inflight.Done()
	res, err := u.ms.AppendMany(n, nms, u.limits())
	if err != nil {
		return nil, mapStoreErr(err, n)
	}
	if len(res) > 0 {
		u.b.bus.notify(u.acct.ID, ChangeNew, res[0].MailboxID)
	}
	return res, nil
}
