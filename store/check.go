package store

// The store checker: `roost check`, the crash tests and `roost restore`
// run it to learn whether a store is consistent.
//
// What it verifies, per account (one transaction of the account's file, so
// it sees one consistent state while the server goes on writing):
//
//   - every mailbox's counters (Messages, Unseen, Deleted, Size) against its
//     message records, and the account's total size against all of them;
//   - UIDs: every message and change-log UID is below the mailbox's UIDNEXT
//     and not 0, record keys are well-formed (bbolt keys are unique, so a
//     UID is unique once its key is);
//   - modseqs: no message or change-log entry above the mailbox's
//     HIGHESTMODSEQ, no HIGHESTMODSEQ above the account's modseq counter,
//     PurgedModSeq not above HIGHESTMODSEQ; every message has exactly one
//     change-log entry, at its own modseq;
//   - tombstones: at most one per UID, none for a message that exists;
//   - blobs: the reference count of each against the message records that
//     name it; a blob without references (expunged) has count 0 and is on
//     the purge list, where it waits until no session can address it (an
//     orphan otherwise: never freed); no message whose blob is missing or
//     of another size, chunks numbered without gaps, purge list keys
//     well-formed;
//   - every keyword set on a message is in its mailbox's keyword list (what
//     FLAGS announces), and the \Recent mark is not above UIDNEXT;
//   - the mailbox name index against the mailboxes, bucket sequences not
//     below the IDs they have handed out;
//
// and for the whole store: the account and alias index in roost.db (records
// that parse, unique IDs, aliases that point to accounts), every account's
// mail file or bucket present, and no mail file or bucket that belongs to
// no account. When repairing, bbolt's own page-level check (Tx.Check) runs
// on every file first. (Not when only reading: in a file written without a
// freelist, as Roost's are, it has to rebuild the freelist, and bbolt
// crashes the process from a goroutine of its own if it meets a damaged
// page doing so. Reading checks walk the file themselves and report what
// they cannot read.)
//
// Repair (the repair argument) fixes, in a write transaction of the
// account, only what can be fixed without losing or inventing mail: stored
// counters (recomputed; UIDNEXT, HIGHESTMODSEQ and sequences only ever
// raised), reference counts, keyword lists (completed), orphaned blobs (put
// on the purge list, so that they are freed once no session can address
// them; chunks without an info record removed), change-log entries
// (missing ones added, stale or duplicate ones removed, an entry for a
// vanished message turned into its tombstone) and dangling names. A
// message whose body is gone, a record that does not parse, a missing or
// orphaned mail file are reported and left for a human. It does not repair
// a file whose bbolt pages are inconsistent.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Kinds of Violation, so that callers (tests, scripts) can tell them apart.
const (
	CheckIndex       = "index"        // roost.db: account and alias records
	CheckFile        = "file"         // a mail file or account bucket missing, orphaned or unreadable
	CheckRecord      = "record"       // a record that does not parse, a name index entry that is wrong
	CheckCounter     = "counter"      // a stored counter that disagrees with what it counts
	CheckUID         = "uid"          // a UID of 0 or not below UIDNEXT
	CheckModSeq      = "modseq"       // a modseq above the highest one handed out
	CheckChangeLog   = "changelog"    // a change-log entry missing, stale or for a vanished message
	CheckTombstone   = "tombstone"    // a tombstone for a live message, or two for one UID
	CheckBlobRefs    = "blob-refs"    // a blob's reference count is wrong
	CheckBlobOrphan  = "blob-orphan"  // a blob (or chunks of one) that no message refers to
	CheckBlobMissing = "blob-missing" // a message whose body is missing, incomplete or of another size
	CheckSequence    = "sequence"     // a bucket sequence below an ID it has handed out
)

// Violation is one broken invariant.
type Violation struct {
	// Account is the address of the account concerned; "" for the
	// account index itself (roost.db) and files that belong to no account.
	Account string
	// Object names what is wrong, e.g. `mailbox "INBOX" (id 1) UID 7`.
	Object string
	// Kind is one of the Check* constants.
	Kind string
	// Problem says what is wrong with it.
	Problem string
	// Repaired is set when Check was asked to repair and did.
	Repaired bool
}

// String formats v as roost check prints it: account, object and problem,
// tab-separated.
func (v Violation) String() string {
	acct := v.Account
	if acct == "" {
		acct = "-"
	}
	s := acct + "\t" + v.Object + "\t" + v.Kind + ": " + v.Problem
	if v.Repaired {
		s += " (repaired)"
	}
	return s
}

// Report is the outcome of Check.
type Report struct {
	Accounts, Mailboxes, Messages, Blobs int // what was checked
	Violations                           []Violation
}

// Unrepaired counts the violations that remain.
func (r *Report) Unrepaired() int {
	n := 0
	for _, v := range r.Violations {
		if !v.Repaired {
			n++
		}
	}
	return n
}

