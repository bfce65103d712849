package pop3d

import (
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/testutil"
)

// BenchmarkLoginTiming compares, over real connections, how long the
// server takes to refuse USER/PASS for an unknown user and for a known
// user with a wrong password (its right password in the login cache),
// interleaved. AuthFailureDelay is off, so only the work shows. Reported:
// medians, 90th percentiles, their ratio and the Kolmogorov-Smirnov
// statistic with its 5% critical value.
//
//	go test -run '^$' -bench LoginTiming -benchtime 400x ./pop3d/
func BenchmarkLoginTiming(b *testing.B) {
	e := newEnv(b, envConfig{
		backend: func(o *backend.Options) { o.LoginCacheTTL = time.Hour },
		opts: func(o *Options) {
			o.AuthFailureDelay = -1
			o.MaxFailedLogins = 1 << 30
		},
	})
	c := dial(b, e.addr)
	c.login() // puts the right password in the cache
	c.expectOK("QUIT")
	e.waitEnded(1)
	c = dial(b, e.addr)
	users := map[string]string{"unknown": "nobody@example.org", "wrong": testUser}
	order := []string{"unknown", "wrong"}
	times := map[string]testutil.Distribution{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, k := range order {
			c.expectOK("USER " + users[k])
			c.conn.SetDeadline(time.Now().Add(ioTimeout))
			start := time.Now()
			c.expectErr("PASS guess", "[AUTH] ")
			times[k] = append(times[k], float64(time.Since(start).Microseconds())/1000)
		}
	}
	b.StopTimer()
	testutil.ReportLoginTiming(b, times["unknown"], times["wrong"])
}
