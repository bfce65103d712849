package imapd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/netlimit"
)

// session adapts one imapserver connection to the backend. imapserver calls
// its methods from the connection's goroutine one at a time, except Idle,
// which runs in a goroutine of its own while the connection waits for DONE,
// and Close, which may come while an Idle still runs.
type session struct {
	srv  *Server
	w    *wire
	conn *imapserver.Conn
	view *view
	log  *slog.Logger
	ctx  context.Context

	cancel context.CancelFunc
	user   *backend.User
	sel    *selected // nil unless a mailbox is selected

	syncMu sync.Mutex // serialises sync

	mu       sync.Mutex
	closed   bool
	quit     chan struct{}
	idleDone chan struct{}
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

// Response codes go-imap does not name.
const (
	codeReadOnly imap.ResponseCode = "READ-ONLY"
	codeUseAttr  imap.ResponseCode = "USEATTR"
)

func newSession(s *Server, w *wire, c *imapserver.Conn) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		srv:    s,
		w:      w,
		conn:   c,
		view:   w.view,
		log:    w.log,
		ctx:    ctx,
		cancel: cancel,
		quit:   make(chan struct{}),
	}
}

func no(code imap.ResponseCode, format string, args ...any) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: fmt.Sprintf(format, args...)}
}

func bad(format string, args ...any) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: fmt.Sprintf(format, args...)}
}

var errNotSelected = bad("No mailbox selected")

// mapErr turns a backend error into the protocol's answer. tryCreate marks
// a missing destination of COPY, MOVE or APPEND (RFC 9051 §7.1: TRYCREATE).
func (s *session) mapErr(op string, err error, tryCreate bool) error {
	var imapErr *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &imapErr):
		return err
	case errors.Is(err, backend.ErrNoSuchMailbox) && tryCreate:
		return no(imap.ResponseCodeTryCreate, "No such mailbox")
	case errors.Is(err, backend.ErrNoSuchMailbox):
		return no(imap.ResponseCodeNonExistent, "No such mailbox")
	case errors.Is(err, backend.ErrMailboxExists):
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, backend.ErrInvalidMailbox):
		return no(imap.ResponseCodeCannot, "%s", capitalise(err.Error()))
	case errors.Is(err, backend.ErrCannotDeleteInbox):
		return no(imap.ResponseCodeCannot, "INBOX cannot be deleted")
	case errors.Is(err, backend.ErrOverQuota):
		return no(imap.ResponseCodeOverQuota, "Quota exceeded")
	case errors.Is(err, backend.ErrTooBig):
		return no(imap.ResponseCodeTooBig, "Message too big (limit %d bytes)", s.srv.opts.AppendLimit)
	case errors.Is(err, context.Canceled):
		return no(imap.ResponseCodeUnavailable, "Server shutting down")
	}
	s.log.Error(op+" failed", "err", err)
	return no(imap.ResponseCodeServerBug, "Internal error")
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Close implements imapserver.Session. It runs once, when the connection
// ends.
func (s *session) Close() error {
	s.mu.Lock()
	s.closed = true
	close(s.quit)
	idle := s.idleDone
	s.mu.Unlock()
	s.cancel()
	if idle != nil {
		<-idle
	}
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	close(s.view.sessDone)
	if s.user != nil {
		s.user.Release()
	}
	return nil
}

// Login implements imapserver.Session (LOGIN, and AUTHENTICATE PLAIN through
// imapserver's SASL PLAIN server).
func (s *session) Login(username, password string) error {
	if !s.srv.opts.Plaintext.Allowed(s.w.isTLS, s.w.raw.RemoteAddr()) {
		// imapserver refuses first (LOGINDISABLED); this is a second lock.
		return no(imap.ResponseCodePrivacyRequired, "Use TLS to log in")
	}
	u, err := s.srv.opts.Backend.Login(s.ctx, username, password, netlimit.RemoteIP(s.w.raw))
	if err != nil {
		s.log.Info("login failed", "user", username, "err", err)
		s.delayFailure()
		if errors.Is(err, backend.ErrAuthLocked) {
			return no(imap.ResponseCodeUnavailable, "Too many failed logins; try again later")
		}
		if errors.Is(err, backend.ErrAuthFailed) {
			return no(imap.ResponseCodeAuthenticationFailed, "Invalid credentials")
		}
		return s.mapErr("login", err, false)
	}
	s.user = u
	s.w.authenticated.Store(true)
	s.log = s.log.With("user", u.Address())
	s.log.Info("logged in", "tls", s.w.isTLS)
	return nil
}

