package imapd

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/roostmail/roost/backend"
)

// selected is a session's view of its selected mailbox: the
// sequence-number→UID map the client knows (seq n is uids[n-1]) and the
// highest modseq of the mailbox's change log it has caught up with.
//
// Other sessions' changes reach the client in modseq order, from the
// change log, when imapserver polls (after each command) or at once in
// IDLE, woken by the watcher: new UIDs as EXISTS, flag changes of known
// UIDs as FETCH (UID FLAGS), tombstones of known UIDs as EXPUNGE. Where
// EXPUNGE may not be sent (during FETCH, STORE, SEARCH: RFC 9051 §7.5.1),
// an expunged message stays in the map as a ghost until it may.
type selected struct {
	id       uint64
	name     string
	readOnly bool
	watch    *backend.Watcher

	uids    []uint32
	ghosts  map[uint32]bool // expunged, EXPUNGE not yet sent
	modseq  uint64          // the change log is reported up to here
	own     map[uint32]uint64
	saved   []uint32 // SEARCHRES result (RFC 5182), as UIDs
	deleted bool     // the mailbox was deleted
}

func (sel *selected) close() { sel.watch.Close() }

// Select implements imapserver.Session (SELECT and EXAMINE).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	mb, err := s.user.Mailbox(name)
	if err != nil {
		return nil, s.mapErr("select", err, false)
	}
	// Watch first, then read the counters, then the UIDs: no change can
	// fall between them unseen (one seen twice is harmless).
	watch := s.user.Watch(mb.ID)
	mb, err = s.user.MailboxByID(mb.ID)
	if err != nil {
		watch.Close()
		return nil, s.mapErr("select", err, false)
	}
	uids, err := s.user.UIDs(mb.ID)
	if err != nil {
		watch.Close()
		return nil, s.mapErr("select", err, false)
	}
	sel := &selected{
		id:       mb.ID,
		name:     mb.Name,
		readOnly: options.ReadOnly,
		watch:    watch,
		uids:     uids,
		modseq:   mb.HighestModSeq,
		ghosts:   make(map[uint32]bool),
		own:      make(map[uint32]uint64),
	}
	s.sel = sel
	uidNext := mb.UIDNext
	if n := len(uids); n > 0 && uids[n-1] >= uidNext {
		uidNext = uids[n-1] + 1
	}
	data := &imap.SelectData{
		Flags:          []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft},
		PermanentFlags: []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, imap.FlagWildcard},
		NumMessages:    uint32(len(uids)),
		UIDNext:        imap.UID(uidNext),
		UIDValidity:    mb.UIDValidity,
	}
	if sel.readOnly {
		data.PermanentFlags = []imap.Flag{}
	}
	if s.conn.EnabledCaps().Has(imap.CapIMAP4rev2) {
		// RFC 9051 §6.3.2: a LIST response with the mailbox name.
		data.List = &imap.ListData{Delim: '/', Mailbox: mb.Name}
		if mb.SpecialUse != "" {
			data.List.Attrs = []imap.MailboxAttr{imap.MailboxAttr(mb.SpecialUse)}
		}
	} else if mb.Unseen > 0 {
		// IMAP4rev1's OK [UNSEEN n] (RFC 3501 §6.3.1).
		data.FirstUnseenSeqNum = s.firstUnseen(sel)
	}
	s.log.Debug("selected", "mailbox", mb.Name, "read_only", sel.readOnly, "messages", len(uids))
	return data, nil
}

var errStop = errors.New("stop")

func (s *session) firstUnseen(sel *selected) uint32 {
	var uid uint32
	s.user.Messages(sel.id, 1, ^uint32(0), func(m backend.Message) error {
		if !m.Has(backend.FlagSeen) {
			uid = m.UID
			return errStop
		}
		return nil
	})
	if seq, ok := sel.seqOf(uid); ok {
		return seq
	}
	return 0
}

// Unselect implements imapserver.Session (UNSELECT, and CLOSE after its
// silent expunge).
func (s *session) Unselect() error {
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	return nil
}

// Poll implements imapserver.Session: after each command, the changes of
// other sessions (and deliveries) since the last report.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	return s.sync(w, allowExpunge, false)
}

