package main

import (
	"math/rand/v2"
	"testing"
)

// TestPCGMatchesMathRand: pcg gives the outputs of math/rand/v2's PCG for
// the same seed, and intN the draws of rand.Rand.IntN, for the bounds the
// generator uses and others (1, powers of two, large), interleaved with
// draws through a rand.Rand over the same pcg as msgBuilder does.
func TestPCGMatchesMathRand(t *testing.T) {
	bounds := []int{1, 2, 3, 4, 36, 40, 64, len(words), len(firstNames), 1000, 3072, 1 << 20, 1<<62 + 12345}
	for _, seed := range [][2]uint64{{0, 0}, {1, 0}, {1, 7}, {42, 1 << 40}, {^uint64(0), ^uint64(0)}} {
		want := rand.New(rand.NewPCG(seed[0], seed[1]))
		var p pcg
		p.seed(seed[0], seed[1])
		got := rand.New(&p)
		for i := range 20000 {
			n := bounds[i%len(bounds)]
			switch i % 5 {
			case 0:
				if a, b := want.Uint64(), p.Uint64(); a != b {
					t.Fatalf("seed %v draw %d: Uint64 %d, pcg %d", seed, i, a, b)
				}
			case 1:
				if a, b := want.Float64(), got.Float64(); a != b {
					t.Fatalf("seed %v draw %d: Float64 %v, over pcg %v", seed, i, a, b)
				}
			default:
				if a, b := want.IntN(n), p.intN(n); a != b {
					t.Fatalf("seed %v draw %d: IntN(%d) %d, intN %d", seed, i, n, a, b)
				}
			}
		}
	}
}

func TestPCGIntNPanicsOnBadBound(t *testing.T) {
	for _, n := range []int{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("intN(%d) did not panic", n)
				}
			}()
			var p pcg
			p.intN(n)
		}()
	}
}