// Has reports whether r holds a violation of kind (for tests).
func (r *Report) Has(kind string) bool {
	for _, v := range r.Violations {
		if v.Kind == kind {
			return true
		}
	}
	return false
}

// Check verifies the invariants of the accounts with the given addresses
// (all when addresses is empty; addresses must be normalised) and of the
// account index, and with repair set fixes what it safely can (see the
// comment at the top of check.go). It reads in transactions, so it may run
// while the store is in use. The error is for a check that could not be
// carried out (an unknown address, a closed store, ctx ending); what is
// found wrong is in the report.
func (s *Store) Check(ctx context.Context, addresses []string, repair bool) (Report, error) {
	if repair && s.opts.ReadOnly {
		return Report{}, errors.New("store: cannot repair a store opened read-only")
	}
	c := &checker{s: s, repair: repair, pageChecked: make(map[string]bool)}
	accts, err := c.checkIndex(addresses)
	if err != nil {
		return c.report, err
	}
	for _, a := range accts {
		if err := ctx.Err(); err != nil {
			return c.report, err
		}
		c.checkAccount(a)
	}
	if len(addresses) == 0 {
		if err := c.checkOrphans(ctx, accts); err != nil {
			return c.report, err
		}
	}
	return c.report, nil
}

type checker struct {
	s           *Store
	repair      bool
	report      Report
	pageChecked map[string]bool // files whose pages bbolt has checked
}

func (c *checker) add(v Violation) { c.report.Violations = append(c.report.Violations, v) }

// checkIndex checks roost.db and returns the accounts to check further.
func (c *checker) checkIndex(addresses []string) ([]Account, error) {
	want := make(map[string]bool, len(addresses))
	for _, a := range addresses {
		want[a] = true
	}
	concerns := func(addr string) bool { return len(want) == 0 || want[addr] }
	var accts []Account
	var seq, maxID uint64
	err := c.s.global.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		seq = b.Sequence()
		byID := make(map[uint64]string)
		err := b.ForEach(func(k, v []byte) error {
			addr := string(k)
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				if concerns(addr) {
					c.add(Violation{Account: addr, Object: "account record", Kind: CheckIndex, Problem: "does not parse: " + err.Error()})
				}
				return nil
			}
			maxID = max(maxID, a.ID)
			switch {
			case a.Address != addr:
				if concerns(addr) {
					c.add(Violation{Account: addr, Object: "account record", Kind: CheckIndex, Problem: fmt.Sprintf("is filed under %q but names %q", addr, a.Address)})
				}
				return nil
			case a.ID == 0:
				if concerns(addr) {
					c.add(Violation{Account: addr, Object: "account record", Kind: CheckIndex, Problem: "has ID 0"})
				}
				return nil
			}
			if other, dup := byID[a.ID]; dup {
				if concerns(addr) || concerns(other) {
					c.add(Violation{Account: addr, Object: "account record", Kind: CheckIndex, Problem: fmt.Sprintf("has ID %d, as %s has: they share one mail file", a.ID, other)})
				}
				return nil
			}
			byID[a.ID] = addr
			if concerns(addr) {
				accts = append(accts, a)
			}
			return nil
		})
		if err != nil {
			return err
		}
		accounts := tx.Bucket(bucketAccounts)
		return tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			alias, target := string(k), string(v)
			if !concerns(target) && !concerns(alias) {
				return nil
			}
			switch {
			case accounts.Get(k) != nil:
				c.add(Violation{Account: alias, Object: "alias " + alias, Kind: CheckIndex, Problem: "is also an account"})
			case accounts.Get(v) == nil:
				c.add(Violation{Account: target, Object: "alias " + alias, Kind: CheckIndex, Problem: fmt.Sprintf("points to %q, which is no account", target)})
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: check account index: %w", err)
	}
	for _, a := range addresses {
		if !slices.ContainsFunc(accts, func(x Account) bool { return x.Address == a }) &&
			!slices.ContainsFunc(c.report.Violations, func(v Violation) bool { return v.Account == a }) {
			return nil, fmt.Errorf("store: check: account %s: %w", a, ErrNotFound)
		}
	}
	c.report.Accounts = len(accts)
	if maxID > seq && len(want) == 0 {
		v := Violation{Object: "account index", Kind: CheckSequence,
			Problem: fmt.Sprintf("next account ID is %d, but ID %d exists: a new account would share its mail", seq+1, maxID)}
		if c.repair {
			err := c.s.global.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketAccounts)
				return b.SetSequence(max(b.Sequence(), maxID))
			})
			v.Repaired = err == nil
		}
		c.add(v)
	}
	return accts, nil
}

