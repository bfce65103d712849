package main

import (
	"math/bits"
	"math/rand/v2"
)

// pcg is math/rand/v2's PCG with the draws the message generator needs
// as concrete methods. It exists because the generator draws about 1,700
// numbers per 10 KiB message, once per delivery, and rand.Rand's IntN
// reaches the generator through the Source interface, which keeps the draw
// out of the generator's loop: that was more than half of building a
// message. intN draws what rand.Rand.IntN would from the same stream
// (TestPCGMatchesMathRand), so a seed still gives the same message, and a
// rand.Rand over the same pcg serves the rarer draws.
type pcg struct{ rand.PCG }

// seed sets the state as rand.NewPCG(seed1, seed2) does.
func (p *pcg) seed(seed1, seed2 uint64) { p.PCG.Seed(seed1, seed2) }

// intN returns what rand.New(p).IntN(n) would, drawing the same numbers
// (TestPCGMatchesMathRand): Lemire's multiply-and-shift with rejection
// ("Fast Random Integer Generation in an Interval", 2019), a mask for a
// power of two. The common case is small enough to be inlined.
func (p *pcg) intN(n int) int {
	x := p.Uint64()
	hi, lo := bits.Mul64(x, uint64(n))
	if lo < uint64(n) || n&(n-1) == 0 {
		return p.intNRare(x, n)
	}
	return int(hi)
}

// intNRare finishes intN when n is a power of two, and when x falls in the
// rejection zone (fewer than n in 2^64 draws).
func (p *pcg) intNRare(x uint64, n int) int {
	if n <= 0 {
		panic("roost-bench: intN of a non-positive bound")
	}
	un := uint64(n)
	if un&(un-1) == 0 {
		return int(x & (un - 1))
	}
	hi, lo := bits.Mul64(x, un)
	thresh := -un % un // 2^64 mod n
	for lo < thresh {
		hi, lo = bits.Mul64(p.Uint64(), un)
	}
	return int(hi)
}
