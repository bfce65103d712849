package store

import (
	"fmt"
	"testing"
)

// BenchmarkBigMailbox measures the operations whose cost must stay flat or
// linear-but-cheap in mailbox size: listing UIDs (SELECT), reading every
// record (FETCH 1:* FLAGS), and appending one more message.
func BenchmarkBigMailbox(b *testing.B) {
	s := openTest(b, b.TempDir())
	defer s.Close()
	ms, mb := newAccount(b, s, "a@x.org")
	const n = 100000
	for i := 0; i < n; i += 1000 {
		err := ms.update(func(tx *atx) error {
			m, err := getMbox(tx, mb.ID)
			if err != nil {
				return err
			}
			for j := i; j < i+1000; j++ {
				body := []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", j))
				blob, err := putBlob(tx, body, nil)
				if err != nil {
					return err
				}
				if _, err := m.insert(tx, blob, int64(len(body)), msg(j).InternalDate, flagSet{}, 0); err != nil {
					return err
				}
			}
			return m.save()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("UIDs", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			uids, _ := ms.UIDs(mb.ID)
			if len(uids) != n {
				b.Fatal(len(uids))
			}
		}
	})
	b.Run("Messages", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			c := 0
			ms.Messages(mb.ID, 1, ^uint32(0), func(Message) error { c++; return nil })
		}
	})
	small, _ := newAccount(b, s, "small@x.org")
	for _, tc := range []struct {
		name string
		ms   *Mailstore
	}{{"AppendBig", ms}, {"AppendSmall", small}} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := tc.ms.Append("INBOX", msg(i), Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
