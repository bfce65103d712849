package imapd

import (
	"errors"
	"io"
)

// inflater decodes the client's half of COMPRESS=DEFLATE (RFC 4978: raw
// deflate, RFC 1951). compress/flate's reader hands decoded bytes out only
// at stored blocks or when its window fills, so a command that a client
// ends with zlib's Z_PARTIAL_FLUSH (mbsync does; RFC 4978 §4 allows any
// flush that ends the data) would never be read. This decoder returns what
// it has decoded as soon as more input would mean waiting.
//
// It decodes Huffman codes a bit at a time from canonical code counts, the
// simplest correct method; client input is commands and APPEND data, not a
// bulk path.
type inflater struct {
	src   *inbuf
	bits  uint64
	nb    uint
	win   [1 << 15]byte
	wpos  int
	state int // inflHeader, inflStored, inflHuffman, inflDone
	final bool
	left  int // stored block octets left
	lit   huffman
	dist  huffman
	// A match being copied.
	copyLen, copyDist int
	err               error
}

const (
	inflHeader = iota
	inflStored
	inflHuffman
	inflDone
)

var errCorruptDeflate = errors.New("imapd: corrupt deflate stream")

type huffman struct {
	count  [16]uint16
	symbol [288]uint16
}

// build makes the canonical code of lengths (RFC 1951 §3.2.2).
func (h *huffman) build(lengths []uint8) error {
	h.count = [16]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	h.count[0] = 0
	left := 1
	for l := 1; l <= 15; l++ {
		left <<= 1
		left -= int(h.count[l])
		if left < 0 {
			return errCorruptDeflate // over-subscribed
		}
	}
	var offs [16]uint16
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for s, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(s)
			offs[l]++
		}
	}
	return nil
}

// RFC 1951 §3.2.5: base lengths and distances, and their extra bits.
var (
	lenBase   = [...]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra  = [...]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase  = [...]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = [...]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	clOrder   = [...]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

func newInflater(src *inbuf) *inflater { return &inflater{src: src} }

func (f *inflater) need(n uint) error {
	for f.nb < n {
		b, err := f.src.ReadByte()
		if err != nil {
			return err
		}
		f.bits |= uint64(b) << f.nb
		f.nb += 8
	}
	return nil
}

func (f *inflater) getBits(n uint) (int, error) {
	if err := f.need(n); err != nil {
		return 0, err
	}
	v := int(f.bits & (1<<n - 1))
	f.bits >>= n
	f.nb -= n
	return v, nil
}

func (f *inflater) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l <= 15; l++ {
		b, err := f.getBits(1)
		if err != nil {
			return 0, err
		}
		code |= b
		count := int(h.count[l])
		if code-count < first {
			return int(h.symbol[index+code-first]), nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, errCorruptDeflate
}

func (f *inflater) put(b byte) {
	f.win[f.wpos] = b
	f.wpos = (f.wpos + 1) & (len(f.win) - 1)
}

// Read implements io.Reader.
func (f *inflater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if f.copyLen > 0 {
			for f.copyLen > 0 && n < len(p) {
				b := f.win[(f.wpos-f.copyDist)&(len(f.win)-1)]
				f.put(b)
				p[n] = b
				n++
				f.copyLen--
			}
			continue
		}
		if f.err != nil {
			break
		}
		if n > 0 && f.nb < 48 && len(f.src.buffered()) == 0 {
			break // more would mean waiting: hand out what there is
		}
		if err := f.step(p, &n); err != nil {
			f.err = err
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, f.err
}

func (f *inflater) step(p []byte, n *int) error {
	switch f.state {
	case inflDone:
		return io.EOF
	case inflHeader:
		if f.final {
			f.state = inflDone
			return io.EOF
		}
		h, err := f.getBits(3)
		if err != nil {
			return err
		}
		f.final = h&1 == 1
		switch h >> 1 {
		case 0:
			f.bits >>= f.nb % 8 // to a byte boundary
			f.nb -= f.nb % 8
			v, err := f.getBits(32)
			if err != nil {
				return err
			}
			if uint16(v) != ^uint16(v>>16) {
				return errCorruptDeflate
			}
			f.left, f.state = v&0xffff, inflStored
		case 1:
			f.fixedTables()
			f.state = inflHuffman
		case 2:
			if err := f.dynamicTables(); err != nil {
				return err
			}
			f.state = inflHuffman
		default:
			return errCorruptDeflate
		}
	case inflStored:
		if f.left == 0 {
			f.state = inflHeader
			return nil
		}
		b, err := f.getBits(8)
		if err != nil {
			return err
		}
		f.put(byte(b))
		p[*n] = byte(b)
		*n++
		f.left--
	case inflHuffman:
		sym, err := f.decode(&f.lit)
		if err != nil {
			return err
		}
		switch {
		case sym < 256:
			f.put(byte(sym))
			p[*n] = byte(sym)
			*n++
		case sym == 256:
			f.state = inflHeader
		default:
			sym -= 257
			if sym >= len(lenBase) {
				return errCorruptDeflate
			}
			e, err := f.getBits(uint(lenExtra[sym]))
			if err != nil {
				return err
			}
			length := int(lenBase[sym]) + e
			ds, err := f.decode(&f.dist)
			if err != nil {
				return err
			}
			if ds >= len(distBase) {
				return errCorruptDeflate
			}
			e, err = f.getBits(uint(distExtra[ds]))
			if err != nil {
				return err
			}
			f.copyLen, f.copyDist = length, int(distBase[ds])+e
		}
	}
	return nil
}

func (f *inflater) fixedTables() {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	f.lit.build(l[:])
	var d [30]uint8
	for i := range d {
		d[i] = 5
	}
	f.dist.build(d[:])
}

func (f *inflater) dynamicTables() error {
	hlit, err := f.getBits(5)
	if err != nil {
		return err
	}
	hdist, err := f.getBits(5)
	if err != nil {
		return err
	}
	hclen, err := f.getBits(4)
	if err != nil {
		return err
	}
	nlit, ndist := hlit+257, hdist+1
	if nlit > 286 || ndist > 30 {
		return errCorruptDeflate
	}
	var cl [19]uint8
	for i := 0; i < hclen+4; i++ {
		v, err := f.getBits(3)
		if err != nil {
			return err
		}
		cl[clOrder[i]] = uint8(v)
	}
	var clh huffman
	if err := clh.build(cl[:]); err != nil {
		return err
	}
	lengths := make([]uint8, nlit+ndist)
	for i := 0; i < len(lengths); {
		sym, err := f.decode(&clh)
		if err != nil {
			return err
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return errCorruptDeflate
			}
			val = lengths[i-1]
			v, err := f.getBits(2)
			if err != nil {
				return err
			}
			rep = 3 + v
		case 17:
			v, err := f.getBits(3)
			if err != nil {
				return err
			}
			rep = 3 + v
		default:
			v, err := f.getBits(7)
			if err != nil {
				return err
			}
			rep = 11 + v
		}
		if i+rep > len(lengths) {
			return errCorruptDeflate
		}
		for ; rep > 0; rep-- {
			lengths[i] = val
			i++
		}
	}
	if lengths[256] == 0 {
		return errCorruptDeflate
	}
	if err := f.lit.build(lengths[:nlit]); err != nil {
		return err
	}
	return f.dist.build(lengths[nlit:])
}
