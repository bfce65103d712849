package store

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// A tailed bucket is a key space whose new keys sort last (UIDs, modseqs,
// blob IDs), kept in two bbolt buckets side by side: the main bucket, which
// may be huge, and a small tail bucket (its name with "+" appended) that
// takes the new keys. Every key of the tail sorts after every key of the
// main bucket; when tailLimit keys have been added to the tail, they move
// to the main bucket together and the tail starts again empty.
//
// Why: a bbolt commit rewrites every page on the path from a bucket's root
// to each changed leaf, and that path grows with the bucket. A delivery
// into a mailbox of a million messages would rewrite two or three more
// branch pages in each of the message, change-log and body buckets than one
// into an empty mailbox (measured: 1.29x the cost). Appended to a tail of
// at most tailLimit keys, it costs what a delivery into a small mailbox
// costs, plus 1/tailLimit of one move into the main bucket.
//
// Files written before tails existed simply have none: a missing tail is an
// empty one, so no upgrade is needed.
type tailed struct {
	parent   *bolt.Bucket
	main     *bolt.Bucket
	tailName []byte
}

// tailLimit is how many keys a tail takes before they move to the main
// bucket: enough that the move's cost is small per key, few enough that
// the tail stays one or two pages deep.
const tailLimit = 256

// tailByteLimit bounds the bytes of values a tail takes before it moves to
// the main bucket, and tailBigValue is the size from which a new value
// skips the tail. A move copies every value of the tail into new pages,
// and values committed in earlier transactions are copied then for the
// second time: without these bounds a move of 256 chunks of big bodies
// rewrote up to 64 MiB in one transaction, and held it in memory until the
// commit (a MULTIAPPEND of 40 messages of 1 MiB peaked 25 MiB higher).
// A value of tailBigValue bytes or more costs much more to write than the
// branch pages a tail saves, so it goes to main after the tail has moved.
const (
	tailByteLimit = 1 << 20
	tailBigValue  = 64 << 10
)

// A tail's sequence counts what it holds: keys in the low 16 bits, bytes
// of their values above them.
const tailKeyBits = 16

// tailSuffix names a tail after its main bucket.
const tailSuffix = "+"

func tailOf(name []byte) []byte {
	switch string(name) { // the usual ones without an allocation
	case "m":
		return []byte("m" + tailSuffix)
	case "c":
		return []byte("c" + tailSuffix)
	case "blobs":
		return []byte("blobs" + tailSuffix)
	}
	return append(append([]byte(nil), name...), tailSuffix...)
}

// openTailed returns the tailed bucket name of parent, or nil if parent has
// no bucket of that name.
func openTailed(parent *bolt.Bucket, name []byte) *tailed {
	if parent == nil {
		return nil
	}
	main := appendOnly(parent.Bucket(name))
	if main == nil {
		return nil
	}
	return &tailed{parent: parent, main: main, tailName: tailOf(name)}
}

// tail returns the tail bucket, nil if there is none.
func (t *tailed) tail() *bolt.Bucket { return appendOnly(t.parent.Bucket(t.tailName)) }

// Get returns the value of key, nil if there is none. Keys are in one of
// the two buckets, never both.
func (t *tailed) Get(key []byte) []byte {
	if tail := t.tail(); tail != nil {
		if v := tail.Get(key); v != nil {
			return v
		}
	}
	return t.main.Get(key)
}

// Put sets key to value: in the bucket that has key, or, for a new key,
// in the tail if key sorts after all of main's keys (an append), else in
// main. A new value of tailBigValue bytes or more goes to main, after the
// tail has moved there. Filling the tail (tailLimit keys or tailByteLimit
// bytes) moves it into main, in this transaction: so Put must not be called
// with a new last key while a cursor of t is in use.
func (t *tailed) Put(key, value []byte) error {
	tail := t.tail()
	if tail != nil {
		if first, _ := tail.Cursor().First(); first != nil {
			if bytes.Compare(key, first) < 0 {
				// Below the tail: main may take it, whether it has it
				// or not, and every key of the tail still sorts after
				// all of main's.
				return t.main.Put(key, value)
			}
			if tail.Get(key) != nil {
				return tail.Put(key, value)
			}
			if len(value) >= tailBigValue {
				if err := t.flush(); err != nil {
					return err
				}
				return t.main.Put(key, value)
			}
			return t.putNew(tail, key, value)
		}
	}
	// No tail yet, or an empty one: an append if key sorts after main.
	// With the tail empty, main may take a big value even then.
	if last, _ := t.main.Cursor().Last(); len(value) >= tailBigValue || last != nil && bytes.Compare(key, last) <= 0 {
		return t.main.Put(key, value)
	}
	if tail == nil {
		var err error
		if tail, err = t.parent.CreateBucket(t.tailName); err != nil {
			return err
		}
		tail = appendOnly(tail)
	}
	return t.putNew(tail, key, value)
}

