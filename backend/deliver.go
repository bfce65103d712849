package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/roostmail/roost/store"
)

// Recipient is a resolved local recipient.
type Recipient struct {
	// Address is the recipient as given (normalised).
	Address string
	// Account is the address of the account that receives the mail.
	Account string

	acct store.Account
}

// ResolveRecipient checks a recipient address at RCPT time and finds the
// account it delivers to: case-insensitively, through aliases, and with a
// "+tag" subaddress (RFC 5233) removed when no account or alias carries the
// full local part. When nothing matches, a catch-all alias of the domain
// ("*@domain", see CatchAll) takes the mail: it comes last, after accounts
// and exact aliases, with and without the tag. Errors: ErrInvalidAddress,
// ErrRelayDenied (domain not served), ErrNoSuchUser, ErrAccountDisabled
// (disabled with mail refused; a disabled account still receives mail
// otherwise), ErrOverQuota (at or over a limit already).
func (b *Backend) ResolveRecipient(ctx context.Context, rcpt string) (Recipient, error) {
	addr, err := NormalizeAddress(rcpt)
	if err != nil {
		return Recipient{}, err
	}
	local, domain, _ := strings.Cut(addr, "@")
	if !b.ServesDomain(domain) {
		return Recipient{}, fmt.Errorf("%w: %s", ErrRelayDenied, domain)
	}
	candidates := []string{addr}
	if base, _, ok := strings.Cut(local, "+"); ok && base != "" {
		candidates = append(candidates, base+"@"+domain)
	}
	// The catch-all is only an alias: "*@domain" itself is never an account.
	candidates = append(candidates, CatchAll(domain))
	for _, c := range candidates {
		target := c
		acct, err := store.Account{}, error(store.ErrNotFound)
		if !strings.HasPrefix(c, "*@") {
			acct, err = b.store.Account(target)
		}
		if errors.Is(err, store.ErrNotFound) {
			if t, aerr := b.store.Alias(c); aerr == nil {
				target = t
				acct, err = b.store.Account(target)
			}
		}
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return Recipient{}, err
		}
		if acct.Disabled && acct.RejectMail {
			return Recipient{}, fmt.Errorf("%w: %s", ErrAccountDisabled, acct.Address)
		}
		if over, err := b.overQuota(acct); err != nil {
			return Recipient{}, err
		} else if over {
			return Recipient{}, fmt.Errorf("%w: %s", ErrOverQuota, acct.Address)
		}
		return Recipient{Address: addr, Account: acct.Address, acct: acct}, nil
	}
	return Recipient{}, fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
}

// CatchAll is the alias address that receives a domain's mail for which no
// account or alias exists: "*@domain". Mail to it goes to its target
// account like any alias's.
func CatchAll(domain string) string { return "*@" + domain }

// MessageComing tells the store that a delivery has begun to receive its
// message (store.Store.AppendsComing), so that concurrent deliveries
// share their sync; call the returned func when the delivery is over.
func (b *Backend) MessageComing() (done func()) { return b.store.AppendsComing() }

// Deliver stores one message into the INBOX of every recipient's account and
// returns one result per recipient, in order. A nil result means the message
// is durably stored (fsynced) for that recipient. Recipients that resolve to
// the same account get one copy. Accounts are written in parallel.
//
// body must stay valid until Deliver returns (a Spool's Bytes does).
func (b *Backend) Deliver(ctx context.Context, body []byte, rcpts []Recipient) []error {
	b.inflight.Add(1)
	defer b.inflight.Done()
	results := make([]error, len(rcpts))
	if b.opts.OnDeliver != nil {
		defer func() { b.opts.OnDeliver(results) }()
	}
	if int64(len(body)) > b.opts.MaxMessageBytes {
		for i := range results {
			results[i] = ErrTooBig
		}
		return results
	}
	parsed := ParseMessage(body).marshal()
	byAccount := make(map[uint64][]int)
	var order []store.Account
	for i, r := range rcpts {
		if _, ok := byAccount[r.acct.ID]; !ok {
			order = append(order, r.acct)
		}
		byAccount[r.acct.ID] = append(byAccount[r.acct.ID], i)
	}
	now := time.Now()
	if len(order) == 1 {
		// One account (most mail): no goroutine to hand it to and back.
		err := b.deliverTo(order[0], body, parsed, now)
		for _, i := range byAccount[order[0].ID] {
			results[i] = err
		}
		return results
	}
	var wg sync.WaitGroup
	for _, acct := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := b.deliverTo(acct, body, parsed, now)
			for _, i := range byAccount[acct.ID] {
				results[i] = err
			}
		}()
	}
	wg.Wait()
	return results
}

func (b *Backend) deliverTo(acct store.Account, body, parsed []byte, now time.Time) error {
	if acct.ID == 0 {
		return fmt.Errorf("deliver: unresolved recipient")
	}
	ms, err := b.store.Mailstore(acct.ID)
	if errors.Is(err, store.ErrAccountDeleted) {
		// Deleted since RCPT: the mail is refused, not stored (550 5.1.1).
		return fmt.Errorf("%w: %s (deleted)", ErrNoSuchUser, acct.Address)
	}
	if err != nil {
		return fmt.Errorf("deliver to %s: %w", acct.Address, err)
	}
	quota := b.limits(acct)
	res, err := ms.Append(Inbox, store.NewMessage{Body: body, Parsed: parsed, InternalDate: now}, quota)
	if errors.Is(err, store.ErrAccountDeleted) {
		return fmt.Errorf("%w: %s (deleted)", ErrNoSuchUser, acct.Address)
	}
	if errors.Is(err, store.ErrNotFound) {
		// INBOX can never be deleted; recreate it if a damaged file lacks it.
		if _, cerr := ms.CreateMailbox(Inbox, ""); cerr == nil || errors.Is(cerr, store.ErrExists) {
			res, err = ms.Append(Inbox, store.NewMessage{Body: body, Parsed: parsed, InternalDate: now}, quota)
		}
	}
	if err != nil {
		if errors.Is(err, store.ErrOverQuota) {
			return fmt.Errorf("%w: %s", ErrOverQuota, acct.Address)
		}
		if errors.Is(err, store.ErrAccountDeleted) {
			return fmt.Errorf("%w: %s (deleted)", ErrNoSuchUser, acct.Address)
		}
		return fmt.Errorf("deliver to %s: %w", acct.Address, err)
	}
	b.bus.notify(acct.ID, ChangeNew, res.MailboxID)
	return nil
}
