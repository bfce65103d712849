package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// mailFile is one bbolt file of mail with its committer goroutine, which
// runs every write of the file (see update and the package documentation).
type mailFile struct {
	path string // absolute
	rel  string // relative to the data directory: the journal's name for it
	db   *bolt.DB
	fd   *os.File // our own descriptor: meta page reads and checkpoint syncs
	log  *slog.Logger
	opts Options

	// journal is the store's journal; nil for a file written without it
	// (every commit a synced bbolt commit).
	journal *journal
	// syncs counts the syncs issued for this file (the store's counter).
	syncs *atomic.Uint64
	// failure is the store's sticky write failure (see writeFailure).
	failure *writeFailure

	// swap is held shared by every read of db and exclusively while the
	// file is replaced by its compacted copy (the committer's own use of
	// db needs no lock: it is the one that swaps).
	swap sync.RWMutex

	reqs chan *writeReq
	ckpt chan struct{} // a checkpoint is due (buffered, 1)
	quit chan struct{}
	done chan struct{}
	once sync.Once

	// pinnedAt is when the file last went from clean to pinned (unix ns;
	// 0 while clean), for the checkpoint timer.
	pinnedAt atomic.Int64

	// Only the committer goroutine uses these.
	pin       *bolt.Tx // read transaction at the state the journal would restore; nil: clean
	pinnedTxs int      // unsynced commits since the pin
	journalOK bool     // meta pages can be read back: journaled writes allowed
	mappedLB  int64    // a lower bound of the size bbolt has mapped
	hwm       int64    // the file's high-water mark after the last commit

	// Lifecycle, guarded by Store.mu (files.go).
	active   int       // operations in progress
	holds    int       // sessions holding it open (Mailstore.Hold)
	lastUsed time.Time // when active last dropped to 0
	closed   chan struct{}
	closing  bool
	removeID uint64 // the deleted account whose file this is: remove it when free
}

// writeReq is one write waiting for the committer.
type writeReq struct {
	fn func(tx *bolt.Tx) error
	// exclusive, instead of fn, is a job that runs alone in the committer
	// (compaction): no write of the file runs meanwhile.
	exclusive func() error
	app       *appendRecord // set for an Append, which may go through the journal
	err       error
	// done receives err once the write is durable or has failed.
	done chan error
}

// maxGroup bounds how many writes share one commit.
const maxGroup = 256

// openMailFile opens (creating if needed) a bbolt file with a group
// committer of its own, written without the journal: every commit is a
// synced bbolt commit.
func openMailFile(path string, opts Options) (*mailFile, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return openFile(path, filepath.Base(path), opts, nil, new(atomic.Uint64), new(writeFailure))
}

func openFile(path, rel string, opts Options, j *journal, syncs *atomic.Uint64, failure *writeFailure) (*mailFile, error) {
	db, err := openBolt(path, opts, opts.mailReserve())
	if err != nil {
		return nil, err
	}
	mode := os.O_RDWR
	if opts.ReadOnly {
		mode = os.O_RDONLY
	}
	fd, err := os.OpenFile(path, mode, 0)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	f := &mailFile{path: path, rel: rel, db: db, fd: fd, log: opts.Logger.With("file", rel), opts: opts,
		journal: j, syncs: syncs, failure: failure,
		reqs: make(chan *writeReq, maxGroup), ckpt: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{}), closed: make(chan struct{}),
		journalOK: j != nil}
	f.noteSize(true)
	go f.committer()
	return f, nil
}

// writeFailure is sticky: once the journal or a checkpoint sync has failed,
// what is on disk is not known any more (the kernel may have dropped the
// pages it could not write), so the store refuses every later write until
// it is restarted, and recovery sorts it out. A server that goes on after
// a failed fsync can acknowledge mail it has lost.
type writeFailure struct {
	mu  sync.Mutex
	err error
}

func (w *writeFailure) get() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *writeFailure) set(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = fmt.Errorf("store: writes stopped after a failed write to disk (restart to recover): %w", err)
	}
}

// close finishes queued writes, checkpoints, and closes the file.
func (f *mailFile) close() error {
	f.once.Do(func() { close(f.quit) })
	<-f.done
	err := f.db.Close()
	f.fd.Close()
	return err
}

// update runs fn in a write transaction and returns once it is durable.
//
// Writes are group-committed: while one commit (and its sync) is in
// progress, further writes queue up and then share the next transaction.
// There is no timer, so a lone writer never waits. A write that fails (or
// panics) is rolled back alone: the others of its group are run again
// without it and still share one commit.
func (f *mailFile) update(fn func(tx *bolt.Tx) error) error {
	return f.submit(&writeReq{fn: fn})
}

func (f *mailFile) submit(req *writeReq) error {
	req.done = make(chan error, 1)
	select {
	case f.reqs <- req:
	case <-f.quit:
		return errors.New("store: closed")
	}
	return <-req.done
}

