package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
)

// bigboxResult is the report of the bigbox scenario: how a server copes with
// one very large mailbox. Every *_ms figure is a single measurement except
// the deliveries, which are the median of -probes.
type bigboxResult struct {
	Scenario           string  `json:"scenario"`
	IMAPAddr           string  `json:"imap"`
	LMTPAddr           string  `json:"lmtp"`
	User               string  `json:"user"`
	Target             int     `json:"target"`   // -messages
	Messages           int64   `json:"messages"` // in the mailbox when measured
	Filled             int64   `json:"filled"`   // delivered by this run
	FillErrors         int64   `json:"fill_errors"`
	FillSec            float64 `json:"fill_sec"`
	FillMessagesPerSec float64 `json:"fill_messages_per_sec"`
	SelectMs           float64 `json:"select_ms"`
	FetchFlagsMs       float64 `json:"fetch_flags_ms"` // FETCH 1:* (FLAGS)
	FetchedFlags       int64   `json:"fetched_flags"`
	UIDSearchUnseenMs  float64 `json:"uid_search_unseen_ms"`
	Unseen             int64   `json:"unseen"`
	FetchOneMs         float64 `json:"fetch_one_ms"` // BODY.PEEK[] of the middle message
	Probes             int     `json:"probes"`
	DeliverMs          float64 `json:"deliver_ms"` // one LMTP delivery into the big mailbox
	EmptyUser          string  `json:"empty_user"`
	EmptyBoxMessages   int64   `json:"empty_box_messages"` // before the probes
	DeliverEmptyMs     float64 `json:"deliver_empty_ms"`   // one delivery into EmptyUser's mailbox
	Errors             int64   `json:"errors"`             // fill errors plus failed probes
	FirstError         string  `json:"first_error,omitempty"`
}

func (r *bigboxResult) failures() int64 { return r.Errors }
func (r *bigboxResult) successes() int64 {
	if r.SelectMs > 0 || r.DeliverMs > 0 {
		return 1
	}
	return 0
}

func (r *bigboxResult) writeTable(w io.Writer) {
	t := newTable(w)
	t.row("scenario", fmt.Sprintf("%s (imap %s, lmtp %s)", r.Scenario, r.IMAPAddr, r.LMTPAddr))
	t.row("mailbox", fmt.Sprintf("%s: %d messages (target %d)", r.User, r.Messages, r.Target))
	if r.Filled > 0 || r.FillErrors > 0 {
		t.row("fill", fmt.Sprintf("%d delivered, %d failed, %.1f s, %.1f messages/s", r.Filled, r.FillErrors, r.FillSec, r.FillMessagesPerSec))
	}
	t.row("SELECT INBOX", fmt.Sprintf("%.2f ms", r.SelectMs))
	t.row("FETCH 1:* (FLAGS)", fmt.Sprintf("%.2f ms (%d messages)", r.FetchFlagsMs, r.FetchedFlags))
	t.row("UID SEARCH UNSEEN", fmt.Sprintf("%.2f ms (%d found)", r.UIDSearchUnseenMs, r.Unseen))
	t.row("FETCH n (BODY.PEEK[])", fmt.Sprintf("%.2f ms", r.FetchOneMs))
	t.row("delivery, big mailbox", fmt.Sprintf("%.2f ms (median of %d)", r.DeliverMs, r.Probes))
	t.row("delivery, small mailbox", fmt.Sprintf("%.2f ms (median of %d, %s had %d messages)", r.DeliverEmptyMs, r.Probes, r.EmptyUser, r.EmptyBoxMessages))
	t.row("errors", r.Errors)
	if r.FirstError != "" {
		t.row("first error", r.FirstError)
	}
	t.flush()
}

