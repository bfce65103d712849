package testutil

import (
	"math"
	"slices"
	"testing"
)

// Distribution summarises a sample of durations in milliseconds, for
// benchmarks that compare two (login timing).
type Distribution []float64

// Quantile returns the p-quantile (0 <= p <= 1) of d; d must be sorted.
func (d Distribution) Quantile(p float64) float64 {
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

// KS returns the two-sample Kolmogorov-Smirnov statistic of a and b (the
// largest distance between their empirical distributions) and its critical
// value at the 5% level: below it, the samples cannot be told apart. It
// sorts both.
func KS(a, b Distribution) (d, crit float64) {
	slices.Sort(a)
	slices.Sort(b)
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		x := min(a[i], b[j])
		for i < len(a) && a[i] <= x {
			i++
		}
		for j < len(b) && b[j] <= x {
			j++
		}
		d = max(d, math.Abs(float64(i)/float64(len(a))-float64(j)/float64(len(b))))
	}
	n, m := float64(len(a)), float64(len(b))
	return d, 1.358 * math.Sqrt((n+m)/(n*m))
}

// ReportLoginTiming reports two samples of failed-login times (unknown
// user, wrong password) as benchmark metrics: medians, 90th percentiles,
// the ratio of the medians, and the KS statistic with its critical value.
func ReportLoginTiming(b *testing.B, unknown, wrong Distribution) {
	d, crit := KS(unknown, wrong)
	b.ReportMetric(unknown.Quantile(0.5), "unknown-p50-ms")
	b.ReportMetric(wrong.Quantile(0.5), "wrong-p50-ms")
	b.ReportMetric(unknown.Quantile(0.9), "unknown-p90-ms")
	b.ReportMetric(wrong.Quantile(0.9), "wrong-p90-ms")
	b.ReportMetric(unknown.Quantile(0.5)/wrong.Quantile(0.5), "p50-ratio")
	b.ReportMetric(d, "ks-D")
	b.ReportMetric(crit, "ks-D-crit-5%")
}
