package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrOverQuota is returned when an append would take an account over its quota.
var ErrOverQuota = errors.New("over quota")

// Layout of an account file:
//
//	meta/modseq            -> uint64, the account's last modseq
//	meta/uidvalidity       -> uint32, the last UIDVALIDITY handed out
//	meta/size              -> int64, total size of all messages (for quota)
//	names/<name>           -> mailbox ID
//	subs/<name>            -> "" (subscriptions; may name missing mailboxes)
//	mboxes/<id>/i          -> Mailbox JSON (counters included)
//	mboxes/<id>/m/<uid>    -> message record (see encodeMessage)
//	mboxes/<id>/c/<modseq><uid> -> 0 (changed) or 1 (expunged: a tombstone)
//	blobs/<blob><chunk>    -> up to chunkSize bytes of a raw message
//	blobs/<blob><ffffffff> -> refcount uint32, then the parsed form
//	purge/<modseq><blob>   -> "" (a body whose last message was expunged at
//	                          modseq, kept until no session can address it)
//	meta/layout            -> uint64, see upgradeAccount
//
// The message, change-log and blob buckets are tailed (see tailed): each
// has a small sibling, its name with "+" appended (mboxes/<id>/m+, c+,
// blobs+), that holds its newest keys until 256 have come, so that an
// append costs the same in a mailbox of a million messages as in an empty
// one.
var (
	bucketMeta   = []byte("meta")
	bucketNames  = []byte("names")
	bucketSubs   = []byte("subs")
	bucketMboxes = []byte("mboxes")
	bucketBlobs  = []byte("blobs")
	bucketPurge  = []byte("purge")

	keyInfo     = []byte("i")
	keyMsgs     = []byte("m")
	keyChanges  = []byte("c")
	keyModSeq   = []byte("modseq")
	keyUIDValid = []byte("uidvalidity")
	keySize     = []byte("size")
)

// chunkSize is how raw messages are split in the blobs bucket, so that a
// large message is read and streamed a piece at a time, never whole.
const chunkSize = 256 << 10

// Mailbox is a mailbox with its counters. Counters are kept up to date on
// every write, so reading them is O(1) in the mailbox size.
type Mailbox struct {
	ID            uint64 `json:"id"`
	Name          string `json:"name"`
	SpecialUse    string `json:"special_use,omitempty"` // RFC 6154 attribute, e.g. `\Sent`
	UIDValidity   uint32 `json:"uidvalidity"`
	UIDNext       uint32 `json:"uidnext"`
	HighestModSeq uint64 `json:"highestmodseq"`
	// PurgedModSeq is the highest modseq whose expunge tombstones have been
	// purged (0: none ever were). A QRESYNC client whose modseq is below it
	// cannot be told exactly what vanished (RFC 7162 §3.2.5.2).
	PurgedModSeq uint64    `json:"purged_modseq,omitempty"`
	Messages     uint32    `json:"messages"`
	Unseen       uint32    `json:"unseen"`
	Deleted      uint32    `json:"deleted"` // messages flagged \Deleted
	Size         int64     `json:"size"`
	Created      time.Time `json:"created"`
	// Keywords is every keyword ever set on a message of the mailbox, in
	// order of first use, spelled as first used. It only grows (as in
	// Dovecot): clearing a keyword from every message leaves it listed.
	// Appends, copies, moves and flag changes maintain it in their own
	// transaction, so SELECT sends FLAGS and PERMANENTFLAGS (RFC 9051
	// §7.3.5) without a scan, and a session that has announced the first n
	// keywords knows a new one appeared when len(Keywords) > n.
	Keywords []string `json:"keywords,omitempty"`
	// RecentUID is the first UID that no session has yet claimed as
	// \Recent (RFC 3501 §2.3.2); see Mailstore.ClaimRecent.
	RecentUID uint32 `json:"recent_uid,omitempty"`
}

// Message is the record of one message in a mailbox.
type Message struct {
	UID          uint32
	ModSeq       uint64
	InternalDate time.Time
	Size         int64
	BlobID       uint64
	Flags        []string // system flags first (canonical spelling), then keywords
}

// Has reports whether the message has flag (system flags case-insensitively).
func (m *Message) Has(flag string) bool {
	for _, f := range m.Flags {
		if strings.EqualFold(f, flag) {
			return true
		}
	}
	return false
}

