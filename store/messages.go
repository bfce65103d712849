package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// System flags, in the canonical spelling that the store returns.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

var systemFlags = [...]string{FlagSeen, FlagAnswered, FlagFlagged, FlagDeleted, FlagDraft}

const (
	bitSeen uint8 = 1 << iota
	bitAnswered
	bitFlagged
	bitDeleted
	bitDraft
)

// flagSet is the stored form of a message's flags.
type flagSet struct {
	sys      uint8
	keywords []string
}

func systemBit(flag string) (uint8, bool) {
	for i, f := range systemFlags {
		if strings.EqualFold(f, flag) {
			return 1 << i, true
		}
	}
	return 0, false
}

func makeFlagSet(flags []string) flagSet {
	var fs flagSet
	for _, f := range flags {
		if bit, ok := systemBit(f); ok {
			fs.sys |= bit
		} else if strings.HasPrefix(f, `\`) {
			continue // \Recent and unknown system flags are not stored
		} else if !fs.hasKeyword(f) {
			fs.keywords = append(fs.keywords, f)
		}
	}
	return fs
}

func (fs *flagSet) hasKeyword(k string) bool {
	for _, v := range fs.keywords {
		if strings.EqualFold(v, k) {
			return true
		}
	}
	return false
}

// systemFlagLists holds, for each combination of system flag bits, its
// flag list. It is built once and never modified; each list's capacity is
// its length, so a caller's append copies instead of writing into it. It
// spares FETCH FLAGS and SEARCH on big mailboxes an allocation per message.
var systemFlagLists = func() (t [1 << len(systemFlags)][]string) {
	for sys := range t {
		l := []string{}
		for i, f := range systemFlags {
			if sys&(1<<i) != 0 {
				l = append(l, f)
			}
		}
		t[sys] = slices.Clip(l)
	}
	return t
}()

func (fs flagSet) list() []string {
	if len(fs.keywords) == 0 && int(fs.sys) < len(systemFlagLists) {
		return systemFlagLists[fs.sys]
	}
	out := make([]string, 0, 2+len(fs.keywords))
	for i, f := range systemFlags {
		if fs.sys&(1<<i) != 0 {
			out = append(out, f)
		}
	}
	return append(out, fs.keywords...)
}

func (fs flagSet) equal(o flagSet) bool {
	if fs.sys != o.sys || len(fs.keywords) != len(o.keywords) {
		return false
	}
	for _, k := range fs.keywords {
		if !o.hasKeyword(k) {
			return false
		}
	}
	return true
}

// Record layout: modseq(8) internaldate-unix-nano(8) size(8) blob(8) sysflags(1)
// then each keyword as length(1)+bytes.
func encodeMessage(modseq uint64, date time.Time, size int64, blob uint64, fs flagSet) []byte {
	n := 33
	for _, k := range fs.keywords {
		n += 1 + len(k)
	}
	b := make([]byte, 33, n)
	binary.BigEndian.PutUint64(b[0:], modseq)
	binary.BigEndian.PutUint64(b[8:], uint64(date.UnixNano()))
	binary.BigEndian.PutUint64(b[16:], uint64(size))
	binary.BigEndian.PutUint64(b[24:], blob)
	b[32] = fs.sys
	for _, k := range fs.keywords {
		if len(k) > 255 {
			k = k[:255]
		}
		b = append(b, byte(len(k)))
		b = append(b, k...)
	}
	return b
}

func decodeFlags(v []byte) flagSet {
	fs := flagSet{sys: v[32]}
	for rest := v[33:]; len(rest) > 0; {
		n := int(rest[0])
		if 1+n > len(rest) {
			break
		}
		fs.keywords = append(fs.keywords, string(rest[1:1+n]))
		rest = rest[1+n:]
	}
	return fs
}

func decodeMessage(k, v []byte) Message {
	return Message{
		UID:          binary.BigEndian.Uint32(k),
		ModSeq:       binary.BigEndian.Uint64(v[0:]),
		InternalDate: time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))),
		Size:         int64(binary.BigEndian.Uint64(v[16:])),
		BlobID:       binary.BigEndian.Uint64(v[24:]),
		Flags:        decodeFlags(v).list(),
	}
}

func (mb *mbox) count(fs flagSet, size int64, sign int) {
	d := uint32(sign)
	mb.info.Messages += d
	mb.info.Size += int64(sign) * size
	if fs.sys&bitSeen == 0 {
		mb.info.Unseen += d
	}
	if fs.sys&bitDeleted != 0 {
		mb.info.Deleted += d
	}
}

// NewMessage is a message to append.
type NewMessage struct {
	// Body is the raw RFC 5322 message. It may be a memory-mapped file; it
	// must stay valid until the call that stores it returns.
	Body []byte
	// Parsed is the caller's parsed form (envelope, structure), stored
	// beside the body and returned by Parsed.
	Parsed       []byte
	Flags        []string
	InternalDate time.Time
}

// AppendResult says where a message was stored.
type AppendResult struct {
	MailboxID   uint64
	UIDValidity uint32
	UID         uint32
	ModSeq      uint64
}

// Append stores msg in the mailbox called name. If the account's total size
// or message count would exceed quota, Append fails with ErrOverQuota.
//
// Appends go through the journal (see the package documentation): many
// appends to different accounts share one fsync.
func (m *Mailstore) Append(name string, msg NewMessage, quota Limits) (AppendResult, error) {
	var res AppendResult
	err := m.write(&writeReq{
		fn: inAccount(m.key, func(tx *atx) error {
			var err error
			res, err = appendMessage(tx, name, msg, quota)
			return err
		}),
		app: &appendRecord{account: m.key, mailbox: name, quota: quota, msg: msg},
	})
	return res, err
}

// appendMessage is Append inside a transaction. Recovery runs it again from
// the journal's record of the append, on the state it ran on the first
// time, and must get the same result: it depends on nothing but the
// transaction's state and its arguments (no clock, no randomness).
func appendMessage(tx *atx, name string, msg NewMessage, quota Limits) (AppendResult, error) {
	mb, err := mailboxByName(tx, name)
	if err != nil {
		return AppendResult{}, err
	}
	size := int64(len(msg.Body))
	if total := addAccountSize(tx, size); quota.Bytes > 0 && total > quota.Bytes {
		return AppendResult{}, fmt.Errorf("%w: %d of %d bytes", ErrOverQuota, total-size, quota.Bytes)
	}
	if err := checkMessages(tx, quota, 1); err != nil {
		return AppendResult{}, err
	}
	blob, err := putBlob(tx, msg.Body, msg.Parsed)
	if err != nil {
		return AppendResult{}, err
	}
	return mb.insert(tx, blob, size, msg.InternalDate, makeFlagSet(msg.Flags), 0)
}

// insert adds a message record for an existing blob. modseq 0 means a new one.
func (mb *mbox) insert(tx *atx, blob uint64, size int64, date time.Time, fs flagSet, modseq uint64) (AppendResult, error) {
	if modseq == 0 {
		modseq = nextModSeq(tx)
	}
	uid := mb.info.UIDNext
	if uid == 0 || uid == ^uint32(0) {
		return AppendResult{}, fmt.Errorf("mailbox %q: UIDs exhausted", mb.info.Name)
	}
	mb.info.UIDNext++
	if err := mb.msgs().Put(u32(uid), encodeMessage(modseq, date, size, blob, fs)); err != nil {
		return AppendResult{}, err
	}
	mb.count(fs, size, +1)
	mb.noteKeywords(fs.keywords)
	if err := mb.logChange(uid, 0, modseq, false); err != nil {
		return AppendResult{}, err
	}
	return AppendResult{MailboxID: mb.info.ID, UIDValidity: mb.info.UIDValidity, UID: uid, ModSeq: modseq}, mb.save()
}

// infoChunk is the chunk number of a blob's info record (refcount, then the
// parsed form). It sorts after the body chunks, so a new blob's chunks and
// info land together at the right edge of one tree: a delivery dirties one
// path of pages, not two.
const infoChunk = ^uint32(0)

func putBlob(tx *atx, body, parsed []byte) (uint64, error) {
	blobs := blobsOf(tx)
	id, err := blobs.NextSequence()
	if err != nil {
		return 0, err
	}
	for i := 0; i*chunkSize < len(body) || i == 0; i++ {
		end := min((i+1)*chunkSize, len(body))
		if err := blobs.Put(blobKey(id, uint32(i)), body[i*chunkSize:end]); err != nil {
			return 0, err
		}
	}
	v := make([]byte, 4+len(parsed))
	binary.BigEndian.PutUint32(v, 1)
	copy(v[4:], parsed)
	if err := blobs.Put(blobKey(id, infoChunk), v); err != nil {
		return 0, err
	}
	return id, nil
}

func blobKey(id uint64, chunk uint32) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, id)
	binary.BigEndian.PutUint32(k[8:], chunk)
	return k
}

func refBlob(tx *atx, id uint64) error {
	blobs := blobsOf(tx)
	v := blobs.Get(blobKey(id, infoChunk))
	if v == nil {
		return fmt.Errorf("blob %d: %w", id, ErrNotFound)
	}
	nv := append([]byte(nil), v...)
	binary.BigEndian.PutUint32(nv, binary.BigEndian.Uint32(v)+1)
	return blobs.Put(blobKey(id, infoChunk), nv)
}

// unrefBlob drops one reference to a blob, the last one at modseq. A blob
// without references is not deleted at once: sessions that have not yet
// learnt of the expunge may still read it (RFC 2180 §4.1), so it goes on the
// purge list, and PurgeBlobs deletes it once no session can address it.
func unrefBlob(tx *atx, id, modseq uint64) error {
	blobs := blobsOf(tx)
	v := blobs.Get(blobKey(id, infoChunk))
	if v == nil {
		return nil
	}
	n := binary.BigEndian.Uint32(v)
	if n == 0 {
		return nil // already waiting on the purge list
	}
	nv := append([]byte(nil), v...)
	binary.BigEndian.PutUint32(nv, n-1)
	if err := blobs.Put(blobKey(id, infoChunk), nv); err != nil {
		return err
	}
	if n > 1 {
		return nil
	}
	if purge := tx.Bucket(bucketPurge); purge != nil {
		return appendOnly(purge).Put(purgeKey(modseq, id), nil)
	}
	return deleteBlob(tx, id)
}

// deleteBlob removes a blob's chunks and info record.
func deleteBlob(tx *atx, id uint64) error {
	blobs := blobsOf(tx)
	c := blobs.Cursor()
	prefix := u64(id)
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Parsed returns the parsed form stored with a message body.
func (m *Mailstore) Parsed(blob uint64) ([]byte, error) {
	var out []byte
	err := m.view(func(tx *atx) error {
		v := blobsOf(tx).Get(blobKey(blob, infoChunk))
		if v == nil {
			return fmt.Errorf("blob %d: %w", blob, ErrExpunged)
		}
		out = append([]byte(nil), v[4:]...)
		return nil
	})
	return out, err
}

// OpenBody returns a reader over a raw message of the given size. It reads
// one chunk at a time in short read transactions, so a slow reader holds
// neither a transaction nor the whole message.
func (m *Mailstore) OpenBody(blob uint64, size int64) *BodyReader {
	return &BodyReader{m: m, blob: blob, size: size, chunk: -1}
}

// ReadBody returns a whole raw message.
func (m *Mailstore) ReadBody(blob uint64) ([]byte, error) {
	var out []byte
	err := m.view(func(tx *atx) error {
		c := blobsOf(tx).Cursor()
		prefix := u64(blob)
		found := false
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && binary.BigEndian.Uint32(k[8:]) != infoChunk; k, v = c.Next() {
			found = true
			out = append(out, v...)
		}
		if !found {
			return fmt.Errorf("blob %d: %w", blob, ErrExpunged)
		}
		return nil
	})
	return out, err
}

// BodyReader reads a stored message. It implements io.Reader, io.ReaderAt
// and io.Seeker.
type BodyReader struct {
	m     *Mailstore
	blob  uint64
	size  int64
	off   int64
	chunk int64
	buf   []byte
}

// Size returns the message size.
func (r *BodyReader) Size() int64 { return r.size }

func (r *BodyReader) load(chunk int64) error {
	if r.chunk == chunk {
		return nil
	}
	return r.m.view(func(tx *atx) error {
		v := blobsOf(tx).Get(blobKey(r.blob, uint32(chunk)))
		if v == nil {
			return fmt.Errorf("blob %d chunk %d: %w", r.blob, chunk, ErrExpunged)
		}
		r.buf = append(r.buf[:0], v...)
		r.chunk = chunk
		return nil
	})
}

// ReadAt implements io.ReaderAt.
func (r *BodyReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		if off >= r.size {
			return n, io.EOF
		}
		c := off / chunkSize
		if err := r.load(c); err != nil {
			return n, err
		}
		k := copy(p[n:], r.buf[off-c*chunkSize:])
		if k == 0 {
			return n, io.ErrUnexpectedEOF
		}
		n += k
		off += int64(k)
	}
	return n, nil
}

// Read implements io.Reader.
func (r *BodyReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if rem := r.size - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := r.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek implements io.Seeker.
func (r *BodyReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	}
	if offset < 0 {
		return 0, errors.New("store: seek before start")
	}
	r.off = offset
	return offset, nil
}

// UIDs returns the UIDs of a mailbox in ascending order.
func (m *Mailstore) UIDs(mboxID uint64) ([]uint32, error) {
	var out []uint32
	err := m.view(func(tx *atx) error {
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		out = make([]uint32, 0, mb.info.Messages)
		c := mb.msgs().Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			out = append(out, binary.BigEndian.Uint32(k))
		}
		return nil
	})
	return out, err
}

// Messages calls fn for each message with minUID <= UID <= maxUID, in UID
// order, inside one read transaction. fn must not call the Mailstore.
func (m *Mailstore) Messages(mboxID uint64, minUID, maxUID uint32, fn func(Message) error) error {
	return m.view(func(tx *atx) error {
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		c := mb.msgs().Cursor()
		for k, v := c.Seek(u32(minUID)); k != nil; k, v = c.Next() {
			msg := decodeMessage(k, v)
			if msg.UID > maxUID {
				break
			}
			if err := fn(msg); err != nil {
				return err
			}
		}
		return nil
	})
}

// MessagesByUID returns the records of the given UIDs that exist, in the
// order asked.
func (m *Mailstore) MessagesByUID(mboxID uint64, uids []uint32) ([]Message, error) {
	out := make([]Message, 0, len(uids))
	err := m.view(func(tx *atx) error {
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		b := mb.msgs()
		for _, uid := range uids {
			k := u32(uid)
			if v := b.Get(k); v != nil {
				out = append(out, decodeMessage(k, v))
			}
		}
		return nil
	})
	return out, err
}

// FlagOp says how StoreFlags combines flags.
type FlagOp int

const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// StoreFlags changes the flags of the given messages. Messages whose flags
// change get a new modseq and are returned in updated. With unchangedSince
// > 0 (RFC 7162 §3.1.3), messages whose modseq is higher are left alone and
// their UIDs returned in modified.
func (m *Mailstore) StoreFlags(mboxID uint64, uids []uint32, op FlagOp, flags []string, unchangedSince uint64) (updated []Message, modified []uint32, err error) {
	change := makeFlagSet(flags)
	err = m.update(func(tx *atx) error {
		updated, modified = updated[:0], modified[:0]
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		b := mb.msgs()
		var modseq uint64
		for _, uid := range uids {
			k := u32(uid)
			v := b.Get(k)
			if v == nil {
				continue
			}
			oldModSeq := binary.BigEndian.Uint64(v)
			if unchangedSince > 0 && oldModSeq > unchangedSince {
				modified = append(modified, uid)
				continue
			}
			old := decodeFlags(v)
			nfs := applyFlags(old, op, change)
			if nfs.equal(old) {
				continue
			}
			if modseq == 0 {
				modseq = nextModSeq(tx)
			}
			msg := decodeMessage(k, v)
			mb.count(old, msg.Size, -1)
			mb.count(nfs, msg.Size, +1)
			mb.noteKeywords(nfs.keywords)
			if err := b.Put(k, encodeMessage(modseq, msg.InternalDate, msg.Size, msg.BlobID, nfs)); err != nil {
				return err
			}
			if err := mb.logChange(uid, oldModSeq, modseq, false); err != nil {
				return err
			}
			msg.ModSeq, msg.Flags = modseq, nfs.list()
			updated = append(updated, msg)
		}
		if modseq == 0 {
			return nil
		}
		return mb.save()
	})
	return updated, modified, err
}

func applyFlags(old flagSet, op FlagOp, change flagSet) flagSet {
	switch op {
	case FlagsSet:
		return flagSet{sys: change.sys, keywords: append([]string(nil), change.keywords...)}
	case FlagsAdd:
		n := flagSet{sys: old.sys | change.sys, keywords: append([]string(nil), old.keywords...)}
		for _, k := range change.keywords {
			if !n.hasKeyword(k) {
				n.keywords = append(n.keywords, k)
			}
		}
		return n
	default:
		n := flagSet{sys: old.sys &^ change.sys}
		for _, k := range old.keywords {
			if !change.hasKeyword(k) {
				n.keywords = append(n.keywords, k)
			}
		}
		return n
	}
}

// CopyResult maps source UIDs to destination UIDs.
type CopyResult struct {
	UIDValidity uint32
	SourceUIDs  []uint32
	DestUIDs    []uint32
}

// Copy copies messages (bodies are shared, not duplicated) into dst. With
// move set the sources are expunged in the same transaction (RFC 6851);
// a move within one mailbox gives the messages new UIDs.
func (m *Mailstore) Copy(src uint64, uids []uint32, dst uint64, move bool, quota Limits) (CopyResult, error) {
	var res CopyResult
	err := m.update(func(tx *atx) error {
		res = CopyResult{}
		from, err := getMbox(tx, src)
		if err != nil {
			return err
		}
		to := from
		if dst != src {
			if to, err = getMbox(tx, dst); err != nil {
				return err
			}
		}
		res.UIDValidity = to.info.UIDValidity
		modseq := nextModSeq(tx)
		var added int64
		for _, uid := range uids {
			k := u32(uid)
			v := from.msgs().Get(k)
			if v == nil {
				continue
			}
			msg := decodeMessage(k, v)
			fs := decodeFlags(v)
			if !move {
				if err := refBlob(tx, msg.BlobID); err != nil {
					return err
				}
				added += msg.Size
			}
			r, err := to.insert(tx, msg.BlobID, msg.Size, msg.InternalDate, fs, modseq)
			if err != nil {
				return err
			}
			if move {
				if err := from.remove(k, msg, fs, modseq); err != nil {
					return err
				}
			}
			res.SourceUIDs = append(res.SourceUIDs, uid)
			res.DestUIDs = append(res.DestUIDs, r.UID)
		}
		if total := addAccountSize(tx, added); quota.Bytes > 0 && added > 0 && total > quota.Bytes {
			return fmt.Errorf("%w: %d of %d bytes", ErrOverQuota, total-added, quota.Bytes)
		}
		if !move && len(res.DestUIDs) > 0 {
			// insert has saved the destination's counters: the copies are
			// counted in already.
			if err := checkMessages(tx, quota, 0); err != nil {
				return err
			}
		}
		if move {
			if err := from.save(); err != nil {
				return err
			}
		}
		return to.save()
	})
	return res, err
}

func (mb *mbox) remove(k []byte, msg Message, fs flagSet, modseq uint64) error {
	if err := mb.msgs().Delete(k); err != nil {
		return err
	}
	mb.count(fs, msg.Size, -1)
	return mb.logChange(msg.UID, msg.ModSeq, modseq, true)
}

// Expunge removes messages and leaves a tombstone for each. uids nil means
// every message; with requireDeleted only messages flagged \Deleted go
// (IMAP EXPUNGE), without it the given ones go regardless (POP3 DELE).
// It returns the expunged UIDs in ascending order. Bodies left without a
// message wait on the purge list (see PurgeBlobs).
func (m *Mailstore) Expunge(mboxID uint64, uids []uint32, requireDeleted bool) ([]uint32, error) {
	return m.expunge(mboxID, uids, requireDeleted, false)
}

// ExpungeAndPurge is Expunge that also deletes, in the same transaction,
// every body on the purge list, these included: for a caller that knows no
// session can address an expunged message.
func (m *Mailstore) ExpungeAndPurge(mboxID uint64, uids []uint32, requireDeleted bool) ([]uint32, error) {
	return m.expunge(mboxID, uids, requireDeleted, true)
}

func (m *Mailstore) expunge(mboxID uint64, uids []uint32, requireDeleted, purge bool) ([]uint32, error) {
	var out []uint32
	err := m.update(func(tx *atx) error {
		out = out[:0]
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		if requireDeleted && mb.info.Deleted == 0 {
			return nil
		}
		var victims [][2][]byte
		if uids == nil {
			c := mb.msgs().Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				victims = append(victims, [2][]byte{append([]byte(nil), k...), v})
			}
		} else {
			sorted := append([]uint32(nil), uids...)
			slices.Sort(sorted)
			for i, uid := range sorted {
				if i > 0 && uid == sorted[i-1] {
					continue
				}
				k := u32(uid)
				if v := mb.msgs().Get(k); v != nil {
					victims = append(victims, [2][]byte{k, v})
				}
			}
		}
		var modseq uint64
		var freed int64
		for _, kv := range victims {
			fs := decodeFlags(kv[1])
			if requireDeleted && fs.sys&bitDeleted == 0 {
				continue
			}
			if modseq == 0 {
				modseq = nextModSeq(tx)
			}
			msg := decodeMessage(kv[0], kv[1])
			if err := mb.remove(kv[0], msg, fs, modseq); err != nil {
				return err
			}
			if err := unrefBlob(tx, msg.BlobID, modseq); err != nil {
				return err
			}
			freed += msg.Size
			out = append(out, msg.UID)
		}
		if modseq == 0 {
			return nil
		}
		addAccountSize(tx, -freed)
		if _, err := mb.purgeTombstones(time.Now().Add(-m.s.opts.TombstoneRetention)); err != nil {
			return err
		}
		if purge {
			if _, err := purgeUpTo(tx, ^uint64(0)); err != nil {
				return err
			}
		}
		return mb.save()
	})
	return out, err
}

// ChangesSince returns the mailbox's changes with modseq > since, oldest
// first: one entry per message added or changed, and a tombstone per
// message expunged. A message changed several times appears once, at its
// latest modseq.
func (m *Mailstore) ChangesSince(mboxID uint64, since uint64) ([]Change, error) {
	var out []Change
	err := m.view(func(tx *atx) error {
		mb, err := getMbox(tx, mboxID)
		if err != nil {
			return err
		}
		c := mb.changes().Cursor()
		for k, v := c.Seek(u64(since + 1)); k != nil; k, v = c.Next() {
			out = append(out, Change{
				ModSeq:   binary.BigEndian.Uint64(k),
				UID:      binary.BigEndian.Uint32(k[8:]),
				Expunged: len(v) > 0 && v[0] == 1,
			})
		}
		return nil
	})
	return out, err
}
