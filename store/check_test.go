package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// checkFixture is a small store with what the checker looks at: two
// accounts and an alias; alice has a message in two mailboxes (one blob,
// two references), flags, a multi-chunk message and an expunged one (a
// tombstone); bob has one message.
type checkFixture struct {
	dir    string
	shards int
}

const (
	aliceID = 1
	bobID   = 2
)

func buildCheckFixture(t *testing.T, shards int) checkFixture {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, NoSync: true, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	alice, inbox := newAccount(t, s, "alice@example.org")
	bob, _ := newAccount(t, s, "bob@example.org")
	if err := s.PutAlias("al@example.org", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	archive, err := alice.CreateMailbox("Archive", `\Archive`)
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for i := 0; i < 4; i++ {
		m := msg(i)
		if i == 2 {
			m.Body = bytes.Repeat([]byte("x"), chunkSize+1000) // two chunks
		}
		if i == 3 {
			m.Flags = []string{FlagSeen, "$Label1"}
		}
		r, err := alice.Append("INBOX", m, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, r.UID)
	}
	if _, err := alice.Copy(inbox.ID, uids[:1], archive.ID, false, Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.StoreFlags(inbox.ID, uids[1:2], FlagsAdd, []string{FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Expunge(inbox.ID, uids[1:2], true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.StoreFlags(inbox.ID, uids[0:1], FlagsAdd, []string{FlagFlagged}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Append("INBOX", msg(9), Limits{}); err != nil {
		t.Fatal(err)
	}
	return checkFixture{dir: dir, shards: shards}
}

// copy returns a copy of the fixture's files, for one corruption.
func (f checkFixture) copy(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(f.dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.dir, path)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func (f checkFixture) mailPath(dir string, id uint64) string {
	if f.shards == 0 {
		return filepath.Join(dir, "accounts", fmt.Sprintf("%d.db", id))
	}
	return filepath.Join(dir, "mail", fmt.Sprintf("shard-%d.db", id%uint64(f.shards)))
}

// corruptFile changes a bbolt file directly, as a crash or a bug might.
func corruptFile(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// corruption is what a test case does to an account's bucket.
type accountTx struct {
	t    *testing.T
	root *bolt.Bucket
}

func (a accountTx) bucket(name []byte) *bolt.Bucket { return a.root.Bucket(name) }

func (a accountTx) mailbox(name string) *bolt.Bucket {
	v := a.root.Bucket(bucketNames).Get([]byte(name))
	if v == nil {
		a.t.Fatalf("no mailbox %q", name)
	}
	return a.root.Bucket(bucketMboxes).Bucket(v)
}

func (a accountTx) info(name string) Mailbox {
	var mb Mailbox
	if err := json.Unmarshal(a.mailbox(name).Get(keyInfo), &mb); err != nil {
		a.t.Fatal(err)
	}
	return mb
}

func (a accountTx) setInfo(name string, fn func(*Mailbox)) {
	mb := a.info(name)
	fn(&mb)
	data, _ := json.Marshal(mb)
	if err := a.mailbox(name).Put(keyInfo, data); err != nil {
		a.t.Fatal(err)
	}
}

// message returns the record of the message with uid in mailbox name.
func (a accountTx) message(name string, uid uint32) []byte {
	v := a.mailbox(name).Bucket(keyMsgs).Get(u32(uid))
	if v == nil {
		a.t.Fatalf("no UID %d in %s", uid, name)
	}
	return append([]byte(nil), v...)
}

func (a accountTx) put(b *bolt.Bucket, k, v []byte) {
	if err := b.Put(k, v); err != nil {
		a.t.Fatal(err)
	}
}

func (a accountTx) del(b *bolt.Bucket, k []byte) {
	if err := b.Delete(k); err != nil {
		a.t.Fatal(err)
	}
}

// deleteBlobKeys removes every key of a blob.
func deleteBlobKeys(t *testing.T, b *bolt.Bucket, id uint64) {
	prefix := u64(id)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			t.Fatal(err)
		}
	}
}

func (f checkFixture) corruptAccount(t *testing.T, dir string, id uint64, fn func(a accountTx)) {
	t.Helper()
	corruptFile(t, f.mailPath(dir, id), func(tx *bolt.Tx) error {
		root := tx.Bucket(accountKey(id))
		if root == nil {
			t.Fatalf("no bucket for account %d", id)
		}
		// The raw helpers below look for records in the main buckets:
		// move the tails there first (see tailed).
		flushTails(t, root)
		fn(accountTx{t: t, root: root})
		return nil
	})
}

// flushTails moves every tail of an account's tailed buckets into its main
// bucket.
func flushTails(t *testing.T, root *bolt.Bucket) {
	t.Helper()
	tails := []*tailed{openTailed(root, bucketBlobs)}
	boxes := root.Bucket(bucketMboxes)
	boxes.ForEach(func(k, v []byte) error {
		if v == nil {
			mb := boxes.Bucket(k)
			tails = append(tails, openTailed(mb, keyMsgs), openTailed(mb, keyChanges))
		}
		return nil
	})
	for _, tb := range tails {
		if err := tb.flush(); err != nil {
			t.Fatal(err)
		}
	}
}

func checkDir(t *testing.T, dir string, shards int, readOnly, repair bool, addrs ...string) Report {
	t.Helper()
	s, err := Open(Options{Dir: dir, NoSync: true, Shards: shards, ReadOnly: readOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := s.Check(context.Background(), addrs, repair)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func reportText(r Report) string {
	var b strings.Builder
	for _, v := range r.Violations {
		b.WriteString("\n\t" + v.String())
	}
	return b.String()
}

func TestCheckCleanStore(t *testing.T) {
	for _, shards := range []int{0, 2} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			f := buildCheckFixture(t, shards)
			for _, ro := range []bool{true, false} {
				rep := checkDir(t, f.dir, shards, ro, false)
				if len(rep.Violations) != 0 {
					t.Fatalf("read-only=%v: violations in a sound store:%s", ro, reportText(rep))
				}
				// alice: INBOX, Archive (3 + 1 messages, 3 blobs and the
				// expunged one's, on the purge list); bob: INBOX (1, 1).
				if rep.Accounts != 2 || rep.Mailboxes != 3 || rep.Messages != 5 || rep.Blobs != 5 {
					t.Errorf("checked %d accounts, %d mailboxes, %d messages, %d blobs; want 2, 3, 5, 5",
						rep.Accounts, rep.Mailboxes, rep.Messages, rep.Blobs)
				}
			}
			rep := checkDir(t, f.dir, shards, true, false, "bob@example.org")
			if rep.Accounts != 1 || rep.Messages != 1 || len(rep.Violations) != 0 {
				t.Errorf("check of bob alone: %d accounts, %d messages, violations:%s", rep.Accounts, rep.Messages, reportText(rep))
			}
		})
	}
}

func TestCheckUnknownAddress(t *testing.T) {
	f := buildCheckFixture(t, 0)
	s, err := Open(Options{Dir: f.dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Check(context.Background(), []string{"nobody@example.org"}, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("check of an unknown account: %v, want ErrNotFound", err)
	}
	if _, err := s.Check(context.Background(), nil, true); err == nil {
		t.Fatal("repair of a read-only store succeeded")
	}
}

// TestCheckCorruptions corrupts a copy of the fixture in each way the
// checker detects and checks that it is reported, with the account and the
// object, and repaired where the checker claims it can be.
func TestCheckCorruptions(t *testing.T) {
	type tc struct {
		name     string
		shards   int // 0 unless the corruption needs shared files
		corrupt  func(t *testing.T, f checkFixture, dir string)
		kind     string
		account  string // expected Violation.Account
		object   string // a substring of Violation.Object
		fixable  bool   // repair makes the store sound
		repaired bool   // the violation itself is marked repaired
	}
	alice := func(fn func(a accountTx)) func(t *testing.T, f checkFixture, dir string) {
		return func(t *testing.T, f checkFixture, dir string) { f.corruptAccount(t, dir, aliceID, fn) }
	}
	global := func(fn func(tx *bolt.Tx)) func(t *testing.T, f checkFixture, dir string) {
		return func(t *testing.T, f checkFixture, dir string) {
			corruptFile(t, filepath.Join(dir, "roost.db"), func(tx *bolt.Tx) error { fn(tx); return nil })
		}
	}
	const a = "alice@example.org"
	cases := []tc{
		{name: "message counter", kind: CheckCounter, account: a, object: `mailbox "INBOX"`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.setInfo("INBOX", func(m *Mailbox) { m.Messages += 2 }) })},
		{name: "unseen counter", kind: CheckCounter, account: a, object: `mailbox "Archive"`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.setInfo("Archive", func(m *Mailbox) { m.Unseen = 0 }) })},
		{name: "deleted and size counters", kind: CheckCounter, account: a, object: `mailbox "INBOX"`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.setInfo("INBOX", func(m *Mailbox) { m.Deleted, m.Size = 7, 1 }) })},
		{name: "account size", kind: CheckCounter, account: a, object: "account size", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.put(x.bucket(bucketMeta), keySize, u64(12345)) })},
		{name: "UIDNEXT below a UID", kind: CheckUID, account: a, object: `mailbox "INBOX"`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.setInfo("INBOX", func(m *Mailbox) { m.UIDNext = 2 }) })},
		{name: "UIDNEXT below a tombstone's UID", kind: CheckUID, account: a, object: `mailbox "INBOX"`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				// Expunge UIDs 3 and 4 by hand as Expunge would, and lower UIDNEXT
				// to just above the last message: only the tombstone is above it.
				mb := x.mailbox("INBOX")
				info := x.info("INBOX")
				for _, uid := range []uint32{4} {
					v := x.message("INBOX", uid)
					x.del(mb.Bucket(keyMsgs), u32(uid))
					x.del(mb.Bucket(keyChanges), changeKey(binary.BigEndian.Uint64(v), uid))
					x.put(mb.Bucket(keyChanges), changeKey(info.HighestModSeq, uid), []byte{1})
					blob := binary.BigEndian.Uint64(v[24:])
					deleteBlobKeys(x.t, x.bucket(bucketBlobs), blob)
					x.setInfo("INBOX", func(m *Mailbox) {
						m.UIDNext = 4
						m.Messages--
						m.Size -= int64(binary.BigEndian.Uint64(v[16:]))
					})
					var size int64
					if sv := x.bucket(bucketMeta).Get(keySize); sv != nil {
						size = int64(binary.BigEndian.Uint64(sv))
					}
					x.put(x.bucket(bucketMeta), keySize, u64(uint64(size-int64(binary.BigEndian.Uint64(v[16:])))))
				}
			})},
		{name: "UID 0", kind: CheckUID, account: a, object: "UID 0", fixable: false,
			corrupt: alice(func(x accountTx) {
				v := x.message("INBOX", 3)
				mb := x.mailbox("INBOX")
				x.del(mb.Bucket(keyMsgs), u32(3))
				x.put(mb.Bucket(keyMsgs), u32(0), v)
				x.del(mb.Bucket(keyChanges), changeKey(binary.BigEndian.Uint64(v), 3))
				x.put(mb.Bucket(keyChanges), changeKey(binary.BigEndian.Uint64(v), 0), []byte{0})
			})},
		{name: "HIGHESTMODSEQ below a message's modseq", kind: CheckModSeq, account: a, object: `mailbox "INBOX"`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.setInfo("INBOX", func(m *Mailbox) { m.HighestModSeq = 2 }) })},
		{name: "account modseq below a mailbox's", kind: CheckModSeq, account: a, object: "account modseq", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.put(x.bucket(bucketMeta), keyModSeq, u64(1)) })},
		{name: "purged modseq above HIGHESTMODSEQ", kind: CheckModSeq, account: a, object: `mailbox "INBOX"`, fixable: false,
			corrupt: alice(func(x accountTx) { x.setInfo("INBOX", func(m *Mailbox) { m.PurgedModSeq = m.HighestModSeq + 5 }) })},
		{name: "message without change-log entry", kind: CheckChangeLog, account: a, object: `mailbox "INBOX" (id 1) UID 3`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				v := x.message("INBOX", 3)
				x.del(x.mailbox("INBOX").Bucket(keyChanges), changeKey(binary.BigEndian.Uint64(v), 3))
			})},
		{name: "stale change-log entry", kind: CheckChangeLog, account: a, object: "UID 3", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				x.put(x.mailbox("INBOX").Bucket(keyChanges), changeKey(1, 3), []byte{0})
			})},
		{name: "change-log entry for a vanished message", kind: CheckChangeLog, account: a, object: "UID 4", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				// The record of UID 4 goes, its change-log entry stays; the
				// counters, size and blob reference are left as they were,
				// so those are reported (and repaired) too.
				x.del(x.mailbox("INBOX").Bucket(keyMsgs), u32(4))
			})},
		{name: "tombstone for a live message", kind: CheckTombstone, account: a, object: "UID 3", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				x.put(x.mailbox("INBOX").Bucket(keyChanges), changeKey(1, 3), []byte{1})
			})},
		{name: "two tombstones for one UID", kind: CheckTombstone, account: a, object: `mailbox "INBOX" (id 1) UID 2`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				x.put(x.mailbox("INBOX").Bucket(keyChanges), changeKey(1, 2), []byte{1})
			})},
		{name: "malformed change-log entry", kind: CheckRecord, account: a, object: "change-log", fixable: false,
			corrupt: alice(func(x accountTx) {
				v := x.message("INBOX", 3)
				x.put(x.mailbox("INBOX").Bucket(keyChanges), changeKey(binary.BigEndian.Uint64(v), 3), []byte{7})
			})},
		{name: "malformed change-log key", kind: CheckRecord, account: a, object: "change-log key", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.put(x.mailbox("INBOX").Bucket(keyChanges), []byte{1, 2, 3}, []byte{0}) })},
		{name: "blob reference count", kind: CheckBlobRefs, account: a, object: "blob 1", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				b := x.bucket(bucketBlobs)
				v := append([]byte(nil), b.Get(blobKey(1, infoChunk))...)
				binary.BigEndian.PutUint32(v, 1) // two messages share blob 1
				x.put(b, blobKey(1, infoChunk), v)
			})},
		{name: "orphaned blob", kind: CheckBlobOrphan, account: a, object: "blob 3", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				// Blob 3 belongs to UID 3 alone: drop the record and its
				// change-log entry, fix the counters, leave the blob.
				v := x.message("INBOX", 3)
				mb := x.mailbox("INBOX")
				x.del(mb.Bucket(keyMsgs), u32(3))
				x.del(mb.Bucket(keyChanges), changeKey(binary.BigEndian.Uint64(v), 3))
				size := int64(binary.BigEndian.Uint64(v[16:]))
				x.setInfo("INBOX", func(m *Mailbox) { m.Messages--; m.Unseen--; m.Size -= size })
				total := int64(binary.BigEndian.Uint64(x.bucket(bucketMeta).Get(keySize)))
				x.put(x.bucket(bucketMeta), keySize, u64(uint64(total-size)))
			})},
		{name: "blob chunks without info record", kind: CheckBlobOrphan, account: a, object: "blob 77", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				b := x.bucket(bucketBlobs)
				x.put(b, blobKey(77, 0), []byte("half a message"))
				b.SetSequence(100)
			})},
		{name: "message whose blob is gone", kind: CheckBlobMissing, account: a, object: `mailbox "INBOX" (id 1) UID 4`, fixable: false,
			corrupt: alice(func(x accountTx) {
				blob := binary.BigEndian.Uint64(x.message("INBOX", 4)[24:])
				deleteBlobKeys(x.t, x.bucket(bucketBlobs), blob)
			})},
		{name: "blob missing a chunk", kind: CheckBlobMissing, account: a, object: "UID 3", fixable: false,
			corrupt: alice(func(x accountTx) {
				blob := binary.BigEndian.Uint64(x.message("INBOX", 3)[24:])
				x.del(x.bucket(bucketBlobs), blobKey(blob, 0))
			})},
		{name: "blob shorter than its message", kind: CheckBlobMissing, account: a, object: "UID 3", fixable: false,
			corrupt: alice(func(x accountTx) {
				blob := binary.BigEndian.Uint64(x.message("INBOX", 3)[24:])
				x.put(x.bucket(bucketBlobs), blobKey(blob, 1), []byte("short"))
			})},
		{name: "blob sequence below a blob", kind: CheckSequence, account: a, object: "blob IDs", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.bucket(bucketBlobs).SetSequence(1) })},
		{name: "mailbox sequence below a mailbox", kind: CheckSequence, account: a, object: "mailbox IDs", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.bucket(bucketMboxes).SetSequence(1) })},
		{name: "name pointing to no mailbox", kind: CheckRecord, account: a, object: `mailbox name "Gone"`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.put(x.bucket(bucketNames), []byte("Gone"), u64(99)) })},
		{name: "mailbox missing from the name index", kind: CheckRecord, account: a, object: `mailbox "Archive"`, fixable: false,
			corrupt: alice(func(x accountTx) { x.del(x.bucket(bucketNames), []byte("Archive")) })},
		{name: "mailbox record that does not parse", kind: CheckRecord, account: a, object: "mailbox 2", fixable: false,
			corrupt: alice(func(x accountTx) { x.put(x.mailbox("Archive"), keyInfo, []byte("{broken")) })},
		{name: "short message record", kind: CheckRecord, account: a, object: "key 00000003", fixable: false,
			corrupt: alice(func(x accountTx) { x.put(x.mailbox("INBOX").Bucket(keyMsgs), u32(3), []byte("short")) })},
		{name: "malformed keyword list", kind: CheckRecord, account: a, object: "UID 4", fixable: false,
			corrupt: alice(func(x accountTx) {
				v := x.message("INBOX", 4)
				x.put(x.mailbox("INBOX").Bucket(keyMsgs), u32(4), append(v, 40, 'x'))
			})},
		{name: "missing account bucket", kind: CheckRecord, account: a, object: "bucket blobs", fixable: false,
			corrupt: alice(func(x accountTx) {
				if err := x.root.DeleteBucket(bucketBlobs); err != nil {
					x.t.Fatal(err)
				}
			})},
		{name: "expunged blob missing from the purge list", kind: CheckBlobOrphan, account: a, object: "blob 2", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) {
				p := x.bucket(bucketPurge)
				c := p.Cursor()
				for k, _ := c.First(); k != nil; k, _ = c.First() {
					c.Delete()
				}
			})},
		{name: "malformed purge list key", kind: CheckRecord, account: a, object: "purge list key", fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.put(x.bucket(bucketPurge), []byte{1, 2}, nil) })},
		{name: "keyword missing from the keyword list", kind: CheckRecord, account: a, object: `mailbox "INBOX"`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.setInfo("INBOX", func(m *Mailbox) { m.Keywords = nil }) })},
		{name: "recent mark above UIDNEXT", kind: CheckUID, account: a, object: `mailbox "Archive"`, fixable: true, repaired: true,
			corrupt: alice(func(x accountTx) { x.setInfo("Archive", func(m *Mailbox) { m.RecentUID = m.UIDNext + 10 }) })},
		{name: "alias to no account", kind: CheckIndex, account: "carol@example.org", object: "alias", fixable: false,
			corrupt: global(func(tx *bolt.Tx) { tx.Bucket(bucketAliases).Put([]byte("c@example.org"), []byte("carol@example.org")) })},
		{name: "alias that is an account", kind: CheckIndex, account: "bob@example.org", object: "alias bob@example.org", fixable: false,
			corrupt: global(func(tx *bolt.Tx) { tx.Bucket(bucketAliases).Put([]byte("bob@example.org"), []byte(a)) })},
		{name: "account record that does not parse", kind: CheckIndex, account: "bob@example.org", object: "account record", fixable: false,
			corrupt: global(func(tx *bolt.Tx) { tx.Bucket(bucketAccounts).Put([]byte("bob@example.org"), []byte("{")) })},
		{name: "account record under another address", kind: CheckIndex, account: "eve@example.org", object: "account record", fixable: false,
			corrupt: global(func(tx *bolt.Tx) {
				v := tx.Bucket(bucketAccounts).Get([]byte("bob@example.org"))
				tx.Bucket(bucketAccounts).Put([]byte("eve@example.org"), append([]byte(nil), v...))
			})},
		{name: "two accounts with one ID", kind: CheckIndex, account: "dave@example.org", object: "account record", fixable: false,
			corrupt: global(func(tx *bolt.Tx) {
				var acct Account
				json.Unmarshal(tx.Bucket(bucketAccounts).Get([]byte("bob@example.org")), &acct)
				acct.Address, acct.ID = "dave@example.org", aliceID
				data, _ := json.Marshal(acct)
				tx.Bucket(bucketAccounts).Put([]byte("dave@example.org"), data)
			})},
		{name: "account sequence below an account", kind: CheckSequence, object: "account index", fixable: true, repaired: true,
			corrupt: global(func(tx *bolt.Tx) { tx.Bucket(bucketAccounts).SetSequence(1) })},
		{name: "missing mail file", kind: CheckFile, account: "bob@example.org", object: "accounts/2.db", fixable: false,
			corrupt: func(t *testing.T, f checkFixture, dir string) {
				if err := os.Remove(f.mailPath(dir, bobID)); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "orphaned mail file", kind: CheckFile, object: "accounts/7.db", fixable: false,
			corrupt: func(t *testing.T, f checkFixture, dir string) {
				data, err := os.ReadFile(f.mailPath(dir, bobID))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(dir, "accounts", "7.db"), data, 0o600)
			}},
		{name: "account file without its bucket", kind: CheckFile, account: "bob@example.org", object: "account bucket", fixable: false,
			corrupt: func(t *testing.T, f checkFixture, dir string) {
				corruptFile(t, f.mailPath(dir, bobID), func(tx *bolt.Tx) error { return tx.DeleteBucket(accountKey(bobID)) })
			}},
		{name: "orphaned account bucket in a shared file", shards: 2, kind: CheckFile, object: "account bucket 5 in mail/shard-1.db", fixable: false,
			corrupt: func(t *testing.T, f checkFixture, dir string) {
				corruptFile(t, f.mailPath(dir, 5), func(tx *bolt.Tx) error {
					_, err := tx.CreateBucket(accountKey(5))
					return err
				})
			}},
		{name: "account bucket in the wrong shared file", shards: 2, kind: CheckFile, object: "account bucket 4 in mail/shard-1.db", fixable: false,
			corrupt: func(t *testing.T, f checkFixture, dir string) {
				corruptFile(t, f.mailPath(dir, 1), func(tx *bolt.Tx) error {
					_, err := tx.CreateBucket(accountKey(4))
					return err
				})
			}},
		{name: "missing account bucket in a shared file", shards: 2, kind: CheckFile, account: "bob@example.org", object: "account bucket", fixable: false,
			corrupt: func(t *testing.T, f checkFixture, dir string) {
				corruptFile(t, f.mailPath(dir, bobID), func(tx *bolt.Tx) error { return tx.DeleteBucket(accountKey(bobID)) })
			}},
	}
	fixtures := map[int]checkFixture{0: buildCheckFixture(t, 0), 2: buildCheckFixture(t, 2)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := fixtures[c.shards]
			dir := f.copy(t)
			c.corrupt(t, f, dir)

			rep := checkDir(t, dir, c.shards, true, false)
			var found *Violation
			for i, v := range rep.Violations {
				if v.Kind == c.kind && v.Account == c.account && strings.Contains(v.Object, c.object) {
					found = &rep.Violations[i]
				}
				if v.Repaired {
					t.Errorf("a check without repair marked a violation repaired: %s", v)
				}
			}
			if found == nil {
				t.Fatalf("no %s violation for account %q, object %q; got:%s", c.kind, c.account, c.object, reportText(rep))
			}
			if rep.Unrepaired() == 0 {
				t.Fatal("Unrepaired() = 0 with violations")
			}

			rep = checkDir(t, dir, c.shards, false, true)
			repaired := false
			for _, v := range rep.Violations {
				if v.Kind == c.kind && v.Account == c.account && strings.Contains(v.Object, c.object) && v.Repaired {
					repaired = true
				}
			}
			if repaired != c.repaired {
				t.Errorf("repaired = %v, want %v; repair reported:%s", repaired, c.repaired, reportText(rep))
			}
			after := checkDir(t, dir, c.shards, true, false)
			if c.fixable && len(after.Violations) != 0 {
				t.Errorf("violations remain after repair:%s", reportText(after))
			}
			if !c.fixable && after.Unrepaired() == 0 {
				t.Errorf("an unrepairable violation went away after repair; repair reported:%s", reportText(rep))
			}
			// What repair claims to have fixed is fixed.
			for _, v := range rep.Violations {
				if !v.Repaired {
					continue
				}
				for _, w := range after.Violations {
					if w.Kind == v.Kind && w.Account == v.Account && w.Object == v.Object {
						t.Errorf("repaired %s, still reported: %s", v, w)
					}
				}
			}
		})
	}
}