// accountFile returns the open mail file of an account, or nil after
// recording why there is none.
func (c *checker) accountFile(a Account) *mailFile {
	path := c.s.mailPath(a.ID)
	rel, _ := filepath.Rel(c.s.opts.Dir, path)
	if _, err := os.Stat(path); err != nil {
		problem := "cannot be read: " + err.Error()
		if errors.Is(err, os.ErrNotExist) {
			problem = "is missing: the account's mail is gone"
		}
		c.add(Violation{Account: a.Address, Object: "mail file " + rel, Kind: CheckFile, Problem: problem})
		return nil
	}
	f, err := c.s.file(path)
	if err != nil {
		c.add(Violation{Account: a.Address, Object: "mail file " + rel, Kind: CheckFile, Problem: "cannot be opened: " + err.Error()})
		return nil
	}
	return f
}

// checkPages runs bbolt's page-level check on f once, in tx, a write
// transaction (in a read transaction it would race with writers). It
// reports whether the pages are sound.
func (c *checker) checkPages(f *mailFile, tx *bolt.Tx, acct string) bool {
	if c.pageChecked[f.path] || !tx.Writable() {
		return true
	}
	c.pageChecked[f.path] = true
	rel, _ := filepath.Rel(c.s.opts.Dir, f.path)
	ok := true
	n := 0
	for err := range tx.Check() {
		ok = false
		if n++; n <= 10 {
			c.add(Violation{Account: acct, Object: "mail file " + rel, Kind: CheckFile, Problem: "bbolt page check: " + err.Error()})
		}
	}
	if n > 10 {
		c.add(Violation{Account: acct, Object: "mail file " + rel, Kind: CheckFile, Problem: fmt.Sprintf("bbolt page check: %d more errors", n-10)})
	}
	return ok
}

// checkAccount checks one account's mail, repairing it if asked to.
func (c *checker) checkAccount(a Account) {
	f := c.accountFile(a)
	if f == nil {
		return
	}
	var ac *accountCheck
	run := func(tx *bolt.Tx) (err error) {
		// The group committer may run this more than once: start afresh.
		ac = &accountCheck{addr: a.Address, repair: c.repair && tx.Writable()}
		// bbolt panics on damaged pages, and a damaged page header can send
		// it to read past the end of the file (a fault): report those.
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("reading the file failed: %v", r)
			}
		}()
		if !c.checkPages(f, tx, a.Address) {
			ac.repair = false // do not write into a damaged file
		}
		return ac.run(tx, a.ID)
	}
	var err error
	if c.repair {
		err = f.update(run)
	} else {
		err = f.db.View(run)
	}
	if ac == nil {
		ac = &accountCheck{addr: a.Address}
	}
	if err != nil {
		// Nothing was written; what was found stands unrepaired.
		for i := range ac.vs {
			ac.vs[i].Repaired = false
		}
		rel, _ := filepath.Rel(c.s.opts.Dir, f.path)
		ac.vs = append(ac.vs, Violation{Account: a.Address, Object: "mail file " + rel, Kind: CheckFile, Problem: "check failed: " + err.Error()})
	}
	c.report.Violations = append(c.report.Violations, ac.vs...)
	c.report.Mailboxes += ac.mailboxes
	c.report.Messages += ac.messages
	c.report.Blobs += ac.blobs
}

// checkOrphans looks for mail that belongs to no account: files of the
// one-file-per-account layout, and account buckets in shared files.
func (c *checker) checkOrphans(ctx context.Context, accts []Account) error {
	known := make(map[uint64]bool, len(accts))
	for _, a := range accts {
		known[a.ID] = true
	}
	// An account created or deleted since checkIndex read the index is
	// not an orphan: look again before reporting one.
	stillOrphan := func(id uint64) bool {
		found := false
		c.s.global.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAccounts).ForEach(func(_, v []byte) error {
				var a Account
				if json.Unmarshal(v, &a) == nil && a.ID == id {
					found = true
				}
				return nil
			})
		})
		return !found
	}
	if c.s.opts.Shards == 0 {
		entries, err := os.ReadDir(filepath.Join(c.s.opts.Dir, "accounts"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("store: check: %w", err)
		}
		for _, e := range entries {
			idText, ok := strings.CutSuffix(e.Name(), ".db")
			id, err := strconv.ParseUint(idText, 10, 64)
			if !ok || err != nil || known[id] {
				continue
			}
			path := filepath.Join(c.s.opts.Dir, "accounts", e.Name())
			if _, err := os.Stat(path); err != nil || !stillOrphan(id) {
				continue
			}
			c.add(Violation{Object: "mail file accounts/" + e.Name(), Kind: CheckFile,
				Problem: fmt.Sprintf("belongs to no account (no account has ID %d); if that account was deleted, remove the file", id)})
		}
		return nil
	}
	for k := 0; k < c.s.opts.Shards; k++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		path := filepath.Join(c.s.opts.Dir, "mail", fmt.Sprintf("shard-%d.db", k))
		if _, err := os.Stat(path); err != nil {
			continue
		}
		f, err := c.s.file(path)
		if err != nil {
			c.add(Violation{Object: fmt.Sprintf("mail file mail/shard-%d.db", k), Kind: CheckFile, Problem: "cannot be opened: " + err.Error()})
			continue
		}
		var orphans []uint64
		err = f.db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				if len(name) != 9 || name[0] != 'a' {
					return nil // not an account's bucket
				}
				id := binary.BigEndian.Uint64(name[1:])
				if !known[id] || id%uint64(c.s.opts.Shards) != uint64(k) {
					orphans = append(orphans, id)
				}
				return nil
			})
		})
		if err != nil {
			c.add(Violation{Object: fmt.Sprintf("mail file mail/shard-%d.db", k), Kind: CheckFile, Problem: "cannot be read: " + err.Error()})
		}
		for _, id := range orphans {
			if id%uint64(c.s.opts.Shards) != uint64(k) {
				c.add(Violation{Object: fmt.Sprintf("account bucket %d in mail/shard-%d.db", id, k), Kind: CheckFile,
					Problem: fmt.Sprintf("is in the wrong file (account %d belongs in shard %d)", id, id%uint64(c.s.opts.Shards))})
			} else if stillOrphan(id) {
				c.add(Violation{Object: fmt.Sprintf("account bucket %d in mail/shard-%d.db", id, k), Kind: CheckFile,
					Problem: fmt.Sprintf("belongs to no account (no account has ID %d)", id)})
			}
		}
	}
	return nil
}