// Idle implements imapserver.Session (RFC 2177): changes are pushed as soon
// as the backend's change bus wakes the watcher.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	done := make(chan struct{})
	s.idleDone = done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.idleDone = nil
		s.mu.Unlock()
		close(done)
	}()
	if s.sel == nil {
		select {
		case <-stop:
		case <-s.quit:
		}
		return nil
	}
	if err := s.sync(w, true, true); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return nil
		case <-s.quit:
			return nil
		case <-s.sel.watch.C():
			if err := s.sync(w, true, true); err != nil {
				return err
			}
		}
	}
}

// sync reports the mailbox's changes since sel.modseq. force skips the
// shortcut of trusting an empty wake-up channel.
func (s *session) sync(w *imapserver.UpdateWriter, allowExpunge, force bool) error {
	// imapserver may poll while an Idle it stopped is still finishing (a
	// client that disconnects in IDLE): one sync at a time.
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	sel := s.sel
	if sel.deleted {
		return nil
	}
	woken := force
	select {
	case <-sel.watch.C():
		woken = true
	default:
	}
	if !woken {
		// The watcher has seen no commit since the last sync; only ghosts
		// may be owed.
		if allowExpunge && len(sel.ghosts) > 0 {
			return s.flushGhosts(w)
		}
		return nil
	}
	changes, err := s.user.ChangesSince(sel.id, sel.modseq)
	if errors.Is(err, backend.ErrNoSuchMailbox) {
		// The selected mailbox was deleted (by this session or another):
		// there is no way to tell the client but to close (as Dovecot does).
		sel.deleted = true
		s.log.Info("selected mailbox deleted; closing", "mailbox", sel.name)
		s.w.closeWithBye("Selected mailbox was deleted, have to disconnect")
		return fmt.Errorf("imapd: selected mailbox %q was deleted", sel.name)
	}
	if err != nil {
		return s.mapErr("sync", err, false)
	}
	if allowExpunge && len(sel.ghosts) > 0 {
		// Expunges owed from before come first: they are older.
		if err := s.flushGhosts(w); err != nil {
			return err
		}
	}
	if len(changes) == 0 {
		return nil
	}
	last := uint32(0)
	if n := len(sel.uids); n > 0 {
		last = sel.uids[n-1]
	}
	known := func(uid uint32) bool { return uid <= last && !sel.ghosts[uid] && sel.has(uid) }
	// What to fetch and how much is owed.
	var flagged []uint32
	pending := len(sel.ghosts)
	for _, c := range changes {
		switch {
		case !known(c.UID):
		case c.Expunged:
			pending++
		case sel.own[c.UID] != c.ModSeq: // not this session's own change, already answered
			flagged = append(flagged, c.UID)
			pending++
		}
	}
	if pending > s.srv.opts.MaxPendingUpdates {
		s.log.Warn("too many pending updates; closing", "mailbox", sel.name, "pending", pending, "limit", s.srv.opts.MaxPendingUpdates)
		s.w.closeWithBye("Too many changes to report; please reconnect")
		return fmt.Errorf("imapd: %d pending updates exceed MaxPendingUpdates", pending)
	}
	flagsOf := make(map[uint32][]string, len(flagged))
	if len(flagged) > 0 {
		msgs, err := s.user.MessagesByUID(sel.id, flagged)
		if err != nil {
			return s.mapErr("sync", err, false)
		}
		for _, m := range msgs {
			flagsOf[m.UID] = m.Flags
		}
	}
	// Report in modseq order. Runs of expunges go out in one pass, runs of
	// new messages as one EXISTS.
	var gone []uint32
	added := false
	flush := func() error {
		if len(gone) > 0 {
			if err := s.expungeKnown(w, gone); err != nil {
				return err
			}
			gone = gone[:0]
		}
		if added {
			added = false
			return w.WriteNumMessages(uint32(len(sel.uids)))
		}
		return nil
	}
	for _, c := range changes {
		sel.modseq = max(sel.modseq, c.ModSeq)
		switch {
		case c.UID > last && !c.Expunged:
			if len(gone) > 0 {
				if err := flush(); err != nil {
					return err
				}
			}
			sel.uids = append(sel.uids, c.UID)
			added = true
		case !known(c.UID):
			// Never announced, or already reported.
		case c.Expunged && allowExpunge:
			if added {
				if err := flush(); err != nil {
					return err
				}
			}
			gone = append(gone, c.UID)
		case c.Expunged:
			sel.ghosts[c.UID] = true
		case sel.own[c.UID] == c.ModSeq:
		default:
			f, ok := flagsOf[c.UID]
			if !ok {
				continue // expunged since: its tombstone comes later
			}
			if err := flush(); err != nil {
				return err
			}
			seq, _ := sel.seqOf(c.UID)
			if err := w.WriteMessageFlags(seq, imap.UID(c.UID), imapFlags(f)); err != nil {
				return err
			}
		}
	}
	clear(sel.own)
	return flush()
}

