package backend

// Session state that IMAP needs of the backend: \Recent (RFC 3501 §2.3.2),
// and bodies that stay readable under a session that can still address an
// expunged message (RFC 2180 §4.1).

import (
	"fmt"
	"slices"
	"sync"

	"github.com/roostmail/roost/store"
)

// ErrExpunged says a message was expunged (by this or another session)
// before the record or body asked for could be read. IMAP answers a FETCH
// of such a message with a plain NO (RFC 2180 §4.1.2), never SERVERBUG. It
// also matches ErrNotFound.
var ErrExpunged = store.ErrExpunged

// ExpungedError is returned by Records when some of the UIDs asked for are
// gone. It matches ErrExpunged.
type ExpungedError struct {
	UIDs []uint32 // ascending
}

func (e *ExpungedError) Error() string {
	return fmt.Sprintf("%d of the messages asked for were expunged", len(e.UIDs))
}

// Is makes errors.Is(err, ErrExpunged) true.
func (e *ExpungedError) Is(target error) bool { return target == ErrExpunged }

// Records returns the records of uids, in the order asked. If some no
// longer exist it returns the records of the others and an *ExpungedError
// naming the missing ones: IMAP then sends the data it has and a NO
// (RFC 2180 §4.1.2).
func (u *User) Records(mailboxID uint64, uids []uint32) ([]Message, error) {
	msgs, err := u.ms.MessagesByUID(mailboxID, uids)
	if err != nil {
		return nil, mapStoreErr(err, fmt.Sprint(mailboxID))
	}
	if len(msgs) == len(uids) {
		return msgs, nil
	}
	have := make(map[uint32]bool, len(msgs))
	for _, m := range msgs {
		have[m.UID] = true
	}
	var gone []uint32
	for _, uid := range uids {
		if !have[uid] {
			gone = append(gone, uid)
		}
	}
	slices.Sort(gone)
	return msgs, &ExpungedError{UIDs: slices.Compact(gone)}
}

// ClaimRecent claims for the calling session every message of the mailbox
// that no session has claimed yet, and returns them as the UID range
// [first, next): those are \Recent for this session and no other
// (RFC 3501 §2.3.2). An IMAP4rev1 session calls it on SELECT (not EXAMINE:
// RFC 3501 §6.3.2) and whenever it learns of new messages while selected,
// and keeps the ranges it got. first == next: nothing new to claim (then
// nothing is written).
func (u *User) ClaimRecent(mailboxID uint64) (first, next uint32, err error) {
	first, next, err = u.ms.ClaimRecent(mailboxID)
	return first, next, mapStoreErr(err, fmt.Sprint(mailboxID))
}

// RecentCount returns how many messages of the mailbox no session has
// claimed as \Recent: the RECENT of EXAMINE and STATUS, which claim nothing.
func (u *User) RecentCount(mailboxID uint64) (uint32, error) {
	n, err := u.ms.RecentCount(mailboxID)
	return n, mapStoreErr(err, fmt.Sprint(mailboxID))
}

// Pin keeps readable the bodies of messages a session may still address
// after another session expunged them (RFC 2180 §4.1): an expunged body is
// deleted only once every Pin of the account has advanced past its expunge.
// A session takes a Pin before it reads a mailbox's messages on SELECT,
// advances it each time it has told its client of the expunges up to a
// modseq, and closes it on CLOSE, UNSELECT, a new SELECT or logout
// (User.Release closes what is left). A session that holds no Pin must
// expect ErrExpunged from body reads.
//
// Bodies wait on a persistent purge list, so a crash loses nothing: the
// next start empties it (store.Mailstore.PurgeBlobs).
type Pin struct {
	p      *purger
	u      *User
	synced uint64
	closed bool
}

// Pin returns a Pin at the account's current modseq: every message the
// session reads afterwards stays readable until the Pin advances past the
// message's expunge.
func (u *User) Pin() (*Pin, error) {
	pr := u.b.purgerOf(u.acct.ID, u.ms)
	// The modseq is read under the purger's lock, so that a purge that
	// runs concurrently either sees this Pin or finished deleting before
	// the session could read the mailbox.
	pr.mu.Lock()
	defer pr.mu.Unlock()
	modseq, err := u.ms.ModSeq()
	if err != nil {
		return nil, fmt.Errorf("pin bodies of %s: %w", u.acct.Address, err)
	}
	p := &Pin{p: pr, u: u, synced: modseq}
	pr.pins[p] = struct{}{}
	u.mu.Lock()
	if u.pins == nil {
		u.pins = make(map[*Pin]struct{})
	}
	u.pins[p] = struct{}{}
	u.mu.Unlock()
	return p, nil
}

// Advance records that the session has told its client of every expunge
// with a modseq up to modseq (EXPUNGE or VANISHED sent, RFC 9051 §7.5.1),
// so it can no longer address those messages. A lower modseq than before
// is ignored.
func (p *Pin) Advance(modseq uint64) {
	p.p.mu.Lock()
	if p.closed || modseq <= p.synced {
		p.p.mu.Unlock()
		return
	}
	p.synced = modseq
	p.p.mu.Unlock()
	p.p.schedule()
}

