package store

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// BenchmarkBigMailbox measures the operations whose cost must stay flat or
// linear-but-cheap in mailbox size: listing UIDs (SELECT), reading every
// record (FETCH 1:* FLAGS), and appending one more message, into the big
// mailbox and into an empty one of another account (AppendBig against
// AppendSmall: the target is at most 1.1x), without and with fsync.
// ROOST_BIGBOX_MESSAGES sets the size (default 1,000,000).
//
//	go test -run xxx -bench BigMailbox -benchtime 2000x ./store/
func BenchmarkBigMailbox(b *testing.B) {
	n := 1000000
	if v := os.Getenv("ROOST_BIGBOX_MESSAGES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir := b.TempDir()
	s := openTest(b, dir)
	ms, mb := newAccount(b, s, "a@x.org")
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
	newAccount(b, s, "small@x.org")
	s.Close()
	for _, sync := range []bool{false, true} {
		s, err := Open(Options{Dir: dir, NoSync: !sync})
		if err != nil {
			b.Fatal(err)
		}
		for _, addr := range []string{"a@x.org", "small@x.org"} {
			name := map[string]string{"a@x.org": "AppendBig", "small@x.org": "AppendSmall"}[addr]
			if sync {
				name += "/fsync"
			}
			acct, _ := s.Account(addr)
			ms, _ := s.Mailstore(acct.ID)
			b.Run(name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := ms.Append("INBOX", msg(i), Limits{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		s.Close()
	}
}
