package main

import "math/bits"

// pcg is the generator of math/rand/v2's PCG, a 128-bit LCG with the DXSM
// output function (M. E. O'Neill, "PCG: A Family of Simple Fast
// Space-Efficient Statistically Good Algorithms for Random Number
// Generation", 2014; DXSM as in pcg-cpp and NumPy's PCG64DXSM), with the same
// state for the same seed and the same outputs (TestPCGMatchesMathRand).
// It exists because the message generator draws about 1,700 numbers per
// 10 KiB message, once per delivery, and rand.Rand's IntN reaches the
// generator through the Source interface, which keeps the draw out of the
// generator's loop: that was more than half of building a message. It is a
// rand.Source, so a rand.Rand over it serves the rarer draws from the same
// stream.
type pcg struct{ hi, lo uint64 }

// seed sets the state as rand.NewPCG(seed1, seed2) does.
func (p *pcg) seed(seed1, seed2 uint64) { p.hi, p.lo = seed1, seed2 }

// Uint64 advances the state and returns the next output.
func (p *pcg) Uint64() uint64 {
	// state = state*mul + inc, mod 2^128, with PCG's default 128-bit
	// multiplier and increment.
	const (
		mulHi = 0x2360ed051fc65da4
		mulLo = 0x4385df649fccf645
		incHi = 6364136223846793005
		incLo = 1442695040888963407
	)
	hi, lo := bits.Mul64(p.lo, mulLo)
	hi += p.hi*mulLo + p.lo*mulHi
	lo, c := bits.Add64(lo, incLo, 0)
	hi, _ = bits.Add64(hi, incHi, c)
	p.hi, p.lo = hi, lo

	// DXSM, "double xorshift multiply", of the new state.
	const cheapMul = 0xda942042e4dd58b5
	hi ^= hi >> 32
	hi *= cheapMul
	hi ^= hi >> 48
	return hi * (lo | 1)
}

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