// flushGhosts sends EXPUNGE for the messages expunged meanwhile.
func (s *session) flushGhosts(w interface{ WriteExpunge(uint32) error }) error {
	sel := s.sel
	gone := make([]uint32, 0, len(sel.ghosts))
	for uid := range sel.ghosts {
		gone = append(gone, uid)
	}
	clear(sel.ghosts)
	return s.expungeKnown(w, gone)
}

// expungeKnown removes uids (known to the client) from the map and sends
// an EXPUNGE for each, in one pass.
func (s *session) expungeKnown(w interface{ WriteExpunge(uint32) error }, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	sel := s.sel
	slices.Sort(uids)
	var seqs []uint32
	kept := sel.uids[:0]
	j := 0
	for i, uid := range sel.uids {
		for j < len(uids) && uids[j] < uid {
			j++
		}
		if j < len(uids) && uids[j] == uid {
			// Each EXPUNGE renumbers the messages after it (RFC 9051 §7.5.1).
			seqs = append(seqs, uint32(i+1-len(seqs)))
			delete(sel.ghosts, uid)
			continue
		}
		kept = append(kept, uid)
	}
	sel.uids = kept
	for _, seq := range seqs {
		if err := w.WriteExpunge(seq); err != nil {
			return err
		}
	}
	return nil
}

func (sel *selected) has(uid uint32) bool {
	_, ok := sel.seqOf(uid)
	return ok
}

// seqOf returns the sequence number of uid.
func (sel *selected) seqOf(uid uint32) (uint32, bool) {
	i, ok := slices.BinarySearch(sel.uids, uid)
	return uint32(i + 1), ok
}

// target is one message a command addresses.
type target struct {
	seq uint32
	uid uint32
}

