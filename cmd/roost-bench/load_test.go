package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
)

// recordingWorker records the operation numbers it ran; odd ones fail.
type recordingWorker struct {
	mu     *sync.Mutex
	seqs   *[]int64
	closed *int
}

func (w recordingWorker) do(ctx context.Context, seq int64) error {
	w.mu.Lock()
	*w.seqs = append(*w.seqs, seq)
	w.mu.Unlock()
	if seq%2 == 1 {
		return errors.New("odd")
	}
	return nil
}

func (w recordingWorker) close() {
	w.mu.Lock()
	*w.closed++
	w.mu.Unlock()
}

func TestRunLoadCount(t *testing.T) {
	for _, c := range []int{1, 3, 16} {
		var mu sync.Mutex
		var seqs []int64
		closed := 0
		var cnt counters
		out := runLoad(context.Background(), loadPlan{concurrency: c, count: 25}, &cnt, func(int) worker {
			return recordingWorker{mu: &mu, seqs: &seqs, closed: &closed}
		})
		slices.Sort(seqs)
		want := make([]int64, 25)
		for i := range want {
			want[i] = int64(i)
		}
		if !slices.Equal(seqs, want) {
			t.Errorf("c=%d: ran %v, want 0..24 once each", c, seqs)
		}
		if out.ok != 13 || out.failed != 12 || closed != c {
			t.Errorf("c=%d: ok %d failed %d closed %d, want 13, 12, %d", c, out.ok, out.failed, closed, c)
		}
	}
}

// blockingWorker blocks in do until the context is cancelled, after telling
// the test it started.
type blockingWorker struct{ started chan<- struct{} }

func (w blockingWorker) do(ctx context.Context, seq int64) error {
	w.started <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

func (blockingWorker) close() {}

func TestRunLoadInterruptIsNotAnError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 4)
	done := make(chan loadOutcome)
	var cnt counters
	go func() {
		done <- runLoad(ctx, loadPlan{concurrency: 4}, &cnt, func(int) worker { return blockingWorker{started} })
	}()
	for range 4 {
		<-started
	}
	cancel()
	out := <-done
	if out.ok != 0 || out.failed != 0 {
		t.Errorf("after interrupt: ok %d failed %d, want 0 and 0", out.ok, out.failed)
	}
}
