package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"text/tabwriter"
)

// result is one scenario's report: a table for people, JSON for scripts.
type result interface {
	writeTable(w io.Writer)
	successes() int64
	failures() int64
}

// errAllFailed is returned when a scenario did not complete a single
// operation; main then exits 1 (the server is down or refuses everything).
var errAllFailed = errors.New("no operation succeeded")

// run is the whole tool: it parses args (SCENARIO [flags]), runs the scenario
// against the given servers, and writes the report to stdout and progress
// and error samples to stderr. Tests call it directly, e.g. smoke against an
// in-process server. It returns a usageError for a bad command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	if cfg.cpuProfile != "" {
		stop, err := startCPUProfile(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.scenario == "smoke" {
		return runSmoke(ctx, cfg, stdout, stderr)
	}
	res, err := runScenario(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if err := report(stdout, cfg.json, res); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s interrupted; the report covers the run until then", cfg.scenario)
	}
	if res.successes() == 0 && res.failures() > 0 {
		return fmt.Errorf("%s: %w (%d failed)", cfg.scenario, errAllFailed, res.failures())
	}
	return nil
}

// startCPUProfile profiles roost-bench itself into path (hidden flag
// -cpuprofile); the returned function stops and closes the profile.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func runScenario(ctx context.Context, cfg *config, stderr io.Writer) (result, error) {
	switch cfg.scenario {
	case "deliver":
		return runDeliver(ctx, cfg, stderr)
	case "imap":
		return runIMAP(ctx, cfg, stderr)
	case "pop3":
		return runPOP3(ctx, cfg, stderr)
	case "idle":
		return runIdle(ctx, cfg, stderr)
	case "bigbox":
		return runBigbox(ctx, cfg, stderr)
	}
	return nil, usagef("unknown scenario %q", cfg.scenario)
}

// report prints res as one line of JSON or as an aligned table.
func report(w io.Writer, asJSON bool, res result) error {
	if asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	res.writeTable(w)
	return nil
}

// table is a two-column (or wider) aligned text table.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

func (t *table) row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprintln(t.tw)
}

func (t *table) flush() { t.tw.Flush() }

// errorLog keeps the first error for the report and echoes the first few to
// stderr, so a broken server does not flood the terminal.
type errorLog struct {
	mu     sync.Mutex
	w      io.Writer
	quiet  bool
	n      int
	firstE string
}

const errorsShown = 5

func newErrorLog(w io.Writer, quiet bool) *errorLog {
	return &errorLog{w: w, quiet: quiet}
}

func (l *errorLog) add(op string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	msg := op + ": " + err.Error()
	if l.firstE == "" {
		l.firstE = msg
	}
	if l.quiet {
		return
	}
	if l.n <= errorsShown {
		fmt.Fprintf(l.w, "roost-bench: error: %s\n", msg)
	} else if l.n == errorsShown+1 {
		fmt.Fprintf(l.w, "roost-bench: more errors; counting only\n")
	}
}

func (l *errorLog) first() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstE
}
