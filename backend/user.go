package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/roostmail/roost/store"
)

// User is an authenticated account: the handle through which a session
// reads and changes its mail. It is safe for concurrent use.
type User struct {
	b       *Backend
	acct    store.Account
	ms      *store.Mailstore
	gone    chan struct{}
	release func() // lets go of the account's mail file (store.Mailstore.Hold)

	mu   sync.Mutex
	pins map[*Pin]struct{} // open Pins taken through this handle; Release closes them
}

// Gone is closed when the account is deleted (Backend.DeleteUser): a
// session selects on it and ends (IMAP BYE, POP3 -ERR) instead of failing
// on every later command.
func (u *User) Gone() <-chan struct{} { return u.gone }

// Release tells the backend a session is done with this handle: until
// then the account's mail file stays open (it is never closed under a
// session); after it the file may be closed when idle ([store] idle_close,
// max_open_files), and a deleted account's file is removed once its last
// session has released it. It also closes the Pins the session left open,
// so that a session that ends abruptly cannot keep expunged bodies for
// good. Sessions (IMAP, POP3, submission) call it exactly once, when they
// end; more calls do nothing. The User must not be used after it.
func (u *User) Release() {
	u.mu.Lock()
	pins := make([]*Pin, 0, len(u.pins))
	for p := range u.pins {
		pins = append(pins, p)
	}
	u.mu.Unlock()
	for _, p := range pins {
		p.Close()
	}
	if u.release != nil {
		u.release()
	}
}

// Address returns the account's address.
func (u *User) Address() string { return u.acct.Address }

// ID returns the account's numeric ID.
func (u *User) ID() uint64 { return u.acct.ID }

// QuotaBytes returns the account's byte quota in force (0: none).
func (u *User) QuotaBytes() int64 { return u.b.limits(u.acct).Bytes }

// UsedBytes returns the total size of the account's messages.
func (u *User) UsedBytes() (int64, error) { return u.ms.AccountSize() }

// Quota is an account's usage and limits (a limit of 0 means none), as
// IMAP QUOTA (RFC 9208 STORAGE and MESSAGE) and the admin CLI report them.
type Quota struct {
	UsedBytes, LimitBytes       int64
	UsedMessages, LimitMessages int64
}

// Quota returns the account's usage against its limits in force (its own,
// or the default).
func (u *User) Quota() (Quota, error) {
	l := u.limits()
	q := Quota{LimitBytes: l.Bytes, LimitMessages: l.Messages}
	var err error
	if q.UsedBytes, err = u.ms.AccountSize(); err != nil {
		return q, fmt.Errorf("quota of %s: %w", u.acct.Address, err)
	}
	boxes, err := u.ms.Mailboxes()
	if err != nil {
		return q, fmt.Errorf("quota of %s: %w", u.acct.Address, err)
	}
	for _, mb := range boxes {
		q.UsedMessages += int64(mb.Messages)
	}
	return q, nil
}

// limits returns the account's quota in force now: read afresh, so that a
// change (roost user quota) applies to sessions already logged in.
func (u *User) limits() store.Limits {
	acct := u.acct
	if a, err := u.b.store.Account(u.acct.Address); err == nil {
		acct = a
	}
	return u.b.limits(acct)
}

// NormalizeMailboxName checks a mailbox name and returns its canonical form:
// "INBOX" in any case is INBOX (RFC 9051 §5.1), also as the first level of
// a hierarchy, and a trailing separator is dropped (RFC 9051 §6.3.4).
func NormalizeMailboxName(name string) (string, error) {
	name = strings.TrimSuffix(name, Separator)
	bad := name == "" || len(name) > 1000 || !utf8.ValidString(name) ||
		strings.HasPrefix(name, Separator) || strings.Contains(name, Separator+Separator) ||
		strings.ContainsAny(name, "*%")
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			bad = true
		}
	}
	if bad {
		return "", fmt.Errorf("%w: %q", ErrInvalidMailbox, name)
	}
	first, rest, hasRest := strings.Cut(name, Separator)
	if strings.EqualFold(first, Inbox) {
		if hasRest {
			return Inbox + Separator + rest, nil
		}
		return Inbox, nil
	}
	return name, nil
}

func mapStoreErr(err error, name string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrExpunged):
		return err
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrNoSuchMailbox, name)
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%w: %s", ErrMailboxExists, name)
	case errors.Is(err, store.ErrInvalidName):
		return fmt.Errorf("%w: %s", ErrInvalidMailbox, name)
	}
	return err
}

