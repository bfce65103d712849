package main

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Smoke sizes: tiny, so CI finishes in seconds, yet every account used by
// imap and pop3 has mail (deliveries go round-robin to smokeAccounts).
const (
	smokeAccounts        = 4
	smokeMessagesPerAcct = 4
	smokeIMAPSessions    = 8
	smokePOP3Sessions    = 4
	smokeMaxConcurrency  = 4
)

// runSmoke runs deliver (LMTP), imap and pop3 one after the other with tiny
// counts, on accounts 1..min(-n, 4), and fails if any operation failed or a
// scenario did nothing. It never deletes mail (pop3 runs without DELE), so
// it can be repeated.
func runSmoke(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	base := *cfg
	base.n = min(cfg.n, smokeAccounts)
	base.concurrency = min(cfg.concurrency, smokeMaxConcurrency)
	base.rcpts = min(cfg.rcpts, base.n)
	base.rate = 0
	base.dele = false
	base.quiet = true

	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()

	var problems []error
	check := func(name string, res result, want int64, extra error) {
		if err := report(stdout, cfg.json, res); err != nil {
			problems = append(problems, err)
		}
		if !cfg.json {
			fmt.Fprintln(stdout)
		}
		switch {
		case res.failures() > 0:
			problems = append(problems, fmt.Errorf("%s: %d failed operations", name, res.failures()))
		case res.successes() < want:
			problems = append(problems, fmt.Errorf("%s: %d of %d operations done", name, res.successes(), want))
		case extra != nil:
			problems = append(problems, fmt.Errorf("%s: %w", name, extra))
		}
	}

	d := base
	d.useSMTP = false
	d.count = int64(base.n * smokeMessagesPerAcct)
	d.duration = 0
	dres, _ := runDeliver(ctx, &d, stderr)
	check("deliver", dres, d.count, nil)

	im := base
	im.count, im.duration = smokeIMAPSessions, 0
	ires, _ := runIMAP(ctx, &im, stderr)
	var imapProblem error
	if n := commandErrors(ires.Commands); n > 0 {
		imapProblem = fmt.Errorf("%d failed commands", n)
	} else if ires.Commands["fetch_body"].Count == 0 {
		imapProblem = errors.New("no message body fetched: INBOXes empty after deliver?")
	}
	check("imap", ires, im.count, imapProblem)

	p := base
	p.count, p.duration = smokePOP3Sessions, 0
	pres, _ := runPOP3(ctx, &p, stderr)
	var pop3Problem error
	if n := commandErrors(pres.Commands); n > 0 {
		// A -ERR to RETR does not end a session, but here it must count.
		pop3Problem = fmt.Errorf("%d failed commands", n)
	} else if pres.Messages == 0 {
		pop3Problem = errors.New("no message retrieved: maildrops empty after deliver?")
	}
	check("pop3", pres, p.count, pop3Problem)

	if ctx.Err() != nil {
		problems = append(problems, fmt.Errorf("smoke did not finish within -duration %s", cfg.duration))
	}
	if len(problems) > 0 {
		return fmt.Errorf("smoke failed: %w", errors.Join(problems...))
	}
	if !cfg.quiet {
		fmt.Fprintln(stderr, "smoke: ok")
	}
	return nil
}

// commandErrors sums the failures of every command.
func commandErrors(cmds map[string]opSummary) int64 {
	var n int64
	for _, c := range cmds {
		n += c.Errors
	}
	return n
}
