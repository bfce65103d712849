package imapd

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/roostmail/roost/backend"
)

// selected is a session's view of its selected mailbox: the
// sequence-number→UID map the client knows (seq n is uids[n-1]) and the
// highest modseq of the mailbox's change log it has caught up with.
//
// Other sessions' changes reach the client in modseq order, from the
// change log, after each command or at once in IDLE, woken by the
// watcher: new UIDs as EXISTS, flag changes of known UIDs as FETCH (UID
// FLAGS [MODSEQ]), tombstones of known UIDs as EXPUNGE (VANISHED once
// QRESYNC is enabled). Where EXPUNGE may not be sent (after FETCH, STORE,
// SEARCH: RFC 9051 §7.5.1), an expunged message stays in the map as a
// ghost until it may; a FETCH of a ghost answers with what is left of it
// or not at all (RFC 2180 §4.1).
type selected struct {
	id          uint64
	name        string
	uidValidity uint32
	readOnly    bool
	watch       *backend.Watcher

	uids    []uint32
	ghosts  map[uint32]bool // expunged, EXPUNGE not yet sent
	modseq  uint64          // the change log is reported up to here
	own     map[uint32]uint64
	saved   []uint32 // SEARCHRES result (RFC 5182), as UIDs
	deleted bool     // the mailbox was deleted

	// keywords announced in FLAGS (a FETCH never shows one before).
	keywords []string
	// recent are the UIDs this (IMAP4rev1) session holds \Recent (RFC 3501
	// §2.3.2), as ranges claimed from the backend.
	recent []backend.UIDRange
	// pin keeps expunged bodies readable while the client may address them.
	pin *backend.Pin
}

func (sel *selected) close() {
	sel.watch.Close()
	if sel.pin != nil {
		sel.pin.Close()
	}
}

func (sel *selected) isRecent(uid uint32) bool {
	for _, r := range sel.recent {
		if uid >= r.Start && uid <= r.Stop {
			return true
		}
	}
	return false
}

// recentCount counts the known messages held \Recent.
func (sel *selected) recentCount() int {
	n := 0
	for _, r := range sel.recent {
		lo, _ := slices.BinarySearch(sel.uids, r.Start)
		hi, found := slices.BinarySearch(sel.uids, r.Stop)
		if found {
			hi++
		}
		n += max(hi-lo, 0)
	}
	return n
}

// claimRecent takes the messages no session has seen yet as this session's
// \Recent ones (an IMAP4rev1 SELECT, not EXAMINE).
func (s *session) claimRecent(sel *selected) {
	if s.rev2 || sel.readOnly {
		return
	}
	first, next, err := s.user.ClaimRecent(sel.id)
	if err != nil || first >= next {
		return
	}
	sel.recent = append(sel.recent, backend.UIDRange{Start: first, Stop: next - 1})
}

var systemFlagList = []string{`\Answered`, `\Flagged`, `\Deleted`, `\Seen`, `\Draft`}

// selectParams are SELECT's and EXAMINE's parameters (RFC 7162).
type selectParams struct {
	condstore bool
	qresync   *qresyncParams
}

type qresyncParams struct {
	uidValidity uint32
	modseq      uint64
	knownUIDs   *numSet
	seqMatch    *[2]numSet // known sequence numbers, their UIDs
}

func (p *parser) selectParams() (selectParams, error) {
	var sp selectParams
	err := p.list(func() error {
		kw, err := p.keyword()
		if err != nil {
			return err
		}
		switch kw {
		case "CONDSTORE":
			sp.condstore = true
		case "QRESYNC":
			if err := p.sp(); err != nil {
				return err
			}
			q := &qresyncParams{}
			if err := p.expect('('); err != nil {
				return err
			}
			if q.uidValidity, err = p.nzNumber(); err != nil {
				return err
			}
			if err := p.sp(); err != nil {
				return err
			}
			if q.modseq, err = p.number64(); err != nil {
				return err
			}
			if q.modseq == 0 {
				return badf("QRESYNC modseq must be non-zero")
			}
			if p.consume(' ') {
				if p.peek() != '(' {
					set, err := p.seqSet()
					if err != nil {
						return err
					}
					if set.saved {
						return badf("$ is not allowed here")
					}
					q.knownUIDs = &set
					if !p.consume(' ') {
						goto closeParen
					}
				}
				if err := p.expect('('); err != nil {
					return err
				}
				seqs, err := p.seqSet()
				if err != nil {
					return err
				}
				if err := p.sp(); err != nil {
					return err
				}
				uids, err := p.seqSet()
				if err != nil {
					return err
				}
				if err := p.expect(')'); err != nil {
					return err
				}
				q.seqMatch = &[2]numSet{seqs, uids}
			}
		closeParen:
			if err := p.expect(')'); err != nil {
				return err
			}
			sp.qresync = q
		default:
			return badf("Unknown SELECT parameter %s", kw)
		}
		return nil
	})
	return sp, err
}

