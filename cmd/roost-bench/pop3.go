package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// pop3SessionOptions are the knobs of one download-and-(maybe)-delete session.
type pop3SessionOptions struct {
	addr    string
	user    string
	pass    string
	timeout time.Duration
	dele    bool
	// warn gets errors that do not end the session (a -ERR to RETR).
	warn func(error)
}

// pop3Counts is what one session moved.
type pop3Counts struct {
	messages int64
	bytes    int64
}

// pop3Session logs in with USER/PASS, STATs, RETRs every message (and DELEs
// it with o.dele) and QUITs, like a POP3 mail app checking for mail.
func pop3Session(ctx context.Context, o pop3SessionOptions, rec *latencyRecorder) (pop3Counts, error) {
	var got pop3Counts
	timed := func(name string, f func() error) error {
		start := time.Now()
		if err := f(); err != nil {
			if ctx.Err() == nil {
				rec.fail(name)
			}
			return err
		}
		rec.observe(name, time.Since(start))
		return nil
	}
	var c *pop3Client
	err := timed("connect", func() (err error) {
		c, err = dialPOP3(ctx, o.addr, o.timeout)
		return err
	})
	if err != nil {
		return got, err
	}
	defer c.close()
	if err := timed("user", func() error { return c.user(o.user) }); err != nil {
		return got, err
	}
	if err := timed("pass", func() error { return c.pass(o.pass) }); err != nil {
		return got, err
	}
	var count int
	if err := timed("stat", func() (err error) { count, _, err = c.stat(); return err }); err != nil {
		return got, err
	}
	for i := 1; i <= count; i++ {
		var n int64
		err := timed("retr", func() (err error) { n, err = c.retr(i, io.Discard); return err })
		var perr *pop3Error
		if errors.As(err, &perr) {
			// E.g. expunged by a concurrent session with -dele: the
			// command counts as failed, the session goes on.
			if o.warn != nil {
				o.warn(err)
			}
			continue
		}
		if err != nil {
			return got, err
		}
		got.messages++
		got.bytes += n
		if o.dele {
			if err := timed("dele", func() error { return c.dele(i) }); err != nil {
				return got, err
			}
		}
	}
	return got, timed("quit", c.quit)
}

var pop3CommandOrder = []string{"connect", "user", "pass", "stat", "retr", "dele", "quit"}

// pop3Result is the report of the pop3 scenario; mb_per_sec is a contract.
type pop3Result struct {
	Scenario       string               `json:"scenario"`
	Addr           string               `json:"addr"`
	Concurrency    int                  `json:"concurrency"`
	Dele           bool                 `json:"dele"`
	Sessions       int64                `json:"sessions"`
	Errors         int64                `json:"errors"`
	Missed         int64                `json:"missed"`
	Messages       int64                `json:"messages"`
	Bytes          int64                `json:"bytes"`
	DurationSec    float64              `json:"duration_sec"`
	SessionsPerSec float64              `json:"sessions_per_sec"`
	MessagesPerSec float64              `json:"messages_per_sec"`
	MBPerSec       float64              `json:"mb_per_sec"` // 10^6 bytes of message data
	Commands       map[string]opSummary `json:"commands"`
	FirstError     string               `json:"first_error,omitempty"`
}

func (r *pop3Result) failures() int64  { return r.Errors }
func (r *pop3Result) successes() int64 { return r.Sessions }

func (r *pop3Result) writeTable(w io.Writer) {
	t := newTable(w)
	t.row("scenario", r.Scenario+" ("+r.Addr+")")
	t.row("concurrency", r.Concurrency)
	t.row("dele", r.Dele)
	t.row("sessions", fmt.Sprintf("%d ok, %d failed, %.1f/s", r.Sessions, r.Errors, r.SessionsPerSec))
	t.row("messages", fmt.Sprintf("%d, %.1f/s", r.Messages, r.MessagesPerSec))
	t.row("data", fmt.Sprintf("%.2f MB, %.2f MB/s", float64(r.Bytes)/1e6, r.MBPerSec))
	t.row("duration", fmt.Sprintf("%.2f s", r.DurationSec))
	if r.FirstError != "" {
		t.row("first error", r.FirstError)
	}
	t.flush()
	fmt.Fprintln(w)
	writeCommandTable(w, r.Commands, pop3CommandOrder)
}

