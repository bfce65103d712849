package store

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkManyAccounts: 100,000 accounts (ROOST_BENCH_ACCOUNTS), each a
// mail file of its own, each receiving mail, in one process. Every open
// mail file costs a memory mapping and a goroutine; with the default
// vm.max_map_count (65530) a store that kept every file open stopped near
// 60,000 accounts. It reports the most mail files, mappings and goroutines
// seen at once, and deliveries per second over the run (with NoSync: the
// subject is open files, not the disk).
//
//	go test -run xxx -bench ManyAccounts -benchtime 1x ./store/
func BenchmarkManyAccounts(b *testing.B) {
	n := 100000
	if v := os.Getenv("ROOST_BENCH_ACCOUNTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	s, err := Open(Options{Dir: b.TempDir(), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var maxFiles, maxMaps, maxG int
	sample := func() {
		maxFiles = max(maxFiles, s.OpenFiles())
		maxMaps = max(maxMaps, countMappings())
		maxG = max(maxG, runtime.NumGoroutine())
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		ms, _ := newAccount(b, s, fmt.Sprintf("user%d@example.org", i))
		if _, err := ms.Append("INBOX", msg(i), Limits{}); err != nil {
			b.Fatalf("account %d: %v", i, err)
		}
		if i%1000 == 999 {
			sample()
		}
	}
	created := time.Since(start)
	// Then mail to every account again, in another order: the files are
	// opened again on demand (all but the last thousand were closed).
	start = time.Now()
	for i := n - 1; i >= 0; i-- {
		acct, err := s.Account(fmt.Sprintf("user%d@example.org", i))
		if err != nil {
			b.Fatal(err)
		}
		ms, _ := s.Mailstore(acct.ID)
		if _, err := ms.Append("INBOX", msg(i), Limits{}); err != nil {
			b.Fatalf("account %d again: %v", i, err)
		}
	}
	sample()
	b.ReportMetric(float64(n)/created.Seconds(), "created+delivered/s")
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "deliveries/s")
	b.ReportMetric(float64(maxFiles), "max-open-files")
	b.ReportMetric(float64(maxMaps), "max-mappings")
	b.ReportMetric(float64(maxG), "max-goroutines")
	b.ReportMetric(0, "ns/op")
}

// countMappings counts this process's memory mappings.
func countMappings() int {
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return -1
	}
	return bytes.Count(data, []byte("\n"))
}
