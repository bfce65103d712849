package store

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkBigMailbox measures the operations whose cost must stay flat or
// linear-but-cheap in mailbox size: listing UIDs (SELECT), reading every
// record (FETCH 1:* FLAGS), and appending one more message, into the big
// mailbox and into an empty one of another account (big/small: the target
// is at most 1.1x), without and with fsync, with tiny and 10 KiB messages.
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
	// The two mailboxes are appended to in turns, in alternating order,
	// and timed one by one: run one after the other, the disk's sync rate
	// (which drifts by 2x within a minute on a shared machine) decided the
	// ratio more than the mailbox did.
	for _, sync := range []bool{false, true} {
		s, err := Open(Options{Dir: dir, NoSync: !sync})
		if err != nil {
			b.Fatal(err)
		}
		var files [2]*Mailstore
		for i, addr := range []string{"a@x.org", "small@x.org"} {
			acct, _ := s.Account(addr)
			files[i], _ = s.Mailstore(acct.ID)
		}
		for _, size := range []int{0, 10 << 10} {
			name := "Append/tiny"
			if size > 0 {
				name = fmt.Sprintf("Append/%dKiB", size>>10)
			}
			if sync {
				name += "/fsync"
			}
			b.Run(name, func(b *testing.B) {
				var took [2]time.Duration
				var all [2][]time.Duration
				for i := 0; i < b.N; i++ {
					m := msg(i)
					if size > 0 {
						m.Body = append(m.Body, bytes.Repeat([]byte("x"), size)...)
					}
					for k := range 2 {
						which := (i + k) % 2
						start := time.Now()
						if _, err := files[which].Append("INBOX", m, Limits{}); err != nil {
							b.Fatal(err)
						}
						took[which] += time.Since(start)
						all[which] = append(all[which], time.Since(start))
					}
				}
				big, small := float64(took[0])/float64(b.N), float64(took[1])/float64(b.N)
				b.ReportMetric(big, "big-ns/op")
				b.ReportMetric(small, "small-ns/op")
				b.ReportMetric(big/small, "big/small")
				// Medians too: with fsync, a few slow syncs of the disk
				// move the means.
				for w, unit := range []string{"big-p50-ns", "small-p50-ns"} {
					slices.Sort(all[w])
					b.ReportMetric(float64(all[w][len(all[w])/2]), unit)
				}
			})
		}
		s.Close()
	}
}