func (f *mailFile) committer() {
	defer close(f.done)
	group := make([]*writeReq, 0, maxGroup)
	for {
		group = group[:0]
		select {
		case r := <-f.reqs:
			group = append(group, r)
		case <-f.ckpt:
			if err := f.checkpoint(); err != nil {
				f.log.Error("checkpoint failed", "err", err)
			}
			continue
		case <-f.quit:
			// Finish what is queued, make the file clean, stop.
			for {
				group = group[:0]
			rest:
				for len(group) < maxGroup {
					select {
					case r := <-f.reqs:
						group = append(group, r)
					default:
						break rest
					}
				}
				if len(group) == 0 {
					break
				}
				f.commitInOrder(group)
			}
			if err := f.checkpoint(); err != nil {
				f.log.Error("checkpoint at close failed", "err", err)
			}
			if f.pin != nil {
				// Only after a failed checkpoint; the journal still
				// names the pinned state, which recovery restores.
				f.pin.Rollback()
				f.pin = nil
			}
			return
		}
	drain:
		for len(group) < maxGroup {
			select {
			case r := <-f.reqs:
				group = append(group, r)
			default:
				break drain
			}
		}
		f.commitInOrder(group)
	}
}

// commitInOrder commits the writes of group, running an exclusive job
// alone at its place in the order.
func (f *mailFile) commitInOrder(group []*writeReq) {
	start := 0
	for i, r := range group {
		if r.exclusive == nil {
			continue
		}
		if i > start {
			f.commit(group[start:i])
		}
		r.err = f.failure.get()
		if r.err == nil {
			r.err = r.exclusive()
		}
		r.done <- r.err
		start = i + 1
	}
	if start < len(group) {
		f.commit(group[start:])
	}
}

// viewDB runs fn in a read transaction of the file.
func (f *mailFile) viewDB(fn func(*bolt.Tx) error) error {
	f.swap.RLock()
	defer f.swap.RUnlock()
	return f.db.View(fn)
}

// commit makes a group durable, through the journal when it can.
func (f *mailFile) commit(group []*writeReq) {
	if err := f.failure.get(); err != nil {
		reply(group, err)
		return
	}
	if f.journalable(group) {
		f.commitJournaled(group)
		return
	}
	// A direct commit: bbolt's own, synced. A pinned file is made clean
	// first, so that recovery does not roll it back past this commit.
	if err := f.checkpoint(); err != nil {
		reply(group, err)
		return
	}
	f.db.NoSync = f.opts.NoSync
	f.runGroup(group, 2)
	f.noteSize(true)
	reply(group, nil)
}

// journalable reports whether group may go through the journal: appends
// only, none too big, and room in the mapping for what they will add (a
// pinned read transaction holds the mapping: bbolt could not remap while
// it is open, and would wait for it for ever).
func (f *mailFile) journalable(group []*writeReq) bool {
	if f.journal == nil || !f.journalOK {
		return false
	}
	need := int64(8 << 20)
	for _, r := range group {
		if r.app == nil || len(r.app.msg.Body)+len(r.app.msg.Parsed) > maxJournaledAppend {
			return false
		}
		need += 2*int64(len(r.app.msg.Body)+len(r.app.msg.Parsed)) + 512<<10
	}
	return f.hwm+need < f.mappedLB
}

// commitJournaled writes the group's records to the journal (with a pin
// record first when the file is clean), waits until they are durable, and
// then applies the group with an unsynced bbolt commit. Recovery restores
// the pinned state and applies the records again.
func (f *mailFile) commitJournaled(group []*writeReq) {
	var recs [][]byte // the pin record, if this group pins the file
	var newPin *bolt.Tx
	if f.pin == nil {
		tx, err := f.db.Begin(false)
		if err != nil {
			reply(group, fmt.Errorf("store: %w", err))
			return
		}
		meta, err := readMetaPage(f.fd, f.db.Info().PageSize, uint64(tx.ID()))
		if err != nil {
			// Not what we expect on disk: stay with direct commits.
			tx.Rollback()
			f.log.Warn("cannot read the file's meta page; writing it without the journal", "err", err)
			f.journalOK = false
			f.db.NoSync = f.opts.NoSync
			f.runGroup(group, 2)
			f.noteSize(true)
			reply(group, nil)
			return
		}
		recs = append(recs, pinRecord(f.rel, meta))
		newPin = tx
	}
	apps := make([]*appendRecord, len(group))
	for i, r := range group {
		apps[i] = r.app
	}
	pinName := ""
	if newPin != nil {
		pinName = f.rel
	}
	if err := f.journal.append(recs, apps, pinName, ""); err != nil {
		if newPin != nil {
			newPin.Rollback()
		}
		f.failure.set(err)
		reply(group, err)
		return
	}
	if newPin != nil {
		f.pin = newPin
		f.pinnedAt.Store(time.Now().UnixNano())
		if f.opts.onPin != nil {
			f.opts.onPin(f.path)
		}
	}
	f.db.NoSync = true
	if err := f.runGroup(group, 0); err != nil {
		// The records are in the journal but not in the file: from here
		// on, what recovery would rebuild is not what the file holds.
		f.failure.set(err)
	}
	f.db.NoSync = f.opts.NoSync
	f.noteSize(false)
	reply(group, nil)
	// While pinned, bbolt keeps every page freed since as pending, and
	// walks them all at each commit: bound how many pile up (and how much
	// the file grows) with a checkpoint every so many commits.
	if f.pinnedTxs++; f.pinnedTxs%writebackEvery == 0 && !f.opts.NoSync {
		startWriteback(f.fd)
	}
	if f.pinnedTxs >= maxPinnedCommits {
		if err := f.checkpoint(); err != nil {
			f.log.Error("checkpoint failed", "err", err)
		}
	}
}