// accountCheck checks one account inside one transaction.
type accountCheck struct {
	addr   string
	repair bool // the transaction is writable and repair was asked for
	vs     []Violation
	fixes  []func() error // run after the scans, which must not write
	// layout2: the account has a purge list, keyword lists, RecentUID.
	layout2 bool
	// partial is set when some message records could not be read: then
	// blob references and sizes are not known exactly, and what depends
	// on them is reported but not repaired (it could free a body in use).
	partial bool

	mailboxes, messages, blobs int
}

// problem records a violation; fix, if not nil and repairing, is the
// repair, run once the scans are done.
func (ac *accountCheck) problem(kind, object, problem string, fix func() error) {
	if ac.partial && (kind == CheckBlobOrphan || kind == CheckBlobRefs || kind == CheckCounter) {
		fix = nil
		problem += " (not repaired: some message records are unreadable)"
	}
	v := Violation{Account: ac.addr, Object: object, Kind: kind, Problem: problem}
	if fix != nil && ac.repair {
		v.Repaired = true
		ac.fixes = append(ac.fixes, fix)
	}
	ac.vs = append(ac.vs, v)
}

// blobState is what the blob scan learns about one blob.
type blobState struct {
	chunks    uint32 // body chunks seen, numbered 0..chunks-1 if !broken
	size      int64  // their total length
	broken    bool   // a chunk missing, or a short chunk before the last
	lastShort bool
	hasInfo   bool
	refcount  uint32
	refs      uint32 // message records naming it
}

func (ac *accountCheck) run(tx *bolt.Tx, id uint64) error {
	root := tx.Bucket(accountKey(id))
	if root == nil {
		ac.problem(CheckFile, "account bucket", "is missing: the account's mail is gone", nil)
		return nil
	}
	t := &atx{Tx: tx, root: root}
	for _, name := range accountBuckets {
		if t.Bucket(name) == nil && !bytes.Equal(name, bucketPurge) {
			ac.problem(CheckRecord, "bucket "+string(name), "is missing", nil)
			return nil
		}
	}
	meta := t.Bucket(bucketMeta)
	// Layout 2 added the purge list, keyword lists and RecentUID; an
	// account of layout 1 (not opened by a newer Roost yet) has none.
	if v := meta.Get(keyLayout); len(v) == 8 && binary.BigEndian.Uint64(v) >= 2 {
		ac.layout2 = true
		if t.Bucket(bucketPurge) == nil {
			ac.problem(CheckRecord, "bucket "+string(bucketPurge), "is missing", nil)
			return nil
		}
	}
	blobs := ac.scanBlobs(t)
	purging := ac.scanPurge(t)

	acctModSeq := uint64(0)
	if v := meta.Get(keyModSeq); len(v) == 8 {
		acctModSeq = binary.BigEndian.Uint64(v)
	}
	var acctSize int64
	var highest uint64 // the highest modseq anything in the account carries
	var maxMbox uint64
	ids := make(map[uint64]bool)

	boxes := t.Bucket(bucketMboxes)
	cur := boxes.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if v != nil || len(k) != 8 {
			continue // not a mailbox bucket; tolerate what a newer schema may add
		}
		mid := binary.BigEndian.Uint64(k)
		maxMbox = max(maxMbox, mid)
		ids[mid] = true
		size, hi := ac.checkMailbox(t, boxes.Bucket(k), mid, blobs)
		acctSize += size
		highest = max(highest, hi)
	}

	// Names: each must lead to a mailbox (checkMailbox checked the way back).
	names := t.Bucket(bucketNames)
	nc := names.Cursor()
	for k, v := nc.First(); k != nil; k, v = nc.Next() {
		name := string(k)
		if len(v) != 8 || !ids[binary.BigEndian.Uint64(v)] {
			ac.problem(CheckRecord, fmt.Sprintf("mailbox name %q", name), "points to no mailbox",
				func() error { return names.Delete([]byte(name)) })
		}
	}
	if seq := boxes.Sequence(); maxMbox > seq {
		ac.problem(CheckSequence, "mailbox IDs", fmt.Sprintf("next mailbox ID is %d, but mailbox %d exists", seq+1, maxMbox),
			func() error { return boxes.SetSequence(maxMbox) })
	}

	if highest > acctModSeq {
		ac.problem(CheckModSeq, "account modseq", fmt.Sprintf("is %d, below modseq %d in use: new changes would reuse modseqs", acctModSeq, highest),
			func() error { return meta.Put(keyModSeq, u64(highest)) })
	}
	var storedSize int64
	if v := meta.Get(keySize); len(v) == 8 {
		storedSize = int64(binary.BigEndian.Uint64(v))
	}
	if storedSize != acctSize {
		ac.problem(CheckCounter, "account size", fmt.Sprintf("is %d bytes, the messages add up to %d", storedSize, acctSize),
			func() error { return meta.Put(keySize, u64(uint64(acctSize))) })
	}

	ac.checkBlobs(t, blobs, purging, max(acctModSeq, highest))

	for _, fix := range ac.fixes {
		if err := fix(); err != nil {
			return fmt.Errorf("repair: %w", err)
		}
	}
	return nil
}

