package store

// What IMAP sessions need of the store beyond messages and flags: the
// \Recent claim (RFC 3501 §2.3.2), the keywords in use, and bodies that
// outlive their expunge until no session can address them (RFC 2180 §4.1).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// noteKeywords adds to the mailbox's keyword list those of kw it lacks
// (compared case-insensitively, RFC 9051 §2.3.2).
func (mb *mbox) noteKeywords(kw []string) {
	for _, k := range kw {
		known := false
		for _, have := range mb.info.Keywords {
			if strings.EqualFold(have, k) {
				known = true
				break
			}
		}
		if !known {
			mb.info.Keywords = append(mb.info.Keywords, k)
		}
	}
}

// ClaimRecent claims for the caller every message of the mailbox that no
// session has claimed yet: the UIDs in [first, next) are \Recent for the
// caller's session and for no other (RFC 3501 §2.3.2). A session claims on
// SELECT (not EXAMINE) and whenever it learns of new messages. first ==
// next means nothing was left to claim; then nothing is written.
func (m *Mailstore) ClaimRecent(mboxID uint64) (first, next uint32, err error) {
	// Most calls find nothing new: answer those from a read transaction,
	// without a write and its fsync.
	err = m.view(func(tx *atx) error {
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		first, next = recentFrom(&mb.info), mb.info.UIDNext
		return nil
	})
	if err != nil || first >= next {
		return next, next, err
	}
	err = m.update(func(tx *atx) error {
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		first, next = recentFrom(&mb.info), mb.info.UIDNext
		if first >= next {
			first = next
			return nil
		}
		mb.info.RecentUID = next
		return mb.save()
	})
	if err != nil {
		return 0, 0, fmt.Errorf("claim recent in mailbox %d: %w", mboxID, err)
	}
	return first, next, nil
}

func recentFrom(info *Mailbox) uint32 { return max(info.RecentUID, 1) }