// resolve turns a sequence or UID set (with "*" and SEARCHRES "$") into the
// existing messages it names, in ascending order. Ghosts are left out.
func (s *session) resolve(numSet imap.NumSet) ([]target, error) {
	sel := s.sel
	n := len(sel.uids)
	var spans [][2]int // index ranges, inclusive
	switch set := numSet.(type) {
	case imap.SeqSet:
		for _, r := range set {
			// A number beyond the last message is an error, unless the range
			// ends in "*" ("5:*" is "*:5": RFC 9051 §9, seq-range).
			if r.Start != 0 && r.Stop != 0 && (r.Start > uint32(n) || r.Stop > uint32(n)) {
				return nil, bad("Invalid sequence number (there are %d messages)", n)
			}
			start, stop := staticRange(r.Start, r.Stop, uint32(n))
			if start >= 1 {
				spans = append(spans, [2]int{int(start) - 1, int(stop) - 1})
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			var out []target
			for _, uid := range sel.saved {
				if i, ok := slices.BinarySearch(sel.uids, uid); ok && !sel.ghosts[uid] {
					out = append(out, target{seq: uint32(i + 1), uid: uid})
				}
			}
			return out, nil
		}
		maxUID := uint32(0)
		if n > 0 {
			maxUID = sel.uids[n-1]
		}
		for _, r := range set {
			start, stop := staticRange(uint32(r.Start), uint32(r.Stop), maxUID)
			lo, _ := slices.BinarySearch(sel.uids, start)
			hi := sort.Search(n, func(i int) bool { return sel.uids[i] > stop }) - 1
			if lo <= hi {
				spans = append(spans, [2]int{lo, hi})
			}
		}
	default:
		return nil, bad("Unsupported number set")
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var out []target
	next := 0 // first index not yet emitted
	for _, sp := range spans {
		for i := max(sp[0], next); i <= sp[1]; i++ {
			if uid := sel.uids[i]; !sel.ghosts[uid] {
				out = append(out, target{seq: uint32(i + 1), uid: uid})
			}
		}
		next = max(next, sp[1]+1)
	}
	return out, nil
}

// staticRange resolves "*" (0 in go-imap) to max; a range is unordered
// (RFC 9051 §9: "4:2" is "2:4").
func staticRange(start, stop, max uint32) (uint32, uint32) {
	if start == 0 {
		start = max
	}
	if stop == 0 {
		stop = max
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
}

func targetUIDs(ts []target) []uint32 {
	out := make([]uint32, len(ts))
	for i, t := range ts {
		out[i] = t.uid
	}
	return out
}

func (s *session) checkWritable() error {
	if s.sel.readOnly {
		return no(codeReadOnly, "Mailbox is read-only (EXAMINE)")
	}
	return nil
}

// Store implements imapserver.Session (RFC 9051 §6.4.6).
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	if s.sel == nil {
		return errNotSelected
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	fl, err := storeFlags(flags.Flags)
	if err != nil {
		return err
	}
	ts, err := s.resolve(numSet)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return nil
	}
	op := backend.FlagsSet
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = backend.FlagsAdd
	case imap.StoreFlagsDel:
		op = backend.FlagsRemove
	}
	uids := targetUIDs(ts)
	updated, _, err := s.user.StoreFlags(s.sel.id, uids, op, fl, 0)
	if err != nil {
		return s.mapErr("store", err, false)
	}
	for _, m := range updated {
		s.sel.own[m.UID] = m.ModSeq
	}
	if flags.Silent {
		return nil
	}
	// Every addressed message gets its flags, changed or not.
	msgs, err := s.user.MessagesByUID(s.sel.id, uids)
	if err != nil {
		return s.mapErr("store", err, false)
	}
	for _, m := range msgs {
		seq, ok := s.sel.seqOf(m.UID)
		if !ok {
			continue
		}
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(m.UID))
		rw.WriteFlags(imapFlags(m.Flags))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Expunge implements imapserver.Session: EXPUNGE, UID EXPUNGE (RFC 4315)
// and CLOSE's silent expunge.
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.sel == nil {
		return errNotSelected
	}
	if s.sel.readOnly {
		if s.w.command() == "CLOSE" {
			// CLOSE on a read-only mailbox expunges nothing (RFC 9051 §6.4.1).
			return nil
		}
		return s.checkWritable()
	}
	var only []uint32
	if uids != nil {
		ts, err := s.resolve(*uids)
		if err != nil {
			return err
		}
		if len(ts) == 0 {
			return nil
		}
		only = targetUIDs(ts)
	}
	gone, err := s.user.Expunge(s.sel.id, only, true)
	if err != nil {
		return s.mapErr("expunge", err, false)
	}
	// Messages the client does not know yet are not announced at all.
	known := gone[:0]
	for _, uid := range gone {
		if s.sel.has(uid) {
			known = append(known, uid)
		}
	}
	for uid := range s.sel.ghosts {
		known = append(known, uid)
	}
	clear(s.sel.ghosts)
	return s.expungeKnown(w, known)
}

// Copy implements imapserver.Session (RFC 9051 §6.4.7, UIDPLUS COPYUID).
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	if s.sel == nil {
		return nil, errNotSelected
	}
	ts, err := s.resolve(numSet)
	if err != nil {
		return nil, err
	}
	res, err := s.user.Copy(s.sel.id, targetUIDs(ts), dest, false)
	if err != nil {
		return nil, s.mapErr("copy", err, true)
	}
	return copyData(res), nil
}

func copyData(res backend.CopyResult) *imap.CopyData {
	if len(res.DestUIDs) == 0 {
		return nil
	}
	var src, dst imap.UIDSet
	for i := range res.SourceUIDs {
		src.AddNum(imap.UID(res.SourceUIDs[i]))
		dst.AddNum(imap.UID(res.DestUIDs[i]))
	}
	return &imap.CopyData{UIDValidity: res.UIDValidity, SourceUIDs: src, DestUIDs: dst}
}

// Move implements imapserver.SessionMove (RFC 6851): atomic in the store.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.sel == nil {
		return errNotSelected
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	if mb, err := s.user.Mailbox(dest); err == nil && mb.ID == s.sel.id {
		return no(imap.ResponseCodeCannot, "Source and destination are the same mailbox")
	}
	ts, err := s.resolve(numSet)
	if err != nil {
		return err
	}
	res, err := s.user.Copy(s.sel.id, targetUIDs(ts), dest, true)
	if err != nil {
		return s.mapErr("move", err, true)
	}
	if data := copyData(res); data != nil {
		if err := w.WriteCopyData(data); err != nil {
			return err
		}
	}
	return s.expungeKnown(w, res.SourceUIDs)
}
