package store

// The journal: one append-only log shared by every mail file, so that
// concurrent writes to different files (different accounts) share one
// fdatasync. See the package documentation for the protocol and why it is
// safe against power loss; this file is the log itself: segments, records,
// the group-commit writer, and reading it back at start.
//
// A segment is a file journal/NNNNNNNNNNNNNNNNNNNN.wal:
//
//	header:  "ROOSTWAL" segment-number(8)
//	records: length(4) crc32c(4) payload(length)
//
// The CRC (Castagnoli) covers the segment number and the payload, so a
// record torn by a crash, or left in a file by an earlier use, ends the
// segment where it starts. A length of zero also ends it.
//
// Segments are written in place, never appended to: each is allocated in
// full (zero-filled) before use, and a dead one is recycled as the next
// spare (journal/spare.wal). Overwriting allocated blocks changes no file
// system metadata, so the fdatasync of a journal write is one flush of its
// own data; growing a file would make it a file system journal commit,
// which on ext4 (data=ordered) first writes out the dirty data of every
// other file with new blocks: every mail file written since.
//
// Payload: kind(1), then by kind
//
//	recPin:    file, meta page image: the file's durable state to restore
//	recClean:  file: the file on disk is durable as it is
//	recAppend: file, account bucket key, mailbox name, quota bytes, quota
//	           messages, internal date (unix ns), flags, parsed form, body
//	           (kind 3, recAppendV1, had no quota messages: still read)
//
// where file is the mail file's path relative to the data directory, and
// byte strings and lists are uvarint-length-prefixed.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	recPin      byte = 1
	recClean    byte = 2
	recAppendV1 byte = 3 // before message quotas
	recAppend   byte = 4

	walMagic      = "ROOSTWAL"
	walHeaderSize = len(walMagic) + 8
	walSuffix     = ".wal"
	walSpare      = "spare" + walSuffix

	// walSegmentSize is the size of a segment. Dead segments (every file
	// they mention checkpointed since) are recycled or deleted.
	walSegmentSize = 32 << 20
	// maxJournaledAppend is the largest message that goes through the
	// journal; a larger one is written directly (one bbolt commit with its
	// own fsyncs), which for a message of that size costs little more than
	// writing it twice would.
	maxJournaledAppend = 1 << 20
	// maxJournalBatch bounds the bytes written by one fdatasync.
	maxJournalBatch = 16 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// journal is the shared log. Requests from every mail file's committer are
// written together and made durable with one fdatasync.
type journal struct {
	dir    string
	noSync bool
	log    *slog.Logger
	syncs  *atomic.Uint64 // the store's sync counter

	reqs chan *journalReq
	gate chan struct{} // Options.journalGate
	// delay is Options.GroupCommitDelay; coming counts the appends on
	// their way (Store.AppendsComing).
	delay  time.Duration
	coming atomic.Int64
	// taken counts the requests the writer has received (tests).
	taken atomic.Int64
	// onRotate, if set, is called (on the writer's goroutine, so it must
	// not wait for the journal) when a new segment has begun.
	onRotate func()
	quit     chan struct{}
	done     chan struct{}

	// segMax is the segment size (walSegmentSize; smaller in tests).
	segMax int64

	// Written by the journal goroutine only.
	seg     *os.File
	segNum  uint64
	segSize int64
	buf     []byte
	spareWG sync.WaitGroup // a spare being made

	mu       sync.Mutex
	pinSegs  map[string]uint64 // file -> segment holding its current pin record
	oldest   uint64            // lowest segment still on disk
	failed   error             // sticky: the journal could not be written
	hasSpare bool              // spare.wal exists (or is being made)
}

// journalReq is one committer's records, written and synced together.
type journalReq struct {
	recs  [][]byte        // written first: a pin or a clean record
	apps  []*appendRecord // encoded straight into the write buffer
	pin   string          // file whose pin record is among recs ("" none)
	clean string          // file whose clean record is among recs
	done  chan error
}

