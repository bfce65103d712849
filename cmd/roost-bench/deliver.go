package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// deliverResult is the report of the deliver scenario. messages_per_sec,
// p50_ms and p99_ms are contracts (issue 7).
type deliverResult struct {
	Scenario       string  `json:"scenario"`
	Protocol       string  `json:"protocol"`
	Addr           string  `json:"addr"`
	Concurrency    int     `json:"concurrency"`
	Size           string  `json:"size"`
	Messages       int64   `json:"messages"`   // transactions with every recipient delivered
	Recipients     int64   `json:"recipients"` // successful per-recipient deliveries
	Errors         int64   `json:"errors"`     // failed transactions
	Missed         int64   `json:"missed"`     // -rate starts dropped: all connections busy
	Connections    int64   `json:"connections"`
	Bytes          int64   `json:"bytes"`
	DurationSec    float64 `json:"duration_sec"`
	MessagesPerSec float64 `json:"messages_per_sec"`
	MBPerSec       float64 `json:"mb_per_sec"`
	MeanMs         float64 `json:"mean_ms"`
	P50Ms          float64 `json:"p50_ms"`
	P90Ms          float64 `json:"p90_ms"`
	P99Ms          float64 `json:"p99_ms"`
	MaxMs          float64 `json:"max_ms"`
	FirstError     string  `json:"first_error,omitempty"`
}

func (r *deliverResult) failures() int64  { return r.Errors }
func (r *deliverResult) successes() int64 { return r.Messages }

func (r *deliverResult) writeTable(w io.Writer) {
	t := newTable(w)
	t.row("scenario", r.Scenario+" ("+r.Protocol+" "+r.Addr+")")
	t.row("concurrency", r.Concurrency)
	t.row("size", r.Size)
	t.row("messages", r.Messages)
	t.row("recipients", r.Recipients)
	t.row("errors", r.Errors)
	if r.Missed > 0 {
		t.row("missed (rate)", r.Missed)
	}
	t.row("connections", r.Connections)
	t.row("duration", fmt.Sprintf("%.2f s", r.DurationSec))
	t.row("messages/s", fmt.Sprintf("%.1f", r.MessagesPerSec))
	t.row("MB/s", fmt.Sprintf("%.2f", r.MBPerSec))
	t.row("latency mean/p50/p90/p99/max", fmt.Sprintf("%.2f / %.2f / %.2f / %.2f / %.2f ms",
		r.MeanMs, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs))
	if r.FirstError != "" {
		t.row("first error", r.FirstError)
	}
	t.flush()
}

// deliverTarget says where deliveries go and to whom.
type deliverTarget struct {
	addr string
	lmtp bool
	from string
	// authUser and authPass, if set, log in after EHLO (submission).
	authUser, authPass string
	gen                msgGenerator
	// seqBase is added to the operation number to pick the message.
	seqBase int64
	// rcpts appends the recipients of message seq to dst.
	rcpts func(dst []string, seq int64) []string
	// segmented: Nagle on, no pipelining, the body and the final dot
	// written separately (see mailClient.segmented).
	segmented bool
}

// deliverStats is shared by the workers of one run.
type deliverStats struct {
	rec         *latencyRecorder
	errs        *errorLog
	mu          sync.Mutex
	recipients  int64
	bytes       int64
	connections int64
}

// deliverWorker keeps one connection open across transactions and redials
// after a network error.
type deliverWorker struct {
	target  deliverTarget
	timeout time.Duration
	stats   *deliverStats
	client  *mailClient
	msgs    *msgBuilder // builds into one buffer for all of the worker's messages
	rcptBuf []string
	data    []byte
}

// prepare opens the worker's connection before the run. Without it a
// worker whose goroutine started late could find every operation taken and
// never connect (TestRunDeliverScenario saw 2 connections of 3 on a loaded
// machine). A failure here is left to do, which redials and counts it.
func (w *deliverWorker) prepare(ctx context.Context) {
	w.connect(ctx)
}

// connect dials (and logs in, with -auth) and counts the connection.
func (w *deliverWorker) connect(ctx context.Context) error {
	c, err := dialMail(ctx, w.target.addr, w.target.lmtp, w.timeout, w.target.segmented)
	if err != nil {
		return err
	}
	if w.target.authUser != "" {
		if err := c.authPlain(w.target.authUser, w.target.authPass); err != nil {
			c.close()
			return err
		}
	}
	w.client = c
	w.stats.mu.Lock()
	w.stats.connections++
	w.stats.mu.Unlock()
	return nil
}

