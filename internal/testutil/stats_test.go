package testutil

import (
	"math"
	"testing"
)

func TestKS(t *testing.T) {
	for _, tc := range []struct {
		a, b Distribution
		want float64
	}{
		{Distribution{1, 2, 3}, Distribution{3, 2, 1}, 0},
		{Distribution{1, 2}, Distribution{3, 4}, 1},
		{Distribution{1, 3}, Distribution{2, 4}, 0.5},
	} {
		if got, _ := KS(tc.a, tc.b); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("KS(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	if _, crit := KS(make(Distribution, 100), make(Distribution, 100)); math.Abs(crit-0.192) > 0.001 {
		t.Errorf("critical value for 100+100: %v, want 0.192", crit)
	}
}