// cmdSelect implements SELECT and EXAMINE (RFC 9051 §6.3.2-3, RFC 3501
// §6.3.1-2, RFC 7162 §3.1.8 and §3.2.5).
func cmdSelect(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	name, err := p.mailbox()
	if err != nil {
		return err
	}
	var params selectParams
	if p.consume(' ') {
		if params, err = p.selectParams(); err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if params.qresync != nil && !s.qresync {
		return badf("QRESYNC is not enabled")
	}
	if s.sel != nil {
		// RFC 7162 §3.2.11: a CLOSED response tells a QRESYNC client where
		// the old mailbox's responses end.
		s.sel.close()
		s.sel = nil
		s.contexts = nil
		s.state = stateAuth
		if s.qresync {
			s.c.untagged("OK [CLOSED] Previous mailbox closed")
		}
	}
	if params.condstore {
		s.condstore = true
	}
	readOnly := s.cmd == "EXAMINE"
	mb, err := s.user.Mailbox(name)
	if err != nil {
		return s.mapErr("select", err, false)
	}
	// Pin and watch first, then read the counters, then the UIDs: no change
	// can fall between them unseen (one seen twice is harmless), and no body
	// the client learns of can vanish under it (RFC 2180 §4.1).
	pin, err := s.user.Pin()
	if err != nil {
		return s.mapErr("select", err, false)
	}
	watch := s.user.Watch(mb.ID)
	mb, err = s.user.MailboxByID(mb.ID)
	if err != nil {
		watch.Close()
		pin.Close()
		return s.mapErr("select", err, false)
	}
	uids, err := s.user.UIDs(mb.ID)
	if err != nil {
		watch.Close()
		pin.Close()
		return s.mapErr("select", err, false)
	}
	sel := &selected{
		id:          mb.ID,
		name:        mb.Name,
		uidValidity: mb.UIDValidity,
		readOnly:    readOnly,
		watch:       watch,
		uids:        uids,
		modseq:      mb.HighestModSeq,
		ghosts:      make(map[uint32]bool),
		own:         make(map[uint32]uint64),
		pin:         pin,
		keywords:    slices.Clone(mb.Keywords),
	}
	s.claimRecent(sel)
	uidNext := mb.UIDNext
	if n := len(uids); n > 0 && uids[n-1] >= uidNext {
		uidNext = uids[n-1] + 1
	}
	c := s.c
	c.untagged("%d EXISTS", len(uids))
	if !s.rev2 {
		n := sel.recentCount()
		if readOnly {
			if k, err := s.user.RecentCount(mb.ID); err == nil {
				n = int(k)
			}
		}
		c.untagged("%d RECENT", n)
	}
	s.writeFlags(sel)
	c.untagged("OK [UIDVALIDITY %d] UIDs valid", mb.UIDValidity)
	c.untagged("OK [UIDNEXT %d] Predicted next UID", uidNext)
	if !s.rev2 && mb.Unseen > 0 {
		// IMAP4rev1's OK [UNSEEN n] (RFC 3501 §6.3.1).
		if seq := s.firstUnseen(sel); seq > 0 {
			c.untagged("OK [UNSEEN %d] First unseen", seq)
		}
	}
	if s.condstore {
		c.untagged("OK [HIGHESTMODSEQ %d] Highest", max(mb.HighestModSeq, 1))
	} else {
		c.untagged("OK [HIGHESTMODSEQ %d] Highest", max(mb.HighestModSeq, 1))
	}
	if s.rev2 {
		// RFC 9051 §6.3.2: a LIST response with the mailbox name.
		b := c.buf()
		b = append(b, `* LIST (`...)
		b = append(b, mb.SpecialUse...)
		b = append(b, `) "/" `...)
		b = appendMailbox(b, mb.Name, true)
		c.setBuf(append(b, "\r\n"...))
	}
	s.sel = sel
	s.state = stateSelected
	if q := params.qresync; q != nil && q.uidValidity == mb.UIDValidity {
		if err := s.qresyncSelect(sel, mb, q); err != nil {
			return err
		}
	}
	s.log.Debug("selected", "mailbox", mb.Name, "read_only", readOnly, "messages", len(uids))
	if readOnly {
		return okf("READ-ONLY", "%s completed", s.cmd)
	}
	return okf("READ-WRITE", "%s completed", s.cmd)
}

// writeFlags sends FLAGS and PERMANENTFLAGS: the system flags and the
// keywords announced so far; \* says new keywords may be made.
func (s *session) writeFlags(sel *selected) {
	flags := append(slices.Clone(systemFlagList), sel.keywords...)
	b := s.c.buf()
	b = append(b, "* FLAGS "...)
	b = appendFlags(b, flags)
	b = append(b, "\r\n* OK [PERMANENTFLAGS "...)
	if sel.readOnly {
		b = append(b, "()"...)
	} else {
		b = appendFlags(b, append(flags, `\*`))
	}
	b = append(b, "] Permanent flags\r\n"...)
	s.c.setBuf(b)
}

// announceKeywords sends FLAGS again before a FETCH shows a keyword the
// client was not told of.
func (s *session) announceKeywords(flags []string) {
	sel := s.sel
	added := false
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			continue
		}
		known := false
		for _, k := range sel.keywords {
			if strings.EqualFold(k, f) {
				known = true
				break
			}
		}
		if !known {
			sel.keywords = append(sel.keywords, f)
			added = true
		}
	}
	if added {
		s.writeFlags(sel)
	}
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