type pop3Worker struct {
	id, iter        int // worker index and sessions it has run
	cfg             *config
	rec             *latencyRecorder
	errs            *errorLog
	messages, bytes *atomic.Int64
}

func (w *pop3Worker) do(ctx context.Context, seq int64) error {
	o := pop3SessionOptions{addr: w.cfg.pop3, user: w.cfg.user(w.account(seq)), pass: w.cfg.pass,
		timeout: w.cfg.timeout, dele: w.cfg.dele}
	o.warn = func(err error) { w.errs.add(o.user, err) }
	got, err := pop3Session(ctx, o, w.rec)
	var perr *pop3Error
	if errors.As(err, &perr) && strings.HasPrefix(perr.msg, "[IN-USE]") {
		// RFC 2449 §8.1.2: another session holds the maildrop (servers
		// that lock it, as RFC 1939 §8 asks). Not a failure of this one.
		return nil
	}
	w.messages.Add(got.messages)
	w.bytes.Add(got.bytes)
	if err != nil && ctx.Err() == nil {
		w.errs.add(o.user, err)
	}
	return err
}

// account picks the account of the next session. A POP3 maildrop is
// exclusive (RFC 1939 §8), so with at least as many accounts as workers
// each worker keeps to its own share (accounts id+1, id+1+c, ...) and no
// two sessions contend for one maildrop; otherwise it picks at random.
func (w *pop3Worker) account(seq int64) int {
	n, c := w.cfg.n, w.cfg.concurrency
	if c <= 0 || n < c || w.cfg.rate > 0 {
		return sessionRand(w.cfg.seed, "pop3", seq).IntN(n) + 1
	}
	share := (n - w.id + c - 1) / c
	k := w.iter % share
	w.iter++
	return w.id + k*c + 1
}

func (w *pop3Worker) close() {}

func runPOP3(ctx context.Context, cfg *config, stderr io.Writer) (*pop3Result, error) {
	rec := newLatencyRecorder()
	errs := newErrorLog(stderr, cfg.quiet)
	var messages, bytes atomic.Int64
	var cnt counters
	plan := loadPlan{concurrency: cfg.concurrency, duration: cfg.duration, count: cfg.count, rate: cfg.rate}
	prog := startProgress(stderr, cfg.quiet, "pop3", &cnt, plan.duration, plan.count)
	out := runLoad(ctx, plan, &cnt, func(id int) worker {
		return &pop3Worker{id: id, cfg: cfg, rec: rec, errs: errs, messages: &messages, bytes: &bytes}
	})
	prog.stop()

	res := &pop3Result{
		Scenario:       "pop3",
		Addr:           cfg.pop3,
		Concurrency:    cfg.concurrency,
		Dele:           cfg.dele,
		Sessions:       out.ok,
		Errors:         out.failed,
		Missed:         out.missed,
		Messages:       messages.Load(),
		Bytes:          bytes.Load(),
		DurationSec:    round3(out.elapsed.Seconds()),
		SessionsPerSec: perSec(float64(out.ok), out.elapsed),
		MessagesPerSec: perSec(float64(messages.Load()), out.elapsed),
		MBPerSec:       perSec(float64(bytes.Load())/1e6, out.elapsed),
		Commands:       map[string]opSummary{},
		FirstError:     errs.first(),
	}
	for _, name := range rec.names() {
		res.Commands[name] = rec.summary(name, out.elapsed)
	}
	return res, nil
}
