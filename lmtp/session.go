package lmtp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/netlimit"
)

// Replies. Their text never carries an internal error: those are logged.
var (
	replyNeedHello   = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Send EHLO again after STARTTLS"}
	replyNestedMail  = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Nested MAIL command: send RSET first"}
	replyNoRcpts     = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	replyBadSender   = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	replyBadRcpt     = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	replyRelayDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied: this server does not handle mail for that domain"}
	replyNoSuchUser  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	replyDisabled    = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 1}, Message: "Mailbox disabled, not accepting messages"}
	// Over quota: temporary by default (RFC 3463 §3.3: 4.2.2, the sender
	// retries and the user may make room), permanent with
	// Options.OverQuotaPermanent.
	replyOverQuotaTemp = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full, try again later"}
	replyOverQuota     = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	replyLocalError    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local error, try again later"}
	replyBareNewline   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message contains bare CR or LF; lines must end with CRLF (RFC 5321 section 2.3.8)"}
	replyLeadingSpace  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message starts with white space; the header must start with a field name (RFC 5322 section 2.2)"}
	replyLineTooLong   = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long"}
	replyTransferAbort = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message transfer aborted"}
)

func (s *Server) replyTooBig() *smtp.SMTPError {
	return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: fmt.Sprintf("Message too big (the limit is %d bytes)", s.maxSize)}
}

// session is one go-smtp session: the envelope of the current transaction.
type session struct {
	srv  *Server
	w    *wire
	conn *smtp.Conn

	// The envelope: set by Mail and Rcpt, cleared by Reset. go-smtp calls
	// Data for BDAT in a goroutine of its own, and after an aborted chunk
	// it resets (and may start the next transaction) while that goroutine
	// still runs; Data therefore works on a copy taken when it starts.
	mu sync.Mutex
	envelope
	// user is the account logged in with AUTH (submission only).
	user *backend.User
}

type envelope struct {
	inTx  bool
	from  string
	utf8  bool
	helo  string
	rcpts []rcpt
}

type rcpt struct {
	arg string // as go-smtp passed it to Rcpt (LMTP statuses are keyed by it)
	to  backend.Recipient
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	w, ok := c.Conn().(*wire)
	if !ok {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal server error"}
	}
	sess := &session{srv: s, w: w, conn: c}
	w.setSession(sess)
	return sess, nil
}

func (s *session) inTransaction() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inTx
}

// Reset discards the envelope (RSET, a new greeting, the end of DATA).
func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.envelope = envelope{}
}

// snapshot returns the envelope of the message whose data is arriving.
func (s *session) snapshot() envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	env := s.envelope
	env.rcpts = append([]rcpt(nil), s.rcpts...)
	env.helo = s.conn.Hostname()
	return env
}

// Logout is called when the connection ends.
func (s *session) Logout() error {
	if u := s.authenticated(); u != nil {
		u.Release()
	}
	return nil
}

// Mail starts a transaction. from is "" for the null reverse-path of
// bounces (RFC 5321 §4.5.5); go-smtp also takes "MAIL FROM: <addr>" with a
// space after the colon.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if _, _, needHello := s.w.tlsState(); needHello {
		return replyNeedHello
	}
	if s.inTransaction() {
		return replyNestedMail
	}
	if !validPath(from) {
		return replyBadSender
	}
	if s.srv.opts.Submission != nil {
		if err := s.submitMail(from); err != nil {
			return err
		}
	}
	// RFC 1870 §6.2: a declared size over the limit is refused up front,
	// however large (the wire has it; go-smtp only parses 32 bits).
	if d := s.w.mailSize; d.set && d.size > uint64(s.srv.maxSize) {
		return s.srv.replyTooBig()
	}
	s.mu.Lock()
	s.envelope = envelope{inTx: true, from: from, utf8: opts != nil && opts.UTF8}
	s.mu.Unlock()
	s.w.bare.Store(false)
	return nil
}

// validPath accepts what can be written back into a Return-Path header:
// at most 256 octets (RFC 5321 §4.5.3.1.3), valid UTF-8, no controls.
func validPath(p string) bool {
	if len(p) > 256 || !utf8.ValidString(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < ' ' || p[i] == 0x7f {
			return false
		}
	}
	return true
}

