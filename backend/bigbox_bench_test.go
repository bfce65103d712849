package backend

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBigMailboxSortThreadSearch measures SORT by subject, THREAD
// REFERENCES and SEARCH FROM over a 100,000-message mailbox of realistic
// messages: 5,000 threads of 20 messages with replies ("Re: ...",
// References chains), display names (some RFC 2047 encoded), Date headers
// and ~1 KB bodies. Set ROOST_BIGBOX_N to use another size. Filling takes
// a while; it is not part of the suite (benchmarks never run in it).
func BenchmarkBigMailboxSortThreadSearch(b *testing.B) {
	n := 100000
	if v := envInt("ROOST_BIGBOX_N"); v > 0 {
		n = v
	}
	be := newTestBackend(b, Options{})
	u := mustUser(b, be, "big@example.org")
	mb, _ := u.Mailbox(Inbox)
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 18)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		thread, pos := i%5000, i/5000
		subject := fmt.Sprintf("Topic number %d", thread)
		if pos > 0 {
			subject = "Re: " + subject
		}
		if thread%7 == 0 {
			subject = "[list] " + subject
		}
		from := fmt.Sprintf("Person %d <user%d@example%d.org>", i%997, i%997, i%13)
		if i%10 == 0 {
			from = fmt.Sprintf("=?utf-8?q?J=C3=BCrgen_%d?= <j%d@example.de>", i%97, i%97)
		}
		refs := ""
		if pos > 0 {
			var ids []string
			for p := max(0, pos-5); p < pos; p++ {
				ids = append(ids, fmt.Sprintf("<%d.%d@example.org>", thread, p))
			}
			refs = "References: " + strings.Join(ids, " ") + "\r\nIn-Reply-To: " + ids[len(ids)-1] + "\r\n"
		}
		date := base.Add(time.Duration(i) * time.Minute)
		raw := fmt.Sprintf("From: %s\r\nTo: list@example.org\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%d@example.org>\r\n%s\r\n%s",
			from, subject, date.Format(time.RFC1123Z), thread, pos, refs, body)
		if _, err := u.Append(context.Background(), Inbox, strings.NewReader(raw), nil, date); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.Run("SortSubject", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			uids, _, err := u.Sort(ctx, mb.ID, []SortKey{{Criterion: SortSubject}}, nil)
			if err != nil || len(uids) != n {
				b.Fatal(len(uids), err)
			}
		}
	})
	b.Run("ThreadReferences", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			threads, err := u.Thread(ctx, mb.ID, ThreadReferences, nil)
			if err != nil || len(threads) == 0 {
				b.Fatal(len(threads), err)
			}
		}
	})
	b.Run("SearchFrom", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		c := &SearchCriteria{From: []string{"jürgen 42"}}
		for i := 0; i < b.N; i++ {
			uids, err := u.Search(ctx, mb.ID, c)
			if err != nil || len(uids) == 0 {
				b.Fatal(len(uids), err)
			}
		}
	})
}

// reportCPU reports the process's CPU time (user and system, GC
// included) per operation: on a shared, loaded machine it varies far less
// than the wall time ns/op does.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64((cpuTime()-start).Milliseconds())/float64(b.N), "cpu-ms/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(name string) int {
	v, _ := strconv.Atoi(os.Getenv(name))
	return v
}