// cmdUnselect implements UNSELECT (RFC 3691).
func cmdUnselect(s *session, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	s.unselect()
	return nil
}

func (s *session) unselect() {
	s.contexts = nil
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	s.state = stateAuth
}

// cmdClose implements CLOSE (RFC 9051 §6.4.1): a silent expunge, except
// in a read-only mailbox.
func cmdClose(s *session, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	if !s.sel.readOnly {
		if _, err := s.user.Expunge(s.sel.id, nil, true); err != nil && !errors.Is(err, backend.ErrNoSuchMailbox) {
			return s.mapErr("close", err, false)
		}
	}
	s.unselect()
	return nil
}

// sync reports the mailbox's changes since sel.modseq.
func (s *session) sync(allowExpunge bool) error { return s.syncForce(allowExpunge, false) }

// syncForce is sync; force skips the shortcut of trusting an empty wake-up
// channel.
func (s *session) syncForce(allowExpunge, force bool) error {
	sel := s.sel
	if sel == nil || sel.deleted {
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
			s.flushGhosts()
		}
		return nil
	}
	changes, err := s.user.ChangesSince(sel.id, sel.modseq)
	if errors.Is(err, backend.ErrNoSuchMailbox) && s.accountDeleted() {
		s.log.Info("account deleted; closing session")
		s.c.bye("Account deleted")
		return errCloseConn
	}
	if errors.Is(err, backend.ErrNoSuchMailbox) {
		// The selected mailbox was deleted (by this session or another):
		// there is no way to tell the client but to close (as Dovecot does).
		sel.deleted = true
		s.log.Info("selected mailbox deleted; closing", "mailbox", sel.name)
		s.c.bye("Selected mailbox was deleted, have to disconnect")
		return errCloseConn
	}
	if err != nil {
		return s.mapErr("sync", err, false)
	}
	if allowExpunge && len(sel.ghosts) > 0 {
		// Expunges owed from before come first: they are older.
		s.flushGhosts()
	}
	if len(changes) == 0 {
		return nil
	}
	last := uint32(0)
	if n := len(sel.uids); n > 0 {
		last = sel.uids[n-1]
	}
	known := func(uid uint32) bool { return uid <= last && !sel.ghosts[uid] && sel.has(uid) }
	var flagged []uint32
	pending := len(sel.ghosts)
	// NOTIFY SET with a SELECTED group without FlagChange: flag changes
	// are not reported (RFC 5465 §5.1).
	noFlags := s.suppressFlags()
	for _, c := range changes {
		switch {
		case !known(c.UID):
		case c.Expunged:
			pending++
		case noFlags:
		case sel.own[c.UID] != c.ModSeq: // not this session's own change, already answered
			flagged = append(flagged, c.UID)
			pending++
		}
	}
	if pending > s.srv.opts.MaxPendingUpdates {
		s.log.Warn("too many pending updates; closing", "mailbox", sel.name, "pending", pending, "limit", s.srv.opts.MaxPendingUpdates)
		s.c.bye("Too many changes to report; please reconnect")
		return errCloseConn
	}
	msgOf := make(map[uint32]backend.Message, len(flagged))
	if len(flagged) > 0 {
		msgs, err := s.user.MessagesByUID(sel.id, flagged)
		if err != nil {
			return s.mapErr("sync", err, false)
		}
		for _, m := range msgs {
			msgOf[m.UID] = m
		}
	}
	// Report in modseq order. New messages are gathered and added in UID
	// order (the change log orders them by their latest modseq, which a
	// flag change moves), and announced by one EXISTS.
	var gone, added, fresh []uint32
	fetchNew := s.notify != nil && s.notify.fetch != nil
	flush := func() {
		if len(gone) > 0 {
			s.expungeKnown(gone)
			gone = gone[:0]
		}
		if len(added) > 0 {
			slices.Sort(added)
			sel.uids = append(sel.uids, added...)
			if fetchNew {
				fresh = append(fresh, added...)
			}
			added = added[:0]
			s.c.untagged("%d EXISTS", len(sel.uids))
			if !s.rev2 {
				// RFC 3501 §7.3.2: RECENT comes with EXISTS.
				s.claimRecent(sel)
				s.c.untagged("%d RECENT", sel.recentCount())
			}
		}
	}
	for _, c := range changes {
		sel.modseq = max(sel.modseq, c.ModSeq)
		switch {
		case c.UID > last && !c.Expunged:
			if len(gone) > 0 {
				flush()
			}
			added = append(added, c.UID)
		case !known(c.UID):
			// Never announced, or already reported.
		case c.Expunged && allowExpunge:
			if len(added) > 0 {
				flush()
			}
			gone = append(gone, c.UID)
		case c.Expunged:
			sel.ghosts[c.UID] = true
		case sel.own[c.UID] == c.ModSeq:
		default:
			m, ok := msgOf[c.UID]
			if !ok {
				continue // expunged since: its tombstone comes later
			}
			flush()
			seq, _ := sel.seqOf(c.UID)
			s.writeFlagsFetch(seq, &m, true)
		}
	}
	clear(sel.own)
	flush()
	if len(fresh) > 0 {
		// MessageNew's fetch attributes (RFC 5465 §5.2), numbered as the
		// client now knows the mailbox; a \Seen they set is this
		// session's own change.
		if err := s.notifyFetch(fresh); err != nil {
			return err
		}
	}
	if len(sel.ghosts) == 0 {
		// Every expunge up to here has been told: those bodies may go.
		sel.pin.Advance(sel.modseq)
	}
	return s.c.out.maybeFlush()
}