// scanBlobs reads the layout of every blob (lengths only, no copying).
func (ac *accountCheck) scanBlobs(t *atx) map[uint64]*blobState {
	blobs := make(map[uint64]*blobState)
	ac.checkTail("blobs", t.root, bucketBlobs)
	b := blobsOf(t)
	cur := b.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if len(k) != 12 {
			key := append([]byte(nil), k...)
			ac.problem(CheckRecord, fmt.Sprintf("blob key %x", key), "is malformed (not 12 bytes)",
				func() error { return b.Delete(key) })
			continue
		}
		id := binary.BigEndian.Uint64(k)
		chunk := binary.BigEndian.Uint32(k[8:])
		bs := blobs[id]
		if bs == nil {
			bs = &blobState{}
			blobs[id] = bs
		}
		if chunk == infoChunk {
			if len(v) < 4 {
				ac.problem(CheckRecord, fmt.Sprintf("blob %d", id), "has an info record shorter than its reference count", nil)
				continue
			}
			bs.hasInfo = true
			bs.refcount = binary.BigEndian.Uint32(v)
			continue
		}
		if chunk != bs.chunks || bs.lastShort {
			bs.broken = true
		}
		bs.chunks = chunk + 1
		bs.size += int64(len(v))
		bs.lastShort = len(v) < chunkSize
	}
	ac.blobs = len(blobs)
	return blobs
}

// scanPurge reads the purge list: bodies whose last message was expunged,
// kept until no session can address them (RFC 2180 §4.1).
func (ac *accountCheck) scanPurge(t *atx) map[uint64]bool {
	purging := make(map[uint64]bool)
	purge := t.Bucket(bucketPurge)
	if purge == nil {
		return purging
	}
	c := purge.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 16 {
			key := append([]byte(nil), k...)
			ac.problem(CheckRecord, fmt.Sprintf("purge list key %x", key), "is malformed (not 16 bytes): the purger would fail on it",
				func() error { return purge.Delete(key) })
			continue
		}
		purging[binary.BigEndian.Uint64(k[8:])] = true
	}
	return purging
}

