package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestTailedMatchesAMap runs random appends, updates, deletes and cursor
// walks on a tailed bucket, across many moves of its tail into the main
// bucket and across transactions, and compares every answer with a sorted
// map's.
func TestTailedMatchesAMap(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := []byte("m")
	if err := db.Update(func(tx *bolt.Tx) error {
		p, err := tx.CreateBucket([]byte("p"))
		if err != nil {
			return err
		}
		_, err = p.CreateBucket(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[uint32]string{}
	next := uint32(1)
	key := func(k uint32) []byte { return binary.BigEndian.AppendUint32(nil, k) }
	sorted := func() []uint32 {
		keys := make([]uint32, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return keys
	}
	flushes := 0
	for round := 0; round < 40; round++ {
		err := db.Update(func(tx *bolt.Tx) error {
			tb := openTailed(tx.Bucket([]byte("p")), name)
			for op := 0; op < 100; op++ {
				hadTail := tb.tail() != nil
				switch r := rng.IntN(10); {
				case r < 6: // append
					v := fmt.Sprintf("v%d", next)
					switch rng.IntN(40) {
					case 0: // big enough to skip the tail
						v += string(bytes.Repeat([]byte{'b'}, tailBigValue))
					case 1, 2, 3: // fills the tail's bytes before its keys
						v += string(bytes.Repeat([]byte{'m'}, 40<<10))
					}
					if err := tb.Put(key(next), []byte(v)); err != nil {
						return err
					}
					want[next] = v
					next += 1 + uint32(rng.IntN(3))
					if hadTail && tb.tail() == nil {
						flushes++
					}
				case r < 8 && len(want) > 0: // update
					keys := sorted()
					k := keys[rng.IntN(len(keys))]
					v := fmt.Sprintf("u%d-%d", k, op)
					if err := tb.Put(key(k), []byte(v)); err != nil {
						return err
					}
					want[k] = v
				case len(want) > 0: // delete
					keys := sorted()
					k := keys[rng.IntN(len(keys))]
					if err := tb.Delete(key(k)); err != nil {
						return err
					}
					delete(want, k)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.View(func(tx *bolt.Tx) error {
			tb := openTailed(tx.Bucket([]byte("p")), name)
			keys := sorted()
			// Get, for present and absent keys.
			for k := uint32(0); k <= next; k++ {
				got := tb.Get(key(k))
				v, ok := want[k]
				if (got != nil) != ok || string(got) != v {
					t.Fatalf("round %d: Get(%d) = %q, want %q", round, k, got, v)
				}
			}
			// Forward and backward walks, ForEach.
			var fwd, back, each []uint32
			c := tb.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				fwd = append(fwd, binary.BigEndian.Uint32(k))
			}
			for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
				back = append(back, binary.BigEndian.Uint32(k))
			}
			slices.Reverse(back)
			tb.ForEach(func(k, v []byte) error {
				each = append(each, binary.BigEndian.Uint32(k))
				return nil
			})
			for _, got := range [][]uint32{fwd, back, each} {
				if !slices.Equal(got, keys) {
					t.Fatalf("round %d: walk gives %v, want %v", round, got, keys)
				}
			}
			// Seek then Next and Prev, from every point.
			for s := uint32(0); s <= next; s++ {
				i, _ := slices.BinarySearch(keys, s)
				k, _ := c.Seek(key(s))
				if (k == nil) != (i == len(keys)) || (k != nil && binary.BigEndian.Uint32(k) != keys[i]) {
					t.Fatalf("round %d: Seek(%d) = %x, want index %d of %v", round, s, k, i, keys)
				}
				if k == nil {
					continue
				}
				if k, _ := c.Next(); (k == nil) != (i+1 == len(keys)) || (k != nil && binary.BigEndian.Uint32(k) != keys[i+1]) {
					t.Fatalf("round %d: Seek(%d), Next = %x", round, s, k)
				}
				c.Seek(key(s))
				if k, _ := c.Prev(); (k == nil) != (i == 0) || (k != nil && binary.BigEndian.Uint32(k) != keys[i-1]) {
					t.Fatalf("round %d: Seek(%d), Prev = %x", round, s, k)
				}
			}
			// The invariant: the tail's keys all sort after main's.
			if tail := tb.tail(); tail != nil {
				first, _ := tail.Cursor().First()
				last, _ := tb.main.Cursor().Last()
				if first != nil && last != nil && bytes.Compare(first, last) <= 0 {
					t.Fatalf("round %d: tail starts at %x, main ends at %x", round, first, last)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if flushes < 5 {
		t.Fatalf("only %d moves of the tail into main: the test does not exercise them", flushes)
	}
}

// TestTailedCursorDelete deletes through a cursor across the boundary of
// main and tail, as deleteBlob does.
func TestTailedCursorDelete(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		p, _ := tx.CreateBucket([]byte("p"))
		p.CreateBucket([]byte("b"))
		tb := openTailed(p, []byte("b"))
		for i := uint32(0); i < tailLimit+10; i++ {
			if err := tb.Put(binary.BigEndian.AppendUint32(nil, i), []byte{1}); err != nil {
				return err
			}
		}
		if tb.tail() == nil {
			t.Fatal("no tail after the move: want 10 keys in it")
		}
		// Delete keys tailLimit-5 .. tailLimit+4: five in main, five in the tail.
		c := tb.Cursor()
		from := binary.BigEndian.AppendUint32(nil, tailLimit-5)
		for k, _ := c.Seek(from); k != nil && binary.BigEndian.Uint32(k) < tailLimit+5; k, _ = c.Seek(from) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		n := 0
		tb.ForEach(func(k, v []byte) error {
			if i := binary.BigEndian.Uint32(k); i >= tailLimit-5 && i < tailLimit+5 {
				t.Errorf("key %d survived", i)
			}
			n++
			return nil
		})
		if n != tailLimit {
			t.Errorf("%d keys left, want %d", n, tailLimit)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTailedBoundsItsBytes shows that a tail never holds a big value nor
// more than tailByteLimit bytes (plus the value that fills it), so moving
// it into main copies a bounded amount, within one transaction of many big
// values as across transactions.
func TestTailedBoundsItsBytes(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := []byte("blobs")
	if err := db.Update(func(tx *bolt.Tx) error {
		p, err := tx.CreateBucket([]byte("p"))
		if err != nil {
			return err
		}
		_, err = p.CreateBucket(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sizes := []int{100, 20 << 10, tailBigValue - 1, tailBigValue, 256 << 10, 10 << 10}
	next := uint64(1)
	for round := 0; round < 6; round++ {
		if err := db.Update(func(tx *bolt.Tx) error {
			tb := openTailed(tx.Bucket([]byte("p")), name)
			for i := 0; i < 60; i++ {
				size := sizes[(i*7+round)%len(sizes)]
				if err := tb.Put(binary.BigEndian.AppendUint64(nil, next), bytes.Repeat([]byte{'x'}, size)); err != nil {
					return err
				}
				next++
				tail := tb.tail()
				if tail == nil {
					continue
				}
				held := 0
				if err := tail.ForEach(func(k, v []byte) error {
					if len(v) >= tailBigValue {
						t.Errorf("the tail holds a value of %d bytes", len(v))
					}
					held += len(v)
					return nil
				}); err != nil {
					return err
				}
				if held >= tailByteLimit {
					t.Fatalf("the tail holds %d bytes, limit %d", held, tailByteLimit)
				}
				if seq := tail.Sequence(); int(seq>>tailKeyBits) != held {
					t.Fatalf("the tail's sequence counts %d bytes, it holds %d", seq>>tailKeyBits, held)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := db.View(func(tx *bolt.Tx) error {
		return openTailed(tx.Bucket([]byte("p")), name).ForEach(func(k, v []byte) error {
			n++
			if got := binary.BigEndian.Uint64(k); got != uint64(n) {
				return fmt.Errorf("key %d at position %d", got, n)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if n != int(next-1) {
		t.Errorf("%d keys, want %d", n, next-1)
	}
}
