package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// loadPlan says how much work to do: concurrency workers, until duration has
// passed or count operations were started, whichever comes first (0 means no
// bound). With rate > 0 operations start at a fixed rate (open loop) instead
// of back to back.
type loadPlan struct {
	concurrency int
	duration    time.Duration
	count       int64
	rate        float64
}

// worker runs operations one at a time. Each worker owns its connections.
type worker interface {
	// do runs operation number seq (0-based). ctx is cancelled only on
	// interrupt, not when the plan's duration is over, so operations in
	// flight at the deadline finish and are counted.
	do(ctx context.Context, seq int64) error
	close()
}

// loadOutcome is what the engine measured itself.
type loadOutcome struct {
	elapsed time.Duration
	ok      int64
	failed  int64
	missed  int64 // fixed-rate starts dropped because every worker was busy
}

// counters are shared with the progress reporter.
type counters struct {
	ok, failed atomic.Int64
}

// preparer is a worker that sets up before the run starts (opens its
// connection), so that every worker takes part from the first operation and
// the set-up is not timed.
type preparer interface {
	prepare(ctx context.Context)
}

// runLoad drives workers according to plan and returns when all are done.
// Workers are created and prepared (in parallel) before the clock starts.
func runLoad(ctx context.Context, plan loadPlan, cnt *counters, newWorker func(id int) worker) loadOutcome {
	workers := make([]worker, plan.concurrency)
	var prep sync.WaitGroup
	for id := range workers {
		workers[id] = newWorker(id)
		if p, ok := workers[id].(preparer); ok {
			prep.Add(1)
			go func() { defer prep.Done(); p.prepare(ctx) }()
		}
	}
	prep.Wait()

	stopCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if plan.duration > 0 {
		var c2 context.CancelFunc
		stopCtx, c2 = context.WithTimeout(stopCtx, plan.duration)
		defer c2()
	}

	start := time.Now()
	var next atomic.Int64 // closed loop: next operation number
	var missed atomic.Int64
	var tokens chan int64 // fixed rate: operation numbers to start
	if plan.rate > 0 {
		tokens = make(chan int64, plan.concurrency)
		go dispatch(stopCtx, plan, tokens, &missed, start)
	}

	claim := func() (int64, bool) {
		if tokens != nil {
			seq, ok := <-tokens
			return seq, ok
		}
		if stopCtx.Err() != nil {
			return 0, false
		}
		seq := next.Add(1) - 1
		if plan.count > 0 && seq >= plan.count {
			return 0, false
		}
		return seq, true
	}

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			for {
				seq, ok := claim()
				if !ok {
					return
				}
				err := w.do(ctx, seq)
				switch {
				case ctx.Err() != nil:
					return // interrupted: not the server's fault
				case err != nil:
					cnt.failed.Add(1)
				default:
					cnt.ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return loadOutcome{
		elapsed: time.Since(start),
		ok:      cnt.ok.Load(),
		failed:  cnt.failed.Load(),
		missed:  missed.Load(),
	}
}

// dispatch hands out operation numbers at plan.rate per second. When every
// worker is busy and the small queue is full, the start is dropped and
// counted as missed: an open-loop generator must not slow down with the
// server, or it would hide the latency it is meant to expose.
func dispatch(ctx context.Context, plan loadPlan, tokens chan<- int64, missed *atomic.Int64, start time.Time) {
	defer close(tokens)
	interval := time.Duration(float64(time.Second) / plan.rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for seq := int64(0); plan.count == 0 || seq < plan.count; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		select {
		case tokens <- seq:
		default:
			missed.Add(1)
		}
		// Schedule from the start time, so timer slack does not accumulate.
		timer.Reset(time.Until(start.Add(time.Duration(seq+1) * interval)))
	}
}