// checkMailbox checks one mailbox and returns the size of its messages and
// the highest modseq it carries.
func (ac *accountCheck) checkMailbox(t *atx, b *bolt.Bucket, id uint64, blobs map[uint64]*blobState) (size int64, highest uint64) {
	obj := fmt.Sprintf("mailbox %d", id)
	var info Mailbox
	if err := json.Unmarshal(b.Get(keyInfo), &info); err != nil {
		ac.partial = true
		ac.problem(CheckRecord, obj, "has a mailbox record that does not parse: "+err.Error(), nil)
		return 0, 0
	}
	ac.mailboxes++
	obj = fmt.Sprintf("mailbox %q (id %d)", info.Name, id)
	if info.ID != id {
		ac.problem(CheckRecord, obj, fmt.Sprintf("record says it is mailbox %d", info.ID), nil)
	}
	if info.UIDValidity == 0 {
		ac.problem(CheckRecord, obj, "has UIDVALIDITY 0", nil)
	}
	if v := t.Bucket(bucketNames).Get([]byte(info.Name)); len(v) != 8 || binary.BigEndian.Uint64(v) != id {
		ac.problem(CheckRecord, obj, "is not under its name in the name index", nil)
	}
	ac.checkTail(obj+" messages", b, keyMsgs)
	ac.checkTail(obj+" change log", b, keyChanges)
	msgs, changes := openTailed(b, keyMsgs), openTailed(b, keyChanges)
	if msgs == nil || changes == nil {
		ac.partial = ac.partial || msgs == nil
		ac.problem(CheckRecord, obj, "has no message or change-log bucket", nil)
		return 0, info.HighestModSeq
	}

	var count, unseen, deleted uint32
	var unlisted []string // keywords of messages missing from info.Keywords
	var maxUID uint32
	var maxModSeq uint64
	cur := msgs.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if len(k) != 4 || len(v) < 33 {
			ac.partial = true
			ac.problem(CheckRecord, fmt.Sprintf("%s key %x", obj, k), "is not a message record (key of 4 bytes, value of at least 33)", nil)
			continue
		}
		uid := binary.BigEndian.Uint32(k)
		mobj := fmt.Sprintf("%s UID %d", obj, uid)
		if !keywordsWellFormed(v[33:]) {
			ac.problem(CheckRecord, mobj, "has a malformed keyword list", nil)
		}
		msg := decodeMessage(k, v)
		ac.messages++
		count++
		fs := decodeFlags(v)
		if fs.sys&bitSeen == 0 {
			unseen++
		}
		if ac.layout2 {
			for _, k := range fs.keywords {
				if !slices.ContainsFunc(info.Keywords, func(h string) bool { return strings.EqualFold(h, k) }) &&
					!slices.ContainsFunc(unlisted, func(h string) bool { return strings.EqualFold(h, k) }) {
					unlisted = append(unlisted, k)
				}
			}
		}
		if v[32]&bitDeleted != 0 {
			deleted++
		}
		size += msg.Size
		maxUID = max(maxUID, uid)
		maxModSeq = max(maxModSeq, msg.ModSeq)
		if uid == 0 {
			ac.problem(CheckUID, mobj, "UID 0 is not a valid UID", nil)
		}
		if msg.ModSeq == 0 {
			ac.problem(CheckModSeq, mobj, "has modseq 0", nil)
		}
		ck := changeKey(msg.ModSeq, uid)
		if changes.Get(ck) == nil { // a wrong value is the change-log scan's
			ac.problem(CheckChangeLog, mobj, fmt.Sprintf("has no change-log entry at its modseq %d: syncing clients miss it", msg.ModSeq),
				func() error { return changes.Put(ck, []byte{0}) })
		}
		bs := blobs[msg.BlobID]
		switch {
		case bs == nil || bs.chunks == 0:
			ac.problem(CheckBlobMissing, mobj, fmt.Sprintf("refers to blob %d, which does not exist: the message body is gone", msg.BlobID), nil)
		case !bs.hasInfo:
			ac.problem(CheckBlobMissing, mobj, fmt.Sprintf("refers to blob %d, which has no info record (reference count, parsed form)", msg.BlobID), nil)
		case bs.broken:
			ac.problem(CheckBlobMissing, mobj, fmt.Sprintf("refers to blob %d, whose chunks are incomplete", msg.BlobID), nil)
		case bs.size != msg.Size:
			ac.problem(CheckBlobMissing, mobj, fmt.Sprintf("is %d bytes, its blob %d has %d", msg.Size, msg.BlobID, bs.size), nil)
		}
		if bs != nil {
			bs.refs++
		}
	}

	// The change log: entries for live messages must be theirs (checked
	// from the message side above); others are tombstones, one per UID.
	tombs := make(map[uint32][]uint64)    // UID without a message -> its tombstones' modseqs
	vanished := make(map[uint32][]uint64) // UID without a message -> its "changed" entries
	maxLogged := uint32(0)
	cc := changes.Cursor()
	for k, v := cc.First(); k != nil; k, v = cc.Next() {
		if len(k) != 12 {
			key := append([]byte(nil), k...)
			ac.problem(CheckRecord, fmt.Sprintf("%s change-log key %x", obj, key), "is malformed (not 12 bytes)",
				func() error { return changes.Delete(key) })
			continue
		}
		modseq := binary.BigEndian.Uint64(k)
		uid := binary.BigEndian.Uint32(k[8:])
		key := append([]byte(nil), k...)
		eobj := fmt.Sprintf("%s change-log entry (modseq %d, UID %d)", obj, modseq, uid)
		// 0: changed; 1: expunged (a tombstone), then, since tombstones
		// are purged after a retention, when (unix seconds).
		if len(v) == 0 || v[0] > 1 || len(v) != 1 && !(v[0] == 1 && len(v) == 9) {
			ac.problem(CheckRecord, eobj, "has a value that is neither 0 (changed) nor 1 (expunged)", nil)
			continue
		}
		tomb := v[0] == 1
		maxModSeq = max(maxModSeq, modseq)
		maxLogged = max(maxLogged, uid)
		if modseq == 0 {
			ac.problem(CheckModSeq, eobj, "has modseq 0", nil)
		}
		if uid == 0 {
			var fix func() error
			if msgs.Get(k[8:12]) == nil { // an entry for nothing: drop it
				fix = func() error { return changes.Delete(key) }
			}
			ac.problem(CheckUID, eobj, "UID 0 is not a valid UID", fix)
			continue
		}
		mv := msgs.Get(k[8:12])
		switch {
		case mv != nil && tomb && len(mv) >= 8 && binary.BigEndian.Uint64(mv) == modseq:
			ac.problem(CheckTombstone, eobj, "is a tombstone for a message that exists (at its modseq)",
				func() error { return changes.Put(key, []byte{0}) })
		case mv != nil && tomb:
			ac.problem(CheckTombstone, eobj, "is a tombstone for a message that exists", func() error { return changes.Delete(key) })
		case mv != nil && len(mv) >= 8 && binary.BigEndian.Uint64(mv) != modseq:
			ac.problem(CheckChangeLog, eobj, fmt.Sprintf("is stale: the message is at modseq %d", binary.BigEndian.Uint64(mv)),
				func() error { return changes.Delete(key) })
		case mv == nil && tomb:
			tombs[uid] = append(tombs[uid], modseq)
		case mv == nil:
			vanished[uid] = append(vanished[uid], modseq)
		}
	}
	for _, uid := range sortedKeys(tombs) {
		ms := tombs[uid]
		if len(ms) < 2 {
			continue
		}
		slices.Sort(ms)
		keep := ms[len(ms)-1]
		ac.problem(CheckTombstone, fmt.Sprintf("%s UID %d", obj, uid), fmt.Sprintf("has %d tombstones; one (modseq %d) is enough", len(ms), keep),
			func() error {
				for _, m := range ms[:len(ms)-1] {
					if err := changes.Delete(changeKey(m, uid)); err != nil {
						return err
					}
				}
				return nil
			})
	}
	for _, uid := range sortedKeys(vanished) {
		ms := vanished[uid]
		slices.Sort(ms)
		_, hasTomb := tombs[uid]
		ac.problem(CheckChangeLog, fmt.Sprintf("%s UID %d", obj, uid), "has a change-log entry but no message and no tombstone: syncing clients are not told it is gone",
			func() error {
				for i, m := range ms {
					if i == len(ms)-1 && !hasTomb {
						if err := changes.Put(changeKey(m, uid), []byte{1}); err != nil { // it was expunged
							return err
						}
						continue
					}
					if err := changes.Delete(changeKey(m, uid)); err != nil {
						return err
					}
				}
				return nil
			})
	}

	// Counters, and the UIDNEXT and HIGHESTMODSEQ marks, against the records.
	fixInfo := func() error { return putJSON(b, keyInfo, info) }
	fixed := false
	once := func() error {
		if fixed {
			return nil
		}
		fixed = true
		return fixInfo()
	}
	top := max(maxUID, maxLogged)
	if top != 0 && top >= info.UIDNext {
		if top == ^uint32(0) {
			ac.problem(CheckUID, obj, fmt.Sprintf("UIDNEXT is %d, but UID %d exists (and no higher UID is possible)", info.UIDNext, top), nil)
		} else {
			ac.problem(CheckUID, obj, fmt.Sprintf("UIDNEXT is %d, but UID %d exists: a new message would reuse a UID", info.UIDNext, top), once)
			if ac.repair {
				info.UIDNext = top + 1
			}
		}
	}
	if maxModSeq > info.HighestModSeq {
		ac.problem(CheckModSeq, obj, fmt.Sprintf("HIGHESTMODSEQ is %d, below modseq %d in use: syncing clients miss changes", info.HighestModSeq, maxModSeq), once)
		if ac.repair {
			info.HighestModSeq = maxModSeq
		}
	}
	if len(unlisted) > 0 {
		ac.problem(CheckRecord, obj, fmt.Sprintf("keyword list lacks %q, set on its messages: FLAGS would not name them", unlisted), once)
		if ac.repair {
			info.Keywords = append(info.Keywords, unlisted...)
		}
	}
	if ac.layout2 && info.RecentUID > info.UIDNext {
		ac.problem(CheckUID, obj, fmt.Sprintf("first unclaimed \\Recent UID %d is above UIDNEXT %d: new messages would never be \\Recent", info.RecentUID, info.UIDNext), once)
		if ac.repair {
			info.RecentUID = info.UIDNext
		}
	}
	if info.PurgedModSeq > info.HighestModSeq {
		ac.problem(CheckModSeq, obj, fmt.Sprintf("purged modseq %d is above HIGHESTMODSEQ %d", info.PurgedModSeq, info.HighestModSeq), nil)
	}
	if info.Messages != count || info.Unseen != unseen || info.Deleted != deleted || info.Size != size {
		ac.problem(CheckCounter, obj, fmt.Sprintf("counters say %d messages, %d unseen, %d deleted, %d bytes; the records %d, %d, %d, %d",
			info.Messages, info.Unseen, info.Deleted, info.Size, count, unseen, deleted, size), once)
		if ac.repair {
			info.Messages, info.Unseen, info.Deleted, info.Size = count, unseen, deleted, size
		}
	}
	return size, max(info.HighestModSeq, maxModSeq)
}

