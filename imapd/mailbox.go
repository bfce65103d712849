package imapd

import (
	"errors"
	"slices"
	"strings"

	"github.com/roostmail/roost/backend"
)

// cmdEnable implements ENABLE (RFC 5161, RFC 9051 §6.3.1): IMAP4rev2,
// UTF8=ACCEPT (RFC 6855), CONDSTORE and QRESYNC (RFC 7162 §3.2.3: QRESYNC
// implies CONDSTORE). Unknown names are ignored.
func cmdEnable(s *session, p *parser) error {
	var names []string
	for {
		if err := p.sp(); err != nil {
			if len(names) == 0 {
				return err
			}
			break
		}
		a, err := p.atom()
		if err != nil {
			return err
		}
		names = append(names, strings.ToUpper(a))
		if p.atEOL() {
			break
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	var enabled []string
	for _, n := range names {
		switch n {
		case "IMAP4REV2":
			if !s.rev2 {
				s.rev2 = true
				enabled = append(enabled, "IMAP4rev2")
			}
		case "UTF8=ACCEPT":
			if !s.utf8Accept {
				s.utf8Accept = true
				enabled = append(enabled, "UTF8=ACCEPT")
			}
		case "CONDSTORE":
			if !s.condstore {
				s.enableCondstore()
				enabled = append(enabled, "CONDSTORE")
			}
		case "QRESYNC":
			if !s.qresync {
				s.qresync = true
				if !s.condstore {
					s.enableCondstore()
					enabled = append(enabled, "CONDSTORE")
				}
				enabled = append(enabled, "QRESYNC")
			}
		}
	}
	s.c.untagged("ENABLED%s", prefixEach(enabled))
	return nil
}

func prefixEach(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return " " + strings.Join(l, " ")
}

// cmdNamespace implements NAMESPACE (RFC 2342): one personal namespace,
// no prefix, "/" separator.
func cmdNamespace(s *session, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	s.c.untagged(`NAMESPACE (("" "/")) NIL NIL`)
	return nil
}

func knownSpecialUse(a string) (string, bool) {
	for _, u := range []string{`\All`, `\Archive`, `\Drafts`, `\Flagged`, `\Junk`, `\Sent`, `\Trash`} {
		if strings.EqualFold(a, u) {
			return u, true
		}
	}
	return "", false
}

// cmdCreate implements CREATE (RFC 9051 §6.3.4) with CREATE-SPECIAL-USE
// (RFC 6154 §3): CREATE name [(USE (attr))].
func cmdCreate(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	name, err := p.mailbox()
	if err != nil {
		return err
	}
	var uses []string
	if p.consume(' ') {
		err := p.list(func() error {
			kw, err := p.keyword()
			if err != nil {
				return err
			}
			if kw != "USE" {
				return badf("Unknown CREATE parameter %s", kw)
			}
			if err := p.sp(); err != nil {
				return err
			}
			return p.list(func() error {
				f, err := p.flag(false)
				uses = append(uses, f)
				return err
			})
		})
		if err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	use := ""
	switch len(uses) {
	case 0:
	case 1:
		u, ok := knownSpecialUse(uses[0])
		if !ok {
			return nof("USEATTR", "Unsupported special-use attribute %s", uses[0])
		}
		use = u
	default:
		return nof("USEATTR", "Only one special-use attribute per mailbox")
	}
	n, err := backend.NormalizeMailboxName(name)
	if err != nil {
		return s.mapErr("create", err, false)
	}
	// The server SHOULD create the superior names that are needed (RFC 9051
	// §6.3.4).
	if err := s.createParents(n); err != nil {
		return err
	}
	if err := s.user.CreateMailbox(n, use); err != nil {
		return s.mapErr("create", err, false)
	}
	s.log.Info("mailbox created", "mailbox", n, "special_use", use)
	return nil
}

func (s *session) createParents(name string) error {
	parts := strings.Split(name, backend.Separator)
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], backend.Separator)
		if err := s.user.CreateMailbox(parent, ""); err != nil && !errors.Is(err, backend.ErrMailboxExists) {
			return s.mapErr("create", err, false)
		}
	}
	return nil
}

// cmdDelete implements DELETE (RFC 9051 §6.3.5). Children stay.
func cmdDelete(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	name, err := p.mailbox()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if err := s.user.DeleteMailbox(name); err != nil {
		return s.mapErr("delete", err, false)
	}
	s.log.Info("mailbox deleted", "mailbox", name)
	return nil
}