// TestCheckRepairedStoreWorks: after a repair, the store's own operations
// agree with it (a new message gets a fresh UID and blob).
func TestCheckRepairedStoreWorks(t *testing.T) {
	f := buildCheckFixture(t, 0)
	dir := f.copy(t)
	f.corruptAccount(t, dir, aliceID, func(x accountTx) {
		x.setInfo("INBOX", func(m *Mailbox) { m.UIDNext = 1; m.Messages = 0 })
		x.bucket(bucketBlobs).SetSequence(0)
	})
	if rep := checkDir(t, dir, 0, false, true); rep.Unrepaired() != 0 {
		t.Fatalf("unrepaired:%s", reportText(rep))
	}
	s := openTest(t, dir)
	defer s.Close()
	ms, err := s.Mailstore(aliceID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ms.Append("INBOX", msg(42), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if r.UID != 5 {
		t.Errorf("new message got UID %d, want 5", r.UID)
	}
	rep, err := s.Check(context.Background(), nil, false)
	if err != nil || len(rep.Violations) != 0 {
		t.Fatalf("after a delivery into the repaired store: %v%s", err, reportText(rep))
	}
}

// TestCheckDamagedPages: a file whose pages are overwritten is reported
// (by bbolt's page check or as unreadable), never repaired, and the check
// does not crash.
func TestCheckDamagedPages(t *testing.T) {
	f := buildCheckFixture(t, 0)
	dir := f.copy(t)
	path := f.mailPath(dir, aliceID)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Pages 0 and 1 are the meta pages, 2 the freelist; damage every
	// page header after them.
	pageSize := os.Getpagesize()
	for off := 4 * pageSize; off+16 < len(data); off += pageSize {
		copy(data[off:], bytes.Repeat([]byte{0xA5}, 16))
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := s.Check(context.Background(), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range rep.Violations {
		if v.Account == "alice@example.org" && v.Kind == CheckFile {
			found = true
		}
	}
	if !found {
		t.Fatalf("no file violation for the damaged file:%s", reportText(rep))
	}
	t.Logf("reported:%s", reportText(rep))
}

// TestCheckWhileInUse: checks running beside deliveries, flag changes,
// copies and expunges see consistent states only (read transactions).
func TestCheckWhileInUse(t *testing.T) {
	for _, shards := range []int{0, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, NoSync: true, Shards: shards})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var stores []*Mailstore
			var boxes []Mailbox
			for i := 0; i < 4; i++ {
				ms, mb := newAccount(t, s, fmt.Sprintf("u%d@example.org", i))
				stores, boxes = append(stores, ms), append(boxes, mb)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ms, mb := stores[w], boxes[w]
					arch, err := ms.CreateMailbox("Archive", "")
					if err != nil {
						t.Error(err)
						return
					}
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						r, err := ms.Append("INBOX", msg(i), Limits{})
						if err != nil {
							t.Error(err)
							return
						}
						ms.StoreFlags(mb.ID, []uint32{r.UID}, FlagsAdd, []string{FlagSeen}, 0)
						ms.Copy(mb.ID, []uint32{r.UID}, arch.ID, i%2 == 0, Limits{})
						if i%3 == 0 {
							ms.Expunge(mb.ID, []uint32{r.UID - 1}, false)
						}
					}
				}()
			}
			for i := 0; i < 20; i++ {
				rep, err := s.Check(context.Background(), nil, false)
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Violations) != 0 {
					t.Errorf("check %d during writes:%s", i, reportText(rep))
					break
				}
			}
			// A repair while writers run must not disturb them either.
			if rep, err := s.Check(context.Background(), nil, true); err != nil || len(rep.Violations) != 0 {
				t.Errorf("repair during writes: %v%s", err, reportText(rep))
			}
			close(stop)
			wg.Wait()
		})
	}
}

