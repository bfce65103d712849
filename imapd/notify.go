package imapd

import (
	"errors"
	"slices"
	"strings"

	"github.com/roostmail/roost/backend"
)

// IMAP NOTIFY (RFC 5465).
//
// A session that has run NOTIFY holds a notifyState. Its event groups for
// mailboxes other than the selected one are served by one
// backend.AccountWatcher, which coalesces what changed by mailbox: on a
// wake-up the session reads the counters of the mailboxes that changed (and
// that a group asks about) and sends STATUS for them, and LIST for the
// mailbox-list and subscription events; an unchanged mailbox costs nothing.
// Events of the selected mailbox are the engine's EXISTS, FETCH and
// EXPUNGE/VANISHED from its change log (selected.go), with MessageNew's
// fetch attributes. Between commands the session waits for the client's
// next command and for wake-ups at once (a helper goroutine waits for the
// command's first octet), so that notifications reach a client that sits
// idle without IDLE (RFC 5465 §3); a session that never ran NOTIFY waits as
// before and costs nothing more.
//
// How Roost reads the RFC where it leaves a choice:
//   - Without a SELECTED or SELECTED-DELAYED group (NOTIFY NONE included)
//     the selected mailbox is reported as without NOTIFY: when a command
//     completes and in IDLE (RFC 9051 §7.3.1, §7.5.1), never between
//     commands. "No notifications" is not taken to mean a client whose
//     sequence numbers silently go wrong (Dovecot reads it so too).
//   - SELECTED-DELAYED holds expunges until a command that allows them
//     (RFC 5465 §6); new messages and flag changes go out at once.
//   - A SELECTED group without FlagChange: other sessions' flag changes in
//     the selected mailbox are not reported.
//   - The session's own changes are notified as any other session's: a
//     COPY's target gets its STATUS, a CREATE its LIST (before the tagged
//     OK). The selected mailbox's own changes are answered as before.
//   - STATUS carries what the RFC asks for each event (§3 for the initial
//     one with SET STATUS, §5.1-5.3 afterwards) and UNSEEN, which clients
//     show; HIGHESTMODSEQ with FlagChange (Roost has CONDSTORE) or once
//     CONDSTORE is enabled.
//   - Falling behind (more than max_pending_notifications changed
//     mailboxes and events gathered between two deliveries, e.g. a client
//     that does not read) gets "* OK [NOTIFICATIONOVERFLOW]" and the
//     session goes on as after NOTIFY NONE (RFC 5465 §5.8).
//   - INBOXES is INBOX: delivery goes nowhere else.

// notifyEvent is a set of RFC 5465 §5 events.
type notifyEvent uint8

const (
	evMessageNew notifyEvent = 1 << iota
	evMessageExpunge
	evFlagChange
	evMailboxName
	evSubscriptionChange

	messageEvents = evMessageNew | evMessageExpunge | evFlagChange
)

// supportedEvents is what a BADEVENT response code lists (RFC 5465 §5:
// the events the server supports). AnnotationChange (no ANNOTATE),
// MailboxMetadataChange and ServerMetadataChange (no METADATA) are not.
const supportedEvents = "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange"

// notifyFilter is a filter-mailboxes of RFC 5465 §6 other than SELECTED.
type notifyFilter uint8

const (
	filterInboxes notifyFilter = iota
	filterPersonal
	filterSubscribed
	filterSubtree
	filterMailboxes
)

// notifyGroup is one event group for mailboxes other than the selected.
type notifyGroup struct {
	filter notifyFilter
	names  []string    // SUBTREE, MAILBOXES
	events notifyEvent // 0: NONE
}

// notifyState is what NOTIFY asked for (nil: NOTIFY never ran).
type notifyState struct {
	groups []notifyGroup
	// selected: a SELECTED or SELECTED-DELAYED group with events;
	// delayed: SELECTED-DELAYED; selFlags: it has FlagChange.
	selected, delayed, selFlags bool
	// fetch holds MessageNew's fetch attributes (nil: EXISTS only).
	fetch *fetchArgs
	// watch serves groups; nil when none asks for anything.
	watch *backend.AccountWatcher
	// subs caches the subscriptions for SUBSCRIBED groups (nil: not read
	// since the last subscription or mailbox event).
	subs map[string]bool
	// reader is the wait for the next command's first octet, while it runs.
	reader chan error
}

// async reports whether anything is to be pushed between commands.
func (n *notifyState) async() bool { return n != nil && (n.watch != nil || n.selected) }