// checkBlobs compares reference counts with the references found. A body
// no message refers to any more waits, with reference count 0, on the
// purge list until no session can address it; one that is not there is
// never freed. Repair puts such bodies on the list (at modseq, the
// account's latest) and leaves the freeing to the purger, which knows the
// sessions; without a purge list (layout 1) it deletes them.
func (ac *accountCheck) checkBlobs(t *atx, blobs map[uint64]*blobState, purging map[uint64]bool, modseq uint64) {
	b := blobsOf(t)
	purge := t.Bucket(bucketPurge)
	toPurge := func(id uint64) func() error {
		return func() error {
			if purge == nil {
				return deleteBlob(t, id)
			}
			k := blobKey(id, infoChunk)
			v := append([]byte(nil), b.Get(k)...)
			binary.BigEndian.PutUint32(v, 0)
			if err := b.Put(k, v); err != nil {
				return err
			}
			return purge.Put(purgeKey(modseq, id), nil)
		}
	}
	var maxID uint64
	for _, id := range sortedKeys(blobs) {
		bs := blobs[id]
		maxID = max(maxID, id)
		obj := fmt.Sprintf("blob %d", id)
		switch {
		case bs.refs == 0 && !bs.hasInfo:
			ac.problem(CheckBlobOrphan, obj, fmt.Sprintf("has chunks but no info record, and no message refers to it (%d bytes)", bs.size),
				func() error { return deleteBlob(t, id) })
		case bs.refs == 0 && bs.refcount == 0 && purge != nil && purging[id]:
			// Expunged, waiting for the purger: as it should be.
		case bs.refs == 0 && bs.refcount == 0 && purge != nil:
			ac.problem(CheckBlobOrphan, obj, fmt.Sprintf("is referred to by no message and is not on the purge list: it is never freed (%d bytes)", bs.size),
				toPurge(id))
		case bs.refs == 0:
			ac.problem(CheckBlobOrphan, obj, fmt.Sprintf("has reference count %d, but no message refers to it: it is never freed (%d bytes)", bs.refcount, bs.size),
				toPurge(id))
		case bs.hasInfo && bs.refcount != bs.refs:
			refs := bs.refs
			ac.problem(CheckBlobRefs, obj, fmt.Sprintf("has reference count %d, but %d messages refer to it", bs.refcount, refs),
				func() error {
					k := blobKey(id, infoChunk)
					v := append([]byte(nil), b.Get(k)...)
					binary.BigEndian.PutUint32(v, refs)
					return b.Put(k, v)
				})
		}
	}
	if seq := b.Sequence(); maxID > seq {
		ac.problem(CheckSequence, "blob IDs", fmt.Sprintf("next blob ID is %d, but blob %d exists: a new message would overwrite its body", seq+1, maxID),
			func() error { return b.SetSequence(maxID) })
	}
}

// checkTail checks the tail of the tailed bucket name in parent: it needs
// its main bucket, and every key in it must sort after every key of main,
// or lookups would go to the wrong bucket. Repair moves it into main.
func (ac *accountCheck) checkTail(obj string, parent *bolt.Bucket, name []byte) {
	tail := parent.Bucket(tailOf(name))
	if tail == nil {
		return
	}
	t := openTailed(parent, name)
	if t == nil {
		ac.problem(CheckRecord, obj, "has a tail bucket but no main bucket", nil)
		return
	}
	first, _ := tail.Cursor().First()
	last, _ := t.main.Cursor().Last()
	if first != nil && last != nil && bytes.Compare(first, last) <= 0 {
		ac.problem(CheckRecord, obj, fmt.Sprintf("has newest keys (from %x) that do not sort after the others (up to %x)", first, last),
			t.flush)
	}
}

// keywordsWellFormed reports whether p is a sequence of length-prefixed
// keywords that ends exactly at the end of p (see encodeMessage).
func keywordsWellFormed(p []byte) bool {
	for len(p) > 0 {
		n := int(p[0])
		if 1+n > len(p) {
			return false
		}
		p = p[1+n:]
	}
	return true
}

func sortedKeys[K uint32 | uint64, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