// Rcpt checks a recipient now, at RCPT time, so that mail Roost cannot
// deliver is refused before the message is sent.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if _, _, needHello := s.w.tlsState(); needHello {
		return replyNeedHello
	}
	if s.srv.opts.Submission != nil {
		r, err := s.submitRcpt(to)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.rcpts = append(s.rcpts, rcpt{arg: to, to: r})
		s.mu.Unlock()
		return nil
	}
	r, err := s.srv.be.ResolveRecipient(context.Background(), to)
	if err != nil {
		reply := s.srv.rcptReply(err)
		if reply == replyLocalError {
			s.w.log.Error("recipient lookup failed", "rcpt", to, "err", err)
		} else {
			s.w.log.Debug("recipient refused", "rcpt", to, "err", err)
		}
		return reply
	}
	s.mu.Lock()
	s.rcpts = append(s.rcpts, rcpt{arg: to, to: r})
	s.mu.Unlock()
	// Mail for an account here: a real client, not part of a flood.
	s.w.ticket.Done()
	return nil
}

func (s *Server) rcptReply(err error) *smtp.SMTPError {
	switch {
	case errors.Is(err, backend.ErrInvalidAddress):
		return replyBadRcpt
	case errors.Is(err, backend.ErrRelayDenied):
		return replyRelayDenied
	case errors.Is(err, backend.ErrNoSuchUser):
		return replyNoSuchUser
	case errors.Is(err, backend.ErrAccountDisabled):
		return replyDisabled
	case errors.Is(err, backend.ErrOverQuota):
		return s.overQuotaReply()
	}
	return replyLocalError
}

func (s *Server) overQuotaReply() *smtp.SMTPError {
	if s.opts.OverQuotaPermanent {
		return replyOverQuota
	}
	return replyOverQuotaTemp
}

// deliveryReply is the reply for one recipient after delivery.
func (s *Server) deliveryReply(err error, queueID string) *smtp.SMTPError {
	switch {
	case err == nil:
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + queueID}
	case errors.Is(err, backend.ErrOverQuota):
		return s.overQuotaReply()
	case errors.Is(err, backend.ErrNoSuchUser):
		// The account was deleted between RCPT and the end of DATA.
		return replyNoSuchUser
	case errors.Is(err, backend.ErrTooBig):
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big"}
	}
	return replyLocalError
}

// Data receives and delivers a message over SMTP: one reply for all
// recipients.
func (s *session) Data(r io.Reader) error {
	s.w.dataGen.Add(1) // before any read: tells the wire that data follows
	s.srv.inflight.Add(1)
	defer s.srv.inflight.Done()
	defer s.srv.be.MessageComing()()
	env := s.snapshot()
	t := s.receive(r, &env)
	defer t.close()
	if t.fail != nil {
		t.log(s, &env, nil)
		return t.fail
	}
	if s.srv.opts.Submission != nil {
		id, reply := t.submit(s, &env)
		if reply != nil {
			t.fail = reply
			t.log(s, &env, nil)
			return reply
		}
		s.w.log.Info("message", "queue_id", id, "trace_id", t.queueID, "from", env.from, "rcpts", len(env.rcpts),
			"size", t.size, "result", "queued", "duration", time.Since(t.start).Round(time.Microsecond))
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
	}
	results := t.deliver(s, &env)
	reply := s.srv.smtpReply(results, t.queueID)
	t.log(s, &env, results)
	return reply
}

// smtpReply folds per-recipient results into the one reply SMTP has. A 250
// means stored for everyone. With a temporary failure the client gets 451
// and retries (those who already got it may get it twice: a duplicate
// rather than a loss); with only permanent failures (a mailbox that the
// message would overfill) the permanent reply, so the sender hears of it.
func (s *Server) smtpReply(results []error, queueID string) *smtp.SMTPError {
	var permanent *smtp.SMTPError
	for _, err := range results {
		if err == nil {
			continue
		}
		reply := s.deliveryReply(err, queueID)
		if reply.Code/100 == 4 {
			return reply
		}
		permanent = reply
	}
	if permanent != nil {
		return permanent
	}
	return s.deliveryReply(nil, queueID)
}

// LMTPData receives and delivers a message over LMTP: one reply per
// recipient (RFC 2033 §4.2), so one full mailbox does not bounce the others.
func (s *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	s.w.dataGen.Add(1)
	s.srv.inflight.Add(1)
	defer s.srv.inflight.Done()
	defer s.srv.be.MessageComing()()
	env := s.snapshot()
	t := s.receive(r, &env)
	defer t.close()
	if t.fail != nil {
		t.log(s, &env, nil)
		return t.fail // go-smtp gives it to every recipient
	}
	results := t.deliver(s, &env)
	for i, rc := range env.rcpts {
		status.SetStatus(rc.arg, s.srv.deliveryReply(results[i], t.queueID))
	}
	t.log(s, &env, results)
	return nil
}

// transfer is one received message.
type transfer struct {
	queueID  string
	start    time.Time
	spool    *backend.Spool
	traceLen int             // bytes of trace headers at the start of spool
	size     int64           // bytes of message data received
	fail     *smtp.SMTPError // set when the message is refused as a whole
	why      string          // for the log, with fail
	cause    error           // internal error behind fail, for the log
}