// Close releases the Pin. It is safe to call more than once.
func (p *Pin) Close() {
	p.p.mu.Lock()
	if p.closed {
		p.p.mu.Unlock()
		return
	}
	p.closed = true
	delete(p.p.pins, p)
	p.p.mu.Unlock()
	p.u.mu.Lock()
	delete(p.u.pins, p)
	p.u.mu.Unlock()
	p.p.schedule()
}

// purger deletes one account's expunged bodies once no Pin needs them.
// Purges run on a goroutine of their own, at most one per account, so that
// neither EXPUNGE nor a session's Advance waits for the purge's commit.
type purger struct {
	b   *Backend
	ms  *store.Mailstore
	acc uint64

	mu      sync.Mutex
	pins    map[*Pin]struct{}
	running bool
	again   bool
	// pending is a lower bound of the modseqs on the account's purge list
	// (0: the list is empty).
	pending uint64
}

// purgerOf returns the account's purger, made on first use. A new one
// starts with a purge of whatever the list holds: this process has no
// session on the account yet, so nothing on the list can be addressed (a
// restart cleans up what a crash or a busy shutdown left pending). It
// follows the account's Mailstore if the store opened the file anew, and
// keeps its Pins.
func (b *Backend) purgerOf(account uint64, ms *store.Mailstore) *purger {
	b.mu.Lock()
	pr := b.purgers[account]
	if pr != nil {
		b.mu.Unlock()
		pr.mu.Lock()
		pr.ms = ms
		pr.mu.Unlock()
		return pr
	}
	pr = &purger{b: b, ms: ms, acc: account, pins: make(map[*Pin]struct{}), pending: 1}
	b.purgers[account] = pr
	b.mu.Unlock()
	pr.schedule()
	return pr
}

// horizon is the highest modseq up to which no Pin can address an
// expunged message. Call with mu held.
func (pr *purger) horizon() uint64 {
	h := ^uint64(0)
	for p := range pr.pins {
		h = min(h, p.synced)
	}
	return h
}

// expunge expunges through the store. Without a Pin on the account no
// session can address the messages, so their bodies go in the same
// transaction; the lock, held until it committed, makes a concurrent Pin
// wait and then read the mailbox without them. With Pins, the bodies wait
// on the purge list.
func (pr *purger) expunge(ms *store.Mailstore, mailboxID uint64, uids []uint32, requireDeleted bool) ([]uint32, error) {
	pr.mu.Lock()
	if len(pr.pins) == 0 {
		defer pr.mu.Unlock()
		out, err := ms.ExpungeAndPurge(mailboxID, uids, requireDeleted)
		if err == nil && len(out) > 0 {
			pr.pending = 0
		}
		return out, err
	}
	pr.mu.Unlock()
	out, err := ms.Expunge(mailboxID, uids, requireDeleted)
	if len(out) > 0 {
		pr.expunged()
	}
	return out, err
}

// expunged tells the purger that an expunge may have put bodies on the
// purge list. (The purge reads the list's real lowest modseq.)
func (pr *purger) expunged() {
	pr.mu.Lock()
	pr.pending = 1
	pr.mu.Unlock()
	pr.schedule()
}

// schedule starts a purge if one could delete something now.
func (pr *purger) schedule() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.pending == 0 || pr.pending > pr.horizon() {
		return
	}
	if pr.running {
		pr.again = true
		return
	}
	pr.running = true
	pr.b.inflight.Add(1)
	go pr.run()
}

func (pr *purger) run() {
	defer pr.b.inflight.Done()
	for {
		// The horizon is at most the modseq committed now, read under the
		// lock that Pin takes too: a Pin taken after this reads a modseq
		// at least as high, so its session read the mailbox after those
		// expunges committed and cannot address their messages; expunges
		// committed later are above the horizon.
		pr.mu.Lock()
		ms := pr.ms
		h := pr.horizon()
		now, err := ms.ModSeq()
		h = min(h, now)
		pr.again = false
		pr.mu.Unlock()
		var n int
		var pending uint64
		if err == nil {
			n, pending, err = ms.PurgeBlobs(h)
		}
		pr.mu.Lock()
		if err != nil {
			pr.b.log.Error("purge of expunged bodies failed", "account", pr.acc, "err", err)
		} else {
			pr.pending = pending
			if n > 0 {
				pr.b.log.Debug("expunged bodies purged", "account", pr.acc, "bodies", n)
			}
		}
		if !pr.again || err != nil {
			pr.running = false
			pr.mu.Unlock()
			return
		}
		pr.mu.Unlock()
	}
}

// waitPurges waits until no purge is running (for tests).
func (b *Backend) waitPurges() {
	for {
		b.mu.Lock()
		prs := make([]*purger, 0, len(b.purgers))
		for _, pr := range b.purgers {
			prs = append(prs, pr)
		}
		b.mu.Unlock()
		busy := false
		for _, pr := range prs {
			pr.mu.Lock()
			busy = busy || pr.running
			pr.mu.Unlock()
		}
		if !busy {
			return
		}
		b.inflight.Wait()
	}
}