// TestCheckPartialDoesNotFreeBodies: when a mailbox cannot be read, the
// blobs its messages use look unreferenced; repair must not free them.
func TestCheckPartialDoesNotFreeBodies(t *testing.T) {
	f := buildCheckFixture(t, 0)
	dir := f.copy(t)
	var saved []byte
	f.corruptAccount(t, dir, aliceID, func(x accountTx) {
		mb := x.mailbox("Archive")
		saved = append([]byte(nil), mb.Get(keyInfo)...)
		x.put(mb, keyInfo, []byte("{broken"))
		// And make blob 4 (UID 4 in INBOX) unreferenced for real.
		x.del(x.mailbox("INBOX").Bucket(keyMsgs), u32(4))
	})
	rep := checkDir(t, dir, 0, false, true)
	for _, v := range rep.Violations {
		if (v.Kind == CheckBlobOrphan || v.Kind == CheckBlobRefs) && v.Repaired {
			t.Errorf("repaired blobs while a mailbox was unreadable: %s", v)
		}
	}
	f.corruptAccount(t, dir, aliceID, func(x accountTx) { x.put(x.mailbox("Archive"), keyInfo, saved) })
	rep = checkDir(t, dir, 0, false, true)
	if rep.Unrepaired() != 0 {
		t.Fatalf("after restoring the mailbox record:%s", reportText(rep))
	}
	if !rep.Has(CheckBlobOrphan) {
		t.Errorf("blob 4 not found orphaned once the mailbox was readable:%s", reportText(rep))
	}
	if after := checkDir(t, dir, 0, true, false); len(after.Violations) != 0 {
		t.Errorf("not sound after the second repair:%s", reportText(after))
	}
}
