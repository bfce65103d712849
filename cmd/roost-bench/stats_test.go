package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample p50", ms(7), 50, 7 * time.Millisecond},
		{"one sample p99", ms(7), 99, 7 * time.Millisecond},
		{"two samples p50 is the lower", ms(1, 2), 50, 1 * time.Millisecond},
		{"two samples p51 is the upper", ms(1, 2), 51, 2 * time.Millisecond},
		{"four samples p50", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"four samples p75", ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{"four samples p100", ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{"1..100 p50", hundred, 50, 50 * time.Millisecond},
		{"1..100 p90", hundred, 90, 90 * time.Millisecond},
		{"1..100 p99", hundred, 99, 99 * time.Millisecond},
		{"1..100 p99.9", hundred, 99.9, 100 * time.Millisecond},
		{"tiny p clamps to the first", ms(5, 6, 7), 0.001, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestLatencyRecorderSummary(t *testing.T) {
	rec := newLatencyRecorder()
	// Recorded out of order: summary must sort.
	for _, d := range []int{30, 10, 20, 40} {
		rec.observe("fetch", time.Duration(d)*time.Millisecond)
	}
	rec.fail("fetch")
	rec.fail("login")

	got := rec.summary("fetch", 2*time.Second)
	want := opSummary{Count: 4, Errors: 1, OpsPerSec: 2, MeanMs: 25, P50Ms: 20, P90Ms: 40, P99Ms: 40, MaxMs: 40}
	if got != want {
		t.Errorf("summary(fetch) = %+v, want %+v", got, want)
	}
	if got := rec.summary("login", time.Second); got != (opSummary{Errors: 1}) {
		t.Errorf("summary(login) = %+v, want only one error", got)
	}
	if got := rec.summary("absent", time.Second); got != (opSummary{}) {
		t.Errorf("summary(absent) = %+v, want zero", got)
	}
	if got, want := rec.names(), []string{"fetch", "login"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("names() = %v, want %v", got, want)
	}
}
