package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/roostmail/roost/store"
)

// The outbound queue: messages submitted by users (RFC 6409) wait here,
// durably, until package outbound has delivered them to every recipient
// or given up. The backend only keeps them; outbound decides when and how
// they are sent.

// Types of the outbound queue, shared with the store.
type (
	QueueEntry     = store.QueueEntry
	QueueRecipient = store.QueueRecipient
	RecipientState = store.RecipientState
)

// Recipient states of a queued message.
const (
	RecipientPending   = store.RecipientPending
	RecipientDelivered = store.RecipientDelivered
	RecipientFailed    = store.RecipientFailed
)

// ErrNotQueued is returned for a queue ID that names no queued message.
var ErrNotQueued = errors.New("no such queued message")

// Outgoing is a message a user submits for sending.
type Outgoing struct {
	// From is the envelope sender (the account's address or an alias).
	From string
	// Account is the address of the account that submitted it.
	Account string
	// Recipients are the envelope recipients, normalised.
	Recipients []string
	// Body is the whole message, trace header included.
	Body []byte
}

func (b *Backend) queueErr(err error, id uint64) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %d", ErrNotQueued, id)
	}
	return err
}

// Enqueue stores m in the outbound queue and returns its entry once it is
// durable (fsynced): only then may the submission be acknowledged.
func (b *Backend) Enqueue(ctx context.Context, m Outgoing, nextAttempt time.Time) (QueueEntry, error) {
	if len(m.Recipients) == 0 {
		return QueueEntry{}, errors.New("enqueue: no recipients")
	}
	if int64(len(m.Body)) > b.opts.MaxMessageBytes {
		return QueueEntry{}, ErrTooBig
	}
	rcpts := make([]QueueRecipient, len(m.Recipients))
	for i, r := range m.Recipients {
		rcpts[i] = QueueRecipient{Address: r, State: RecipientPending}
	}
	return b.queue.Add(QueueEntry{From: m.From, Account: m.Account, NextAttempt: nextAttempt, Recipients: rcpts}, m.Body)
}

// Queued returns one queued message's entry.
func (b *Backend) Queued(ctx context.Context, id uint64) (QueueEntry, error) {
	e, err := b.queue.Get(id)
	return e, b.queueErr(err, id)
}

// QueuedList returns every queued message, oldest first.
func (b *Backend) QueuedList(ctx context.Context) ([]QueueEntry, error) { return b.queue.List() }

// QueueLen returns the number of queued messages.
func (b *Backend) QueueLen() int { return b.queue.Len() }

// QueuedBody returns a reader over a queued message.
func (b *Backend) QueuedBody(ctx context.Context, id uint64) (io.Reader, error) {
	r, err := b.queue.Body(id)
	return r, b.queueErr(err, id)
}

// UpdateQueued changes a queued message's state durably.
func (b *Backend) UpdateQueued(ctx context.Context, id uint64, fn func(*QueueEntry) error) (QueueEntry, error) {
	e, err := b.queue.Update(id, fn)
	return e, b.queueErr(err, id)
}

// DeleteQueued removes a queued message.
func (b *Backend) DeleteQueued(ctx context.Context, id uint64) error {
	return b.queueErr(b.queue.Delete(id), id)
}

// MaySendAs reports whether the account may use addr as its sender (the
// envelope sender and the From: header of what it submits): its own
// address or one of its aliases, also with a "+tag" subaddress (RFC 5233)
// of either.
func (b *Backend) MaySendAs(ctx context.Context, account, addr string) bool {
	a, err := NormalizeAddress(addr)
	if err != nil {
		return false
	}
	candidates := []string{a}
	local, domain, _ := strings.Cut(a, "@")
	if base, _, ok := strings.Cut(local, "+"); ok && base != "" {
		candidates = append(candidates, base+"@"+domain)
	}
	for _, c := range candidates {
		if c == account {
			return true
		}
		if t, err := b.store.Alias(c); err == nil && t == account {
			return true
		}
	}
	return false
}