// cmdRename implements RENAME (RFC 9051 §6.3.6): children move along;
// renaming INBOX moves its messages to the new name.
func cmdRename(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	from, err := p.mailbox()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	to, err := p.mailbox()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	to, err = backend.NormalizeMailboxName(to)
	if err != nil {
		return s.mapErr("rename", err, false)
	}
	if _, err := s.user.Mailbox(from); err != nil {
		return s.mapErr("rename", err, false)
	}
	if _, err := s.user.Mailbox(to); err == nil {
		return nof("ALREADYEXISTS", "Mailbox already exists")
	}
	if err := s.createParents(to); err != nil {
		return err
	}
	if err := s.user.RenameMailbox(from, to); err != nil {
		return s.mapErr("rename", err, false)
	}
	s.log.Info("mailbox renamed", "from", from, "to", to)
	return nil
}

// cmdSubscribe implements SUBSCRIBE and UNSUBSCRIBE.
func cmdSubscribe(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	name, err := p.mailbox()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	return s.mapErr("subscribe", s.user.Subscribe(name, s.cmd == "SUBSCRIBE"), false)
}

// statusItems are the STATUS data items asked for (RFC 9051 §6.3.11, RFC
// 8438 SIZE, RFC 7162 HIGHESTMODSEQ, RFC 7889 APPENDLIMIT, RFC 9208
// DELETED-STORAGE).
type statusItems []string

func (p *parser) statusItems() (statusItems, error) {
	var items statusItems
	err := p.list(func() error {
		kw, err := p.keyword()
		if err != nil {
			return err
		}
		switch kw {
		case "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
			"HIGHESTMODSEQ", "APPENDLIMIT", "DELETED-STORAGE":
		default:
			return badf("Unknown STATUS item %s", kw)
		}
		items = append(items, kw)
		return nil
	})
	return items, err
}

// cmdStatus implements STATUS from the mailbox's counters, in O(1) of its
// size.
func cmdStatus(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	name, err := p.mailbox()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	items, err := p.statusItems()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	mb, err := s.user.Mailbox(name)
	if err != nil {
		return s.mapErr("status", err, false)
	}
	if slices.Contains(items, "HIGHESTMODSEQ") {
		s.enableCondstore()
	}
	s.writeStatusData(mb, items)
	return nil
}

func (s *session) writeStatusData(mb backend.Mailbox, items statusItems) {
	b := s.c.buf()
	b = append(b, "* STATUS "...)
	b = appendMailbox(b, mb.Name, s.utf8Names())
	b = append(b, " ("...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, it...)
		b = append(b, ' ')
		switch it {
		case "MESSAGES":
			b = appendNum(b, uint64(mb.Messages))
		case "RECENT":
			b = appendNum(b, uint64(s.recentCount(mb)))
		case "UIDNEXT":
			b = appendNum(b, uint64(mb.UIDNext))
		case "UIDVALIDITY":
			b = appendNum(b, uint64(mb.UIDValidity))
		case "UNSEEN":
			b = appendNum(b, uint64(mb.Unseen))
		case "DELETED":
			b = appendNum(b, uint64(mb.Deleted))
		case "SIZE":
			b = appendNum(b, uint64(mb.Size))
		case "HIGHESTMODSEQ":
			b = appendNum(b, max(mb.HighestModSeq, 1))
		case "APPENDLIMIT":
			b = appendNum(b, uint64(s.srv.opts.AppendLimit))
		case "DELETED-STORAGE":
			b = appendNum(b, 0)
		}
	}
	b = append(b, ")\r\n"...)
	s.c.setBuf(b)
}

// recentCount is what STATUS RECENT says: the messages no session has
// claimed (RFC 3501 §6.3.10; IMAP4rev2 has no \Recent, RFC 9051 §E).
func (s *session) recentCount(mb backend.Mailbox) uint32 {
	if s.rev2 {
		return 0
	}
	n, _ := s.user.RecentCount(mb.ID)
	return n
}

// listOptions are LIST-EXTENDED's selection and return options (RFC 5258,
// RFC 5819 STATUS, RFC 6154 SPECIAL-USE).
type listOptions struct {
	selSubscribed, selRemote, selRecursive, selSpecialUse bool
	retSubscribed, retChildren, retSpecialUse             bool
	retStatus                                             statusItems
}

