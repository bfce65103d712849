package imapd

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roostmail/roost/backend"
)

// errAnswered says a handler wrote its tagged response itself (STARTTLS,
// COMPRESS: the response must precede the change of the transport).
var errAnswered = &status{typ: "-"}

// cmdAppend implements APPEND (RFC 9051 §6.3.12, UIDPLUS APPENDUID, RFC
// 3516 literal8) with MULTIAPPEND (RFC 3502: several messages, all stored
// or none) and CATENATE (RFC 4469: a message put together from literals
// and IMAP URLs of messages of this account). Each message's data streams
// into a spool (memory, then a temporary file), never held whole.
func cmdAppend(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	name, err := p.mailbox()
	if err != nil {
		return err
	}
	// A missing mailbox is refused first (TRYCREATE), before any literal
	// is asked for or URL read.
	if _, err := s.user.Mailbox(name); err != nil {
		return s.mapErr("append", err, true)
	}
	var msgs []backend.AppendMessage
	var spools []*backend.Spool
	defer func() {
		for _, sp := range spools {
			sp.Close()
		}
	}()
	var total int64
	inMemory := 0
	for {
		if err := p.sp(); err != nil {
			return err
		}
		var flags []string
		if p.peek() == '(' {
			if flags, err = p.flagList(false); err != nil {
				return err
			}
			if err := p.sp(); err != nil {
				return err
			}
		}
		var date time.Time
		if p.peek() == '"' {
			if date, err = p.dateTime(); err != nil {
				return err
			}
			if err := p.sp(); err != nil {
				return err
			}
		}
		fl, err := storeFlags(flags)
		if err != nil {
			return err
		}
		// The messages of a MULTIAPPEND share one spool's memory; the
		// rest of them waits in files.
		spool := s.srv.opts.Backend.NewSpoolSharing(inMemory)
		spools = append(spools, spool)
		limit := s.srv.opts.AppendLimit
		if c := p.peek(); c == '{' || c == '~' {
			if err := s.appendLiteral(p, spool, limit); err != nil {
				return err
			}
		} else {
			kw, err := p.keyword()
			if err != nil {
				return err
			}
			if kw != "CATENATE" {
				return badf("Expected a literal or CATENATE")
			}
			if err := p.sp(); err != nil {
				return err
			}
			var last catenateSource
			err = p.list(func() error {
				if err := s.catenatePart(p, spool, limit, &last); err != nil {
					return err
				}
				if spool.TooBig() || spool.Size() > limit {
					// Refused at once, not after copying every part.
					return nof("TOOBIG", "Message too big (limit %d octets)", limit)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if spool.TooBig() || spool.Size() > limit {
			return nof("TOOBIG", "Message too big (limit %d octets)", limit)
		}
		total += spool.Size()
		inMemory += spool.MemoryBytes()
		r, err := spool.Reader()
		if err != nil {
			return s.mapErr("append", err, false)
		}
		msgs = append(msgs, backend.AppendMessage{Body: r, Flags: fl, Date: date})
		if p.atEOL() {
			break
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if err := s.checkMessageQuota(int64(len(msgs))); err != nil {
		return err
	}
	res, err := s.user.AppendMany(s.ctx, name, msgs)
	if err != nil {
		return s.mapErr("append", err, true)
	}
	uids := make([]uint32, len(res))
	for i, r := range res {
		uids[i] = r.UID
	}
	s.log.Debug("appended", "mailbox", name, "uids", formatSet(uids), "bytes", total)
	return okf(fmt.Sprintf("APPENDUID %d %s", res[0].UIDValidity, formatSet(uids)), "APPEND completed")
}

// appendLiteral copies a message literal into the spool. A literal8
// whose content holds NULs is stored with those parts in base64
// (encodeBinaryParts).
func (s *session) appendLiteral(p *parser, w io.Writer, limit int64) error {
	binary := p.lit.binary
	_, lit, err := p.messageLiteral(limit)
	if err != nil {
		return err
	}
	var cerr error
	if binary {
		var raw []byte
		if raw, cerr = io.ReadAll(lit); cerr == nil {
			_, cerr = w.Write(encodeBinaryParts(raw))
		}
	} else {
		_, cerr = io.Copy(w, lit)
	}
	if err := p.endMessageLiteral(); err != nil {
		return err
	}
	if cerr != nil && isNetErr(cerr) {
		return cerr
	}
	return nil
}

// catenatePart reads one cat-part (RFC 4469 §5: TEXT literal, or URL).
func (s *session) catenatePart(p *parser, w io.Writer, limit int64, last *catenateSource) error {
	kw, err := p.keyword()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	switch kw {
	case "TEXT":
		return s.appendLiteral(p, w, limit)
	case "URL":
		u, err := p.astring()
		if err != nil {
			return err
		}
		return s.catenateURL(u, w, last)
	}
	return badf("Unknown CATENATE part %s", kw)
}

// catenateSource is the message the last URL of a CATENATE named: a URL
// of the same message again (a client may send thousands) needs no new
// lookups.
type catenateSource struct {
	name   string
	uid    uint32
	mb     backend.Mailbox
	msg    backend.Message
	body   *backend.BodyReader
	parsed *backend.Parsed // read when a SECTION needs it
}

// catenateURL copies what an IMAP URL of this account names (RFC 5092:
// "/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.n]]").
func (s *session) catenateURL(raw string, w io.Writer, last *catenateSource) error {
	bad := nof("BADURL "+raw, "Invalid or unknown URL")
	if !strings.HasPrefix(raw, "/") {
		return bad
	}
	rest := raw[1:]
	i := strings.Index(strings.ToLower(rest), "/;uid=")
	if i < 0 {
		return bad
	}
	mboxPart, rest := rest[:i], rest[i+6:]
	uidValidity := ""
	if j := strings.Index(strings.ToLower(mboxPart), ";uidvalidity="); j >= 0 {
		mboxPart, uidValidity = mboxPart[:j], mboxPart[j+13:]
	}
	name, err := url.PathUnescape(mboxPart)
	if err != nil {
		return bad
	}
	fields := strings.Split(rest, "/;")
	uid, err := strconv.ParseUint(strings.TrimSuffix(fields[0], "/"), 10, 32)
	if err != nil || uid == 0 {
		return bad
	}
	it := fetchItem{name: "BODY[]"}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		v, err := url.PathUnescape(strings.TrimSuffix(v, "/"))
		if err != nil {
			return bad
		}
		switch strings.ToLower(k) {
		case "section":
			q := &parser{c: s.c, line: []byte("[" + v + "]"), limit: len(v) + 4}
			if err := q.section(&it, false); err != nil || !q.atEOL() {
				return bad
			}
		case "partial":
			o, n, hasN := strings.Cut(v, ".")
			off, err1 := strconv.ParseInt(o, 10, 64)
			cnt := int64(math.MaxInt64 / 2)
			var err2 error
			if hasN {
				cnt, err2 = strconv.ParseInt(n, 10, 64)
			}
			if err1 != nil || err2 != nil || off < 0 || cnt <= 0 {
				return bad
			}
			it.partial, it.offset, it.cnt = true, off, cnt
		default:
			return bad
		}
	}
	if last.body == nil || last.name != name || last.uid != uint32(uid) {
		mb, err := s.user.Mailbox(name)
		if err != nil {
			return bad
		}
		found, err := s.user.MessagesByUID(mb.ID, []uint32{uint32(uid)})
		if err != nil || len(found) == 0 {
			return bad
		}
		*last = catenateSource{name: name, uid: uint32(uid), mb: mb, msg: found[0]}
		last.body = s.user.OpenBody(&last.msg)
	}
	if uidValidity != "" && uidValidity != strconv.FormatUint(uint64(last.mb.UIDValidity), 10) {
		return bad
	}
	if (len(it.part) > 0 || it.spec != "") && last.parsed == nil {
		parsed, err := s.user.Parsed(&last.msg)
		if err != nil {
			return bad
		}
		last.parsed = parsed
	}
	body := last.body
	sec, err := s.bodySection(&last.msg, body, last.parsed, &it)
	if err != nil {
		return bad
	}
	if sec.isData {
		_, err = w.Write(sec.data)
	} else {
		_, err = io.Copy(w, io.NewSectionReader(body, sec.start, sec.n))
	}
	if err != nil {
		return s.mapErr("catenate", err, false)
	}
	return nil
}

func isNetErr(err error) bool {
	return isTimeout(err) || errors.Is(err, errGone) || errors.Is(err, errStopping) || errors.Is(err, errEvicted) || isNetClosed(err)
}

// checkMessageQuota refuses to add n messages over the account's message
// limit (RFC 9208 MESSAGE; the storage limit is checked by the store).
func (s *session) checkMessageQuota(n int64) error {
	q, err := s.user.Quota()
	if err != nil {
		return s.mapErr("quota", err, false)
	}
	if q.LimitMessages > 0 && q.UsedMessages+n > q.LimitMessages {
		return nof("OVERQUOTA", "Message quota exceeded (%d of %d messages)", q.UsedMessages, q.LimitMessages)
	}
	return nil
}

// lineResult is what IDLE's reader hands back.
type lineResult struct {
	line string
	err  error
}

// cmdIdle implements IDLE (RFC 2177, RFC 9051 §6.3.13): changes are pushed
// as soon as the backend's change bus wakes the watcher. A helper goroutine
// reads the line that ends it and hands it over; all session state stays
// with the connection's goroutine.
func cmdIdle(s *session, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	c := s.c
	if err := c.continuation("idling"); err != nil {
		return err
	}
	c.setPhase(phaseIdle)
	defer c.setPhase(phaseCommand)
	if s.sel != nil {
		if err := s.syncForce(true, true); err != nil {
			return err
		}
	}
	// With NOTIFY, IDLE sends what NOTIFY asked for (RFC 5465 §4).
	if err := s.notifyOthers(); err != nil {
		return err
	}
	if err := c.out.flush(); err != nil {
		return err
	}
	done := make(chan lineResult, 1)
	s.idleRead = done
	limit := s.srv.opts.MaxLineLength
	in := c.in
	go func() {
		line, err := in.readLine(make([]byte, 0, 16), limit)
		done <- lineResult{string(line), err}
	}()
	var watch <-chan struct{}
	if s.sel != nil {
		watch = s.sel.watch.C()
	}
	for {
		var others <-chan struct{}
		if s.notify != nil && s.notify.watch != nil {
			others = s.notify.watch.C()
		}
		select {
		case r := <-done:
			s.idleRead = nil
			c.setPhase(phaseCommand)
			if r.err != nil && r.err != errLineTooLong {
				if isTimeout(r.err) || errors.Is(r.err, errGone) || errors.Is(r.err, errStopping) || errors.Is(r.err, errEvicted) {
					return s.readFailed(r.err)
				}
				return r.err
			}
			s.srv.debug(c.id, "C:", []byte(r.line))
			if !strings.EqualFold(r.line, "DONE") {
				return badf("Expected DONE to end IDLE")
			}
			return okf("", "IDLE terminated")
		case <-watch:
			if err := s.syncForce(true, true); err != nil {
				return err
			}
			if err := c.out.flush(); err != nil {
				return err
			}
		case <-others:
			if err := s.notifyOthers(); err != nil {
				return err
			}
			if err := c.out.flush(); err != nil {
				return err
			}
		}
	}
}

// ID limits (RFC 2971 §3.3).
const (
	maxIDPairs    = 30
	maxIDField    = 30
	maxIDValueLen = 1024
)

// cmdID implements ID (RFC 2971): logged with the connection id, answered
// with Roost's name.
func cmdID(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	var fields []any
	if _, isNil, err := p.nstringNIL(); err != nil {
		return err
	} else if !isNil {
		n := 0
		err := p.list(func() error {
			k, err := p.str()
			if err != nil {
				return err
			}
			if err := p.sp(); err != nil {
				return err
			}
			v, vnil, err := p.nstring()
			if err != nil {
				return err
			}
			n++
			if n > maxIDPairs {
				return badf("Too many ID fields (at most %d)", maxIDPairs)
			}
			if len(k) > maxIDField || len(v) > maxIDValueLen {
				return badf("ID field or value too long (at most %d and %d octets)", maxIDField, maxIDValueLen)
			}
			if vnil {
				v = "NIL"
			}
			fields = append(fields, "id_"+strings.ToLower(k), v)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	s.log.Info("client ID", fields...)
	s.c.untagged(`ID ("name" "Roost" "vendor" "Roost")`)
	return nil
}

// nstringNIL reports whether the next token is NIL (consuming it), or else
// leaves a list for the caller.
func (p *parser) nstringNIL() (string, bool, error) {
	if p.peek() == '(' {
		return "", false, nil
	}
	kw, err := p.keyword()
	if err != nil {
		return "", false, err
	}
	if kw != "NIL" {
		return "", false, badf("Expected a list or NIL")
	}
	return "", true, nil
}

// cmdCompress implements COMPRESS DEFLATE (RFC 4978): after the tagged OK
// both directions are deflated; every response is flushed (see outbuf).
func cmdCompress(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	alg, err := p.atom()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if !strings.EqualFold(alg, "DEFLATE") {
		return badf("Unknown compression algorithm %s", alg)
	}
	if !s.srv.opts.Compress {
		return nof("", "COMPRESS is disabled on this server")
	}
	if s.c.compressed {
		return nof("COMPRESSIONACTIVE", "DEFLATE is already active")
	}
	if s.sel != nil {
		if err := s.sync(true); err != nil {
			return err
		}
	}
	s.c.writeStatus(s.tag, okf("", "DEFLATE active"))
	if err := s.c.out.flush(); err != nil {
		return err
	}
	s.c.startCompression()
	s.log.Debug("compression active")
	return errAnswered
}

// Quota (RFC 9208): one quota root, "", for the whole account, with
// STORAGE (in units of 1024 octets) and MESSAGE where the account has a
// limit.

func (s *session) writeQuota() error {
	q, err := s.user.Quota()
	if err != nil {
		return s.mapErr("quota", err, false)
	}
	var res []string
	if q.LimitBytes > 0 {
		res = append(res, fmt.Sprintf("STORAGE %d %d", (q.UsedBytes+1023)/1024, q.LimitBytes/1024))
	}
	if q.LimitMessages > 0 {
		res = append(res, fmt.Sprintf("MESSAGE %d %d", q.UsedMessages, q.LimitMessages))
	}
	s.c.untagged(`QUOTA "" (%s)`, strings.Join(res, " "))
	return nil
}

func cmdGetQuotaRoot(s *session, p *parser) error {
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
	mb, err := s.user.Mailbox(name)
	if err != nil {
		return s.mapErr("getquotaroot", err, false)
	}
	b := s.c.buf()
	b = append(b, "* QUOTAROOT "...)
	b = appendMailbox(b, mb.Name, s.utf8Names())
	s.c.setBuf(append(b, " \"\"\r\n"...))
	return s.writeQuota()
}

func cmdGetQuota(s *session, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	root, err := p.astring()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if root != "" {
		return nof("NONEXISTENT", "No such quota root")
	}
	return s.writeQuota()
}

func cmdSetQuota(s *session, p *parser) error {
	return nof("NOPERM", "Quotas are set by the administrator (roost user)")
}

// enableCondstore turns CONDSTORE on (RFC 7162 §3.1: by ENABLE, SELECT
// (CONDSTORE), or a CONDSTORE-enabling command); in a selected mailbox the
// client then learns its HIGHESTMODSEQ.
func (s *session) enableCondstore() {
	if s.condstore {
		return
	}
	s.condstore = true
	if s.sel != nil {
		s.c.untagged("OK [HIGHESTMODSEQ %d] Highest", max(s.sel.modseq, 1))
	}
}

// qresyncSelect sends what a QRESYNC client missed since its modseq (RFC
// 7162 §3.2.5): VANISHED (EARLIER) for what was expunged, FETCH for what
// changed. Below the mailbox's PurgedModSeq tombstones are gone, so every
// UID the client may know that no longer exists is reported vanished
// (RFC 7162 §3.2.5.2 allows reporting more than was expunged).
func (s *session) qresyncSelect(sel *selected, mb backend.Mailbox, q *qresyncParams) error {
	if q.modseq >= mb.HighestModSeq {
		return nil
	}
	known := func(uid uint32) bool { return true }
	if q.knownUIDs != nil {
		known = q.knownUIDs.contains(mb.UIDNext - 1)
	}
	if err := s.reportVanished(sel, mb, q.modseq, known); err != nil {
		return err
	}
	changes, err := s.user.ChangesSince(sel.id, q.modseq)
	if err != nil {
		return s.mapErr("select", err, false)
	}
	var changed []uint32
	for _, c := range changes {
		if !c.Expunged && known(c.UID) && sel.has(c.UID) {
			changed = append(changed, c.UID)
		}
	}
	slices.Sort(changed)
	msgs, err := s.user.MessagesByUID(sel.id, changed)
	if err != nil {
		return s.mapErr("select", err, false)
	}
	for i := range msgs {
		seq, ok := sel.seqOf(msgs[i].UID)
		if ok {
			s.writeFlagsFetch(seq, &msgs[i], true)
		}
	}
	return nil
}

// reportVanished sends VANISHED (EARLIER) for the UIDs known() expunged
// after modseq.
func (s *session) reportVanished(sel *selected, mb backend.Mailbox, modseq uint64, known func(uint32) bool) error {
	var gone []uint32
	if mb.PurgedModSeq > 0 && modseq < mb.PurgedModSeq {
		// Every UID below UIDNEXT that does not exist.
		next := uint32(1)
		for _, u := range sel.uids {
			for x := next; x < u; x++ {
				if known(x) {
					gone = append(gone, x)
				}
			}
			next = u + 1
		}
		for x := next; x < mb.UIDNext; x++ {
			if known(x) {
				gone = append(gone, x)
			}
		}
	} else {
		changes, err := s.user.ChangesSince(sel.id, modseq)
		if err != nil {
			return s.mapErr("select", err, false)
		}
		for _, c := range changes {
			if c.Expunged && known(c.UID) {
				gone = append(gone, c.UID)
			}
		}
	}
	if len(gone) == 0 {
		return nil
	}
	b := s.c.buf()
	b = append(b, "* VANISHED (EARLIER) "...)
	b = appendSet(b, sortedSet(gone))
	s.c.setBuf(append(b, "\r\n"...))
	return nil
}

// vanishedEarlier answers UID FETCH ... (CHANGEDSINCE m VANISHED) (RFC
// 7162 §3.2.6): the UIDs of set expunged since m.
func (s *session) vanishedEarlier(set numSet, since uint64) error {
	sel := s.sel
	mb, err := s.user.MailboxByID(sel.id)
	if err != nil {
		return s.mapErr("fetch", err, false)
	}
	maxUID := mb.UIDNext - 1
	known := func(uint32) bool { return false }
	if !set.saved {
		known = set.contains(maxUID)
	}
	return s.reportVanished(sel, mb, since, known)
}
