package store

import "fmt"

// AppendMany stores msgs in the mailbox called name in one transaction:
// all of them or none (IMAP MULTIAPPEND, RFC 3502). The quota (bytes and
// messages) is checked against the total, as for Append.
func (m *Mailstore) AppendMany(name string, msgs []NewMessage, quota Limits) ([]AppendResult, error) {
	var res []AppendResult
	err := m.update(func(tx *atx) error {
		res = res[:0]
		mb, err := mailboxByName(tx, name)
		if err != nil {
			return err
		}
		if err := checkMessages(tx, quota, int64(len(msgs))); err != nil {
			return err
		}
		for _, msg := range msgs {
			size := int64(len(msg.Body))
			if total := addAccountSize(tx, size); quota.Bytes > 0 && total > quota.Bytes {
				return fmt.Errorf("%w: %d of %d bytes", ErrOverQuota, total-size, quota.Bytes)
			}
			blob, err := putBlob(tx, msg.Body, msg.Parsed)
			if err != nil {
				return err
			}
			r, err := mb.insert(tx, blob, size, msg.InternalDate, makeFlagSet(msg.Flags), 0)
			if err != nil {
				return err
			}
			res = append(res, r)
		}
		return nil
	})
	return res, err
}