// Mailboxes lists the account's mailboxes, sorted by name.
func (u *User) Mailboxes() ([]Mailbox, error) { return u.ms.Mailboxes() }

// Mailbox returns a mailbox by name, with its counters.
func (u *User) Mailbox(name string) (Mailbox, error) {
	n, err := NormalizeMailboxName(name)
	if err != nil {
		return Mailbox{}, err
	}
	mb, err := u.ms.Mailbox(n)
	return mb, mapStoreErr(err, n)
}

// MailboxByID returns a mailbox by ID, with its counters.
func (u *User) MailboxByID(id uint64) (Mailbox, error) {
	mb, err := u.ms.MailboxByID(id)
	return mb, mapStoreErr(err, fmt.Sprint(id))
}

// CreateMailbox creates a mailbox. specialUse is an RFC 6154 attribute
// such as `\Sent`, or "".
func (u *User) CreateMailbox(name, specialUse string) error {
	n, err := NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	switch specialUse {
	case "", `\All`, `\Archive`, `\Drafts`, `\Flagged`, `\Junk`, `\Sent`, `\Trash`:
	default:
		return fmt.Errorf("%w: unknown special-use %s", ErrInvalidMailbox, specialUse)
	}
	if _, err = u.ms.CreateMailbox(n, specialUse); err != nil {
		return mapStoreErr(err, n)
	}
	u.b.bus.event(u.acct.ID, MailboxEvent{Kind: MailboxCreated, Name: n})
	return nil
}

// DeleteMailbox deletes a mailbox and its messages. Child mailboxes stay.
func (u *User) DeleteMailbox(name string) error {
	n, err := NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	if n == Inbox {
		return ErrCannotDeleteInbox
	}
	mb, err := u.ms.Mailbox(n)
	if err != nil {
		return mapStoreErr(err, n)
	}
	if err := u.ms.DeleteMailbox(n); err != nil {
		return mapStoreErr(err, n)
	}
	u.b.purgerOf(u.acct.ID, u.ms).expunged()
	u.b.bus.publish(u.acct.ID, []mailboxChange{{mb.ID, 0}}, []MailboxEvent{{Kind: MailboxDeleted, Name: n}})
	return nil
}

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves
// its messages into a new mailbox and leaves INBOX empty (RFC 9051 §6.3.6).
func (u *User) RenameMailbox(oldName, newName string) error {
	from, err := NormalizeMailboxName(oldName)
	if err != nil {
		return err
	}
	to, err := NormalizeMailboxName(newName)
	if err != nil {
		return err
	}
	if from == to {
		return fmt.Errorf("%w: %s", ErrMailboxExists, to)
	}
	if strings.HasPrefix(to, from+Separator) {
		return fmt.Errorf("%w: cannot rename %s into itself", ErrInvalidMailbox, from)
	}
	if from == Inbox {
		return u.renameInbox(to)
	}
	all, err := u.ms.Mailboxes()
	if err != nil {
		return err
	}
	var renames [][2]string
	for _, mb := range all {
		if mb.Name == from {
			renames = append(renames, [2]string{from, to})
		} else if strings.HasPrefix(mb.Name, from+Separator) {
			renames = append(renames, [2]string{mb.Name, to + strings.TrimPrefix(mb.Name, from)})
		}
	}
	if !hasName(all, from) {
		return fmt.Errorf("%w: %s", ErrNoSuchMailbox, from)
	}
	if err := u.ms.RenameMailboxes(renames); err != nil {
		return mapStoreErr(err, to)
	}
	// Subscriptions follow the mailboxes (the rename events say so).
	subs, _ := u.ms.Subscriptions()
	evs := make([]MailboxEvent, 0, len(renames))
	for _, r := range renames {
		for _, s := range subs {
			if s == r[0] {
				u.ms.SetSubscribed(r[0], false)
				u.ms.SetSubscribed(r[1], true)
			}
		}
		evs = append(evs, MailboxEvent{Kind: MailboxRenamed, Name: r[1], OldName: r[0]})
	}
	u.b.bus.event(u.acct.ID, evs...)
	return nil
}

func hasName(all []Mailbox, name string) bool {
	for _, mb := range all {
		if mb.Name == name {
			return true
		}
	}
	return false
}

