package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/roostmail/roost/store"
)

// Import (roost import): mail from another server, with its UIDs kept where
// the target mailbox allows (see store.Mailstore.PrepareImport).

// ImportMailbox is a mailbox readied for an import.
type ImportMailbox = store.ImportMailbox

// ImportMessage is one message to import (see store.ImportMessage).
type ImportMessage struct {
	Key          string
	UID          uint32
	Body         []byte
	Flags        []string
	InternalDate time.Time
}

// ImportResult says what ImportMessages did (see store.ImportResult).
type ImportResult = store.ImportResult

// PrepareImport finds or creates the named mailbox for an import from a
// source with the given UIDVALIDITY (0: none), and subscribes to it if
// subscribe is set.
func (u *User) PrepareImport(name, specialUse string, uidValidity uint32, subscribe bool) (ImportMailbox, error) {
	n, err := NormalizeMailboxName(name)
	if err != nil {
		return ImportMailbox{}, err
	}
	switch specialUse {
	case "", `\All`, `\Archive`, `\Drafts`, `\Flagged`, `\Junk`, `\Sent`, `\Trash`:
	default:
		return ImportMailbox{}, fmt.Errorf("%w: unknown special-use %s", ErrInvalidMailbox, specialUse)
	}
	_, missing := u.ms.Mailbox(n)
	mb, err := u.ms.PrepareImport(n, specialUse, uidValidity)
	if err != nil {
		return ImportMailbox{}, mapStoreErr(err, n)
	}
	if missing != nil {
		u.b.bus.event(u.acct.ID, MailboxEvent{Kind: MailboxCreated, Name: n})
	}
	if subscribe {
		changed, err := u.ms.SetSubscribed(n, true)
		if err != nil {
			return ImportMailbox{}, err
		}
		if changed {
			u.b.bus.event(u.acct.ID, MailboxEvent{Kind: MailboxSubscribed, Name: n})
		}
	}
	return mb, nil
}

// HasImportKeys reports which of the keys were imported into the mailbox
// before, so that an import run again reads and sends only the rest.
func (u *User) HasImportKeys(mailboxID uint64, keys []string) ([]bool, error) {
	has, err := u.ms.HasImportKeys(mailboxID, keys)
	return has, mapStoreErr(err, "")
}

// ImportMessages stores a batch of messages in one transaction (all or
// none), raises UIDNEXT to uidNext, and wakes the mailbox's sessions. Each
// body must be at most MaxMessageBytes.
func (u *User) ImportMessages(ctx context.Context, mailboxID uint64, msgs []ImportMessage, keepUIDs bool, uidNext uint32) (ImportResult, error) {
	batch := make([]store.ImportMessage, len(msgs))
	for i, m := range msgs {
		if int64(len(m.Body)) > u.b.opts.MaxMessageBytes {
			return ImportResult{}, fmt.Errorf("%w: message %d of the batch has %d bytes", ErrTooBig, i+1, len(m.Body))
		}
		date := m.InternalDate
		if date.IsZero() {
			date = time.Now()
		}
		batch[i] = store.ImportMessage{Key: m.Key, UID: m.UID, Body: m.Body, Parsed: ParseMessage(m.Body).marshal(),
			Flags: m.Flags, InternalDate: date}
	}
	u.b.inflight.Add(1)
	defer u.b.inflight.Done()
	res, err := u.ms.ImportMessages(mailboxID, batch, keepUIDs, uidNext)
	if err != nil {
		return ImportResult{}, mapStoreErr(err, "")
	}
	u.b.bus.notify(u.acct.ID, ChangeNew, mailboxID)
	return res, nil
}
