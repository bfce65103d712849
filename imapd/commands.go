package imapd

import (
	"strconv"
	"strings"
)

// command is one entry of the dispatch table.
type command struct {
	states sessState
	run    func(s *session, p *parser) error
	// noExpunge: no EXPUNGE may follow it unasked (RFC 9051 §7.5.1: not
	// after FETCH, STORE or SEARCH; their UID forms allow it).
	noExpunge bool
}

// commands is the dispatch table (read-only).
var commands = map[string]command{
	"CAPABILITY":   {states: anyState, run: cmdCapability},
	"NOOP":         {states: anyState, run: cmdNoop},
	"LOGOUT":       {states: anyState, run: cmdLogout},
	"ID":           {states: anyState, run: cmdID},
	"STARTTLS":     {states: stateNotAuth, run: cmdStartTLS},
	"LOGIN":        {states: stateNotAuth, run: cmdLogin},
	"AUTHENTICATE": {states: stateNotAuth, run: cmdAuthenticate},

	"ENABLE":       {states: authOrSelect, run: cmdEnable},
	"SELECT":       {states: authOrSelect, run: cmdSelect},
	"EXAMINE":      {states: authOrSelect, run: cmdSelect},
	"CREATE":       {states: authOrSelect, run: cmdCreate},
	"DELETE":       {states: authOrSelect, run: cmdDelete},
	"RENAME":       {states: authOrSelect, run: cmdRename},
	"SUBSCRIBE":    {states: authOrSelect, run: cmdSubscribe},
	"UNSUBSCRIBE":  {states: authOrSelect, run: cmdSubscribe},
	"LIST":         {states: authOrSelect, run: cmdList},
	"LSUB":         {states: authOrSelect, run: cmdList},
	"NAMESPACE":    {states: authOrSelect, run: cmdNamespace},
	"STATUS":       {states: authOrSelect, run: cmdStatus},
	"APPEND":       {states: authOrSelect, run: cmdAppend},
	"IDLE":         {states: authOrSelect, run: cmdIdle},
	"COMPRESS":     {states: authOrSelect, run: cmdCompress},
	"GETQUOTA":     {states: authOrSelect, run: cmdGetQuota},
	"GETQUOTAROOT": {states: authOrSelect, run: cmdGetQuotaRoot},
	"SETQUOTA":     {states: authOrSelect, run: cmdSetQuota},
	"NOTIFY":       {states: authOrSelect, run: cmdNotify},

	"CHECK":        {states: stateSelected, run: cmdNoop},
	"CLOSE":        {states: stateSelected, run: cmdClose},
	"UNSELECT":     {states: stateSelected, run: cmdUnselect},
	"EXPUNGE":      {states: stateSelected, run: cmdExpunge},
	"UID EXPUNGE":  {states: stateSelected, run: cmdExpunge},
	"SEARCH":       {states: stateSelected, run: cmdSearch, noExpunge: true},
	"UID SEARCH":   {states: stateSelected, run: cmdSearch},
	"CANCELUPDATE": {states: stateSelected, run: cmdCancelUpdate},
	"SORT":         {states: stateSelected, run: cmdSort, noExpunge: true},
	"UID SORT":     {states: stateSelected, run: cmdSort},
	"THREAD":       {states: stateSelected, run: cmdThread, noExpunge: true},
	"UID THREAD":   {states: stateSelected, run: cmdThread},
	"FETCH":        {states: stateSelected, run: cmdFetch, noExpunge: true},
	"UID FETCH":    {states: stateSelected, run: cmdFetch},
	"STORE":        {states: stateSelected, run: cmdStore, noExpunge: true},
	"UID STORE":    {states: stateSelected, run: cmdStore},
	"COPY":         {states: stateSelected, run: cmdCopy},
	"UID COPY":     {states: stateSelected, run: cmdCopy},
	"MOVE":         {states: stateSelected, run: cmdCopy},
	"UID MOVE":     {states: stateSelected, run: cmdCopy},
}

// capabilities returns the CAPABILITY list for the session's state (RFC
// 9051 §7.2.2): before login the ways to log in, after it the extensions.
func (s *session) capabilities() string {
	caps := []string{"IMAP4rev1", "IMAP4rev2", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"}
	if s.state == stateNotAuth {
		if !s.c.isTLS && s.srv.opts.TLSConfig != nil {
			caps = append(caps, "STARTTLS")
		}
		if s.plaintextAllowed() {
			caps = append(caps, "AUTH=PLAIN", "AUTH=LOGIN")
		} else {
			caps = append(caps, "LOGINDISABLED")
		}
		return strings.Join(caps, " ")
	}
	caps = append(caps,
		"NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE",
		"LIST-EXTENDED", "LIST-STATUS", "ESEARCH", "SEARCHRES", "STATUS=SIZE", "BINARY", "UTF8=ACCEPT",
		"APPENDLIMIT="+strconv.FormatInt(s.srv.opts.AppendLimit, 10),
	)
	caps = append(caps, s.srv.extraCaps...)
	if s.srv.opts.Compress && !s.c.compressed {
		caps = append(caps, "COMPRESS=DEFLATE")
	}
	return strings.Join(caps, " ")
}
