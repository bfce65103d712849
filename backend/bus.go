package backend

import "sync"

// bus is the in-process change notification of one Backend. A write to a
// mailbox (delivery, APPEND, flag change, expunge, move, POP3 deletion)
// wakes every Watcher of that mailbox after it has committed.
//
// A wake-up carries no data: the watcher then reads the mailbox's change log
// since the last modseq it saw (User.ChangesSince). Because that log is
// ordered by modseq, every watcher sees changes in commit order, however
// the wake-ups interleave, and a slow watcher can never make the queue grow:
// wake-ups coalesce into one pending signal per watcher.
//
// An AccountWatcher (IMAP NOTIFY, RFC 5465) sees the whole account: every
// mailbox's commits, coalesced into one entry per mailbox with the kinds of
// change, and the changes of the mailbox list and of the subscriptions, in
// order. Its pending entries are bounded: past its limit it drops them and
// reports an overflow instead.
type bus struct {
	mu       sync.Mutex
	watchers map[mailboxKey]map[*Watcher]struct{}
	accounts map[uint64]map[*AccountWatcher]struct{}
}

type mailboxKey struct {
	account uint64
	mailbox uint64
}

func newBus() *bus {
	return &bus{
		watchers: make(map[mailboxKey]map[*Watcher]struct{}),
		accounts: make(map[uint64]map[*AccountWatcher]struct{}),
	}
}

// Watcher is a subscription to changes of one mailbox.
type Watcher struct {
	c   chan struct{}
	bus *bus
	key mailboxKey
}

// C receives a value when the mailbox may have changed since the last
// receive. Pending signals coalesce.
func (w *Watcher) C() <-chan struct{} { return w.c }

// Close ends the subscription.
func (w *Watcher) Close() {
	w.bus.mu.Lock()
	defer w.bus.mu.Unlock()
	if m := w.bus.watchers[w.key]; m != nil {
		delete(m, w)
		if len(m) == 0 {
			delete(w.bus.watchers, w.key)
		}
	}
}

func (b *bus) watch(account, mailbox uint64) *Watcher {
	w := &Watcher{c: make(chan struct{}, 1), bus: b, key: mailboxKey{account, mailbox}}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.watchers[w.key]
	if m == nil {
		m = make(map[*Watcher]struct{})
		b.watchers[w.key] = m
	}
	m[w] = struct{}{}
	return w
}

// ChangeKind says what a commit changed in a mailbox, for AccountWatchers.
type ChangeKind uint8

const (
	ChangeNew     ChangeKind = 1 << iota // messages added: delivery, APPEND, COPY or MOVE in, import
	ChangeExpunge                        // messages removed: EXPUNGE, MOVE out, retention, POP3
	ChangeFlags                          // flags changed
)

// MailboxEventKind is a kind of change of the mailbox list or the
// subscriptions.
type MailboxEventKind uint8

const (
	MailboxCreated MailboxEventKind = iota + 1
	MailboxDeleted
	MailboxRenamed // one event for each mailbox renamed, children included
	MailboxSubscribed
	MailboxUnsubscribed
)

// MailboxEvent is one change of an account's mailbox list or
// subscriptions.
type MailboxEvent struct {
	Kind    MailboxEventKind
	Name    string // the mailbox (for MailboxRenamed: its new name)
	OldName string // MailboxRenamed: the name before
}

// AccountChanges is what an AccountWatcher gathered since the last Take.
type AccountChanges struct {
	// Mailboxes are the mailboxes with commits, by ID, with the kinds of
	// change seen (one entry per mailbox, however many commits).
	Mailboxes map[uint64]ChangeKind
	// Events are the changes of the mailbox list and the subscriptions,
	// in the order they were made.
	Events []MailboxEvent
	// Overflow says the watcher held more than its limit: what it held
	// was dropped, and it gathered nothing more until this Take.
	Overflow bool
}

// Empty reports whether nothing was gathered.
func (a AccountChanges) Empty() bool {
	return len(a.Mailboxes) == 0 && len(a.Events) == 0 && !a.Overflow
}

// AccountWatcher is a subscription to every change of one account. It
// holds at most limit entries (changed mailboxes plus events) between two
// Takes.
type AccountWatcher struct {
	c       chan struct{}
	bus     *bus
	account uint64
	limit   int

	mu      sync.Mutex
	pending AccountChanges
}

// C receives a value when something was gathered since the last receive.
// Pending signals coalesce.
func (w *AccountWatcher) C() <-chan struct{} { return w.c }

// Take returns what was gathered and starts afresh.
func (w *AccountWatcher) Take() AccountChanges {
	select {
	case <-w.c:
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.pending
	w.pending = AccountChanges{}
	return out
}

// Close ends the subscription.
func (w *AccountWatcher) Close() {
	w.bus.mu.Lock()
	defer w.bus.mu.Unlock()
	if m := w.bus.accounts[w.account]; m != nil {
		delete(m, w)
		if len(m) == 0 {
			delete(w.bus.accounts, w.account)
		}
	}
}

// mailboxChange is what one commit did to one mailbox.
type mailboxChange struct {
	mailbox uint64
	kind    ChangeKind
}

// add records what one commit did, at once: a Take sees all of it or none.
func (w *AccountWatcher) add(changes []mailboxChange, evs []MailboxEvent) {
	w.mu.Lock()
	p := &w.pending
	if !p.Overflow {
		for _, c := range changes {
			if p.Mailboxes == nil {
				p.Mailboxes = make(map[uint64]ChangeKind)
			}
			p.Mailboxes[c.mailbox] |= c.kind
		}
		p.Events = append(p.Events, evs...)
		if w.limit > 0 && len(p.Mailboxes)+len(p.Events) > w.limit {
			*p = AccountChanges{Overflow: true}
		}
	}
	w.mu.Unlock()
	select {
	case w.c <- struct{}{}:
	default:
	}
}

func (b *bus) watchAccount(account uint64, limit int) *AccountWatcher {
	w := &AccountWatcher{c: make(chan struct{}, 1), bus: b, account: account, limit: limit}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.accounts[account]
	if m == nil {
		m = make(map[*AccountWatcher]struct{})
		b.accounts[account] = m
	}
	m[w] = struct{}{}
	return w
}

// publish tells the watchers what one commit did: to mailboxes (a kind 0
// wakes the mailbox's watchers only, e.g. it was deleted) and to the
// mailbox list or the subscriptions.
func (b *bus) publish(account uint64, changes []mailboxChange, evs []MailboxEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	told := changes[:0:0]
	for _, c := range changes {
		for w := range b.watchers[mailboxKey{account, c.mailbox}] {
			select {
			case w.c <- struct{}{}:
			default:
			}
		}
		if c.kind != 0 {
			told = append(told, c)
		}
	}
	if len(told) == 0 && len(evs) == 0 {
		return
	}
	for w := range b.accounts[account] {
		w.add(told, evs)
	}
}

// notify tells the watchers of mailboxes of a commit that made changes of
// kind there.
func (b *bus) notify(account uint64, kind ChangeKind, mailboxes ...uint64) {
	changes := make([]mailboxChange, len(mailboxes))
	for i, mb := range mailboxes {
		changes[i] = mailboxChange{mb, kind}
	}
	b.publish(account, changes, nil)
}

// event tells the account's watchers of changes of the mailbox list or the
// subscriptions, after they have committed.
func (b *bus) event(account uint64, evs ...MailboxEvent) { b.publish(account, nil, evs) }
