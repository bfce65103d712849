package store

import (
	"encoding/json"
	"fmt"
)

// Limits are an account's quota as Append and Copy enforce it: total bytes
// and number of messages over all mailboxes. 0 means no limit.
type Limits struct {
	Bytes    int64
	Messages int64
}

// checkMessages fails with ErrOverQuota when adding n messages to those
// the mailboxes' saved counters hold would take the account past
// l.Messages. It counts with the mailboxes' counters (one
// small record per mailbox), so it costs nothing without a limit and little
// with one.
func checkMessages(tx *atx, l Limits, n int64) error {
	if l.Messages <= 0 {
		return nil
	}
	count, err := accountMessages(tx)
	if err != nil {
		return err
	}
	if count+n > l.Messages {
		return fmt.Errorf("%w: %d of %d messages", ErrOverQuota, count, l.Messages)
	}
	return nil
}

func accountMessages(tx *atx) (int64, error) {
	var count int64
	boxes := tx.Bucket(bucketMboxes)
	err := boxes.ForEach(func(k, v []byte) error {
		b := boxes.Bucket(k)
		if v != nil || b == nil {
			return nil
		}
		var info Mailbox
		if err := json.Unmarshal(b.Get(keyInfo), &info); err != nil {
			return fmt.Errorf("mailbox %x: %w", k, err)
		}
		count += int64(info.Messages)
		return nil
	})
	return count, err
}

// AccountMessages returns the number of messages over all mailboxes.
func (m *Mailstore) AccountMessages() (int64, error) {
	var n int64
	err := m.view(func(tx *atx) error {
		var err error
		n, err = accountMessages(tx)
		return err
	})
	return n, err
}