// delayFailure slows password guessing (AuthFailureDelay), but not
// Shutdown.
func (s *session) delayFailure() {
	d := s.srv.opts.AuthFailureDelay
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.srv.conns.Done():
	case <-s.quit:
	}
}

// AppendLimit implements imapserver.SessionAppendLimit (RFC 7889).
func (s *session) AppendLimit() uint32 { return uint32(s.srv.opts.AppendLimit) }

// Namespace implements imapserver.SessionNamespace (RFC 2342): one personal
// namespace, no prefix, "/" separator.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}}}, nil
}

// Create implements imapserver.Session (RFC 9051 §6.3.4, RFC 6154 §3).
func (s *session) Create(name string, options *imap.CreateOptions) error {
	use := ""
	switch len(options.SpecialUse) {
	case 0:
	case 1:
		use = string(options.SpecialUse[0])
		if !knownSpecialUse(use) {
			return no(codeUseAttr, "Unsupported special-use attribute %s", use)
		}
	default:
		return no(codeUseAttr, "Only one special-use attribute per mailbox")
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

func knownSpecialUse(a string) bool {
	switch imap.MailboxAttr(a) {
	case imap.MailboxAttrAll, imap.MailboxAttrArchive, imap.MailboxAttrDrafts, imap.MailboxAttrFlagged,
		imap.MailboxAttrJunk, imap.MailboxAttrSent, imap.MailboxAttrTrash:
		return true
	}
	return false
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

// Delete implements imapserver.Session (RFC 9051 §6.3.5). Children stay.
func (s *session) Delete(name string) error {
	if err := s.user.DeleteMailbox(name); err != nil {
		return s.mapErr("delete", err, false)
	}
	s.log.Info("mailbox deleted", "mailbox", name)
	return nil
}

// Rename implements imapserver.Session (RFC 9051 §6.3.6): children move
// along; renaming INBOX moves its messages to the new name.
func (s *session) Rename(name, newName string, options *imap.RenameOptions) error {
	to, err := backend.NormalizeMailboxName(newName)
	if err != nil {
		return s.mapErr("rename", err, false)
	}
	if _, err := s.user.Mailbox(name); err != nil {
		return s.mapErr("rename", err, false)
	}
	if _, err := s.user.Mailbox(to); err == nil {
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	}
	if err := s.createParents(to); err != nil {
		return err
	}
	if err := s.user.RenameMailbox(name, to); err != nil {
		return s.mapErr("rename", err, false)
	}
	s.log.Info("mailbox renamed", "from", name, "to", to)
	return nil
}

// Subscribe implements imapserver.Session.
func (s *session) Subscribe(name string) error {
	return s.mapErr("subscribe", s.user.Subscribe(name, true), false)
}

// Unsubscribe implements imapserver.Session.
func (s *session) Unsubscribe(name string) error {
	return s.mapErr("unsubscribe", s.user.Subscribe(name, false), false)
}

// Status implements imapserver.Session from the mailbox's counters, in
// O(1) of its size (RFC 9051 §6.3.11, RFC 8438 STATUS=SIZE).
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mb, err := s.user.Mailbox(name)
	if err != nil {
		return nil, s.mapErr("status", err, false)
	}
	return s.statusData(mb, options), nil
}

func (s *session) statusData(mb backend.Mailbox, options *imap.StatusOptions) *imap.StatusData {
	d := &imap.StatusData{Mailbox: mb.Name, UIDNext: imap.UID(mb.UIDNext), UIDValidity: mb.UIDValidity}
	messages, unseen, deleted, size := mb.Messages, mb.Unseen, mb.Deleted, mb.Size
	var zero uint32
	var zero64 int64
	limit := s.AppendLimit()
	if options.NumMessages {
		d.NumMessages = &messages
	}
	if options.NumUnseen {
		d.NumUnseen = &unseen
	}
	if options.NumDeleted {
		d.NumDeleted = &deleted
	}
	if options.Size {
		d.Size = &size
	}
	if options.NumRecent {
		d.NumRecent = &zero // no \Recent (RFC 9051 Appendix E)
	}
	if options.AppendLimit {
		d.AppendLimit = &limit
	}
	if options.DeletedStorage {
		d.DeletedStorage = &zero64
	}
	return d
}

// Append implements imapserver.Session (RFC 9051 §6.3.12, UIDPLUS
// APPENDUID). The literal streams into the backend's spool.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if r.Size() > s.srv.opts.AppendLimit {
		return nil, no(imap.ResponseCodeTooBig, "Message too big (limit %d bytes)", s.srv.opts.AppendLimit)
	}
	flags, err := storeFlags(options.Flags)
	if err != nil {
		return nil, err
	}
	// imapserver's literal reader ends early, without an error, if the
	// client goes away: a short message must not be stored as if whole.
	res, err := s.user.Append(s.ctx, name, &exactReader{r: r, left: r.Size()}, flags, options.Time)
	if err != nil {
		return nil, s.mapErr("append", err, true)
	}
	s.log.Debug("appended", "mailbox", name, "uid", res.UID, "bytes", r.Size())
	return &imap.AppendData{UIDValidity: res.UIDValidity, UID: imap.UID(res.UID)}, nil
}