// RecentCount returns how many messages of the mailbox no session has
// claimed as \Recent yet: the RECENT count of EXAMINE and STATUS, which
// must not claim them (RFC 3501 §6.3.2).
func (m *Mailstore) RecentCount(mboxID uint64) (uint32, error) {
	var n uint32
	err := m.view(func(tx *atx) error {
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		c := mb.msgs().Cursor()
		for k, _ := c.Seek(u32(recentFrom(&mb.info))); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// ModSeq returns the account's current modseq: every change committed so
// far has a modseq at most this.
func (m *Mailstore) ModSeq() (uint64, error) {
	var v uint64
	err := m.view(func(tx *atx) error {
		if b := tx.Bucket(bucketMeta).Get(keyModSeq); b != nil {
			v = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return v, err
}

func purgeKey(modseq, blob uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, modseq)
	binary.BigEndian.PutUint64(k[8:], blob)
	return k
}

// PendingPurge returns the lowest modseq on the purge list (the expunge
// that left a body without messages), or 0 if the list is empty.
func (m *Mailstore) PendingPurge() (uint64, error) {
	var v uint64
	err := m.view(func(tx *atx) error {
		v = lowestPending(tx)
		return nil
	})
	return v, err
}

func lowestPending(tx *atx) uint64 {
	purge := tx.Bucket(bucketPurge)
	if purge == nil {
		return 0
	}
	if k, _ := purge.Cursor().First(); k != nil {
		return binary.BigEndian.Uint64(k)
	}
	return 0
}

// PurgeBlobs deletes the bodies on the purge list whose last message was
// expunged at a modseq up to horizon: the caller knows no session can
// still address those messages. It returns how many went and the lowest
// modseq still pending (0: none).
func (m *Mailstore) PurgeBlobs(horizon uint64) (purged int, pending uint64, err error) {
	low, err := m.PendingPurge()
	if err != nil || low == 0 || low > horizon {
		return 0, low, err
	}
	err = m.update(func(tx *atx) error {
		purged, pending = 0, 0
		var err error
		purged, err = purgeUpTo(tx, horizon)
		pending = lowestPending(tx)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("purge expunged bodies: %w", err)
	}
	return purged, pending, nil
}

func purgeUpTo(tx *atx, horizon uint64) (int, error) {
	purge := tx.Bucket(bucketPurge)
	if purge == nil {
		return 0, nil
	}
	n := 0
	c := purge.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= horizon; k, _ = c.First() {
		blob := binary.BigEndian.Uint64(k[8:])
		// A blob on the list has no message left; check anyway, so that a
		// damaged list can never delete a body still in use.
		if v := blobsOf(tx).Get(blobKey(blob, infoChunk)); v != nil && binary.BigEndian.Uint32(v) == 0 {
			if err := deleteBlob(tx, blob); err != nil {
				return n, err
			}
			n++
		}
		if err := c.Delete(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// accountLayout is the version of an account's layout: 2 added the purge
// list, the mailboxes' keyword lists and RecentUID.
const accountLayout = 2

var keyLayout = []byte("layout")

// upgradeAccount brings an account written by an older Roost to the current
// layout when its mail is opened; an up-to-date account costs one read
// transaction. It leaves the purge list alone: the mail file may be opened
// again while sessions can still address bodies on it, so emptying the
// list after a restart is for the caller that knows the sessions (the
// backend does it when it first serves the account).
func (m *Mailstore) upgradeAccount() error {
	current := false
	err := m.view(func(tx *atx) error {
		v := tx.Bucket(bucketMeta).Get(keyLayout)
		current = v != nil && binary.BigEndian.Uint64(v) >= accountLayout
		return nil
	})
	if err != nil || current {
		return err
	}
	return m.update(func(tx *atx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyLayout); v != nil && binary.BigEndian.Uint64(v) >= accountLayout {
			return nil
		}
		if _, err := tx.root.CreateBucketIfNotExists(bucketPurge); err != nil {
			return err
		}
		if err := upgradeMailboxes(tx); err != nil {
			return err
		}
		return meta.Put(keyLayout, u64(accountLayout))
	})
}

// upgradeMailboxes fills in the fields layout 2 added: the keywords in use
// (from a scan of the messages) and RecentUID (messages stored before the
// upgrade count as seen by an earlier session, so none is \Recent).
func upgradeMailboxes(tx *atx) error {
	var ids [][]byte
	err := tx.Bucket(bucketMboxes).ForEach(func(k, v []byte) error {
		if v == nil { // a mailbox is a sub-bucket
			ids = append(ids, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		mb, err := getMbox(tx, binary.BigEndian.Uint64(id))
		if err != nil {
			return err
		}
		err = mb.msgs().ForEach(func(k, v []byte) error {
			mb.noteKeywords(decodeFlags(v).keywords)
			return nil
		})
		if err != nil {
			return err
		}
		if mb.info.RecentUID == 0 {
			mb.info.RecentUID = mb.info.UIDNext
		}
		if err := mb.save(); err != nil {
			return err
		}
	}
	return nil
}

// ParsedEach calls fn with the parsed form of each blob (nil for a blob
// that is gone), in order, inside one read transaction: SEARCH, SORT and
// THREAD read thousands of them. raw is valid only during the call.
//
// Blobs of consecutive messages are usually consecutive in the blobs
// bucket (IDs ascend with delivery), and a small message is one chunk and
// the info record: so the cursor steps forward a few keys to the next info
// record rather than searching the tree from the root for each.
func (m *Mailstore) ParsedEach(blobs []uint64, fn func(i int, raw []byte) error) error {
	return m.view(func(tx *atx) error {
		c := blobsOf(tx).Cursor()
		var k, v []byte
		for i, id := range blobs {
			want := blobKey(id, infoChunk)
			found := false
			// Walk a few keys forward if the target is just ahead.
			for step := 0; k != nil && step < 4 && bytes.Compare(k, want) < 0; step++ {
				k, v = c.Next()
			}
			if k == nil || !bytes.Equal(k, want) {
				k, v = c.Seek(want)
			}
			found = k != nil && bytes.Equal(k, want)
			var raw []byte
			if found && len(v) >= 4 {
				raw = v[4:]
			}
			if err := fn(i, raw); err != nil {
				return err
			}
		}
		return nil
	})
}