// Change is an entry of a mailbox's change log: the message with UID was
// changed (added or its flags set) or expunged at ModSeq.
type Change struct {
	UID      uint32
	ModSeq   uint64
	Expunged bool
}

// Mailstore is one account's mail: a bucket of its own in a mail file
// (which it has to itself, or shares with other accounts, see
// Options.Shards). It is a handle: the file is opened when an operation
// needs it.
type Mailstore struct {
	s    *Store
	id   uint64
	path string
	key  []byte // the account's top-level bucket in the file
}

// atx is a transaction seen from one account: Bucket finds the account's
// buckets, so the code below reads as if the account had the file alone.
type atx struct {
	*bolt.Tx
	root *bolt.Bucket
}

// Bucket returns the account's bucket called name.
func (t *atx) Bucket(name []byte) *bolt.Bucket { return t.root.Bucket(name) }

var accountBuckets = [][]byte{bucketMeta, bucketNames, bucketSubs, bucketMboxes, bucketBlobs, bucketPurge}

func accountKey(id uint64) []byte { return append([]byte("a"), u64(id)...) }

// inAccount adapts fn to a transaction of the whole file.
func inAccount(key []byte, fn func(tx *atx) error) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		root := tx.Bucket(key)
		if root == nil {
			return fmt.Errorf("account: %w", ErrNotFound)
		}
		return fn(&atx{Tx: tx, root: root})
	}
}

// update runs fn in a write transaction of the account and returns once it
// is durable (see mailFile.update).
func (m *Mailstore) update(fn func(tx *atx) error) error {
	return m.write(&writeReq{fn: inAccount(m.key, fn)})
}

// write hands req to the committer of the account's file.
func (m *Mailstore) write(req *writeReq) error {
	f, err := m.s.acquire(m.path, m.id, false)
	if err != nil {
		return err
	}
	defer m.s.release(f)
	if req.app != nil {
		req.app.file = f.rel
	}
	return f.submit(req)
}

func (m *Mailstore) view(fn func(tx *atx) error) error {
	f, err := m.s.acquire(m.path, m.id, false)
	if err != nil {
		return err
	}
	defer m.s.release(f)
	return f.viewDB(inAccount(m.key, fn))
}

// nextModSeq hands out the account's next modseq.
func nextModSeq(tx *atx) uint64 {
	meta := tx.Bucket(bucketMeta)
	var v uint64
	if b := meta.Get(keyModSeq); b != nil {
		v = binary.BigEndian.Uint64(b)
	}
	v++
	meta.Put(keyModSeq, u64(v))
	return v
}

func addAccountSize(tx *atx, delta int64) int64 {
	meta := tx.Bucket(bucketMeta)
	var v int64
	if b := meta.Get(keySize); b != nil {
		v = int64(binary.BigEndian.Uint64(b))
	}
	v += delta
	meta.Put(keySize, u64(uint64(v)))
	return v
}

// AccountSize returns the total size of all messages of the account.
func (m *Mailstore) AccountSize() (int64, error) {
	var v int64
	err := m.view(func(tx *atx) error {
		if b := tx.Bucket(bucketMeta).Get(keySize); b != nil {
			v = int64(binary.BigEndian.Uint64(b))
		}
		return nil
	})
	return v, err
}

// mbox is an open mailbox inside a transaction.
type mbox struct {
	b    *bolt.Bucket
	info Mailbox
}

func getMbox(tx *atx, id uint64) (*mbox, error) {
	b := tx.Bucket(bucketMboxes).Bucket(u64(id))
	if b == nil {
		return nil, fmt.Errorf("mailbox %d: %w", id, ErrNotFound)
	}
	mb := &mbox{b: b}
	if err := json.Unmarshal(b.Get(keyInfo), &mb.info); err != nil {
		return nil, fmt.Errorf("mailbox %d: %w", id, err)
	}
	return mb, nil
}

func (mb *mbox) save() error { return putJSON(mb.b, keyInfo, mb.info) }

// appendOnly marks a bucket whose new keys always sort last (UIDs, modseqs,
// blob IDs): bbolt then fills pages completely instead of splitting them in
// half, so a big mailbox has half the pages and a shallower tree, and an
// append dirties fewer of them (delivery cost stays flat in mailbox size).
func appendOnly(b *bolt.Bucket) *bolt.Bucket {
	if b != nil && b.Tx().Writable() {
		b.FillPercent = 1.0
	}
	return b
}

