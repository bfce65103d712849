package store

import (
	"encoding/binary"
	"time"
)

// Retention ([retention] in the config) expunges messages that have been in
// a mailbox longer than its period. How long a message has been there is
// not its INTERNALDATE (a message moved to Trash today may be years old):
// it is read from checkpoints. UIDs only ever grow, so a checkpoint of
// (time, UIDNEXT) proves that every message with a lower UID was in the
// mailbox by that time; a message moved in gets a new UID, so its age
// counts from the move. Retention expunges the UIDs below the UIDNEXT of
// the newest checkpoint older than the period: never early, and late by at
// most the time between checkpoints.
//
//	mboxes/<id>/t/<unix seconds> -> UIDNEXT at that time

var keyCheckpoints = []byte("t")

// ExpireOld records a checkpoint of the mailbox at now and expunges the
// messages that have been in it for longer than maxAge, with tombstones and
// a modseq as any expunge. It returns the expunged UIDs, ascending.
func (m *Mailstore) ExpireOld(mboxID uint64, maxAge time.Duration, now time.Time) ([]uint32, error) {
	var expunged []uint32
	err := m.update(func(tx *atx) error {
		expunged = expunged[:0]
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		cps, err := mb.b.CreateBucketIfNotExists(keyCheckpoints)
		if err != nil {
			return err
		}
		cps.FillPercent = 1.0
		now := now.Unix()
		if last, _ := cps.Cursor().Last(); last == nil || int64(binary.BigEndian.Uint64(last)) < now {
			if err := cps.Put(u64(uint64(now)), u32(mb.info.UIDNext)); err != nil {
				return err
			}
		}
		// The newest checkpoint at or before the cutoff.
		cutoff := now - int64(maxAge/time.Second)
		c := cps.Cursor()
		k, v := c.Seek(u64(uint64(cutoff) + 1))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		if k == nil || int64(binary.BigEndian.Uint64(k)) > cutoff {
			return nil
		}
		below := binary.BigEndian.Uint32(v)
		// Older checkpoints say less than this one: drop them.
		var old [][]byte
		for ok, _ := c.Prev(); ok != nil; ok, _ = c.Prev() {
			old = append(old, append([]byte(nil), ok...))
		}
		for _, ok := range old {
			if err := cps.Delete(ok); err != nil {
				return err
			}
		}
		var victims [][2][]byte
		mc := mb.msgs().Cursor()
		for k, v := mc.First(); k != nil && binary.BigEndian.Uint32(k) < below; k, v = mc.Next() {
			victims = append(victims, [2][]byte{append([]byte(nil), k...), append([]byte(nil), v...)})
		}
		if len(victims) == 0 {
			return nil
		}
		modseq := nextModSeq(tx)
		var freed int64
		for _, kv := range victims {
			msg := decodeMessage(kv[0], kv[1])
			if err := mb.remove(kv[0], msg, decodeFlags(kv[1]), modseq); err != nil {
				return err
			}
			if err := unrefBlob(tx, msg.BlobID, modseq); err != nil {
				return err
			}
			freed += msg.Size
			expunged = append(expunged, msg.UID)
		}
		addAccountSize(tx, -freed)
		return mb.save()
	})
	return expunged, err
}