// maxPinnedCommits is how many unsynced commits a pinned file takes before
// it is checkpointed.
const maxPinnedCommits = 200

// writebackEvery is how many unsynced commits go between two requests to
// the kernel to start writing a pinned file out (startWriteback), so that
// its checkpoint finds little left to sync.
const writebackEvery = 16

// checkpoint makes a pinned file clean: it syncs the file, so that its
// current state is durable, and records that in the journal. Only then is
// the pinned state let go (its pages may be reused from then on).
func (f *mailFile) checkpoint() error {
	if f.pin == nil {
		return nil
	}
	if !f.opts.NoSync {
		if err := fdatasyncFile(f.fd); err != nil {
			err = fmt.Errorf("store: sync %s: %w", f.rel, err)
			f.failure.set(err)
			return err
		}
	}
	f.syncs.Add(1)
	if err := f.journal.append([][]byte{cleanRecord(f.rel)}, nil, "", f.rel); err != nil {
		f.failure.set(err)
		return err
	}
	f.pin.Rollback()
	f.pin = nil
	f.pinnedTxs = 0
	f.pinnedAt.Store(0)
	return nil
}

// runGroup runs the writes of group in one transaction and commits it. A
// write that fails or panics is left out: the transaction is rolled back
// and the others run again without it, so its failure costs the rest no
// commit of their own. syncs is what the commit costs in syncs (2 for a
// synced bbolt commit, 0 for an unsynced one).
func (f *mailFile) runGroup(group []*writeReq, syncs uint64) error {
	pending := slices.Clone(group)
	for len(pending) > 0 {
		tx, err := f.db.Begin(true)
		if err != nil {
			err = fmt.Errorf("store: %w", err)
			for _, r := range pending {
				r.err = err
			}
			return err
		}
		failed := -1
		for i, r := range pending {
			if err := f.call(r.fn, tx); err != nil {
				r.err, failed = err, i
				break
			}
		}
		if failed < 0 {
			err := tx.Commit()
			if err == nil {
				f.syncs.Add(syncs)
			} else {
				err = fmt.Errorf("store: commit: %w", err)
			}
			for _, r := range pending {
				r.err = err
			}
			return err
		}
		tx.Rollback()
		pending = slices.Delete(pending, failed, failed+1)
	}
	return nil
}

// call runs one write, turning a panic into an error for its caller.
func (f *mailFile) call(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			f.log.Error("write panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("store: internal error (write panicked: %v)", p)
		}
	}()
	return fn(tx)
}

func reply(group []*writeReq, err error) {
	for _, r := range group {
		if err != nil {
			r.err = err
		}
		r.done <- r.err
	}
}

// noteSize records the file's high-water mark after a commit and, after a
// direct commit (when bbolt may have remapped), raises the mapping bound.
func (f *mailFile) noteSize(direct bool) {
	f.db.View(func(tx *bolt.Tx) error {
		f.hwm = tx.Size()
		return nil
	})
	if direct {
		// Not the file's size: bbolt grows the file by AllocSize (16 MiB)
		// ahead of its high-water mark but remaps only when an allocation
		// passes the mapping, so the file may be larger than what is
		// mapped (a bound from the file's size let journaled commits run
		// into a remap, which waits for the pin for ever). The mapping
		// always covers the high-water mark and is a size bbolt rounds
		// to, at least the reserve it was opened with.
		f.mappedLB = max(f.mappedLB, boltMmapSize(max(int64(f.opts.mailReserve()), f.hwm)))
	}
}

// boltMmapSize is the size bbolt maps for a file of size bytes
// (DB.mmapSize in bbolt 1.x: powers of two up to 1 GiB, then whole GiBs).
func boltMmapSize(size int64) int64 {
	for i := uint(15); i <= 30; i++ {
		if size <= 1<<i {
			return 1 << i
		}
	}
	const step = 1 << 30
	if r := size % step; r > 0 {
		size += step - r
	}
	return size
}
