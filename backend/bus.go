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
type bus struct {
	mu       sync.Mutex
	watchers map[mailboxKey]map[*Watcher]struct{}
}

type mailboxKey struct {
	account uint64
	mailbox uint64
}

func newBus() *bus {
	return &bus{watchers: make(map[mailboxKey]map[*Watcher]struct{})}
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

func (b *bus) notify(account uint64, mailboxes ...uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, mb := range mailboxes {
		for w := range b.watchers[mailboxKey{account, mb}] {
			select {
			case w.c <- struct{}{}:
			default:
			}
		}
	}
}