func (mb *mbox) msgs() *tailed    { return openTailed(mb.b, keyMsgs) }
func (mb *mbox) changes() *tailed { return openTailed(mb.b, keyChanges) }

// blobsOf returns the account's bodies.
func blobsOf(tx *atx) *tailed { return openTailed(tx.root, bucketBlobs) }

func changeKey(modseq uint64, uid uint32) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, modseq)
	binary.BigEndian.PutUint32(k[8:], uid)
	return k
}

// logChange records that uid changed at modseq, replacing its older entry.
func (mb *mbox) logChange(uid uint32, oldModSeq, modseq uint64, expunged bool) error {
	c := mb.changes()
	if oldModSeq != 0 {
		if err := c.Delete(changeKey(oldModSeq, uid)); err != nil {
			return err
		}
	}
	v := []byte{0}
	if expunged {
		// A tombstone: 1, then when (unix seconds), for purging after
		// Options.TombstoneRetention. (Never in an append, which must not
		// depend on the clock: see appendMessage.)
		v = binary.BigEndian.AppendUint64([]byte{1}, uint64(time.Now().Unix()))
	}
	if modseq > mb.info.HighestModSeq {
		mb.info.HighestModSeq = modseq
	}
	return c.Put(changeKey(modseq, uid), v)
}

func mailboxByName(tx *atx, name string) (*mbox, error) {
	v := tx.Bucket(bucketNames).Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("mailbox %q: %w", name, ErrNotFound)
	}
	return getMbox(tx, binary.BigEndian.Uint64(v))
}

// Mailboxes lists every mailbox, sorted by name.
func (m *Mailstore) Mailboxes() ([]Mailbox, error) {
	var out []Mailbox
	err := m.view(func(tx *atx) error {
		return tx.Bucket(bucketNames).ForEach(func(k, v []byte) error {
			mb, err := getMbox(tx, binary.BigEndian.Uint64(v))
			if err != nil {
				return err
			}
			out = append(out, mb.info)
			return nil
		})
	})
	return out, err
}

// Mailbox returns the mailbox with the given name.
func (m *Mailstore) Mailbox(name string) (Mailbox, error) {
	var info Mailbox
	err := m.view(func(tx *atx) error {
		mb, err := mailboxByName(tx, name)
		if err == nil {
			info = mb.info
		}
		return err
	})
	return info, err
}

// MailboxByID returns the mailbox with the given ID.
func (m *Mailstore) MailboxByID(id uint64) (Mailbox, error) {
	var info Mailbox
	err := m.view(func(tx *atx) error {
		mb, err := getMbox(tx, id)
		if err == nil {
			info = mb.info
		}
		return err
	})
	return info, err
}

// CreateMailbox creates a mailbox with a fresh UIDVALIDITY.
func (m *Mailstore) CreateMailbox(name, specialUse string) (Mailbox, error) {
	var info Mailbox
	err := m.update(func(tx *atx) error {
		var err error
		info, err = createMailbox(tx, name, specialUse)
		return err
	})
	return info, err
}

func createMailbox(tx *atx, name, specialUse string) (Mailbox, error) {
	if name == "" {
		return Mailbox{}, ErrInvalidName
	}
	names := tx.Bucket(bucketNames)
	if names.Get([]byte(name)) != nil {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, ErrExists)
	}
	boxes := tx.Bucket(bucketMboxes)
	id, err := boxes.NextSequence()
	if err != nil {
		return Mailbox{}, err
	}
	// UIDVALIDITY must differ from any earlier mailbox of the same name
	// (RFC 9051 §2.3.1.1); a per-account counter seeded by the clock also
	// keeps it distinct across a restore from an older backup.
	meta := tx.Bucket(bucketMeta)
	var last uint32
	if b := meta.Get(keyUIDValid); b != nil {
		last = binary.BigEndian.Uint32(b)
	}
	uv := uint32(time.Now().Unix())
	if uv <= last {
		uv = last + 1
	}
	if err := meta.Put(keyUIDValid, u32(uv)); err != nil {
		return Mailbox{}, err
	}
	b, err := boxes.CreateBucket(u64(id))
	if err != nil {
		return Mailbox{}, err
	}
	if _, err := b.CreateBucket(keyMsgs); err != nil {
		return Mailbox{}, err
	}
	if _, err := b.CreateBucket(keyChanges); err != nil {
		return Mailbox{}, err
	}
	mb := &mbox{b: b, info: Mailbox{ID: id, Name: name, SpecialUse: specialUse, UIDValidity: uv, UIDNext: 1,
		RecentUID: 1, HighestModSeq: nextModSeq(tx), Created: time.Now().UTC()}}
	if err := mb.save(); err != nil {
		return Mailbox{}, err
	}
	return mb.info, names.Put([]byte(name), u64(id))
}