// cmdList implements LIST (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC
// 5819 LIST-STATUS, RFC 6154) and LSUB (RFC 3501 §6.3.9).
func cmdList(s *session, p *parser) error {
	lsub := s.cmd == "LSUB"
	var opts listOptions
	if err := p.sp(); err != nil {
		return err
	}
	extended := false
	if !lsub && p.peek() == '(' {
		extended = true
		err := p.list(func() error {
			kw, err := p.keyword()
			switch kw {
			case "SUBSCRIBED":
				opts.selSubscribed = true
			case "REMOTE":
				opts.selRemote = true
			case "RECURSIVEMATCH":
				opts.selRecursive = true
			case "SPECIAL-USE":
				opts.selSpecialUse = true
			default:
				if err == nil {
					err = badf("Unknown LIST selection option %s", kw)
				}
			}
			return err
		})
		if err != nil {
			return err
		}
		if opts.selRecursive && !opts.selSubscribed && !opts.selSpecialUse {
			// RFC 5258 §3.1: RECURSIVEMATCH needs another selection option.
			return badf("RECURSIVEMATCH needs another selection option")
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	ref, err := p.listMailbox()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	var patterns []string
	if !lsub && p.peek() == '(' {
		extended = true
		if err := p.list(func() error {
			pat, err := p.listMailbox()
			patterns = append(patterns, pat)
			return err
		}); err != nil {
			return err
		}
	} else {
		pat, err := p.listMailbox()
		if err != nil {
			return err
		}
		patterns = []string{pat}
	}
	if !lsub && p.consume(' ') {
		kw, err := p.keyword()
		if err != nil {
			return err
		}
		if kw != "RETURN" {
			return badf("Expected RETURN")
		}
		if err := p.sp(); err != nil {
			return err
		}
		extended = true
		err = p.list(func() error {
			kw, err := p.keyword()
			if err != nil {
				return err
			}
			switch kw {
			case "SUBSCRIBED":
				opts.retSubscribed = true
			case "CHILDREN":
				opts.retChildren = true
			case "SPECIAL-USE":
				opts.retSpecialUse = true
			case "STATUS":
				if err := p.sp(); err != nil {
					return err
				}
				items, err := p.statusItems()
				if err != nil {
					return err
				}
				opts.retStatus = items
				if slices.Contains(items, "HIGHESTMODSEQ") {
					s.enableCondstore()
				}
			default:
				return badf("Unknown LIST return option %s", kw)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	_ = extended
	if len(patterns) == 1 && patterns[0] == "" {
		// LIST "" "": the hierarchy delimiter and root (RFC 9051 §6.3.9).
		s.c.untagged(`%s (\Noselect) "/" ""`, s.cmd)
		return nil
	}
	// Many patterns over many names take a while: a client that goes
	// away meanwhile stops the work (backendWork's watch), also when the
	// patterns match nothing and no write fails.
	return s.backendWork(func() error { return s.list(ref, patterns, opts, lsub) })
}

func (s *session) list(ref string, patterns []string, opts listOptions, lsub bool) error {
	all, err := s.user.Mailboxes()
	if err != nil {
		return s.mapErr("list", err, false)
	}
	subList, err := s.user.Subscriptions()
	if err != nil {
		return s.mapErr("list", err, false)
	}
	subs := make(map[string]bool, len(subList))
	for _, n := range subList {
		subs[n] = true
	}
	exists := make(map[string]*backend.Mailbox, len(all))
	for i := range all {
		exists[all[i].Name] = &all[i]
	}
	if lsub {
		opts.selSubscribed = true
	}
	// Every name and every superior of one: a superior that does not exist
	// is listed \Noselect (RFC 3501 §6.3.8; RFC 5258 \NonExistent).
	names := make(map[string]bool)
	addWithParents := func(n string) {
		names[n] = true
		for i := strings.LastIndex(n, backend.Separator); i > 0; i = strings.LastIndex(n[:i], backend.Separator) {
			names[n[:i]] = true
		}
	}
	for _, mb := range all {
		addWithParents(mb.Name)
	}
	if opts.selSubscribed {
		for n := range subs {
			addWithParents(n)
		}
	}
	hasChild := make(map[string]bool)
	subChild := make(map[string]bool)
	for n := range names {
		if i := strings.LastIndex(n, backend.Separator); i > 0 {
			if exists[n] != nil || hasChild[n] {
				hasChild[n[:i]] = true
			}
		}
	}
	// A parent has children if any existing descendant exists.
	for _, mb := range all {
		for i := strings.LastIndex(mb.Name, backend.Separator); i > 0; i = strings.LastIndex(mb.Name[:i], backend.Separator) {
			hasChild[mb.Name[:i]] = true
		}
	}
	for n := range subs {
		for i := strings.LastIndex(n, backend.Separator); i > 0; i = strings.LastIndex(n[:i], backend.Separator) {
			subChild[n[:i]] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.SortFunc(sorted, func(a, b string) int {
		switch {
		case a == backend.Inbox:
			return -1
		case b == backend.Inbox:
			return 1
		}
		return strings.Compare(a, b)
	})
	// The reference and each pattern are read together, by concatenation
	// (RFC 9051 §6.3.9: LIST "INBOX" "*" is INBOX*); a pattern starting
	// with the delimiter ignores the reference.
	// A pattern given twice is matched once.
	matchers := make([]*listMatcher, 0, len(patterns))
	seen := make(map[string]bool, len(patterns))
	for _, pat := range patterns {
		if !strings.HasPrefix(pat, backend.Separator) {
			pat = ref + pat
		}
		if pat = canonicalInboxPrefix(pat); !seen[pat] {
			seen[pat] = true
			matchers = append(matchers, newListMatcher(pat, '/'))
		}
	}
	matches := func(n string) bool {
		for _, m := range matchers {
			if m.match(n) {
				return true
			}
		}
		return false
	}
	// Superiors of subscribed names that the patterns do not match
	// themselves: LSUB lists them \Noselect when matched (RFC 3501
	// §6.3.9), RECURSIVEMATCH with CHILDINFO (RFC 5258 §3.5).
	unmatchedSubChild := make(map[string]bool)
	if opts.selSubscribed {
		for n := range subs {
			if matches(n) {
				continue
			}
			for i := strings.LastIndex(n, backend.Separator); i > 0; i = strings.LastIndex(n[:i], backend.Separator) {
				unmatchedSubChild[n[:i]] = true
			}
		}
	}
	utf8 := s.utf8Names()
	for _, n := range sorted {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		if !matches(n) {
			continue
		}
		mb := exists[n]
		childInfo := false
		var attrs []string
		switch {
		case opts.selSubscribed && !subs[n]:
			if !(opts.selRecursive || lsub) || !unmatchedSubChild[n] {
				continue
			}
			childInfo = !lsub
		case opts.selSubscribed:
			childInfo = opts.selRecursive && unmatchedSubChild[n]
		case opts.selSpecialUse && (mb == nil || mb.SpecialUse == ""):
			continue
		}
		switch {
		case lsub && !subs[n]:
			attrs = append(attrs, `\Noselect`)
		case lsub:
			if mb == nil {
				attrs = append(attrs, `\Noselect`)
			}
			if hasChild[n] {
				attrs = append(attrs, `\HasChildren`)
			}
		default:
			if mb == nil {
				if opts.selSubscribed || !hasChild[n] {
					attrs = append(attrs, `\NonExistent`)
				} else {
					attrs = append(attrs, `\Noselect`)
				}
			}
			if hasChild[n] {
				attrs = append(attrs, `\HasChildren`)
			} else if mb != nil || !opts.selSubscribed {
				attrs = append(attrs, `\HasNoChildren`)
			}
			if subs[n] && (opts.retSubscribed || opts.selSubscribed) {
				attrs = append(attrs, `\Subscribed`)
			}
			if mb != nil && mb.SpecialUse != "" {
				attrs = append(attrs, mb.SpecialUse)
			}
		}
		b := s.c.buf()
		b = append(b, "* "...)
		b = append(b, s.cmd...)
		b = append(b, ' ')
		b = appendFlags(b, attrs)
		b = append(b, ` "/" `...)
		b = appendMailbox(b, n, utf8)
		if childInfo {
			b = append(b, ` ("CHILDINFO" ("SUBSCRIBED"))`...)
		}
		b = append(b, "\r\n"...)
		s.c.setBuf(b)
		if opts.retStatus != nil && mb != nil {
			s.writeStatusData(*mb, opts.retStatus)
		}
		if err := s.c.out.maybeFlush(); err != nil {
			return err
		}
	}
	return nil
}

// canonicalInboxPrefix spells a leading "inbox" hierarchy level as INBOX, so
// that patterns and references match case-insensitively (RFC 9051 §5.1).
func canonicalInboxPrefix(p string) string {
	first, rest, hasRest := strings.Cut(p, backend.Separator)
	if !strings.EqualFold(first, backend.Inbox) {
		return p
	}
	if hasRest {
		return backend.Inbox + backend.Separator + rest
	}
	return backend.Inbox
}
