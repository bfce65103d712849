package outbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/roostmail/roost/backend"
)

// DoneMessage is logged when a message leaves the queue, every recipient
// delivered or reported (tests and scripts wait for it).
const DoneMessage = "outbound message done"

// result is what one attempt came to for one recipient.
type result struct {
	state  backend.RecipientState // Delivered, Failed, or Pending (try again)
	status string                 // RFC 3463 status, e.g. "5.1.1"
	remote string                 // the host that answered, "" for local delivery
	text   string                 // the reply or error, for the admin, the log and the DSN
}

func delivered(remote, text string) result {
	return result{state: backend.RecipientDelivered, status: "2.0.0", remote: remote, text: text}
}

func deferred(status, remote, text string) result {
	return result{state: backend.RecipientPending, status: status, remote: remote, text: text}
}

func failed(status, remote, text string) result {
	return result{state: backend.RecipientFailed, status: status, remote: remote, text: text}
}

// group is the recipients delivered together: one domain's, all local
// ones, or all remote ones through the relay.
type group struct {
	name  string // a domain, "local" or "relay"
	local bool
	rcpts []string
}

// groups splits a message's pending recipients.
func (e *Engine) groups(entry *backend.QueueEntry) []group {
	var out []group
	index := make(map[string]int)
	for _, r := range entry.Pending() {
		_, domain, _ := strings.Cut(r.Address, "@")
		name, local := domain, e.be.ServesDomain(domain)
		switch {
		case local:
			name = "local"
		case e.opts.Relay != "":
			name = "relay"
		}
		i, ok := index[name]
		if !ok {
			i = len(out)
			index[name] = i
			out = append(out, group{name: name, local: local})
		}
		out[i].rcpts = append(out[i].rcpts, r.Address)
	}
	return out
}

// apply records results in an entry.
func apply(q *backend.QueueEntry, results map[string]result, now time.Time) {
	for i := range q.Recipients {
		r := &q.Recipients[i]
		res, ok := results[r.Address]
		if !ok || r.State != backend.RecipientPending {
			continue
		}
		r.State, r.Status, r.Remote, r.LastResult, r.Updated = res.state, res.status, res.remote, res.text, now
	}
}

