package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/roostmail/roost/store"
)

// checkResult turns a store check into the lines `roost check` prints: one
// per violation (account, object, kind and problem, tab-separated), then a
// summary. It fails when violations remain unrepaired, so the command
// exits 1.
func checkResult(rep store.Report, repair bool, err error) ([]string, error) {
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("check: %w", err)
		}
		return nil, fmt.Errorf("check failed: %w", err)
	}
	lines := make([]string, 0, len(rep.Violations)+1)
	repaired := 0
	for _, v := range rep.Violations {
		lines = append(lines, v.String())
		if v.Repaired {
			repaired++
		}
	}
	summary := fmt.Sprintf("checked %d accounts, %d mailboxes, %d messages, %d blobs: ",
		rep.Accounts, rep.Mailboxes, rep.Messages, rep.Blobs)
	left := rep.Unrepaired()
	switch {
	case len(rep.Violations) == 0:
		summary += "no problems found"
	case repaired > 0:
		summary += fmt.Sprintf("%d problems found, %d repaired, %d remain", len(rep.Violations), repaired, left)
	default:
		summary += fmt.Sprintf("%d problems found", left)
	}
	lines = append(lines, summary)
	switch {
	case left > 0 && repair:
		return lines, fmt.Errorf("check: %d problems remain that --repair cannot fix safely", left)
	case left > 0:
		return lines, fmt.Errorf("check: %d problems found (--repair fixes those it can fix safely)", left)
	}
	return lines, nil
}

// checkDirect runs a check with no server running: on a store opened
// read-only (a shared lock: nothing is created or changed), or, to repair,
// opened for writing.
func checkDirect(ctx context.Context, cfg *Config, req request) (response, error) {
	repair := req.Op == opCheckRepair
	st, err := store.Open(store.Options{
		Dir:       cfg.DataDir,
		Shards:    cfg.Shards,
		ReadOnly:  !repair,
		MustExist: true,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if errors.Is(err, store.ErrNoStore) {
		return response{}, noStoreError(cfg)
	}
	if errors.Is(err, store.ErrLocked) {
		return response{}, fmt.Errorf("the store in %s is in use by another process (is roost serve running?), but no server answers on its control socket %s",
			cfg.DataDir, controlSocketPath(cfg.DataDir))
	}
	if err != nil {
		return response{}, fmt.Errorf("open store: %w", err)
	}
	rep, cerr := st.Check(ctx, req.Args, repair)
	lines, cerr := checkResult(rep, repair, cerr)
	resp := response{OK: cerr == nil, Lines: lines}
	if cerr != nil {
		resp.Error = oneLine(cerr.Error())
	}
	if err := st.Close(); err != nil && resp.OK {
		return response{}, fmt.Errorf("close store: %w", err)
	}
	return resp, nil
}