// writeFlagsFetch sends "* seq FETCH (UID u FLAGS (...) [MODSEQ (m)])".
func (s *session) writeFlagsFetch(seq uint32, m *backend.Message, withUID bool) {
	s.announceKeywords(m.Flags)
	b := s.c.buf()
	b = append(b, "* "...)
	b = appendNum(b, uint64(seq))
	b = append(b, " FETCH ("...)
	if withUID {
		b = append(b, "UID "...)
		b = appendNum(b, uint64(m.UID))
		b = append(b, ' ')
	}
	b = append(b, "FLAGS "...)
	b = s.appendMsgFlags(b, m)
	if s.condstore {
		b = append(b, " MODSEQ ("...)
		b = appendNum(b, m.ModSeq)
		b = append(b, ')')
	}
	s.c.setBuf(append(b, ")\r\n"...))
}

// appendMsgFlags writes a message's flags (and \Recent for a rev1 session
// that holds it recent).
func (s *session) appendMsgFlags(b []byte, m *backend.Message) []byte {
	b = append(b, '(')
	for i, f := range m.Flags {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f...)
	}
	if !s.rev2 && s.sel != nil && s.sel.isRecent(m.UID) {
		if len(m.Flags) > 0 {
			b = append(b, ' ')
		}
		b = append(b, `\Recent`...)
	}
	return append(b, ')')
}

