package backend

import (
	"context"
	"fmt"
	"time"
)

// Retention ([retention]): messages older than a period in the mailboxes of
// a special use (Trash and Junk, 30 days by default) are expunged in the
// background, with modseqs and tombstones as any expunge, and sessions that
// have those mailboxes open are woken to see it. A message's age is the
// time since it came into the mailbox (see store.Mailstore.ExpireOld), not
// its INTERNALDATE.

// RetentionPolicy maps an RFC 6154 special-use attribute (`\Trash`) to how
// long messages stay in mailboxes that have it. Attributes not in it, and
// periods of 0, keep mail for ever.
type RetentionPolicy map[string]time.Duration

// ExpireOld applies the policy to every account once, as of now, and
// returns how many messages it expunged.
func (b *Backend) ExpireOld(ctx context.Context, policy RetentionPolicy, now time.Time) (int, error) {
	if len(policy) == 0 {
		return 0, nil
	}
	accts, err := b.store.Accounts()
	if err != nil {
		return 0, fmt.Errorf("retention: %w", err)
	}
	total := 0
	for _, acct := range accts {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		ms, err := b.store.Mailstore(acct.ID)
		if err != nil {
			return total, fmt.Errorf("retention: %s: %w", acct.Address, err)
		}
		boxes, err := ms.Mailboxes()
		if err != nil {
			return total, fmt.Errorf("retention: %s: %w", acct.Address, err)
		}
		for _, mb := range boxes {
			age := policy[mb.SpecialUse]
			if mb.SpecialUse == "" || age <= 0 {
				continue
			}
			b.inflight.Add(1)
			uids, err := ms.ExpireOld(mb.ID, age, now)
			b.inflight.Done()
			if err != nil {
				return total, fmt.Errorf("retention: %s %s: %w", acct.Address, mb.Name, err)
			}
			if len(uids) > 0 {
				// The bodies wait on the purge list until no session can
				// address them (RFC 2180 §4.1), as for any expunge.
				b.purgerOf(acct.ID, ms).expunged()
				b.bus.notify(acct.ID, ChangeExpunge, mb.ID)
				b.log.Info("retention expunged old messages", "account", acct.Address, "mailbox", mb.Name,
					"messages", len(uids), "older_than", age.String())
				total += len(uids)
			}
		}
	}
	return total, nil
}

// RunRetention applies the policy now and then every interval until ctx
// ends; errors are logged and the next round tries again.
func (b *Backend) RunRetention(ctx context.Context, policy RetentionPolicy, interval time.Duration) {
	if len(policy) == 0 || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := b.ExpireOld(ctx, policy, time.Now()); err != nil && ctx.Err() == nil {
			b.log.Error("retention run failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