// putNew adds a new key to the tail, counting it and its bytes in the
// tail's sequence, and moves the tail into main when it is full.
func (t *tailed) putNew(tail *bolt.Bucket, key, value []byte) error {
	if err := tail.Put(key, value); err != nil {
		return err
	}
	seq := tail.Sequence() + 1 + uint64(len(value))<<tailKeyBits
	if keys, size := seq&(1<<tailKeyBits-1), seq>>tailKeyBits; keys < tailLimit && size < tailByteLimit {
		return tail.SetSequence(seq)
	}
	return t.flush()
}

// flush moves every key of the tail into main and drops the tail. Keys and
// values read from the tail stay valid until the transaction ends (bbolt
// frees the tail's pages only then), and Put keeps them only that long.
func (t *tailed) flush() error {
	tail := t.tail()
	if tail == nil {
		return nil
	}
	c := tail.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := t.main.Put(k, v); err != nil {
			return err
		}
	}
	return t.parent.DeleteBucket(t.tailName)
}

// Delete removes key from whichever bucket has it.
func (t *tailed) Delete(key []byte) error {
	if tail := t.tail(); tail != nil && tail.Get(key) != nil {
		return tail.Delete(key)
	}
	return t.main.Delete(key)
}

// ForEach calls fn for every key in order. fn must not add keys.
func (t *tailed) ForEach(fn func(k, v []byte) error) error {
	if err := t.main.ForEach(fn); err != nil {
		return err
	}
	if tail := t.tail(); tail != nil {
		return tail.ForEach(fn)
	}
	return nil
}

// Sequence and SetSequence are the main bucket's sequence.
func (t *tailed) Sequence() uint64           { return t.main.Sequence() }
func (t *tailed) SetSequence(v uint64) error { return t.main.SetSequence(v) }

// NextSequence hands out the main bucket's next sequence number (blob IDs).
func (t *tailed) NextSequence() (uint64, error) { return t.main.NextSequence() }

// Cursor returns a cursor over both buckets in key order.
func (t *tailed) Cursor() *tailCursor {
	c := &tailCursor{main: t.main.Cursor()}
	if tail := t.tail(); tail != nil {
		c.tail = tail.Cursor()
	}
	return c
}

// tailCursor walks a tailed bucket: main's keys, then the tail's.
type tailCursor struct {
	main, tail *bolt.Cursor
	inTail     bool // the current key is the tail's
}

func (c *tailCursor) tailFirst() ([]byte, []byte) {
	if c.tail == nil {
		return nil, nil
	}
	c.inTail = true
	return c.tail.First()
}

// First moves to the first key.
func (c *tailCursor) First() ([]byte, []byte) {
	c.inTail = false
	if k, v := c.main.First(); k != nil {
		return k, v
	}
	return c.tailFirst()
}

// Last moves to the last key.
func (c *tailCursor) Last() ([]byte, []byte) {
	if c.tail != nil {
		if k, v := c.tail.Last(); k != nil {
			c.inTail = true
			return k, v
		}
	}
	c.inTail = false
	return c.main.Last()
}

// Next moves to the next key.
func (c *tailCursor) Next() ([]byte, []byte) {
	if c.inTail {
		return c.tail.Next()
	}
	if k, v := c.main.Next(); k != nil {
		return k, v
	}
	return c.tailFirst()
}

// Prev moves to the previous key.
func (c *tailCursor) Prev() ([]byte, []byte) {
	if !c.inTail {
		return c.main.Prev()
	}
	if k, v := c.tail.Prev(); k != nil {
		return k, v
	}
	c.inTail = false
	return c.main.Last()
}

// Seek moves to the first key >= seek.
func (c *tailCursor) Seek(seek []byte) ([]byte, []byte) {
	if c.tail != nil {
		if first, _ := c.tail.First(); first != nil && bytes.Compare(seek, first) >= 0 {
			c.inTail = true
			return c.tail.Seek(seek)
		}
	}
	c.inTail = false
	if k, v := c.main.Seek(seek); k != nil {
		return k, v
	}
	return c.tailFirst()
}

// Delete removes the current key.
func (c *tailCursor) Delete() error {
	if c.inTail {
		return c.tail.Delete()
	}
	return c.main.Delete()
}
