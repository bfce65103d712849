package outbound

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-message"

	"github.com/roostmail/roost/backend"
)

// report tells the sender about recipients that failed and were not yet
// reported: one delivery status notification (RFC 3464) into the
// sender's INBOX, then the recipients are marked notified (unless the
// caller deletes the message anyway). It reports whether that is done; on
// false the caller tries again later (a DSN may then come twice, never
// not at all).
func (e *Engine) report(ctx context.Context, msg *queuedMsg, entry *backend.QueueEntry) bool {
	var failedRcpts []backend.QueueRecipient
	for _, r := range entry.Recipients {
		if r.State == backend.RecipientFailed && !r.Notified {
			failedRcpts = append(failedRcpts, r)
		}
	}
	if len(failedRcpts) == 0 {
		return true
	}
	if e.opts.OnResult != nil {
		for range failedRcpts {
			e.opts.OnResult("bounced")
		}
	}
	sender, err := e.be.ResolveRecipient(ctx, entry.From)
	switch {
	case err != nil:
		e.log.Warn("outbound: sender cannot be told of the failure (account gone?)", "queue_id", entry.ID, "from", entry.From, "err", err)
	default:
		var headers []byte
		if body, err := msg.bytes(); err == nil {
			headers = headerBlock(body)
		}
		dsn, err := e.buildDSN(entry, failedRcpts, headers)
		if err != nil {
			e.log.Error("outbound: build DSN", "queue_id", entry.ID, "err", err)
			return false
		}
		if errs := e.be.Deliver(ctx, dsn, []backend.Recipient{sender}); errs[0] != nil {
			e.log.Error("outbound: deliver DSN", "queue_id", entry.ID, "to", entry.From, "err", errs[0])
			return false
		}
		e.log.Info("delivery status notification sent", "queue_id", entry.ID, "to", entry.From, "failed", len(failedRcpts))
	}
	if len(entry.Pending()) == 0 {
		return true // the caller deletes the message
	}
	updated, err := e.be.UpdateQueued(ctx, entry.ID, func(q *backend.QueueEntry) error {
		for i := range q.Recipients {
			if q.Recipients[i].State == backend.RecipientFailed {
				q.Recipients[i].Notified = true
			}
		}
		return nil
	})
	if err != nil {
		e.log.Error("outbound: mark failures reported", "queue_id", entry.ID, "err", err)
		return false
	}
	*entry = updated
	return true
}

// headerBlock returns the header of a message, without the trace
// headers Roost itself added, for the text/rfc822-headers part.
func headerBlock(body []byte) []byte {
	end := bytes.Index(body, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(body)
	} else {
		end += 2
	}
	return body[:end]
}

// buildDSN writes a multipart/report (RFC 6522) with a human-readable
// part, the message/delivery-status (RFC 3464 §2) and the original
// header (text/rfc822-headers).
func (e *Engine) buildDSN(entry *backend.QueueEntry, rcpts []backend.QueueRecipient, headers []byte) ([]byte, error) {
	now := time.Now()
	var id [6]byte
	rand.Read(id[:])
	var h message.Header
	h.Set("From", "Mail Delivery System <MAILER-DAEMON@"+e.opts.Hostname+">")
	h.Set("To", entry.From)
	h.Set("Subject", "Undelivered Mail Returned to Sender")
	h.Set("Date", now.Format(time.RFC1123Z))
	h.Set("Message-ID", fmt.Sprintf("<dsn.%d.%s@%s>", entry.ID, hex.EncodeToString(id[:]), e.opts.Hostname))
	h.Set("Auto-Submitted", "auto-replied") // RFC 3834 §5
	h.Set("MIME-Version", "1.0")
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})

	var buf bytes.Buffer
	// The null reverse-path: nothing may answer a DSN (RFC 3464 §2.1).
	buf.WriteString("Return-Path: <>\r\n")
	w, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	part := func(contentType string, params map[string]string, text string) error {
		var ph message.Header
		ph.SetContentType(contentType, params)
		pw, err := w.CreatePart(ph)
		if err != nil {
			return err
		}
		if _, err := pw.Write([]byte(text)); err != nil {
			return err
		}
		return pw.Close()
	}

	var human strings.Builder
	fmt.Fprintf(&human, "This is the mail system at %s.\r\n\r\n", e.opts.Hostname)
	human.WriteString("Your message could not be delivered to the following recipients:\r\n\r\n")
	for _, r := range rcpts {
		fmt.Fprintf(&human, "  <%s>: %s\r\n", r.Address, ascii(r.LastResult))
	}
	fmt.Fprintf(&human, "\r\nThe message was queued on %s (queue ID %d); its header is attached.\r\n",
		entry.Created.Format(time.RFC1123Z), entry.ID)
	if err := part("text/plain", map[string]string{"charset": "us-ascii"}, human.String()); err != nil {
		return nil, err
	}

	var st strings.Builder
	fmt.Fprintf(&st, "Reporting-MTA: dns; %s\r\n", e.opts.Hostname)
	fmt.Fprintf(&st, "X-Roost-Queue-ID: %d\r\n", entry.ID)
	fmt.Fprintf(&st, "Arrival-Date: %s\r\n", entry.Created.Format(time.RFC1123Z))
	for _, r := range rcpts {
		st.WriteString("\r\n")
		fmt.Fprintf(&st, "Final-Recipient: rfc822; %s\r\n", r.Address)
		st.WriteString("Action: failed\r\n")
		status := r.Status
		if !strings.HasPrefix(status, "5.") {
			status = permanentStatus(status)
		}
		fmt.Fprintf(&st, "Status: %s\r\n", status)
		if r.Remote != "" {
			fmt.Fprintf(&st, "Remote-MTA: dns; %s\r\n", r.Remote)
		}
		if r.LastResult != "" {
			fmt.Fprintf(&st, "Diagnostic-Code: smtp; %s\r\n", ascii(r.LastResult))
		}
		if !r.Updated.IsZero() {
			fmt.Fprintf(&st, "Last-Attempt-Date: %s\r\n", r.Updated.Format(time.RFC1123Z))
		}
	}
	if err := part("message/delivery-status", nil, st.String()); err != nil {
		return nil, err
	}
	if err := part("text/rfc822-headers", nil, string(headers)); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ascii keeps a reply's text to one line of printable ASCII.
func ascii(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = ' '
		}
	}
	return strings.TrimSpace(string(b))
}
