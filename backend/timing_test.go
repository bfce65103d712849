package backend_test

import (
	"context"
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/testutil"
)

// BenchmarkLoginTiming compares how long a failed login takes for an
// unknown user and for a known user with a wrong password (also one whose
// right password is in the login cache), interleaved so that both see the
// same machine load. An attacker must not be able to tell which accounts
// exist from the time a refusal takes. Reported: the medians and 90th
// percentiles of each, their ratio, and the two-sample Kolmogorov-Smirnov
// statistic D with its 5% critical value (D below it: the distributions
// cannot be told apart at that level).
//
//	go test -run '^$' -bench LoginTiming -benchtime 400x ./backend/
func BenchmarkLoginTiming(b *testing.B) {
	be, err := backend.New(backend.Options{DataDir: b.TempDir(), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	ctx := context.Background()
	if err := be.CreateUser(ctx, "known@example.org", "secret"); err != nil {
		b.Fatal(err)
	}
	// The known user's right password is in the login cache, as for an
	// account in use: a wrong one must still cost a full hash.
	if _, err := be.Login(ctx, "known@example.org", "secret", "192.0.2.9"); err != nil {
		b.Fatal(err)
	}
	attempts := map[string]func() error{
		"unknown": func() error {
			_, err := be.Login(ctx, "nobody@example.org", "guess", "192.0.2.1")
			return err
		},
		"wrong": func() error {
			_, err := be.Login(ctx, "known@example.org", "guess", "192.0.2.1")
			return err
		},
	}
	order := []string{"unknown", "wrong"}
	times := map[string]testutil.Distribution{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, k := range order {
			start := time.Now()
			if err := attempts[k](); err == nil {
				b.Fatalf("%s: login succeeded", k)
			}
			times[k] = append(times[k], float64(time.Since(start).Microseconds())/1000)
		}
	}
	b.StopTimer()
	testutil.ReportLoginTiming(b, times["unknown"], times["wrong"])
}
