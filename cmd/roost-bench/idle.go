package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// idleResult is the report of the idle scenario; pss_before_kib,
// pss_after_kib and pss_per_conn_kib are contracts.
type idleResult struct {
	Scenario     string  `json:"scenario"`
	Addr         string  `json:"addr"`
	Connections  int     `json:"connections"` // asked for (-c)
	Established  int64   `json:"established"` // logged in, INBOX selected, in IDLE
	Errors       int64   `json:"errors"`
	Dropped      int64   `json:"dropped"` // closed by the server during the hold
	SetupSec     float64 `json:"setup_sec"`
	HoldSec      float64 `json:"hold_sec"`
	PSSMeasured  bool    `json:"pss_measured"`
	PSSBeforeKiB int64   `json:"pss_before_kib"`
	PSSAfterKiB  int64   `json:"pss_after_kib"` // once every connection is idling
	PSSEndKiB    int64   `json:"pss_end_kib"`   // at the end of the hold
	// (after - before) / established
	PSSPerConnKiB   float64              `json:"pss_per_conn_kib"`
	ProcessesBefore int                  `json:"processes_before"`
	ProcessesAfter  int                  `json:"processes_after"`
	Commands        map[string]opSummary `json:"commands"`
	FirstError      string               `json:"first_error,omitempty"`
}

func (r *idleResult) failures() int64  { return r.Errors }
func (r *idleResult) successes() int64 { return r.Established }

func (r *idleResult) writeTable(w io.Writer) {
	t := newTable(w)
	t.row("scenario", r.Scenario+" ("+r.Addr+")")
	t.row("connections", fmt.Sprintf("%d asked, %d idling, %d failed, %d dropped", r.Connections, r.Established, r.Errors, r.Dropped))
	t.row("setup", fmt.Sprintf("%.2f s", r.SetupSec))
	t.row("hold", fmt.Sprintf("%.2f s", r.HoldSec))
	if r.PSSMeasured {
		t.row("server PSS before", fmt.Sprintf("%d KiB (%d processes)", r.PSSBeforeKiB, r.ProcessesBefore))
		t.row("server PSS idling", fmt.Sprintf("%d KiB (%d processes)", r.PSSAfterKiB, r.ProcessesAfter))
		t.row("server PSS at end", fmt.Sprintf("%d KiB", r.PSSEndKiB))
		t.row("PSS per connection", fmt.Sprintf("%.1f KiB", r.PSSPerConnKiB))
	} else {
		t.row("server PSS", "not measured (give -pid or -pidof)")
	}
	if r.FirstError != "" {
		t.row("first error", r.FirstError)
	}
	t.flush()
	fmt.Fprintln(w)
	writeCommandTable(w, r.Commands, imapCommandOrder)
}

// idler is one connection sitting in IDLE.
type idler struct {
	s   *imapConn
	cmd *imapclient.IdleCommand
}

// openIdler logs in, selects INBOX and enters IDLE; "idle" times the
// server's "+ idling" continuation.
func openIdler(ctx context.Context, addr, user, pass string, timeout time.Duration, rec *latencyRecorder) (*idler, error) {
	s, err := dialIMAP(ctx, addr, timeout, rec)
	if err != nil {
		return nil, err
	}
	if err := s.login(user, pass); err != nil {
		s.close()
		return nil, err
	}
	if _, err := s.selectInbox(); err != nil {
		s.close()
		return nil, err
	}
	var cmd *imapclient.IdleCommand
	err = s.step("idle", func() (err error) {
		cmd, err = s.c.Idle()
		return err
	})
	if err != nil {
		s.close()
		return nil, err
	}
	s.conn.SetDeadline(time.Time{}) // idling may last longer than any timeout
	return &idler{s: s, cmd: cmd}, nil
}

// leave ends IDLE, logs out and closes, within timeout.
func (i *idler) leave(timeout time.Duration) {
	i.s.conn.SetDeadline(time.Now().Add(timeout))
	if i.cmd.Close() == nil && i.cmd.Wait() == nil {
		i.s.c.Logout().Wait()
	}
	i.s.close()
}

// idleOpeners bounds how many connections are being set up at once, so a
// big -c does not look like a login storm.
const idleOpeners = 32

func runIdle(ctx context.Context, cfg *config, stderr io.Writer) (*idleResult, error) {
	probe := pssProbe{procRoot: cfg.procRoot, pids: cfg.pids, names: cfg.pidof, self: os.Getpid()}
	res := &idleResult{Scenario: "idle", Addr: cfg.imap, Connections: cfg.concurrency,
		PSSMeasured: probe.enabled(), Commands: map[string]opSummary{}}
	var err error
	if probe.enabled() {
		if res.PSSBeforeKiB, res.ProcessesBefore, err = probe.measure(); err != nil {
			return nil, err
		}
	}

	rec := newLatencyRecorder()
	errs := newErrorLog(stderr, cfg.quiet)
	idlers := make([]*idler, cfg.concurrency)
	var next atomic.Int64
	var cnt counters
	prog := startProgress(stderr, cfg.quiet, "idle setup", &cnt, 0, int64(cfg.concurrency))
	start := time.Now()
	var wg sync.WaitGroup
	for range min(idleOpeners, cfg.concurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.concurrency || ctx.Err() != nil {
					return
				}
				user := cfg.user(i%cfg.n + 1)
				idl, err := openIdler(ctx, cfg.imap, user, cfg.pass, cfg.timeout, rec)
				if err != nil {
					if ctx.Err() == nil {
						cnt.failed.Add(1)
						errs.add(user, err)
					}
					continue
				}
				idlers[i] = idl
				cnt.ok.Add(1)
			}
		}()
	}
	wg.Wait()
	prog.stop()
	setup := time.Since(start)
	res.SetupSec = round3(setup.Seconds())
	res.Established, res.Errors = cnt.ok.Load(), cnt.failed.Load()
	defer closeIdlers(idlers, cfg.timeout)

	if probe.enabled() && ctx.Err() == nil {
		if res.PSSAfterKiB, res.ProcessesAfter, err = probe.measure(); err != nil {
			return nil, err
		}
		if res.Established > 0 {
			res.PSSPerConnKiB = round3(float64(res.PSSAfterKiB-res.PSSBeforeKiB) / float64(res.Established))
		}
	}

	holdStart := time.Now()
	if !cfg.quiet {
		fmt.Fprintf(stderr, "idle: %d connections idling, holding for %s\n", res.Established, cfg.duration)
	}
	hold := time.NewTimer(cfg.duration)
	select {
	case <-hold.C:
	case <-ctx.Done():
		hold.Stop()
	}
	res.HoldSec = round3(time.Since(holdStart).Seconds())
	for _, idl := range idlers {
		if idl == nil {
			continue
		}
		select {
		case <-idl.s.c.Closed():
			res.Dropped++
		default:
		}
	}
	if probe.enabled() && ctx.Err() == nil {
		if res.PSSEndKiB, _, err = probe.measure(); err != nil {
			return nil, err
		}
	}
	for _, name := range rec.names() {
		res.Commands[name] = rec.summary(name, setup)
	}
	res.FirstError = errs.first()
	return res, nil
}

// closeIdlers leaves IDLE and logs out every connection, a few at a time.
func closeIdlers(idlers []*idler, timeout time.Duration) {
	sem := make(chan struct{}, idleOpeners)
	var wg sync.WaitGroup
	for _, idl := range idlers {
		if idl == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			idl.leave(timeout)
		}()
	}
	wg.Wait()
}