// mailboxSize returns the number of messages in user's INBOX (STATUS).
func mailboxSize(ctx context.Context, cfg *config, user string) (int64, error) {
	s, err := dialIMAP(ctx, cfg.imap, cfg.timeout, newLatencyRecorder())
	if err != nil {
		return 0, err
	}
	defer s.close()
	if err := s.login(user, cfg.pass); err != nil {
		return 0, err
	}
	var n int64
	err = s.step("status", func() error {
		data, err := s.c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			return err
		}
		if data.NumMessages == nil {
			return errors.New("no MESSAGES in STATUS reply")
		}
		n = int64(*data.NumMessages)
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.logout()
	return n, nil
}

// countSearch returns the number of hits of a (UID) SEARCH, without trusting
// the server to send a well-formed set.
func countSearch(data *imap.SearchData) (int64, error) {
	if data.All == nil {
		return int64(data.Count), nil
	}
	var nums []uint32
	var ok bool
	switch set := data.All.(type) {
	case imap.UIDSet:
		var uids []imap.UID
		uids, ok = set.Nums()
		nums = make([]uint32, len(uids))
	case imap.SeqSet:
		nums, ok = set.Nums()
	}
	if !ok {
		return 0, errors.New("SEARCH reply holds a dynamic set")
	}
	return int64(len(nums)), nil
}

func runBigbox(ctx context.Context, cfg *config, stderr io.Writer) (*bigboxResult, error) {
	res := &bigboxResult{Scenario: "bigbox", IMAPAddr: cfg.imap, LMTPAddr: cfg.lmtp, User: cfg.user(1),
		Target: cfg.messages, Probes: cfg.probes, EmptyUser: cfg.user(2)}
	errs := newErrorLog(stderr, cfg.quiet)
	gen := msgGenerator{seed: cfg.seed, size: cfg.size}

	have, err := mailboxSize(ctx, cfg, res.User)
	if err != nil {
		return nil, fmt.Errorf("count messages of %s: %w", res.User, err)
	}
	if need := int64(cfg.messages) - have; need > 0 {
		if !cfg.quiet {
			fmt.Fprintf(stderr, "bigbox: %s has %d messages; delivering %d over %d LMTP connections\n",
				res.User, have, need, cfg.concurrency)
		}
		target := deliverTarget{addr: cfg.lmtp, lmtp: true, from: cfg.from, gen: gen, seqBase: have,
			rcpts: func(dst []string, _ int64) []string { return append(dst, res.User) }}
		fill := deliverLoad(ctx, cfg, loadPlan{concurrency: cfg.concurrency, count: need}, target, "bigbox fill", stderr)
		res.Filled, res.FillErrors = fill.Messages, fill.Errors
		res.FillSec, res.FillMessagesPerSec = fill.DurationSec, fill.MessagesPerSec
		if fill.FirstError != "" {
			errs.add("fill", errors.New(fill.FirstError))
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	res.Errors = res.FillErrors

	if err := timeBigMailbox(ctx, cfg, res); err != nil {
		return nil, fmt.Errorf("IMAP on %s: %w", res.User, err)
	}
	if res.EmptyBoxMessages, err = mailboxSize(ctx, cfg, res.EmptyUser); err != nil {
		return nil, fmt.Errorf("count messages of %s: %w", res.EmptyUser, err)
	}
	if err := timeDeliveries(ctx, cfg, gen, res, errs); err != nil {
		return nil, err
	}
	res.FirstError = errs.first()
	return res, nil
}

// timeBigMailbox times, on a fresh logged-in connection: SELECT INBOX,
// FETCH 1:* (FLAGS), UID SEARCH UNSEEN and a one-message FETCH.
func timeBigMailbox(ctx context.Context, cfg *config, res *bigboxResult) error {
	rec := newLatencyRecorder()
	s, err := dialIMAP(ctx, cfg.imap, cfg.timeout, rec)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.login(res.User, cfg.pass); err != nil {
		return err
	}
	sel, err := s.selectInbox()
	if err != nil {
		return err
	}
	res.Messages = int64(sel.NumMessages)
	if sel.NumMessages == 0 {
		return errors.New("mailbox is empty after the fill")
	}
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	err = s.step("fetch_flags", func() error {
		n, _, err := drainFetch(s.c.Fetch(all, &imap.FetchOptions{Flags: true}))
		res.FetchedFlags = int64(n)
		return err
	})
	if err != nil {
		return err
	}
	err = s.step("uid_search_unseen", func() error {
		data, err := s.c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
		if err != nil {
			return err
		}
		res.Unseen, err = countSearch(data)
		return err
	})
	if err != nil {
		return err
	}
	middle := imap.SeqSetNum((sel.NumMessages + 1) / 2)
	err = s.step("fetch_one", func() error {
		_, _, err := drainFetch(s.c.Fetch(middle, &imap.FetchOptions{
			BodySection: []*imap.FetchItemBodySection{{Peek: true}}}))
		return err
	})
	if err != nil {
		return err
	}
	s.logout()
	one := func(name string) float64 { return rec.summary(name, 0).MaxMs }
	res.SelectMs, res.FetchFlagsMs = one("select"), one("fetch_flags")
	res.UIDSearchUnseenMs, res.FetchOneMs = one("uid_search_unseen"), one("fetch_one")
	return nil
}

// timeDeliveries delivers -probes messages each to the big and the small
// mailbox, alternating, over one LMTP connection, and keeps the medians.
func timeDeliveries(ctx context.Context, cfg *config, gen msgGenerator, res *bigboxResult, errs *errorLog) error {
	c, err := dialMail(ctx, cfg.lmtp, true, cfg.timeout, false)
	if err != nil {
		return err
	}
	defer c.quit()
	var big, small []time.Duration
	seq := uint64(1) << 40 // apart from the fill's message numbers
	for i := range cfg.probes * 2 {
		user, into := res.User, &big
		if i%2 == 1 {
			user, into = res.EmptyUser, &small
		}
		msg := gen.message(seq+uint64(i), cfg.from, user)
		start := time.Now()
		out, err := c.send(cfg.from, []string{user}, msg)
		elapsed := time.Since(start)
		if err == nil {
			err = out.err
		}
		if err != nil {
			res.Errors++
			errs.add("probe "+user, err)
			var nerr net.Error
			if errors.As(err, &nerr) || out.err == nil {
				return fmt.Errorf("LMTP delivery to %s: %w", user, err)
			}
			continue
		}
		*into = append(*into, elapsed)
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return ms(percentile(d, 50))
	}
	res.DeliverMs, res.DeliverEmptyMs = median(big), median(small)
	return nil
}