// receive reads the whole message into a spool behind the trace headers.
// It always reads to the end, so that the connection stays in step.
func (s *session) receive(r io.Reader, env *envelope) *transfer {
	t := &transfer{queueID: newQueueID(), start: time.Now(), spool: s.srv.be.NewSpool()}
	refuse := func(reply *smtp.SMTPError, why string, cause error) {
		if t.fail == nil {
			t.fail, t.why, t.cause = reply, why, cause
		}
	}
	if _, _, needHello := s.w.tlsState(); needHello {
		refuse(replyNeedHello, "no greeting after STARTTLS", nil)
	}
	if len(env.rcpts) == 0 && t.fail == nil {
		refuse(replyNoRcpts, "no recipients", nil) // go-smtp does not let this happen
	}
	trace := s.trace(env, t.queueID, t.start)
	t.traceLen = len(trace)
	if _, err := t.spool.Write(trace); err != nil {
		refuse(replyLocalError, "spool failed", err)
	}
	if d := s.w.dataReader(r); d != nil {
		r = d // DATA: the wire has the bytes (see wire.dataReader)
	}
	bufp, _ := s.srv.readBufs.Get().(*[]byte)
	if bufp == nil {
		b := make([]byte, readBufferSize)
		bufp = &b
	}
	defer s.srv.readBufs.Put(bufp)
	buf := *bufp
	for {
		n, err := r.Read(buf)
		if n > 0 && t.size == 0 && (buf[0] == ' ' || buf[0] == '\t') {
			// It would continue the Received header put in front of it
			// (RFC 5322 §2.2.3 folding): a sender could write into it.
			refuse(replyLeadingSpace, "starts with white space", nil)
		}
		if n > 0 {
			t.size += int64(n)
			switch {
			case t.size > s.srv.maxSize:
				refuse(s.srv.replyTooBig(), "too big", nil)
			case t.fail == nil:
				if _, werr := t.spool.Write(buf[:n]); werr != nil {
					refuse(replyLocalError, "spool failed", werr)
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			switch {
			case errors.Is(err, smtp.ErrTooLongLine):
				// go-smtp would close the connection after our reply with
				// an unsolicited "500": say it once, and hang up.
				t.fail, t.why = replyLineTooLong, "line too long"
				s.w.hangup("500 5.5.2 %s Line too long (the limit is %d octets), closing connection",
					s.srv.opts.Hostname, s.srv.opts.MaxLineLength)
			default:
				// The wire has hung up (timeout) or the client has gone.
				why := s.w.failure.Load().(string)
				if why == "" {
					why = "connection lost"
				}
				t.fail, t.why = replyTransferAbort, why
			}
			return t
		}
	}
	// RFC 5321 §2.3.8: bare CR or LF could be read as a line end by
	// another program, and a "." line by the next SMTP hop (SMTP smuggling).
	if s.w.bare.Load() {
		refuse(replyBareNewline, "bare CR or LF", nil)
	}
	return t
}

// deliver stores the spooled message for every recipient.
func (t *transfer) deliver(s *session, env *envelope) []error {
	body, err := t.spool.Bytes()
	if err != nil {
		results := make([]error, len(env.rcpts))
		for i := range results {
			results[i] = fmt.Errorf("read spool: %w", err)
		}
		return results
	}
	rcpts := make([]backend.Recipient, len(env.rcpts))
	for i, rc := range env.rcpts {
		rcpts[i] = rc.to
	}
	results := s.srv.be.Deliver(context.Background(), body, rcpts)
	for _, err := range results {
		if err == nil {
			// Mail got through: the client is not misbehaving (MaxErrors).
			s.w.errors.Store(0)
			break
		}
	}
	return results
}

func (t *transfer) close() { t.spool.Close() }

// log writes the one line per message: queue id, from, recipients, size,
// result and duration; internal errors only here, never to the client.
func (t *transfer) log(s *session, env *envelope, results []error) {
	to := make([]string, len(env.rcpts))
	for i, rc := range env.rcpts {
		to[i] = rc.to.Address
	}
	attrs := []any{"queue_id", t.queueID, "from", env.from, "rcpts", to, "size", t.size,
		"duration", time.Since(t.start).Round(time.Microsecond)}
	if t.fail != nil {
		attrs = append(attrs, "result", "refused", "reason", t.why,
			"reply", fmt.Sprintf("%d %d.%d.%d", t.fail.Code, t.fail.EnhancedCode[0], t.fail.EnhancedCode[1], t.fail.EnhancedCode[2]))
		if t.cause != nil {
			attrs = append(attrs, "err", t.cause)
			s.w.log.Error("message", attrs...)
			return
		}
		s.w.log.Info("message", attrs...)
		return
	}
	ok, status, level := 0, make([]string, len(results)), "delivered"
	var errs []string
	for i, err := range results {
		if err == nil {
			ok++
			status[i] = "ok"
			continue
		}
		reply := s.srv.deliveryReply(err, "")
		status[i] = fmt.Sprintf("%d %d.%d.%d", reply.Code, reply.EnhancedCode[0], reply.EnhancedCode[1], reply.EnhancedCode[2])
		errs = append(errs, err.Error())
	}
	switch {
	case ok == 0:
		level = "failed"
	case ok < len(results):
		level = "partial"
	}
	attrs = append(attrs, "result", level, "status", status)
	if len(errs) > 0 {
		attrs = append(attrs, "errs", errs)
		s.w.log.Warn("message", attrs...)
		return
	}
	s.w.log.Info("message", attrs...)
}

// newQueueID returns a random id that names the message in replies, the
// Received header and the log.
func newQueueID() string {
	var b [8]byte
	rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// trace returns the Return-Path and Received headers (RFC 5321 §4.4) put in
// front of the message. Every part is bounded (see TraceReserve).
func (s *session) trace(env *envelope, queueID string, now time.Time) []byte {
	isTLS, verb, _ := s.w.tlsState()
	var b bytes.Buffer
	submission := s.srv.opts.Submission != nil
	if !submission {
		// RFC 5321 §4.4: the Return-Path is added at final delivery; a
		// submitted message gets it where it is finally delivered.
		b.WriteString("Return-Path: <")
		b.WriteString(quotePath(env.from))
		b.WriteString(">\r\n")
	}
	b.WriteString("Received: from ")
	b.WriteString(headerToken(env.helo, 255))
	b.WriteString(" (")
	b.WriteString(tcpInfo(s.w.RemoteAddr()))
	b.WriteString(")\r\n\tby ")
	b.WriteString(headerToken(s.srv.opts.Hostname, 255))
	b.WriteString(" with ")
	proto := withProtocol(verb, s.srv.opts.LMTP, isTLS, env.utf8)
	if submission && verb != "HELO" {
		proto += "A" // RFC 3848 §2: ESMTPA, ESMTPSA (authenticated)
	}
	b.WriteString(proto)
	b.WriteString(" id ")
	b.WriteString(queueID)
	if len(env.rcpts) == 1 {
		// One recipient only: more would tell each who else got it.
		b.WriteString("\r\n\tfor <")
		b.WriteString(env.rcpts[0].to.Address)
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(now.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return b.Bytes()
}

// withProtocol is the "with" clause: RFC 3848 (ESMTP, ESMTPS, LMTP, LMTPS),
// RFC 6531 §3.7.3 (UTF8SMTP, UTF8SMTPS, UTF8LMTP, UTF8LMTPS).
func withProtocol(verb string, lmtp, isTLS, utf8 bool) string {
	p := "ESMTP"
	switch {
	case lmtp:
		p = "LMTP"
	case verb == "HELO":
		return "SMTP"
	}
	if utf8 {
		p = "UTF8" + strings.TrimPrefix(p, "E")
	}
	if isTLS {
		p += "S"
	}
	return p
}

// tcpInfo is the remote address as an RFC 5321 address literal; no reverse
// DNS lookup is made.
func tcpInfo(a net.Addr) string {
	if a == nil || a.Network() == "unix" {
		return "local"
	}
	ip := net.ParseIP(netlimit.AddrIP(a))
	switch {
	case ip == nil:
		return "unknown"
	case ip.To4() != nil:
		return "[" + ip.String() + "]"
	}
	return "[IPv6:" + ip.String() + "]"
}

// headerToken makes client-supplied text (the HELO name) safe in a header:
// printable ASCII without comment delimiters, at most limit bytes.
func headerToken(s string, limit int) string {
	if s == "" {
		return "unknown"
	}
	b := []byte(s)
	if len(b) > limit {
		b = b[:limit]
	}
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '\\' || c == ';' {
			b[i] = '?'
		}
	}
	return string(b)
}

// quotePath writes an address for an angle-bracketed path, quoting the
// local part when it is not a dot-string (go-smtp hands it over unquoted).
func quotePath(addr string) string {
	if addr == "" {
		return ""
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local, domain := addr[:at], addr[at:]
	if isDotString(local) {
		return addr
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if local[i] == '"' || local[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	b.WriteString(domain)
	return b.String()
}

// isDotString reports whether s is an RFC 5321 Dot-string (atext and dots;
// UTF-8 allowed, RFC 6531).
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
