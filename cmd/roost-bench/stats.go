package main

import (
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// latencyRecorder collects per-operation latency samples and error counts
// from many goroutines. It keeps every sample (8 bytes each), so percentiles
// are exact; a 100 000-message run costs under a megabyte.
type latencyRecorder struct {
	mu  sync.Mutex
	ops map[string]*opSamples
}

type opSamples struct {
	samples []time.Duration
	errors  int64
}

func newLatencyRecorder() *latencyRecorder {
	return &latencyRecorder{ops: make(map[string]*opSamples)}
}

func (r *latencyRecorder) get(op string) *opSamples {
	s := r.ops[op]
	if s == nil {
		s = &opSamples{}
		r.ops[op] = s
	}
	return s
}

// observe records one successful operation that took d.
func (r *latencyRecorder) observe(op string, d time.Duration) {
	r.mu.Lock()
	s := r.get(op)
	s.samples = append(s.samples, d)
	r.mu.Unlock()
}

// fail records one failed operation.
func (r *latencyRecorder) fail(op string) {
	r.mu.Lock()
	r.get(op).errors++
	r.mu.Unlock()
}

// names returns the recorded operation names, sorted.
func (r *latencyRecorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.ops))
	for name := range r.ops {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// opSummary is the JSON form of one operation's figures.
type opSummary struct {
	Count     int64   `json:"count"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	MeanMs    float64 `json:"mean_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
}

// summary computes count, rate (over elapsed) and percentiles of op.
func (r *latencyRecorder) summary(op string, elapsed time.Duration) opSummary {
	r.mu.Lock()
	var samples []time.Duration
	var errs int64
	if s := r.ops[op]; s != nil {
		samples = slices.Clone(s.samples)
		errs = s.errors
	}
	r.mu.Unlock()
	return summarize(samples, errs, elapsed)
}

func summarize(samples []time.Duration, errs int64, elapsed time.Duration) opSummary {
	slices.Sort(samples)
	sum := opSummary{Count: int64(len(samples)), Errors: errs}
	if elapsed > 0 {
		sum.OpsPerSec = round3(float64(len(samples)) / elapsed.Seconds())
	}
	if len(samples) == 0 {
		return sum
	}
	var total time.Duration
	for _, d := range samples {
		total += d
	}
	sum.MeanMs = ms(total / time.Duration(len(samples)))
	sum.P50Ms = ms(percentile(samples, 50))
	sum.P90Ms = ms(percentile(samples, 90))
	sum.P99Ms = ms(percentile(samples, 99))
	sum.MaxMs = ms(samples[len(samples)-1])
	return sum
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted samples by
// the nearest-rank method: the smallest sample such that at least p percent
// of all samples are less than or equal to it. It returns 0 for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms converts d to milliseconds with microsecond resolution.
func ms(d time.Duration) float64 {
	return round3(float64(d) / float64(time.Millisecond))
}

func round3(x float64) float64 {
	return math.Round(x*1000) / 1000
}

// perSec is n per second of elapsed, rounded for output.
func perSec(n float64, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return round3(n / elapsed.Seconds())
}
