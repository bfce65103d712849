package backend

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkDeliver measures durable deliveries (fsync on, as in production)
// of a 10 kB message into one account and spread over 100 accounts, from one
// and from 16 concurrent senders. msgs/s is the figure to compare with the
// disk's fsync rate: group commit lets concurrent deliveries to one account
// share an fsync, and separate account files let different accounts proceed
// in parallel.
func BenchmarkDeliver(b *testing.B) {
	body := []byte("From: a@example.com\r\nTo: u@example.org\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrs\r\n", 150))
	for _, tc := range []struct{ accounts, senders, shards int }{
		{1, 1, 0}, {1, 16, 0}, {100, 1, 0}, {100, 16, 0}, {100, 16, 1}, {100, 16, 4},
	} {
		b.Run(fmt.Sprintf("accounts=%d/senders=%d/shards=%d", tc.accounts, tc.senders, tc.shards), func(b *testing.B) {
			be, err := New(Options{DataDir: b.TempDir(), Shards: tc.shards, LoginCacheTTL: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			ctx := context.Background()
			rcpts := make([]Recipient, tc.accounts)
			for i := range rcpts {
				addr := fmt.Sprintf("u%d@example.org", i)
				if err := be.CreateUser(ctx, addr, "pw"); err != nil {
					b.Fatal(err)
				}
				if rcpts[i], err = be.ResolveRecipient(ctx, addr); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(body)))
			syncs0 := be.store.Syncs()
			b.ResetTimer()
			var n atomic.Int64
			deliverOne := func() {
				r := rcpts[int(n.Add(1))%len(rcpts)]
				if errs := be.Deliver(ctx, body, []Recipient{r}); errs[0] != nil {
					b.Error(errs[0])
				}
			}
			if tc.senders == 1 {
				for i := 0; i < b.N; i++ {
					deliverOne()
				}
			} else {
				b.SetParallelism((tc.senders + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						deliverOne()
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if syncs := be.store.Syncs() - syncs0; syncs > 0 {
				b.ReportMetric(float64(b.N)/float64(syncs), "msgs/sync")
			}
		})
	}
}