func (u *User) renameInbox(to string) error {
	inbox, err := u.ms.Mailbox(Inbox)
	if err != nil {
		return mapStoreErr(err, Inbox)
	}
	dst, err := u.ms.CreateMailbox(to, "")
	if err != nil {
		return mapStoreErr(err, to)
	}
	created := []MailboxEvent{{Kind: MailboxCreated, Name: to}}
	uids, err := u.ms.UIDs(inbox.ID)
	if err == nil {
		_, err = u.ms.Copy(inbox.ID, uids, dst.ID, true, store.Limits{})
	}
	if err != nil {
		u.b.bus.event(u.acct.ID, created...)
		return err
	}
	// One publication: a watcher sees the new mailbox with INBOX's
	// messages in it, never half of the move.
	u.b.bus.publish(u.acct.ID, []mailboxChange{{inbox.ID, ChangeExpunge}, {dst.ID, ChangeNew}}, created)
	return nil
}

// Subscribe subscribes to (on) or unsubscribes from a mailbox name.
func (u *User) Subscribe(name string, on bool) error {
	n, err := NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	if on {
		if _, err := u.ms.Mailbox(n); err != nil {
			return mapStoreErr(err, n)
		}
	}
	changed, err := u.ms.SetSubscribed(n, on)
	if err != nil || !changed {
		return err
	}
	kind := MailboxUnsubscribed
	if on {
		kind = MailboxSubscribed
	}
	u.b.bus.event(u.acct.ID, MailboxEvent{Kind: kind, Name: n})
	return nil
}

// Subscriptions returns the subscribed mailbox names.
func (u *User) Subscriptions() ([]string, error) { return u.ms.Subscriptions() }

// Append stores a message (read from r, at most MaxMessageBytes) in the
// named mailbox. A zero date means now.
func (u *User) Append(ctx context.Context, mailbox string, r io.Reader, flags []string, date time.Time) (AppendResult, error) {
	n, err := NormalizeMailboxName(mailbox)
	if err != nil {
		return AppendResult{}, err
	}
	if _, err := u.ms.Mailbox(n); err != nil {
		return AppendResult{}, mapStoreErr(err, n)
	}
	sp := u.b.NewSpool()
	defer sp.Close()
	if _, err := io.Copy(sp, r); err != nil {
		return AppendResult{}, err
	}
	body, err := sp.Bytes()
	if err != nil {
		return AppendResult{}, err
	}
	if date.IsZero() {
		date = time.Now()
	}
	u.b.inflight.Add(1)
	defer u.b.inflight.Done()
	parsed := ParseMessage(body).marshal()
	res, err := u.ms.Append(n, store.NewMessage{Body: body, Parsed: parsed, Flags: flags, InternalDate: date}, u.limits())
	if err != nil {
		return AppendResult{}, mapStoreErr(err, n)
	}
	u.b.bus.notify(u.acct.ID, ChangeNew, res.MailboxID)
	return res, nil
}

// UIDs returns the UIDs of a mailbox in ascending order.
func (u *User) UIDs(mailboxID uint64) ([]uint32, error) {
	uids, err := u.ms.UIDs(mailboxID)
	return uids, mapStoreErr(err, "")
}

// Messages calls fn for every message with minUID <= UID <= maxUID in UID
// order. fn runs inside a read transaction: it must not call back into the
// User; collect what you need and act afterwards.
func (u *User) Messages(mailboxID uint64, minUID, maxUID uint32, fn func(Message) error) error {
	return mapStoreErr(u.ms.Messages(mailboxID, minUID, maxUID, fn), "")
}

// MessagesByUID returns the records of those of uids that exist.
func (u *User) MessagesByUID(mailboxID uint64, uids []uint32) ([]Message, error) {
	msgs, err := u.ms.MessagesByUID(mailboxID, uids)
	return msgs, mapStoreErr(err, "")
}

// Parsed returns the envelope and MIME structure of a message. A message
// stored by an older Roost, whose parsed form lacks what this one records,
// is parsed again from its body (and not rewritten).
func (u *User) Parsed(msg *Message) (*Parsed, error) {
	raw, err := u.ms.Parsed(msg.BlobID)
	if err != nil {
		return nil, err
	}
	p, err := unmarshalParsed(raw)
	if err != nil {
		return nil, fmt.Errorf("parsed form of message %d: %w", msg.UID, err)
	}
	if p.Version < parsedVersion {
		return u.reparse(msg)
	}
	return p, nil
}