func (w *deliverWorker) do(ctx context.Context, seq int64) error {
	w.rcptBuf = w.target.rcpts(w.rcptBuf[:0], seq)
	rcpts := w.rcptBuf
	// The message is built before the clock starts: we time the server.
	if w.msgs == nil {
		w.msgs = w.target.gen.newBuilder()
	}
	msg := w.msgs.build(uint64(w.target.seqBase+seq), w.target.from, rcpts[0])
	var data []byte // dot-stuffed for DATA; the segmented client uses DotWriter
	if !w.target.segmented {
		w.data = w.msgs.appendDotStuffed(w.data[:0])
		data = w.data
	}
	start := time.Now()
	if w.client == nil {
		if err := w.connect(ctx); err != nil {
			return w.failed(ctx, err)
		}
	}
	res, err := w.client.sendStuffed(w.target.from, rcpts, msg, data)
	if err != nil {
		w.client.close()
		w.client = nil
		return w.failed(ctx, err)
	}
	elapsed := time.Since(start)
	w.stats.mu.Lock()
	w.stats.recipients += int64(res.accepted)
	if res.err == nil {
		w.stats.bytes += int64(len(msg))
	}
	w.stats.mu.Unlock()
	if res.err != nil {
		return w.failed(ctx, res.err)
	}
	w.stats.rec.observe("deliver", elapsed)
	return nil
}

func (w *deliverWorker) failed(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		w.stats.rec.fail("deliver")
		w.stats.errs.add("deliver", err)
	}
	return err
}

func (w *deliverWorker) close() {
	if w.client != nil {
		w.client.quit()
	}
}

// roundRobinRcpts spreads messages evenly over accounts 1..n: message seq
// goes to accounts seq*k+1 ... seq*k+k (mod n).
func roundRobinRcpts(cfg *config) func(dst []string, seq int64) []string {
	user := cfg.user
	if cfg.n <= precomputedNames {
		names := make([]string, cfg.n+1)
		for i := 1; i <= cfg.n; i++ {
			names[i] = cfg.user(i)
		}
		user = func(i int) string { return names[i] }
	}
	return func(dst []string, seq int64) []string {
		for i := range cfg.rcpts {
			dst = append(dst, user(int((seq*int64(cfg.rcpts)+int64(i))%int64(cfg.n))+1))
		}
		return dst
	}
}

// precomputedNames bounds the accounts whose names roundRobinRcpts formats
// once, before the run, instead of for every message.
const precomputedNames = 1 << 17

// runDeliver runs the deliver scenario with targets from cfg.
func runDeliver(ctx context.Context, cfg *config, stderr io.Writer) (*deliverResult, error) {
	target := deliverTarget{addr: cfg.lmtp, lmtp: true, from: cfg.from,
		gen: msgGenerator{seed: cfg.seed, size: cfg.size}, rcpts: roundRobinRcpts(cfg), segmented: cfg.segmented}
	if cfg.useSMTP {
		target.addr, target.lmtp = cfg.smtp, false
		target.authUser, target.authPass = cfg.auth, cfg.pass
	}
	plan := loadPlan{concurrency: cfg.concurrency, duration: cfg.duration, count: cfg.count, rate: cfg.rate}
	return deliverLoad(ctx, cfg, plan, target, "deliver", stderr), nil
}

// deliverLoad runs plan against target and summarizes; bigbox reuses it.
func deliverLoad(ctx context.Context, cfg *config, plan loadPlan, target deliverTarget, label string, stderr io.Writer) *deliverResult {
	stats := &deliverStats{rec: newLatencyRecorder(), errs: newErrorLog(stderr, cfg.quiet)}
	var cnt counters
	prog := startProgress(stderr, cfg.quiet, label, &cnt, plan.duration, plan.count)
	out := runLoad(ctx, plan, &cnt, func(int) worker {
		return &deliverWorker{target: target, timeout: cfg.timeout, stats: stats}
	})
	prog.stop()

	sum := stats.rec.summary("deliver", out.elapsed)
	proto := "lmtp"
	if !target.lmtp {
		proto = "smtp"
	}
	return &deliverResult{
		Scenario:       "deliver",
		Protocol:       proto,
		Addr:           target.addr,
		Concurrency:    plan.concurrency,
		Size:           target.gen.size.String(),
		Messages:       sum.Count,
		Recipients:     stats.recipients,
		Errors:         out.failed,
		Missed:         out.missed,
		Connections:    stats.connections,
		Bytes:          stats.bytes,
		DurationSec:    round3(out.elapsed.Seconds()),
		MessagesPerSec: sum.OpsPerSec,
		MBPerSec:       perSec(float64(stats.bytes)/1e6, out.elapsed),
		MeanMs:         sum.MeanMs,
		P50Ms:          sum.P50Ms,
		P90Ms:          sum.P90Ms,
		P99Ms:          sum.P99Ms,
		MaxMs:          sum.MaxMs,
		FirstError:     stats.errs.first(),
	}
}