// attempt delivers what is pending of message id once and returns when
// to try again (again is false when the message is done, or gone).
func (e *Engine) attempt(ctx context.Context, id uint64) (next time.Time, again bool) {
	entry, err := e.be.Queued(ctx, id)
	if errors.Is(err, backend.ErrNotQueued) {
		return time.Time{}, false
	}
	if err != nil {
		e.log.Error("outbound: read queue", "queue_id", id, "err", err)
		return time.Now().Add(time.Minute), true
	}
	msg := &queuedMsg{e: e, id: id, entry: &entry}
	defer msg.close()
	groups := e.groups(&entry)
	all := make(map[string]result)
	// Each group's log line is written once its outcome is committed, so
	// that what the log says is what the queue holds.
	var logLast func()
	attemptNo, from := entry.Attempts+1, entry.From
	flushLog := func() {
		if logLast != nil {
			logLast()
			logLast = nil
		}
	}
	defer flushLog()
	for i, g := range groups {
		start := time.Now()
		var results map[string]result
		if g.local {
			results = e.deliverLocal(ctx, msg, g.rcpts)
		} else {
			results = e.deliverRemote(ctx, msg, g)
		}
		took := time.Since(start)
		logIt := func() { e.logAttempt(id, attemptNo, from, g, results, took) }
		for k, v := range results {
			all[k] = v
			if e.opts.OnResult != nil {
				switch v.state {
				case backend.RecipientDelivered:
					e.opts.OnResult("delivered")
				case backend.RecipientFailed:
					e.opts.OnResult("failed")
				default:
					e.opts.OnResult("deferred")
				}
			}
		}
		// Commit each group's outcome before the next group is tried, so
		// that what a remote server acknowledged is never sent again
		// after a crash. The last group's outcome goes with the final
		// update below.
		if i < len(groups)-1 {
			now := time.Now().UTC()
			if _, err := e.be.UpdateQueued(ctx, id, func(q *backend.QueueEntry) error {
				apply(q, results, now)
				return nil
			}); err != nil {
				logIt()
				return e.updateFailed(id, err)
			}
			logIt()
			continue
		}
		logLast = logIt
	}

	now := time.Now().UTC()
	apply(&entry, all, now)
	if done(&entry) {
		// Everything delivered: the common case is one commit.
		if err := e.be.DeleteQueued(ctx, id); err != nil && !errors.Is(err, backend.ErrNotQueued) {
			e.log.Error("outbound: remove delivered message", "queue_id", id, "err", err)
			return time.Now().Add(time.Minute), true
		}
		flushLog()
		e.log.Info(DoneMessage, "queue_id", id)
		return time.Time{}, false
	}
	entry, err = e.be.UpdateQueued(ctx, id, func(q *backend.QueueEntry) error {
		apply(q, all, now)
		q.Attempts++
		q.LastAttempt = now
		if len(q.Pending()) == 0 {
			return nil
		}
		expires := q.Created.Add(e.opts.GiveUpAfter)
		if !now.Before(expires) {
			// RFC 5321 §4.5.4.1: give up, and say so.
			for i := range q.Recipients {
				r := &q.Recipients[i]
				if r.State == backend.RecipientPending {
					r.State = backend.RecipientFailed
					r.Status = permanentStatus(r.Status)
					r.LastResult = fmt.Sprintf("gave up after %s: %s", e.opts.GiveUpAfter, r.LastResult)
					r.Updated = now
				}
			}
			return nil
		}
		wait := e.opts.RetrySchedule[min(q.Attempts-1, len(e.opts.RetrySchedule)-1)]
		q.NextAttempt = now.Add(wait)
		if q.NextAttempt.After(expires) {
			q.NextAttempt = expires
		}
		return nil
	})
	if err != nil {
		return e.updateFailed(id, err)
	}
	flushLog()
	if !e.report(ctx, msg, &entry) {
		return time.Now().Add(time.Minute), true
	}
	if len(entry.Pending()) == 0 {
		if err := e.be.DeleteQueued(ctx, id); err != nil && !errors.Is(err, backend.ErrNotQueued) {
			e.log.Error("outbound: remove finished message", "queue_id", id, "err", err)
			return time.Now().Add(time.Minute), true
		}
		flushLog()
		e.log.Info(DoneMessage, "queue_id", id)
		return time.Time{}, false
	}
	return entry.NextAttempt, true
}

// done reports whether nothing is left to do: no recipient pending and
// every failure reported.
func done(q *backend.QueueEntry) bool {
	for _, r := range q.Recipients {
		if r.State == backend.RecipientPending || r.State == backend.RecipientFailed && !r.Notified {
			return false
		}
	}
	return true
}

func (e *Engine) updateFailed(id uint64, err error) (time.Time, bool) {
	if errors.Is(err, backend.ErrNotQueued) {
		return time.Time{}, false // deleted by the admin meanwhile
	}
	e.log.Error("outbound: update queue", "queue_id", id, "err", err)
	return time.Now().Add(time.Minute), true
}

// permanentStatus turns a temporary status (4.x.x) into the permanent
// one of the same meaning, for a message given up on.
func permanentStatus(s string) string {
	if strings.HasPrefix(s, "4.") {
		return "5." + s[2:]
	}
	if s == "" || !strings.HasPrefix(s, "5.") {
		return "5.4.7" // RFC 3463: delivery time expired
	}
	return s
}

// logAttempt writes the one line per attempt: message, recipients, where
// it went, and what came of it.
func (e *Engine) logAttempt(id uint64, attempt int, from string, g group, results map[string]result, d time.Duration) {
	var ok, temp, perm int
	var remote, text string
	for _, r := range results {
		switch r.state {
		case backend.RecipientDelivered:
			ok++
		case backend.RecipientFailed:
			perm++
		default:
			temp++
		}
		if r.remote != "" {
			remote = r.remote
		}
		if text == "" || r.state != backend.RecipientDelivered {
			text = r.text
		}
	}
	outcome := "delivered"
	switch {
	case perm > 0 && ok+temp == 0:
		outcome = "failed"
	case temp > 0 && ok+perm == 0:
		outcome = "deferred"
	case temp+perm > 0:
		outcome = "partial"
	}
	attrs := []any{"queue_id", id, "attempt", attempt, "from", from, "to", g.name,
		"rcpts", len(g.rcpts), "delivered", ok, "deferred", temp, "failed", perm, "result", outcome,
		"remote", remote, "reply", text, "duration", d.Round(time.Millisecond)}
	if outcome == "delivered" {
		e.log.Info("delivery attempt", attrs...)
	} else {
		e.log.Warn("delivery attempt", attrs...)
	}
}