func (u *User) reparse(msg *Message) (*Parsed, error) {
	body, err := u.ms.ReadBody(msg.BlobID)
	if err != nil {
		return nil, err
	}
	return ParseMessage(body), nil
}

// OpenBody returns a streaming reader over the raw message.
func (u *User) OpenBody(msg *Message) *BodyReader { return u.ms.OpenBody(msg.BlobID, msg.Size) }

// ReadBody returns the whole raw message.
func (u *User) ReadBody(msg *Message) ([]byte, error) { return u.ms.ReadBody(msg.BlobID) }

// StoreFlags changes flags (see store.Mailstore.StoreFlags) and wakes the
// mailbox's watchers.
func (u *User) StoreFlags(mailboxID uint64, uids []uint32, op FlagOp, flags []string, unchangedSince uint64) (updated []Message, modified []uint32, err error) {
	updated, modified, err = u.ms.StoreFlags(mailboxID, uids, op, flags, unchangedSince)
	if err != nil {
		return nil, nil, mapStoreErr(err, "")
	}
	if len(updated) > 0 {
		u.b.bus.notify(u.acct.ID, ChangeFlags, mailboxID)
	}
	return updated, modified, nil
}

// Copy copies messages into the named mailbox; with move they leave the
// source (RFC 6851), atomically.
func (u *User) Copy(mailboxID uint64, uids []uint32, dest string, move bool) (CopyResult, error) {
	n, err := NormalizeMailboxName(dest)
	if err != nil {
		return CopyResult{}, err
	}
	dst, err := u.ms.Mailbox(n)
	if err != nil {
		return CopyResult{}, mapStoreErr(err, n)
	}
	res, err := u.ms.Copy(mailboxID, uids, dst.ID, move, u.limits())
	if err != nil {
		return CopyResult{}, mapStoreErr(err, n)
	}
	if len(res.DestUIDs) > 0 {
		var src ChangeKind // a copy changes nothing in its source
		if move {
			src = ChangeExpunge
		}
		u.b.bus.publish(u.acct.ID, []mailboxChange{{mailboxID, src}, {dst.ID, ChangeNew}}, nil)
	}
	return res, nil
}

// Expunge removes messages (see store.Mailstore.Expunge) and wakes the
// mailbox's watchers. It returns the expunged UIDs, ascending.
//
// Bodies of the expunged messages stay readable while a session's Pin may
// still address them (see Pin); with no Pin on the account they go at once.
func (u *User) Expunge(mailboxID uint64, uids []uint32, requireDeleted bool) ([]uint32, error) {
	out, err := u.b.purgerOf(u.acct.ID, u.ms).expunge(u.ms, mailboxID, uids, requireDeleted)
	if err != nil {
		return nil, mapStoreErr(err, "")
	}
	if len(out) > 0 {
		u.b.bus.notify(u.acct.ID, ChangeExpunge, mailboxID)
	}
	return out, nil
}

// ChangesSince returns the mailbox's change log after modseq, oldest first.
func (u *User) ChangesSince(mailboxID uint64, modseq uint64) ([]Change, error) {
	ch, err := u.ms.ChangesSince(mailboxID, modseq)
	return ch, mapStoreErr(err, "")
}

// Watch subscribes to changes of a mailbox. Close the Watcher when done.
func (u *User) Watch(mailboxID uint64) *Watcher { return u.b.bus.watch(u.acct.ID, mailboxID) }

// WatchAccount subscribes to every change of the account: commits to any
// mailbox (with their kinds), and mailbox creations, deletions, renames and
// subscription changes, whichever session or delivery made them. It holds
// at most limit entries between Takes (0: no limit). Close it when done.
func (u *User) WatchAccount(limit int) *AccountWatcher {
	return u.b.bus.watchAccount(u.acct.ID, limit)
}

// LockMaildrop takes the account's exclusive POP3 maildrop lock (RFC 1939
// §8). It fails with ErrInUse if another POP3 session holds it.
func (u *User) LockMaildrop() (release func(), err error) {
	u.b.mu.Lock()
	defer u.b.mu.Unlock()
	if u.b.pop3[u.acct.ID] {
		return nil, ErrInUse
	}
	u.b.pop3[u.acct.ID] = true
	released := false
	return func() {
		u.b.mu.Lock()
		defer u.b.mu.Unlock()
		if !released {
			released = true
			delete(u.b.pop3, u.acct.ID)
		}
	}, nil
}