func openJournal(dir string, noSync bool, syncs *atomic.Uint64, log *slog.Logger) *journal {
	j := &journal{dir: dir, noSync: noSync, log: log, syncs: syncs, segMax: walSegmentSize,
		reqs: make(chan *journalReq, 1024), quit: make(chan struct{}), done: make(chan struct{}),
		pinSegs: make(map[string]uint64)}
	if _, err := os.Stat(filepath.Join(dir, walSpare)); err == nil {
		j.hasSpare = true
	}
	// Half-made segments of a crash.
	if tmps, err := filepath.Glob(filepath.Join(dir, "*"+walSuffix+".tmp")); err == nil {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	return j
}

// segmentPath is the file of segment n.
func (j *journal) segmentPath(n uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%020d%s", n, walSuffix))
}

// segments lists the segment numbers on disk, ascending.
func (j *journal) segments() ([]uint64, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), walSuffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// start begins a fresh segment numbered after every existing one and runs
// the writer. Segments from before are deleted once recovery no longer
// needs them (removeUpTo).
func (j *journal) start(after uint64) error {
	if err := j.newSegment(after + 1); err != nil {
		return err
	}
	j.oldest = after + 1
	go j.run()
	return nil
}

// newSegment makes segment n, allocated in full, with its header durable
// (and its name, by a directory sync), and makes it current. It uses the
// spare when there is one (else it allocates the segment then and there).
func (j *journal) newSegment(n uint64) error {
	j.spareWG.Wait()
	path := j.segmentPath(n)
	j.mu.Lock()
	spare := j.hasSpare
	j.hasSpare = false
	j.mu.Unlock()
	if !spare || os.Rename(filepath.Join(j.dir, walSpare), path) != nil {
		if err := j.allocate(path); err != nil {
			return fmt.Errorf("journal: new segment: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	hdr := make([]byte, walHeaderSize)
	copy(hdr, walMagic)
	binary.BigEndian.PutUint64(hdr[len(walMagic):], n)
	if _, err := f.WriteAt(hdr, 0); err == nil && !j.noSync {
		if err = fdatasyncFile(f); err == nil {
			err = syncPath(j.dir)
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("journal: new segment: %w", err)
	}
	if j.seg != nil {
		j.seg.Close()
	}
	first := j.seg == nil
	j.seg, j.segNum, j.segSize = f, n, int64(walHeaderSize)
	if first {
		// The spare for the first rotation. Later spares are recycled
		// dead segments (retire): onRotate has the files pinned in older
		// segments checkpointed, so the segment before this one dies
		// soon and becomes the next spare, and no rotation costs a
		// segment's worth of zeros written.
		j.makeSpare()
	} else if j.onRotate != nil {
		j.onRotate()
	}
	return nil
}

// allocate creates a zero-filled segment file at path, synced. (Zeros
// written, not a hole or fallocate: both would leave the blocks to be
// allocated or converted, metadata changes, at the first write.)
func (j *journal) allocate(path string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// A megabyte at a time, each synced: one big flush at the end would
	// queue tens of megabytes on the disk in front of the journal's own
	// small syncs, which deliveries wait for.
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < j.segMax && err == nil; off += int64(len(zeros)) {
		_, err = f.WriteAt(zeros[:min(int64(len(zeros)), j.segMax-off)], off)
		if err == nil && !j.noSync {
			err = fdatasyncFile(f)
		}
	}
	if err == nil && !j.noSync {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// makeSpare has a spare segment made in the background, if there is none.
func (j *journal) makeSpare() {
	j.mu.Lock()
	if j.hasSpare {
		j.mu.Unlock()
		return
	}
	j.hasSpare = true
	j.mu.Unlock()
	j.spareWG.Add(1)
	go func() {
		defer j.spareWG.Done()
		if err := j.allocate(filepath.Join(j.dir, walSpare)); err != nil {
			j.log.Warn("journal: making a spare segment failed", "err", err)
			j.mu.Lock()
			j.hasSpare = false
			j.mu.Unlock()
		}
	}()
}

// append writes recs, then apps, and returns once they are durable. pin
// and clean name the file whose pin or clean record recs carry, for the
// bookkeeping of which segments are still needed.
func (j *journal) append(recs [][]byte, apps []*appendRecord, pin, clean string) error {
	req := &journalReq{recs: recs, apps: apps, pin: pin, clean: clean, done: make(chan error, 1)}
	select {
	case j.reqs <- req:
	case <-j.quit:
		return errors.New("journal: closed")
	}
	return <-req.done
}

func (j *journal) close() error {
	close(j.quit)
	<-j.done
	j.spareWG.Wait()
	j.removeDead()
	if j.seg != nil {
		return j.seg.Close()
	}
	return nil
}

// run is the writer: it takes every request waiting, writes them in one
// write and syncs once (group commit across files). There is no timer: a
// lone request is written at once.
func (j *journal) run() {
	defer close(j.done)
	var batch []*journalReq
	for {
		batch = batch[:0]
		select {
		case r := <-j.reqs:
			batch = append(batch, r)
		case <-j.quit:
			for {
				select {
				case r := <-j.reqs:
					j.write([]*journalReq{r})
				default:
					return
				}
			}
		}
		if j.gate != nil {
			<-j.gate
		}
		batch = j.collect(batch)
		j.write(batch)
	}
}

// collect adds to a batch of one request the others already queued and
// then, while fewer appends are in it than are coming (a delivery that is
// receiving its message, or has its records in this batch, counts as
// coming until it is over), waits up to j.delay for more: the fdatasync is
// the same for one record or many, and on a busy server each sync would
// otherwise carry only the one or two deliveries that finished during the
// previous one. A lone delivery, or a store with no deliveries under way,
// never waits.
func (j *journal) collect(batch []*journalReq) []*journalReq {
	size, appends := 0, 0
	count := func(r *journalReq) {
		size += r.size()
		appends += r.appends()
		j.taken.Add(1)
	}
	count(batch[0])
queued:
	for size < maxJournalBatch {
		select {
		case r := <-j.reqs:
			batch = append(batch, r)
			count(r)
		default:
			break queued
		}
	}
	var timeout <-chan time.Time
	for j.delay > 0 && size < maxJournalBatch && int64(appends) < j.coming.Load() {
		if timeout == nil {
			timer := time.NewTimer(j.delay)
			defer timer.Stop()
			timeout = timer.C
		}
		select {
		case r := <-j.reqs:
			batch = append(batch, r)
			count(r)
		case <-timeout:
			return batch
		case <-j.quit:
			return batch
		}
	}
	return batch
}

// appends is how many append records r carries.
func (r *journalReq) appends() int { return len(r.apps) }

// size is at least the bytes r takes in the log.
func (r *journalReq) size() int {
	n := 0
	for _, rec := range r.recs {
		n += 8 + len(rec)
	}
	for _, a := range r.apps {
		n += 8 + a.maxSize()
	}
	return n
}

func (j *journal) write(batch []*journalReq) {
	err := j.writeBatch(batch)
	if err != nil {
		j.log.Error("journal write failed", "err", err)
	}
	j.mu.Lock()
	if err == nil {
		for _, r := range batch {
			if r.pin != "" {
				j.pinSegs[r.pin] = j.segNum
			}
			if r.clean != "" {
				delete(j.pinSegs, r.clean)
			}
		}
	}
	j.mu.Unlock()
	for _, r := range batch {
		r.done <- err
	}
	if err == nil {
		j.removeDead()
	}
}

// journalWriteChunk is about the most a journal write buffers.
const journalWriteChunk = 1 << 20

func (j *journal) writeBatch(batch []*journalReq) error {
	j.mu.Lock()
	failed := j.failed
	j.mu.Unlock()
	if failed != nil {
		return failed
	}
	size := 0
	for _, r := range batch {
		size += r.size()
	}
	if j.segSize+int64(size) > j.segMax && j.segSize > int64(walHeaderSize) {
		if err := j.newSegment(j.segNum + 1); err != nil {
			return err
		}
	}
	j.buf = j.buf[:0]
	var seg [8]byte
	binary.BigEndian.PutUint64(seg[:], j.segNum)
	segCRC := crc32.Checksum(seg[:], crcTable)
	// frame writes a record's header (length, CRC) in front of the record
	// that was appended to j.buf after offset start-8.
	frame := func(start int) {
		rec := j.buf[start:]
		binary.BigEndian.PutUint32(j.buf[start-8:], uint32(len(rec)))
		binary.BigEndian.PutUint32(j.buf[start-4:], crc32.Update(segCRC, crcTable, rec))
	}
	// The batch goes out in pieces of about journalWriteChunk, so that a
	// batch of big messages (MULTIAPPEND) is not copied whole into one
	// buffer; one sync covers them all.
	off := j.segSize
	write := func() error {
		if _, err := j.seg.WriteAt(j.buf, off); err != nil {
			return j.fail(fmt.Errorf("journal: write: %w", err))
		}
		off += int64(len(j.buf))
		j.buf = j.buf[:0]
		return nil
	}
	if need := min(size, journalWriteChunk); cap(j.buf) < need {
		j.buf = make([]byte, 0, need)
	}
	for _, r := range batch {
		for _, rec := range r.recs {
			j.buf = append(j.buf, make([]byte, 8)...)
			start := len(j.buf)
			j.buf = append(j.buf, rec...)
			frame(start)
		}
		for _, a := range r.apps {
			if len(j.buf) > 0 && len(j.buf)+8+a.maxSize() > journalWriteChunk {
				if err := write(); err != nil {
					return err
				}
			}
			j.buf = append(j.buf, make([]byte, 8)...)
			start := len(j.buf)
			j.buf = a.appendTo(j.buf)
			frame(start)
		}
	}
	if err := write(); err != nil {
		return err
	}
	if !j.noSync {
		if err := fdatasyncFile(j.seg); err != nil {
			return j.fail(fmt.Errorf("journal: fdatasync: %w", err))
		}
	}
	j.syncs.Add(1)
	j.segSize = off
	if cap(j.buf) > journalWriteChunk {
		j.buf = nil // do not keep a big message's buffer
	}
	return nil
}

// fail makes the error sticky: after a failed write or sync the state of
// the log on disk is unknown (the kernel may have dropped the dirty pages),
// so nothing more may be acknowledged through it.
func (j *journal) fail(err error) error {
	j.mu.Lock()
	j.failed = err
	j.mu.Unlock()
	return err
}

// removeDead deletes the segments no recovery can need any more: those
// before the oldest segment holding a live pin record (and before the
// current one).
func (j *journal) removeDead() {
	j.mu.Lock()
	keep := j.segNum
	for _, s := range j.pinSegs {
		keep = min(keep, s)
	}
	from := j.oldest
	if keep > from {
		j.oldest = keep
	}
	j.mu.Unlock()
	for n := from; n < keep; n++ {
		j.retire(j.segmentPath(n))
	}
}

// retire recycles a dead segment as the spare if there is none, else
// deletes it. (Its old records cannot be mistaken for new ones: their
// checksums include the old segment number.)
func (j *journal) retire(path string) {
	j.mu.Lock()
	recycle := !j.hasSpare
	if recycle {
		j.hasSpare = true
	}
	j.mu.Unlock()
	if recycle {
		if fi, err := os.Stat(path); err == nil && fi.Size() >= j.segMax {
			if err := os.Rename(path, filepath.Join(j.dir, walSpare)); err == nil {
				return
			}
		}
		j.mu.Lock()
		j.hasSpare = false
		j.mu.Unlock()
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		j.log.Warn("journal: removing a dead segment failed", "file", filepath.Base(path), "err", err)
	}
}

// pinnedSince reports the segment holding file's pin record and whether it
// has one.
func (j *journal) pinnedIn(file string) (uint64, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, ok := j.pinSegs[file]
	return s, ok
}

// current returns the number of the segment being written.
func (j *journal) current() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.segNum
}

// ---- records ----

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func pinRecord(file string, meta []byte) []byte {
	b := []byte{recPin}
	b = appendBytes(b, []byte(file))
	return appendBytes(b, meta)
}

func cleanRecord(file string) []byte {
	return appendBytes([]byte{recClean}, []byte(file))
}

// appendRecord is a journaled Append: everything Append needs to do it
// again, exactly as it was done, after a crash.
type appendRecord struct {
	file    string
	account []byte
	mailbox string
	quota   Limits
	msg     NewMessage
}

func (r *appendRecord) encode() []byte { return r.appendTo(make([]byte, 0, r.maxSize())) }

// maxSize is at least the length of r's encoding.
func (r *appendRecord) maxSize() int {
	n := 64 + len(r.file) + len(r.account) + len(r.mailbox) + len(r.msg.Parsed) + len(r.msg.Body)
	for _, f := range r.msg.Flags {
		n += 2*binary.MaxVarintLen64 + len(f)
	}
	return n
}

// appendTo appends r's encoding to b: straight into the journal's write
// buffer, so a message body is copied once on its way to the log.
func (r *appendRecord) appendTo(b []byte) []byte {
	b = append(b, recAppend)
	b = appendBytes(b, []byte(r.file))
	b = appendBytes(b, r.account)
	b = appendBytes(b, []byte(r.mailbox))
	b = binary.AppendVarint(b, r.quota.Bytes)
	b = binary.AppendVarint(b, r.quota.Messages)
	b = binary.AppendVarint(b, r.msg.InternalDate.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(r.msg.Flags)))
	for _, f := range r.msg.Flags {
		b = appendBytes(b, []byte(f))
	}
	b = appendBytes(b, r.msg.Parsed)
	return appendBytes(b, r.msg.Body)
}

// recordReader decodes a payload; the first error sticks.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) bytes() []byte {
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)-k) {
		r.err = errors.New("journal: malformed record")
		return nil
	}
	v := r.b[k : k+int(n)]
	r.b = r.b[k+int(n):]
	return v
}

func (r *recordReader) varint() int64 {
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = errors.New("journal: malformed record")
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *recordReader) uvarint() uint64 {
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errors.New("journal: malformed record")
		return 0
	}
	r.b = r.b[k:]
	return v
}

// walEntry is one record read back.
type walEntry struct {
	kind byte
	file string
	meta []byte        // recPin
	app  *appendRecord // recAppend
}

func decodeRecord(p []byte) (walEntry, error) {
	if len(p) == 0 {
		return walEntry{}, errors.New("journal: empty record")
	}
	r := &recordReader{b: p[1:]}
	e := walEntry{kind: p[0], file: string(r.bytes())}
	switch e.kind {
	case recPin:
		e.meta = r.bytes()
	case recClean:
	case recAppend, recAppendV1:
		a := &appendRecord{file: e.file}
		a.account = r.bytes()
		a.mailbox = string(r.bytes())
		a.quota.Bytes = r.varint()
		if e.kind == recAppend {
			a.quota.Messages = r.varint()
		}
		e.kind = recAppend
		a.msg.InternalDate = time.Unix(0, r.varint())
		nf := r.uvarint()
		if r.err == nil && nf > uint64(len(r.b)) {
			r.err = errors.New("journal: malformed record")
		}
		for i := uint64(0); i < nf && r.err == nil; i++ {
			a.msg.Flags = append(a.msg.Flags, string(r.bytes()))
		}
		a.msg.Parsed = r.bytes()
		a.msg.Body = r.bytes()
		e.app = a
	default:
		return walEntry{}, fmt.Errorf("journal: unknown record kind %d", e.kind)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("journal: trailing bytes in record")
	}
	return e, r.err
}

// readSegment returns the valid records of segment n, in order: up to the
// first one that is torn, zero, or not of this segment.
func (j *journal) readSegment(n uint64) ([]walEntry, error) {
	data, err := os.ReadFile(j.segmentPath(n))
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if len(data) < walHeaderSize || string(data[:len(walMagic)]) != walMagic ||
		binary.BigEndian.Uint64(data[len(walMagic):]) != n {
		// A segment whose header never became durable holds nothing that
		// was acknowledged: its header is synced before any record.
		return nil, nil
	}
	var seg [8]byte
	binary.BigEndian.PutUint64(seg[:], n)
	var out []walEntry
	for off := walHeaderSize; off+8 <= len(data); {
		length := int(binary.BigEndian.Uint32(data[off:]))
		crc := binary.BigEndian.Uint32(data[off+4:])
		if length == 0 || off+8+length > len(data) {
			break
		}
		p := data[off+8 : off+8+length]
		if crc32.Update(crc32.Checksum(seg[:], crcTable), crcTable, p) != crc {
			break
		}
		e, err := decodeRecord(p)
		if err != nil {
			// A record with a good checksum that does not decode was
			// written by a different program: stop rather than guess.
			return out, fmt.Errorf("journal: segment %d offset %d: %w", n, off, err)
		}
		out = append(out, e)
		off += 8 + length
	}
	return out, nil
}

// fileState is what the journal says about one mail file after reading it
// back: its last pin record (nil when the last word was "clean" or none)
// and the appends recorded since that pin, in order.
type fileState struct {
	meta    []byte
	appends []*appendRecord
	// unpinned: appends were read that no pin record precedes; a clean
	// or pin record must come after them.
	unpinned bool
}

// readAll reads every segment and returns the state of each file it
// mentions, and the highest segment number seen.
func (j *journal) readAll() (map[string]*fileState, uint64, error) {
	segs, err := j.segments()
	if err != nil {
		return nil, 0, err
	}
	files := make(map[string]*fileState)
	var last uint64
	for _, n := range segs {
		last = max(last, n)
		ents, err := j.readSegment(n)
		if err != nil {
			return nil, 0, err
		}
		for _, e := range ents {
			st := files[e.file]
			if st == nil {
				st = &fileState{}
				files[e.file] = st
			}
			switch e.kind {
			case recPin:
				st.meta, st.appends, st.unpinned = e.meta, nil, false
			case recClean:
				st.meta, st.appends, st.unpinned = nil, nil, false
			case recAppend:
				if st.meta == nil {
					// Its pin record was in a segment deleted because a
					// later record (clean, or a new pin) for the file
					// made it dead: that record must follow.
					st.unpinned = true
					continue
				}
				st.appends = append(st.appends, e.app)
			}
		}
	}
	for file, st := range files {
		if st.unpinned {
			return nil, 0, fmt.Errorf("journal: appends for %s without a pin record", file)
		}
	}
	return files, last, nil
}

// removeUpTo deletes segments numbered up to n (after recovery, when every
// file they speak of has been made durable).
func (j *journal) removeUpTo(n uint64) error {
	segs, err := j.segments()
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s <= n {
			j.retire(j.segmentPath(s))
		}
	}
	return nil
}