// deliverLocal stores the message into local recipients' mailboxes.
func (e *Engine) deliverLocal(ctx context.Context, msg *queuedMsg, rcpts []string) map[string]result {
	results := make(map[string]result, len(rcpts))
	var resolved []backend.Recipient
	var addrs []string
	for _, a := range rcpts {
		r, err := e.be.ResolveRecipient(ctx, a)
		switch {
		case err == nil:
			resolved = append(resolved, r)
			addrs = append(addrs, a)
		case errors.Is(err, backend.ErrNoSuchUser), errors.Is(err, backend.ErrInvalidAddress), errors.Is(err, backend.ErrRelayDenied):
			results[a] = failed("5.1.1", "", "550 5.1.1 No such user here")
		case errors.Is(err, backend.ErrOverQuota):
			results[a] = deferred("4.2.2", "", "452 4.2.2 Mailbox full")
		case errors.Is(err, backend.ErrAccountDisabled):
			results[a] = deferred("4.2.1", "", "450 4.2.1 Mailbox disabled")
		default:
			results[a] = deferred("4.3.0", "", "451 4.3.0 "+err.Error())
		}
	}
	if len(resolved) == 0 {
		return results
	}
	body, err := msg.bytes()
	if err != nil {
		for _, a := range addrs {
			results[a] = deferred("4.3.0", "", "451 4.3.0 "+err.Error())
		}
		return results
	}
	// RFC 5321 §4.4: the final delivery adds the Return-Path.
	whole := make([]byte, 0, len(body)+len(msg.entry.From)+20)
	whole = append(append(append(append(whole, "Return-Path: <"...), msg.entry.From...), ">\r\n"...), body...)
	for i, err := range e.be.Deliver(ctx, whole, resolved) {
		a := addrs[i]
		switch {
		case err == nil:
			results[a] = delivered("", "250 2.0.0 Delivered to "+resolved[i].Account)
		case errors.Is(err, backend.ErrOverQuota):
			results[a] = deferred("4.2.2", "", "452 4.2.2 Mailbox full")
		case errors.Is(err, backend.ErrTooBig):
			results[a] = failed("5.3.4", "", "552 5.3.4 Message too big")
		default:
			results[a] = deferred("4.3.0", "", "451 4.3.0 "+err.Error())
		}
	}
	return results
}

// queuedMsg is the queued message being delivered: its body, read from the
// queue when needed, and its DKIM signature, computed once per attempt.
type queuedMsg struct {
	e      *Engine
	id     uint64
	entry  *backend.QueueEntry
	body   []byte
	signed bool
	sig    []byte
}

// bytes returns the whole body (for local delivery and signing).
func (m *queuedMsg) bytes() ([]byte, error) {
	if m.body != nil {
		return m.body, nil
	}
	r, err := m.e.be.QueuedBody(context.Background(), m.id)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(int(m.entry.Size))
	if _, err := io.Copy(&buf, r); err != nil {
		return nil, fmt.Errorf("read queued message %d: %w", m.id, err)
	}
	m.body = buf.Bytes()
	return m.body, nil
}

// reader returns the message as sent to a remote server: DKIM signatures
// first.
func (m *queuedMsg) reader() (io.Reader, error) {
	body, err := m.bytes()
	if err != nil {
		return nil, err
	}
	if !m.signed {
		m.signed = true
		m.sig, err = m.e.sign(body)
		if err != nil {
			// Sending unsigned beats not sending; the log says why.
			m.e.log.Error("DKIM signing failed; sending unsigned", "queue_id", m.id, "err", err)
		}
	}
	return io.MultiReader(bytes.NewReader(m.sig), bytes.NewReader(body)), nil
}

func (m *queuedMsg) close() { m.body = nil }
