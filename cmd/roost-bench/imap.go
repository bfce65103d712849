package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapConn is one IMAP connection whose commands are timed into rec.
type imapConn struct {
	ctx     context.Context
	conn    net.Conn
	c       *imapclient.Client
	timeout time.Duration
	rec     *latencyRecorder
	stop    func() bool
}

// dialIMAP connects and waits for the greeting, timed as "connect".
func dialIMAP(ctx context.Context, addr string, timeout time.Duration, rec *latencyRecorder) (*imapConn, error) {
	start := time.Now()
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() == nil {
			rec.fail("connect")
		}
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	s := &imapConn{ctx: ctx, conn: conn, timeout: timeout, rec: rec}
	s.stop = context.AfterFunc(ctx, func() { conn.Close() })
	s.c = imapclient.New(conn, nil)
	conn.SetDeadline(time.Now().Add(timeout))
	if err := s.c.WaitGreeting(); err != nil {
		s.close()
		if ctx.Err() == nil {
			rec.fail("connect")
		}
		return nil, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	rec.observe("connect", time.Since(start))
	return s, nil
}

// step runs one command under the network timeout and records its latency
// (or its failure) under name.
func (s *imapConn) step(name string, f func() error) error {
	s.conn.SetDeadline(time.Now().Add(s.timeout))
	start := time.Now()
	if err := f(); err != nil {
		if s.ctx.Err() == nil {
			s.rec.fail(name)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	s.rec.observe(name, time.Since(start))
	return nil
}

// idle enters IDLE (RFC 2177), stays for hold and leaves with DONE. The
// recorded "idle" latency is the server's part: until the "+ idling"
// continuation, plus from DONE to the tagged OK; the hold is not counted.
func (s *imapConn) idle(hold time.Duration) error {
	s.conn.SetDeadline(time.Now().Add(s.timeout + hold))
	start := time.Now()
	cmd, err := s.c.Idle()
	if err != nil {
		if s.ctx.Err() == nil {
			s.rec.fail("idle")
		}
		return fmt.Errorf("idle: %w", err)
	}
	ack := time.Since(start)
	t := time.NewTimer(hold)
	select {
	case <-t.C:
	case <-s.ctx.Done():
		t.Stop()
	}
	start = time.Now()
	if err := cmd.Close(); err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		if s.ctx.Err() == nil {
			s.rec.fail("idle")
		}
		return fmt.Errorf("idle: DONE: %w", err)
	}
	s.rec.observe("idle", ack+time.Since(start))
	return nil
}

func (s *imapConn) login(user, pass string) error {
	return s.step("login", func() error { return s.c.Login(user, pass).Wait() })
}

func (s *imapConn) selectInbox() (*imap.SelectData, error) {
	var data *imap.SelectData
	err := s.step("select", func() (err error) {
		data, err = s.c.Select("INBOX", nil).Wait()
		return err
	})
	return data, err
}

func (s *imapConn) logout() error {
	return s.step("logout", func() error { return s.c.Logout().Wait() })
}

func (s *imapConn) close() {
	s.stop()
	s.c.Close()
}

// drainFetch reads every FETCH response of cmd, discarding body literals as
// they stream in, and returns the number of messages and literal bytes.
func drainFetch(cmd *imapclient.FetchCommand) (msgs int, n int64, err error) {
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		msgs++
		for item := msg.Next(); item != nil; item = msg.Next() {
			if body, ok := item.(imapclient.FetchItemDataBodySection); ok && body.Literal != nil {
				c, err := io.Copy(io.Discard, body.Literal)
				n += c
				if err != nil {
					cmd.Close()
					return msgs, n, err
				}
			}
		}
	}
	return msgs, n, cmd.Close()
}

// imapSessionOptions are the knobs of one realistic client session.
type imapSessionOptions struct {
	addr    string
	user    string
	pass    string
	timeout time.Duration
	idleFor time.Duration
	newest  uint32 // how many of the newest messages get ENVELOPE FLAGS
}

// imapSession does what a mail app does when it wakes up: LOGIN, SELECT
// INBOX, FETCH ENVELOPE+FLAGS of the newest messages, FETCH one body
// (BODY.PEEK[]), STORE +FLAGS \Seen on it, IDLE briefly, LOGOUT. It returns
// the body bytes read.
func imapSession(ctx context.Context, o imapSessionOptions, rng *rand.Rand, rec *latencyRecorder) (int64, error) {
	s, err := dialIMAP(ctx, o.addr, o.timeout, rec)
	if err != nil {
		return 0, err
	}
	defer s.close()
	if err := s.login(o.user, o.pass); err != nil {
		return 0, err
	}
	sel, err := s.selectInbox()
	if err != nil {
		return 0, err
	}
	var bodyBytes int64
	if n := sel.NumMessages; n > 0 {
		lo := uint32(1)
		if n > o.newest {
			lo = n - o.newest + 1
		}
		var newest imap.SeqSet
		newest.AddRange(lo, n)
		err := s.step("fetch_envelope", func() error {
			_, _, err := drainFetch(s.c.Fetch(newest, &imap.FetchOptions{Envelope: true, Flags: true}))
			return err
		})
		if err != nil {
			return 0, err
		}
		pick := imap.SeqSetNum(lo + uint32(rng.IntN(int(n-lo+1))))
		err = s.step("fetch_body", func() (err error) {
			_, bodyBytes, err = drainFetch(s.c.Fetch(pick, &imap.FetchOptions{
				BodySection: []*imap.FetchItemBodySection{{Peek: true}},
			}))
			return err
		})
		if err != nil {
			return bodyBytes, err
		}
		err = s.step("store", func() error {
			return s.c.Store(pick, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true,
				Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
		})
		if err != nil {
			return bodyBytes, err
		}
	}
	if o.idleFor > 0 {
		if err := s.idle(o.idleFor); err != nil {
			return bodyBytes, err
		}
	}
	return bodyBytes, s.logout()
}

// imapCommandOrder is the table order of the imap scenario's commands.
var imapCommandOrder = []string{"connect", "login", "select", "fetch_envelope", "fetch_body", "store", "idle", "logout"}

// imapResult is the report of the imap scenario; ops_per_sec is a contract.
type imapResult struct {
	Scenario       string               `json:"scenario"`
	Addr           string               `json:"addr"`
	Concurrency    int                  `json:"concurrency"`
	Rate           float64              `json:"rate"`
	Sessions       int64                `json:"sessions"` // completed without error
	Errors         int64                `json:"errors"`   // failed sessions
	Missed         int64                `json:"missed"`   // -rate starts dropped: all clients busy
	DurationSec    float64              `json:"duration_sec"`
	SessionsPerSec float64              `json:"sessions_per_sec"`
	Ops            int64                `json:"ops"` // IMAP commands that succeeded (connect not counted)
	OpsPerSec      float64              `json:"ops_per_sec"`
	BodyBytes      int64                `json:"body_bytes"`
	Commands       map[string]opSummary `json:"commands"`
	FirstError     string               `json:"first_error,omitempty"`
}

func (r *imapResult) failures() int64  { return r.Errors }
func (r *imapResult) successes() int64 { return r.Sessions }

func (r *imapResult) writeTable(w io.Writer) {
	t := newTable(w)
	t.row("scenario", r.Scenario+" ("+r.Addr+")")
	t.row("concurrency", r.Concurrency)
	if r.Rate > 0 {
		t.row("rate", fmt.Sprintf("%.1f sessions/s (missed %d)", r.Rate, r.Missed))
	}
	t.row("sessions", fmt.Sprintf("%d ok, %d failed, %.1f/s", r.Sessions, r.Errors, r.SessionsPerSec))
	t.row("commands", fmt.Sprintf("%d ok, %.1f/s", r.Ops, r.OpsPerSec))
	t.row("duration", fmt.Sprintf("%.2f s", r.DurationSec))
	if r.FirstError != "" {
		t.row("first error", r.FirstError)
	}
	t.flush()
	fmt.Fprintln(w)
	writeCommandTable(w, r.Commands, imapCommandOrder)
}

// writeCommandTable prints one row per command: count, rate, percentiles.
func writeCommandTable(w io.Writer, cmds map[string]opSummary, order []string) {
	t := newTable(w)
	t.row("command", "count", "errors", "ops/s", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms")
	names := slices.Clone(order)
	for name := range cmds {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		s, ok := cmds[name]
		if !ok {
			continue
		}
		t.row(name, s.Count, s.Errors, fmt.Sprintf("%.1f", s.OpsPerSec), fmt.Sprintf("%.2f", s.MeanMs),
			fmt.Sprintf("%.2f", s.P50Ms), fmt.Sprintf("%.2f", s.P90Ms), fmt.Sprintf("%.2f", s.P99Ms),
			fmt.Sprintf("%.2f", s.MaxMs))
	}
	t.flush()
}

// sessionRand returns the random source of session seq: account choices do
// not depend on which worker runs the session.
func sessionRand(seed uint64, scenario string, seq int64) *rand.Rand {
	var salt uint64
	for _, c := range scenario {
		salt = salt*131 + uint64(c)
	}
	return rand.New(rand.NewPCG(seed^salt, uint64(seq)))
}

type imapWorker struct {
	cfg   *config
	rec   *latencyRecorder
	errs  *errorLog
	bytes *atomic.Int64
}

func (w *imapWorker) do(ctx context.Context, seq int64) error {
	rng := sessionRand(w.cfg.seed, "imap", seq)
	o := imapSessionOptions{addr: w.cfg.imap, user: w.cfg.user(rng.IntN(w.cfg.n) + 1), pass: w.cfg.pass,
		timeout: w.cfg.timeout, idleFor: w.cfg.idleFor, newest: 50}
	n, err := imapSession(ctx, o, rng, w.rec)
	w.bytes.Add(n)
	if err != nil && ctx.Err() == nil {
		w.errs.add(o.user, err)
	}
	return err
}

func (w *imapWorker) close() {}

func runIMAP(ctx context.Context, cfg *config, stderr io.Writer) (*imapResult, error) {
	rec := newLatencyRecorder()
	errs := newErrorLog(stderr, cfg.quiet)
	var bytes atomic.Int64
	var cnt counters
	plan := loadPlan{concurrency: cfg.concurrency, duration: cfg.duration, count: cfg.count, rate: cfg.rate}
	prog := startProgress(stderr, cfg.quiet, "imap", &cnt, plan.duration, plan.count)
	out := runLoad(ctx, plan, &cnt, func(int) worker {
		return &imapWorker{cfg: cfg, rec: rec, errs: errs, bytes: &bytes}
	})
	prog.stop()

	res := &imapResult{
		Scenario:       "imap",
		Addr:           cfg.imap,
		Concurrency:    cfg.concurrency,
		Rate:           cfg.rate,
		Sessions:       out.ok,
		Errors:         out.failed,
		Missed:         out.missed,
		DurationSec:    round3(out.elapsed.Seconds()),
		SessionsPerSec: perSec(float64(out.ok), out.elapsed),
		BodyBytes:      bytes.Load(),
		Commands:       map[string]opSummary{},
		FirstError:     errs.first(),
	}
	for _, name := range rec.names() {
		s := rec.summary(name, out.elapsed)
		res.Commands[name] = s
		if name != "connect" {
			res.Ops += s.Count
		}
	}
	res.OpsPerSec = perSec(float64(res.Ops), out.elapsed)
	return res, nil
}