// suppressFlags reports whether other sessions' flag changes in the
// selected mailbox go unreported (a SELECTED group without FlagChange).
func (s *session) suppressFlags() bool {
	return s.notify != nil && s.notify.selected && !s.notify.selFlags
}

// off turns every notification off, as NOTIFY NONE does.
func (n *notifyState) off() {
	if n.watch != nil {
		n.watch.Close()
		n.watch = nil
	}
	n.groups, n.selected, n.delayed, n.selFlags, n.fetch, n.subs = nil, false, false, false, nil, nil
}

// cmdNotify implements NOTIFY (RFC 5465 §3):
//
//	notify     = "NOTIFY" SP ("NONE" / "SET" [SP "STATUS"] SP event-group *(SP event-group))
//	event-group = "(" filter-mailboxes SP events ")"
func cmdNotify(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	kw, err := p.keyword()
	if err != nil {
		return err
	}
	switch kw {
	case "NONE":
		if err := p.end(); err != nil {
			return err
		}
		s.setNotify(&notifyState{})
		return nil
	case "SET":
	default:
		return badf("Expected NOTIFY SET or NOTIFY NONE")
	}
	if err := p.sp(); err != nil {
		return err
	}
	withStatus := false
	if p.peek() != '(' {
		kw, err := p.keyword()
		if err != nil {
			return err
		}
		if kw != "STATUS" {
			return badf("Expected STATUS or an event group")
		}
		withStatus = true
		if err := p.sp(); err != nil {
			return err
		}
	}
	n := &notifyState{}
	g := groupParse{n: n}
	for {
		if err := g.group(p); err != nil {
			return err
		}
		if !p.consume(' ') {
			break
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	// RFC 5465 §3: an event the server does not support is refused with NO
	// [BADEVENT] naming the ones it does, before anything else is judged.
	if len(g.unsupported) > 0 {
		return nof("BADEVENT ("+supportedEvents+")", "Unsupported NOTIFY event %s", truncate(g.unsupported[0], 40))
	}
	if g.invalid != nil {
		return g.invalid
	}
	if n.fetch != nil && n.fetch.modseq {
		s.enableCondstore()
	}
	s.setNotify(n)
	for _, gr := range n.groups {
		if gr.events != 0 {
			n.watch = s.user.WatchAccount(s.srv.opts.MaxPendingNotifications)
			break
		}
	}
	s.log.Debug("notify set", "groups", len(n.groups), "selected", n.selected, "delayed", n.delayed, "status", withStatus)
	if withStatus {
		// Watching began first: no change falls between the counters read
		// here and the notifications after (one told twice is harmless).
		return s.notifyInitialStatus()
	}
	return nil
}

// setNotify replaces the session's notifyState.
func (s *session) setNotify(n *notifyState) {
	if old := s.notify; old != nil {
		old.off()
	}
	s.notify = n
}

// groupParse reads the event groups of one NOTIFY SET. Unsupported events
// and groups that are well-formed but invalid are noted, not returned, so
// that a syntax error anywhere comes first (BAD), then BADEVENT (NO), then
// the rest (BAD).
type groupParse struct {
	n            *notifyState
	haveSelected bool
	unsupported  []string
	invalid      error
}

func (g *groupParse) fail(err error) {
	if g.invalid == nil {
		g.invalid = err
	}
}

// group reads one event-group (RFC 5465 §8).
func (g *groupParse) group(p *parser) error {
	if err := p.expect('('); err != nil {
		return err
	}
	kw, err := p.keyword()
	if err != nil {
		return err
	}
	gr := notifyGroup{}
	selected := false
	switch kw {
	case "SELECTED", "SELECTED-DELAYED":
		selected = true
	case "INBOXES":
		gr.filter = filterInboxes
	case "PERSONAL":
		gr.filter = filterPersonal
	case "SUBSCRIBED":
		gr.filter = filterSubscribed
	case "SUBTREE", "MAILBOXES":
		gr.filter = filterSubtree
		if kw == "MAILBOXES" {
			gr.filter = filterMailboxes
		}
		if err := p.sp(); err != nil {
			return err
		}
		// one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"
		if p.peek() == '(' {
			err = p.list(func() error {
				name, err := p.mailbox()
				gr.names = append(gr.names, name)
				return err
			})
			if err == nil && len(gr.names) == 0 {
				err = badf("Empty list of mailboxes")
			}
		} else {
			var name string
			name, err = p.mailbox()
			gr.names = append(gr.names, name)
		}
		if err != nil {
			return err
		}
	default:
		return badf("Unknown NOTIFY mailbox filter %s", truncate(kw, 40))
	}
	if err := p.sp(); err != nil {
		return err
	}
	events, fetch, err := g.events(p)
	if err != nil {
		return err
	}
	if err := p.expect(')'); err != nil {
		return err
	}
	n := g.n
	if !selected {
		gr.events = events
		n.groups = append(n.groups, gr)
		return nil
	}
	// RFC 5465 §6: one selected group, with message events only;
	// MessageNew and MessageExpunge together, FlagChange only with them.
	switch {
	case g.haveSelected:
		g.fail(badf("Only one SELECTED or SELECTED-DELAYED event group is allowed"))
	case events&^messageEvents != 0:
		g.fail(badf("Only message events are allowed for the selected mailbox"))
	case events&(evMessageNew|evMessageExpunge) != 0 && events&(evMessageNew|evMessageExpunge) != evMessageNew|evMessageExpunge:
		g.fail(badf("MessageNew and MessageExpunge go together for the selected mailbox"))
	case events&evFlagChange != 0 && events&evMessageNew == 0:
		g.fail(badf("FlagChange needs MessageNew and MessageExpunge for the selected mailbox"))
	}
	g.haveSelected = true
	if events != 0 {
		n.selected = true
		n.delayed = kw == "SELECTED-DELAYED"
		n.selFlags = events&evFlagChange != 0
		n.fetch = fetch
	}
	return nil
}

// events reads events = "(" event *(SP event) ")" / "NONE", with
// MessageNew's optional fetch attributes.
func (g *groupParse) events(p *parser) (notifyEvent, *fetchArgs, error) {
	if p.peek() != '(' {
		kw, err := p.keyword()
		if err != nil {
			return 0, nil, err
		}
		if kw != "NONE" {
			return 0, nil, badf("Expected a list of events or NONE")
		}
		return 0, nil, nil
	}
	var evs notifyEvent
	var fetch *fetchArgs
	count := 0
	err := p.list(func() error {
		count++
		name, err := p.atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(name) {
		case "MESSAGENEW":
			evs |= evMessageNew
			if p.peek() == ' ' && p.pos+1 < len(p.line) && p.line[p.pos+1] == '(' {
				p.pos++
				a := &fetchArgs{}
				if err := p.list(func() error { return p.fetchAtt(a) }); err != nil {
					return err
				}
				if len(a.items) == 0 {
					return badf("Empty list of fetch attributes")
				}
				a.prepare(false)
				fetch = a
			}
		case "MESSAGEEXPUNGE":
			evs |= evMessageExpunge
		case "FLAGCHANGE":
			evs |= evFlagChange
		case "MAILBOXNAME":
			evs |= evMailboxName
		case "SUBSCRIPTIONCHANGE":
			evs |= evSubscriptionChange
		default:
			// AnnotationChange, MailboxMetadataChange,
			// ServerMetadataChange and any event-ext (RFC 5465 §8).
			g.unsupported = append(g.unsupported, name)
		}
		return nil
	})
	if err == nil && count == 0 {
		err = badf("Empty list of events")
	}
	return evs, fetch, err
}

// notifyMatch reports whether an event ev of the (non-selected) mailbox
// name is to be notified: the groups are tried in order, and one that
// covers the mailbox with NONE ends the search (RFC 5465 §6).
func (s *session) notifyMatch(name string, ev notifyEvent) bool {
	n := s.notify
	for i := range n.groups {
		g := &n.groups[i]
		if !s.filterCovers(g, name, ev) {
			continue
		}
		if g.events == 0 {
			return false
		}
		if g.events&ev != 0 {
			return true
		}
	}
	return false
}

func (s *session) filterCovers(g *notifyGroup, name string, ev notifyEvent) bool {
	switch g.filter {
	case filterPersonal:
		return true // one personal namespace, everything in it
	case filterInboxes:
		return name == backend.Inbox
	case filterSubscribed:
		// A change of the subscription itself concerns the list of
		// subscribed mailboxes, whichever way it went.
		return ev == evSubscriptionChange || s.subscribed(name)
	case filterSubtree:
		for _, root := range g.names {
			if name == root || strings.HasPrefix(name, root+backend.Separator) {
				return true
			}
		}
	case filterMailboxes:
		return slices.Contains(g.names, name)
	}
	return false
}

// subscribed reports a subscription from the cache, read when first needed.
func (s *session) subscribed(name string) bool {
	n := s.notify
	if n.subs == nil {
		list, err := s.user.Subscriptions()
		if err != nil {
			s.log.Warn("notify: reading subscriptions failed", "err", err)
			return false
		}
		n.subs = make(map[string]bool, len(list))
		for _, l := range list {
			n.subs[l] = true
		}
	}
	return n.subs[name]
}

// notifyStatusItems are the STATUS items that tell of evs (RFC 5465 §3 for
// the initial STATUS, §5.1-5.3 after a change), in a fixed order.
func (s *session) notifyStatusItems(evs notifyEvent, initial bool) statusItems {
	var items statusItems
	if evs&(evMessageNew|evMessageExpunge) != 0 {
		items = append(items, "MESSAGES")
	}
	if evs&evMessageNew != 0 || !initial && evs&evMessageExpunge != 0 {
		items = append(items, "UIDNEXT")
	}
	if evs&evFlagChange != 0 || initial && evs&evMessageNew != 0 {
		items = append(items, "UIDVALIDITY")
	}
	if evs&(evMessageNew|evFlagChange) != 0 || !initial {
		items = append(items, "UNSEEN")
	}
	if evs&evFlagChange != 0 || s.condstore {
		items = append(items, "HIGHESTMODSEQ")
	}
	return items
}

// messageEventsFor returns which message events of evs are notified for
// the mailbox name.
func (s *session) messageEventsFor(name string, evs notifyEvent) notifyEvent {
	var told notifyEvent
	for _, ev := range []notifyEvent{evMessageNew, evMessageExpunge, evFlagChange} {
		if evs&ev != 0 && s.notifyMatch(name, ev) {
			told |= ev
		}
	}
	return told
}

// notifyInitialStatus sends NOTIFY SET STATUS's STATUS responses: one for
// every mailbox but the selected one for which message events are asked
// (RFC 5465 §3).
func (s *session) notifyInitialStatus() error {
	all, err := s.user.Mailboxes()
	if err != nil {
		return s.mapErr("notify", err, false)
	}
	for _, mb := range all {
		if s.sel != nil && mb.ID == s.sel.id {
			continue
		}
		if evs := s.messageEventsFor(mb.Name, messageEvents); evs != 0 {
			s.writeStatusData(mb, s.notifyStatusItems(evs, true))
			if err := s.c.out.maybeFlush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// notifyOthers sends what the account watcher gathered: LIST for mailbox
// and subscription events (RFC 5465 §5.4, §5.5), in order, then STATUS for
// each changed mailbox other than the selected one (§5.1-5.3), by name. It
// reads only the mailboxes that changed.
func (s *session) notifyOthers() error {
	n := s.notify
	if n == nil || n.watch == nil {
		return nil
	}
	ch := n.watch.Take()
	if ch.Overflow {
		// RFC 5465 §5.8: say so, and go on as after NOTIFY NONE.
		s.log.Warn("notify: the session fell too far behind; notifications off", "limit", s.srv.opts.MaxPendingNotifications)
		n.off()
		s.c.untagged("OK [NOTIFICATIONOVERFLOW] Too many changes to report; NOTIFY is off")
		return s.c.out.maybeFlush()
	}
	for _, ev := range ch.Events {
		s.notifyMailboxEvent(ev)
	}
	type changed struct {
		mb  backend.Mailbox
		evs notifyEvent
	}
	var out []changed
	for id, kinds := range ch.Mailboxes {
		if s.sel != nil && id == s.sel.id {
			continue // the selected mailbox's own responses tell it
		}
		var evs notifyEvent
		if kinds&backend.ChangeNew != 0 {
			evs |= evMessageNew
		}
		if kinds&backend.ChangeExpunge != 0 {
			evs |= evMessageExpunge
		}
		if kinds&backend.ChangeFlags != 0 {
			evs |= evFlagChange
		}
		mb, err := s.user.MailboxByID(id)
		if err != nil {
			if !errors.Is(err, backend.ErrNoSuchMailbox) {
				s.log.Warn("notify: reading a mailbox failed", "mailbox_id", id, "err", err)
			}
			continue // deleted since: its LIST said so
		}
		if told := s.messageEventsFor(mb.Name, evs); told != 0 {
			out = append(out, changed{mb, told})
		}
	}
	slices.SortFunc(out, func(a, b changed) int { return strings.Compare(a.mb.Name, b.mb.Name) })
	for _, c := range out {
		s.writeStatusData(c.mb, s.notifyStatusItems(c.evs, false))
	}
	return s.c.out.maybeFlush()
}

// notifyMailboxEvent sends the LIST response of one mailbox-list or
// subscription change, if asked for: `* LIST () "/" name` for a new
// mailbox, (\NonExistent) for a deleted one, ("OLDNAME" (old)) after a
// rename (RFC 5465 §5.4), \Subscribed (and \NonExistent where the mailbox
// does not exist) for a subscription change (§5.5).
func (s *session) notifyMailboxEvent(ev backend.MailboxEvent) {
	n := s.notify
	// Subscriptions may have changed (renames carry them along).
	n.subs = nil
	var attrs []string
	switch ev.Kind {
	case backend.MailboxCreated:
		if !s.notifyMatch(ev.Name, evMailboxName) {
			return
		}
	case backend.MailboxDeleted:
		if !s.notifyMatch(ev.Name, evMailboxName) {
			return
		}
		attrs = append(attrs, `\NonExistent`)
	case backend.MailboxRenamed:
		if !s.notifyMatch(ev.Name, evMailboxName) && !s.notifyMatch(ev.OldName, evMailboxName) {
			return
		}
	case backend.MailboxSubscribed, backend.MailboxUnsubscribed:
		if !s.notifyMatch(ev.Name, evSubscriptionChange) {
			return
		}
		if ev.Kind == backend.MailboxSubscribed {
			attrs = append(attrs, `\Subscribed`)
		}
		if _, err := s.user.Mailbox(ev.Name); errors.Is(err, backend.ErrNoSuchMailbox) {
			attrs = append(attrs, `\NonExistent`)
		}
	default:
		return
	}
	utf8 := s.utf8Names()
	b := s.c.buf()
	b = append(b, "* LIST "...)
	b = appendFlags(b, attrs)
	b = append(b, ` "/" `...)
	b = appendMailbox(b, ev.Name, utf8)
	if ev.Kind == backend.MailboxRenamed {
		b = append(b, ` ("OLDNAME" (`...)
		b = appendMailbox(b, ev.OldName, utf8)
		b = append(b, "))"...)
	}
	s.c.setBuf(append(b, "\r\n"...))
}

// notifyFetch sends MessageNew's FETCH for new messages of the selected
// mailbox (RFC 5465 §5.2), after their EXISTS.
func (s *session) notifyFetch(uids []uint32) error {
	sel := s.sel
	ts := make([]target, 0, len(uids))
	for _, u := range uids {
		if seq, ok := sel.seqOf(u); ok && !sel.ghosts[u] {
			ts = append(ts, target{seq: seq, uid: u})
		}
	}
	if len(ts) == 0 {
		return nil
	}
	// The FETCH fails as a whole only when the connection must end; a
	// message gone meanwhile just gets no response.
	if _, err := s.fetchTargets(ts, s.notify.fetch); err != nil {
		if errors.Is(err, errCloseConn) || !isStatus(err) {
			return err
		}
		s.log.Warn("notify: MessageNew fetch failed", "err", err)
	}
	return nil
}

// waitCommand waits for the first octet of the next command. With NOTIFY
// it also pushes notifications meanwhile (RFC 5465 §3): a helper goroutine
// waits for the octet (the read deadlines stay as they are: idle timeout,
// Shutdown, account deletion), the session's goroutine sends.
func (s *session) waitCommand() error {
	c := s.c
	n := s.notify
	if !n.async() {
		return c.in.fill()
	}
	done := make(chan error, 1)
	n.reader = done
	in := c.in
	go func() { done <- in.fill() }()
	for {
		var selC, accC <-chan struct{}
		if n.selected && s.sel != nil && !s.sel.deleted {
			selC = s.sel.watch.C()
		}
		if n.watch != nil {
			accC = n.watch.C()
		}
		var err error
		select {
		case rerr := <-done:
			n.reader = nil
			return rerr
		case <-selC:
			// SELECTED sends expunges at once; SELECTED-DELAYED keeps them
			// for a command that allows them (RFC 5465 §6).
			err = s.syncForce(!n.delayed, true)
			if err == nil && len(s.contexts) > 0 {
				s.updateContexts()
			}
		case <-accC:
			err = s.notifyOthers()
		}
		if err != nil && !errors.Is(err, errCloseConn) && isStatus(err) {
			s.log.Warn("notify: sync failed", "err", err)
			err = nil
		}
		if err == nil {
			err = c.out.flush()
		}
		if err != nil {
			return errCloseConn
		}
		c.out.release()
	}
}