// sortedFiles returns the keys of m in order (recovery is deterministic in
// its order, which makes its log readable).
func sortedFiles(m map[string]*fileState) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- bbolt meta pages ----
//
// bbolt keeps two meta pages, pages 0 and 1 of the file; a commit with
// transaction ID t writes page t%2. A meta page is a page header (16 bytes:
// id, flags, count, overflow) and then: magic(4) version(4) page size(4)
// flags(4) root bucket(16) freelist(8) high-water page id(8) txid(8)
// checksum(8). The store copies a durable meta page verbatim and writes it
// back verbatim; it reads only the magic and the txid, to check that the
// page it copied is the one it meant.

const (
	boltMagic       = 0xED0CDAED
	metaMagicOffset = 16
	metaTxidOffset  = 16 + 4 + 4 + 4 + 4 + 16 + 8 + 8
)

// readMetaPage returns the meta page that bbolt wrote for transaction txid.
func readMetaPage(f *os.File, pageSize int, txid uint64) ([]byte, error) {
	page := make([]byte, pageSize)
	if _, err := f.ReadAt(page, int64(txid%2)*int64(pageSize)); err != nil {
		return nil, fmt.Errorf("read meta page: %w", err)
	}
	if err := checkMetaPage(page, txid); err != nil {
		return nil, err
	}
	return page, nil
}

func checkMetaPage(page []byte, txid uint64) error {
	if len(page) < metaTxidOffset+8 || binary.LittleEndian.Uint32(page[metaMagicOffset:]) != boltMagic {
		return errors.New("meta page: not a bbolt meta page")
	}
	if got := binary.LittleEndian.Uint64(page[metaTxidOffset:]); got != txid {
		return fmt.Errorf("meta page: txid %d, want %d", got, txid)
	}
	return nil
}

// restoreMetaPage makes the state described by page the one bbolt opens:
// it writes page into its slot and invalidates the other meta page, then
// syncs. Every page that state refers to is intact on disk (see the package
// documentation: a pinned state's pages are never overwritten).
func restoreMetaPage(path string, page []byte, noSync bool) error {
	txid := binary.LittleEndian.Uint64(page[metaTxidOffset:])
	pageSize := int64(len(page))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(page, int64(txid%2)*pageSize); err != nil {
		return err
	}
	if _, err := f.WriteAt(make([]byte, pageSize), int64((txid+1)%2)*pageSize); err != nil {
		return err
	}
	if noSync {
		return nil
	}
	return fdatasyncFile(f)
}

// ---- small file helpers ----

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
