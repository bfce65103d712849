package store

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// Importing mail from another server (roost import) keeps what clients
// know of it: the mailbox's UIDVALIDITY, each message's UID and the next
// UID, so that no phone or laptop downloads it all again. And it can be
// run again after an interruption, or with more mail: each message carries
// an import key (the Maildir unique name, or Message-ID, size and date for
// mbox), kept per mailbox, and a message whose key is there already is
// skipped.
//
//	mboxes/<id>/k/<sha256(key)> -> uid (imported messages' keys)

var keyImportKeys = []byte("k")

// ImportMailbox is what PrepareImport reports of the target mailbox.
type ImportMailbox struct {
	Mailbox
	// KeepUIDs is true when the source's UIDs can be kept: the mailbox has
	// the source's UIDVALIDITY (it was created or adopted for the import,
	// or a previous import did so). Otherwise messages get new UIDs.
	KeepUIDs bool
}

// PrepareImport readies the mailbox called name for an import whose source
// has the given UIDVALIDITY (0: the source has none to keep). A missing
// mailbox is created with that UIDVALIDITY and special-use; an existing one
// that has never held a message (UIDNEXT 1) adopts it; one with the same
// UIDVALIDITY (an earlier import) is resumed; any other keeps its own and
// the import assigns new UIDs. specialUse is set only on a new mailbox, and
// only when no other mailbox has it.
func (m *Mailstore) PrepareImport(name, specialUse string, uidValidity uint32) (ImportMailbox, error) {
	var out ImportMailbox
	err := m.update(func(tx *atx) error {
		mb, err := mailboxByName(tx, name)
		if err != nil {
			if specialUse != "" {
				if taken, err := specialUseTaken(tx, specialUse); err != nil {
					return err
				} else if taken {
					specialUse = ""
				}
			}
			info, err := createMailbox(tx, name, specialUse)
			if err != nil {
				return err
			}
			if mb, err = getMbox(tx, info.ID); err != nil {
				return err
			}
			if uidValidity != 0 {
				mb.info.UIDValidity = uidValidity
			}
			out = ImportMailbox{Mailbox: mb.info, KeepUIDs: uidValidity != 0}
			return mb.save()
		}
		switch {
		case uidValidity == 0:
		case mb.info.UIDValidity == uidValidity:
			out.KeepUIDs = true
		case mb.info.UIDNext == 1 && mb.info.Messages == 0:
			// Never held a message: no client can know a UID of it.
			mb.info.UIDValidity = uidValidity
			out.KeepUIDs = true
			if err := mb.save(); err != nil {
				return err
			}
		}
		out.Mailbox = mb.info
		return nil
	})
	return out, err
}

func specialUseTaken(tx *atx, use string) (bool, error) {
	taken := false
	err := tx.Bucket(bucketNames).ForEach(func(k, v []byte) error {
		mb, err := getMbox(tx, binary.BigEndian.Uint64(v))
		if err != nil {
			return err
		}
		if mb.info.SpecialUse == use {
			taken = true
		}
		return nil
	})
	return taken, err
}

func importKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// HasImportKeys reports, for each key, whether a message with it has been
// imported into the mailbox already.
func (m *Mailstore) HasImportKeys(mboxID uint64, keys []string) ([]bool, error) {
	out := make([]bool, len(keys))
	err := m.view(func(tx *atx) error {
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		b := mb.b.Bucket(keyImportKeys)
		if b == nil {
			return nil
		}
		for i, k := range keys {
			out[i] = k != "" && b.Get(importKey(k)) != nil
		}
		return nil
	})
	return out, err
}

// ImportMessage is one message to import.
type ImportMessage struct {
	// Key identifies the message in its source, for idempotency ("": none).
	Key string
	// UID is the UID it had in the source (0: none). It is kept when the
	// mailbox keeps UIDs and it is above every UID given so far; otherwise
	// the message gets the next UID.
	UID          uint32
	Body, Parsed []byte
	Flags        []string
	InternalDate time.Time
}

// ImportResult says what ImportMessages did with each message, in order.
type ImportResult struct {
	// UIDs holds each message's UID; 0 for one skipped as imported before.
	UIDs []uint32
	// Renumbered counts messages stored under another UID than their own.
	Renumbered int
	Skipped    int
}

// ImportMessages stores msgs in the mailbox, in one transaction (one
// fsync), with UIDs kept where keepUIDs allows (see ImportMessage.UID),
// and then raises the mailbox's UIDNEXT to uidNext if that is higher. All
// of them are stored or none (a message is never half there). Imports are
// not held to the quota: they are an administrator's act.
func (m *Mailstore) ImportMessages(mboxID uint64, msgs []ImportMessage, keepUIDs bool, uidNext uint32) (ImportResult, error) {
	var res ImportResult
	err := m.update(func(tx *atx) error {
		res = ImportResult{UIDs: make([]uint32, len(msgs))}
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		keys, err := mb.b.CreateBucketIfNotExists(keyImportKeys)
		if err != nil {
			return err
		}
		var modseq uint64
		for i, msg := range msgs {
			var k []byte
			if msg.Key != "" {
				k = importKey(msg.Key)
				if keys.Get(k) != nil {
					res.Skipped++
					continue
				}
			}
			if modseq == 0 {
				modseq = nextModSeq(tx)
			}
			if keepUIDs && msg.UID != 0 && msg.UID >= mb.info.UIDNext && msg.UID != ^uint32(0) {
				// insert takes UIDNEXT: the UIDs skipped over were the
				// source's expunged messages, never to be used again.
				mb.info.UIDNext = msg.UID
			} else if msg.UID != 0 {
				res.Renumbered++
			}
			size := int64(len(msg.Body))
			addAccountSize(tx, size)
			blob, err := putBlob(tx, msg.Body, msg.Parsed)
			if err != nil {
				return err
			}
			r, err := mb.insert(tx, blob, size, msg.InternalDate, makeFlagSet(msg.Flags), modseq)
			if err != nil {
				return err
			}
			res.UIDs[i] = r.UID
			if k != nil {
				if err := keys.Put(k, u32(r.UID)); err != nil {
					return err
				}
			}
		}
		if uidNext > mb.info.UIDNext {
			mb.info.UIDNext = uidNext
			if err := mb.save(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("import into mailbox %d: %w", mboxID, err)
	}
	return res, nil
}
