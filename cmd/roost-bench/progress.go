package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress prints a one-line status to stderr while a long run goes on: a
// bar redrawn with \r on a terminal, otherwise a plain line every few seconds.
type progress struct {
	w        io.Writer
	label    string
	cnt      *counters
	duration time.Duration
	count    int64
	tty      bool
	start    time.Time
	done     chan struct{}
	wg       sync.WaitGroup
}

// startProgress begins reporting; quiet disables it. Call stop when done.
func startProgress(w io.Writer, quiet bool, label string, cnt *counters, duration time.Duration, count int64) *progress {
	p := &progress{w: w, label: label, cnt: cnt, duration: duration, count: count,
		start: time.Now(), done: make(chan struct{})}
	if quiet {
		return p
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	interval := 5 * time.Second
	if p.tty {
		interval = 250 * time.Millisecond
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				if p.tty {
					fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 79))
				}
				return
			case <-t.C:
				p.print()
			}
		}
	}()
	return p
}

func (p *progress) print() {
	elapsed := time.Since(p.start)
	ok, failed := p.cnt.ok.Load(), p.cnt.failed.Load()
	frac := -1.0
	if p.duration > 0 {
		frac = elapsed.Seconds() / p.duration.Seconds()
	}
	if p.count > 0 {
		frac = max(frac, float64(ok+failed)/float64(p.count))
	}
	status := fmt.Sprintf("%s %6.1fs %8d ok %6d err %9.1f/s", p.label, elapsed.Seconds(), ok, failed,
		float64(ok)/max(elapsed.Seconds(), 1e-9))
	if !p.tty {
		fmt.Fprintln(p.w, status)
		return
	}
	bar := ""
	if frac >= 0 {
		const width = 20
		n := int(min(frac, 1) * width)
		bar = "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] "
	}
	fmt.Fprintf(p.w, "\r%s%s", bar, status)
}

func (p *progress) stop() {
	close(p.done)
	p.wg.Wait()
}