// flushGhosts sends EXPUNGE for the messages expunged meanwhile.
func (s *session) flushGhosts() {
	sel := s.sel
	gone := make([]uint32, 0, len(sel.ghosts))
	for uid := range sel.ghosts {
		gone = append(gone, uid)
	}
	clear(sel.ghosts)
	s.expungeKnown(gone)
}

// expungeKnown removes uids (known to the client) from the map and sends
// an EXPUNGE for each (RFC 9051 §7.5.1), or one VANISHED (RFC 7162
// §3.2.10) once QRESYNC is enabled, in one pass.
func (s *session) expungeKnown(uids []uint32) {
	if len(uids) == 0 {
		return
	}
	sel := s.sel
	slices.Sort(uids)
	if len(s.contexts) > 0 {
		// Before the EXPUNGEs renumber: REMOVEFROM with the old numbers.
		s.contextsExpunged(uids)
	}
	var seqs, vanished []uint32
	kept := sel.uids[:0]
	j := 0
	for i, uid := range sel.uids {
		for j < len(uids) && uids[j] < uid {
			j++
		}
		if j < len(uids) && uids[j] == uid {
			// Each EXPUNGE renumbers the messages after it.
			seqs = append(seqs, uint32(i+1-len(seqs)))
			vanished = append(vanished, uid)
			delete(sel.ghosts, uid)
			continue
		}
		kept = append(kept, uid)
	}
	sel.uids = kept
	if len(vanished) == 0 {
		return
	}
	if s.qresync {
		b := s.c.buf()
		b = append(b, "* VANISHED "...)
		b = appendSet(b, vanished)
		s.c.setBuf(append(b, "\r\n"...))
		return
	}
	b := s.c.buf()
	for _, seq := range seqs {
		b = append(b, "* "...)
		b = appendNum(b, uint64(seq))
		b = append(b, " EXPUNGE\r\n"...)
	}
	s.c.setBuf(b)
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
// existing messages it names, in ascending order. Ghosts are included when
// withGhosts (FETCH answers them, RFC 2180 §4.1), else left out.
func (s *session) resolve(set numSet, uid bool) ([]target, error) {
	return s.resolveGhosts(set, uid, false)
}

func (s *session) resolveGhosts(set numSet, uid, withGhosts bool) ([]target, error) {
	sel := s.sel
	n := len(sel.uids)
	if set.saved {
		var out []target
		for _, u := range sel.saved {
			if i, ok := slices.BinarySearch(sel.uids, u); ok && (withGhosts || !sel.ghosts[u]) {
				out = append(out, target{seq: uint32(i + 1), uid: u})
			}
		}
		return out, nil
	}
	var spans [][2]int // index ranges, inclusive
	if !uid {
		for _, r := range set.ranges {
			// A number beyond the last message is an error, unless the range
			// ends in "*" ("5:*" is "*:5": RFC 9051 §9, seq-range).
			if r.start != 0 && r.stop != 0 && (r.start > uint32(n) || r.stop > uint32(n)) {
				return nil, badf("Invalid sequence number (there are %d messages)", n)
			}
			if r.start != 0 && r.start > uint32(n) && r.stop == 0 || r.stop != 0 && r.stop > uint32(n) && r.start == 0 {
				if n == 0 {
					continue
				}
			}
			start, stop := r.bounds(uint32(n))
			if start >= 1 {
				spans = append(spans, [2]int{int(start) - 1, min(int(stop), n) - 1})
			}
		}
	} else {
		maxUID := uint32(0)
		if n > 0 {
			maxUID = sel.uids[n-1]
		}
		for _, r := range set.ranges {
			start, stop := r.bounds(maxUID)
			lo, _ := slices.BinarySearch(sel.uids, start)
			hi := sort.Search(n, func(i int) bool { return sel.uids[i] > stop }) - 1
			if lo <= hi {
				spans = append(spans, [2]int{lo, hi})
			}
		}
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var out []target
	next := 0 // first index not yet emitted
	for _, sp := range spans {
		for i := max(sp[0], next); i <= sp[1]; i++ {
			if u := sel.uids[i]; withGhosts || !sel.ghosts[u] {
				out = append(out, target{seq: uint32(i + 1), uid: u})
			}
		}
		next = max(next, sp[1]+1)
	}
	return out, nil
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
		return nof("READ-ONLY", "Mailbox is read-only (EXAMINE)")
	}
	return nil
}

// storeFlags checks flags from the client and converts them for the store.
// \Recent cannot be set (RFC 9051 §2.3.2) and is dropped.
func storeFlags(flags []string) ([]string, error) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		switch {
		case strings.EqualFold(f, `\Recent`):
			continue
		case strings.HasPrefix(f, `\`):
			sf, ok := systemFlag(f)
			if !ok {
				return nil, badf("Unknown system flag %s", f)
			}
			f = sf
		case len(f) > 100:
			return nil, badf("Keyword too long")
		}
		out = append(out, f)
	}
	return out, nil
}

func systemFlag(f string) (string, bool) {
	for _, sf := range []string{backend.FlagSeen, backend.FlagAnswered, backend.FlagFlagged, backend.FlagDeleted, backend.FlagDraft} {
		if strings.EqualFold(f, sf) {
			return sf, true
		}
	}
	return "", false
}

// cmdStore implements STORE and UID STORE (RFC 9051 §6.4.6) with
// UNCHANGEDSINCE (RFC 7162 §3.1.3).
func cmdStore(s *session, p *parser) error {
	uid := strings.HasPrefix(s.cmd, "UID ")
	if err := p.sp(); err != nil {
		return err
	}
	set, err := p.seqSet()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	var unchangedSince uint64
	hasUnchanged := false
	if p.peek() == '(' {
		err := p.list(func() error {
			kw, err := p.keyword()
			if err != nil {
				return err
			}
			if kw != "UNCHANGEDSINCE" {
				return badf("Unknown STORE modifier %s", kw)
			}
			if err := p.sp(); err != nil {
				return err
			}
			unchangedSince, err = p.number64()
			hasUnchanged = true
			return err
		})
		if err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	item, err := p.keyword()
	if err != nil {
		return err
	}
	op := backend.FlagsSet
	switch {
	case strings.HasPrefix(item, "+"):
		op, item = backend.FlagsAdd, item[1:]
	case strings.HasPrefix(item, "-"):
		op, item = backend.FlagsRemove, item[1:]
	}
	silent := false
	switch item {
	case "FLAGS":
	case "FLAGS.SILENT":
		silent = true
	default:
		return badf("Unknown STORE item %s", item)
	}
	if err := p.sp(); err != nil {
		return err
	}
	raw, err := p.flagList(true)
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	fl, err := storeFlags(raw)
	if err != nil {
		return err
	}
	if hasUnchanged {
		s.enableCondstore()
	}
	ts, err := s.resolve(set, uid)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return nil
	}
	uids := targetUIDs(ts)
	// UNCHANGEDSINCE 0 fails every message (RFC 7162 §3.1.3); the store
	// treats 0 as "none", so ask for the impossible modseq instead.
	since := unchangedSince
	if hasUnchanged && since == 0 {
		since = 0
	}
	var updated []backend.Message
	var modified []uint32
	if hasUnchanged && unchangedSince == 0 {
		modified = uids
	} else {
		updated, modified, err = s.user.StoreFlags(s.sel.id, uids, op, fl, since)
		if err != nil {
			return s.mapErr("store", err, false)
		}
	}
	for _, m := range updated {
		s.sel.own[m.UID] = m.ModSeq
	}
	// Every addressed message gets its flags, changed or not; with
	// .SILENT, a CONDSTORE client still learns the new modseqs (RFC 7162
	// §3.1.3).
	var report []uint32
	switch {
	case !silent:
		report = uids
	case s.condstore:
		for _, m := range updated {
			report = append(report, m.UID)
		}
	}
	if len(modified) > 0 {
		skip := make(map[uint32]bool, len(modified))
		for _, u := range modified {
			skip[u] = true
		}
		kept := report[:0:0]
		for _, u := range report {
			if !skip[u] {
				kept = append(kept, u)
			}
		}
		report = kept
	}
	if len(report) > 0 {
		msgs, err := s.user.MessagesByUID(s.sel.id, report)
		if err != nil {
			return s.mapErr("store", err, false)
		}
		for i := range msgs {
			seq, ok := s.sel.seqOf(msgs[i].UID)
			if !ok {
				continue
			}
			if silent {
				b := s.c.buf()
				b = fmt.Appendf(b, "* %d FETCH (", seq)
				if uid {
					b = fmt.Appendf(b, "UID %d ", msgs[i].UID)
				}
				b = fmt.Appendf(b, "MODSEQ (%d))\r\n", msgs[i].ModSeq)
				s.c.setBuf(b)
				continue
			}
			s.writeFlagsFetch(seq, &msgs[i], true)
			if err := s.c.out.maybeFlush(); err != nil {
				return err
			}
		}
	}
	if len(modified) > 0 {
		var nums []uint32
		for _, u := range modified {
			if uid {
				nums = append(nums, u)
			} else if seq, ok := s.sel.seqOf(u); ok {
				nums = append(nums, seq)
			}
		}
		return okf("MODIFIED "+formatSet(sortedSet(nums)), "Conditional STORE failed for some messages")
	}
	return nil
}

// cmdExpunge implements EXPUNGE and UID EXPUNGE (RFC 4315).
func cmdExpunge(s *session, p *parser) error {
	var only []uint32
	var set numSet
	uid := s.cmd == "UID EXPUNGE"
	if uid {
		if err := p.sp(); err != nil {
			return err
		}
		var err error
		if set, err = p.seqSet(); err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	if uid {
		ts, err := s.resolve(set, true)
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
	for _, u := range gone {
		if s.sel.has(u) {
			known = append(known, u)
		}
	}
	for u := range s.sel.ghosts {
		known = append(known, u)
	}
	clear(s.sel.ghosts)
	s.expungeKnown(known)
	if s.condstore {
		if mb, err := s.user.MailboxByID(s.sel.id); err == nil {
			return okf(fmt.Sprintf("HIGHESTMODSEQ %d", max(mb.HighestModSeq, 1)), "Expunged")
		}
	}
	return nil
}

// cmdCopy implements COPY, MOVE (RFC 6851) and their UID forms (UIDPLUS
// COPYUID, RFC 4315).
func cmdCopy(s *session, p *parser) error {
	uid := strings.HasPrefix(s.cmd, "UID ")
	move := strings.HasSuffix(s.cmd, "MOVE")
	if err := p.sp(); err != nil {
		return err
	}
	set, err := p.seqSet()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	dest, err := p.mailbox()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if move {
		if err := s.checkWritable(); err != nil {
			return err
		}
	}
	ts, err := s.resolve(set, uid)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return nil
	}
	res, err := s.user.Copy(s.sel.id, targetUIDs(ts), dest, move)
	if err != nil {
		return s.mapErr(strings.ToLower(s.cmd), err, true)
	}
	code := ""
	if len(res.DestUIDs) > 0 {
		code = fmt.Sprintf("COPYUID %d %s %s", res.UIDValidity, formatSet(res.SourceUIDs), formatSet(res.DestUIDs))
	}
	if !move {
		if code == "" {
			return nil
		}
		return okf(code, "COPY completed")
	}
	if code != "" {
		// RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
		s.c.untagged("OK [%s] Moved", code)
	}
	s.expungeKnown(slices.Clone(res.SourceUIDs))
	return nil
}