// EnsureMailboxes creates, in one transaction, those of the given mailboxes
// (name -> special-use) that do not exist yet.
func (m *Mailstore) EnsureMailboxes(boxes map[string]string, subscribe bool) error {
	names := make([]string, 0, len(boxes))
	for n := range boxes {
		names = append(names, n)
	}
	sort.Strings(names)
	return m.update(func(tx *atx) error {
		for _, n := range names {
			if tx.Bucket(bucketNames).Get([]byte(n)) != nil {
				continue
			}
			if _, err := createMailbox(tx, n, boxes[n]); err != nil {
				return err
			}
			if subscribe {
				if err := tx.Bucket(bucketSubs).Put([]byte(n), nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// DeleteMailbox removes a mailbox and its messages.
func (m *Mailstore) DeleteMailbox(name string) error {
	return m.update(func(tx *atx) error {
		mb, err := mailboxByName(tx, name)
		if err != nil {
			return err
		}
		var freed int64
		modseq := nextModSeq(tx)
		err = mb.msgs().ForEach(func(k, v []byte) error {
			msg := decodeMessage(k, v)
			freed += msg.Size
			return unrefBlob(tx, msg.BlobID, modseq)
		})
		if err != nil {
			return err
		}
		addAccountSize(tx, -freed)
		if err := tx.Bucket(bucketMboxes).DeleteBucket(u64(mb.info.ID)); err != nil {
			return err
		}
		return tx.Bucket(bucketNames).Delete([]byte(name))
	})
}

// RenameMailboxes renames mailboxes in one transaction (a parent and its
// children move together). UIDVALIDITY and messages are kept.
func (m *Mailstore) RenameMailboxes(renames [][2]string) error {
	return m.update(func(tx *atx) error {
		names := tx.Bucket(bucketNames)
		ids := make([][]byte, len(renames))
		for i, r := range renames {
			v := names.Get([]byte(r[0]))
			if v == nil {
				return fmt.Errorf("mailbox %q: %w", r[0], ErrNotFound)
			}
			ids[i] = append([]byte(nil), v...)
			if err := names.Delete([]byte(r[0])); err != nil {
				return err
			}
		}
		for i, r := range renames {
			if names.Get([]byte(r[1])) != nil {
				return fmt.Errorf("mailbox %q: %w", r[1], ErrExists)
			}
			if err := names.Put([]byte(r[1]), ids[i]); err != nil {
				return err
			}
			mb, err := getMbox(tx, binary.BigEndian.Uint64(ids[i]))
			if err != nil {
				return err
			}
			mb.info.Name = r[1]
			if err := mb.save(); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetSubscribed subscribes or unsubscribes a mailbox name (which need not
// exist, RFC 9051 §6.3.7) and reports whether that changed the
// subscriptions (IMAP NOTIFY tells other sessions of changes only, RFC
// 5465 §5.5).
func (m *Mailstore) SetSubscribed(name string, on bool) (changed bool, err error) {
	err = m.update(func(tx *atx) error {
		b := tx.Bucket(bucketSubs)
		k, _ := b.Cursor().Seek([]byte(name))
		if was := k != nil && string(k) == name; was == on {
			return nil
		}
		changed = true
		if on {
			return b.Put([]byte(name), nil)
		}
		return b.Delete([]byte(name))
	})
	return changed, err
}

// Subscriptions returns the subscribed names, sorted.
func (m *Mailstore) Subscriptions() ([]string, error) {
	var out []string
	err := m.view(func(tx *atx) error {
		return tx.Bucket(bucketSubs).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}