// exactReader fails with io.ErrUnexpectedEOF if r ends before left bytes.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// storeFlags checks flags from the client and converts them for the store.
// \Recent cannot be set (RFC 9051 §2.3.2) and is dropped.
func storeFlags(flags []imap.Flag) ([]string, error) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		switch {
		case strings.EqualFold(string(f), `\Recent`):
			continue
		case strings.HasPrefix(string(f), `\`):
			if !isSystemFlag(string(f)) {
				return nil, bad("Unknown system flag %s", f)
			}
		case len(f) > 100:
			return nil, bad("Keyword too long")
		}
		out = append(out, string(f))
	}
	return out, nil
}

func isSystemFlag(f string) bool {
	for _, sf := range []string{backend.FlagSeen, backend.FlagAnswered, backend.FlagFlagged, backend.FlagDeleted, backend.FlagDraft} {
		if strings.EqualFold(f, sf) {
			return true
		}
	}
	return false
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}

// List implements imapserver.Session: LIST with LIST-EXTENDED (RFC 5258),
// LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154) and CHILDREN, and LSUB.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root (RFC 9051 §6.3.9).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/', Mailbox: ""})
	}
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
	if options.SelectSubscribed {
		for n := range subs {
			addWithParents(n)
		}
	}
	hasChild := make(map[string]bool)
	subChild := make(map[string]bool)
	for n := range names {
		if i := strings.LastIndex(n, backend.Separator); i > 0 {
			hasChild[n[:i]] = true
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
		// INBOX first, then by name.
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
	for i, p := range patterns {
		if !strings.HasPrefix(p, backend.Separator) {
			p = ref + p
		}
		patterns[i] = canonicalInboxPrefix(p)
	}
	for _, n := range sorted {
		if !matchAny(n, patterns) {
			continue
		}
		mb := exists[n]
		data := &imap.ListData{Delim: '/', Mailbox: n}
		switch {
		case options.SelectSubscribed && !subs[n]:
			if !(options.SelectRecursiveMatch && subChild[n]) {
				continue
			}
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		case options.SelectSpecialUse && (mb == nil || mb.SpecialUse == ""):
			continue
		}
		if mb == nil {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
			if options.SelectSubscribed || !hasChild[n] {
				data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
			}
		}
		if hasChild[n] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if subs[n] && (options.ReturnSubscribed || options.SelectSubscribed) && s.w.command() != "LSUB" {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if mb != nil && mb.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(mb.SpecialUse))
		}
		if options.ReturnStatus != nil && mb != nil {
			data.Status = s.statusData(*mb, options.ReturnStatus)
		}
		if err := w.WriteList(data); err != nil {
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

func matchAny(name string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, '/', "", p) {
			return true
		}
	}
	return false
}
