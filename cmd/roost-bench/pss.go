package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// parseSmapsRollup returns the Pss field of a /proc/PID/smaps_rollup text, in
// KiB. PSS (proportional set size) charges each shared page to the sharing
// processes in equal parts, so summing PSS over a server's processes counts
// every page once: the right measure for a multi-process server like Dovecot.
func parseSmapsRollup(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Pss:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("smaps_rollup: malformed Pss line %q", sc.Text())
		}
		kib, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kib < 0 {
			return 0, fmt.Errorf("smaps_rollup: malformed Pss line %q", sc.Text())
		}
		return kib, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("smaps_rollup: %w", err)
	}
	return 0, errors.New("smaps_rollup: no Pss line")
}

// readPSS returns the PSS of one process in KiB.
func readPSS(procRoot string, pid int) (int64, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	kib, err := parseSmapsRollup(f)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return kib, nil
}

// findPIDsByComm returns the processes whose /proc/PID/comm starts with one
// of names (so "imap" matches imap and imap-login), except the PID exclude
// (the tool itself). The kernel truncates comm to 15 bytes.
func findPIDsByComm(procRoot string, names []string, exclude int) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == exclude {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
		if err != nil {
			continue // exited meanwhile
		}
		comm := strings.TrimSuffix(string(b), "\n")
		for _, name := range names {
			if strings.HasPrefix(comm, name) {
				pids = append(pids, pid)
				break
			}
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// pssProbe measures the summed PSS of a server: fixed PIDs (-pid) and/or
// every process matching -pidof names, found afresh on each call because
// Dovecot forks a process per connection.
type pssProbe struct {
	procRoot string
	pids     []int
	names    []string
	self     int
}

func (p pssProbe) enabled() bool { return len(p.pids) > 0 || len(p.names) > 0 }

// measure returns the PSS sum in KiB and the number of processes summed.
// A process that exits between listing and reading is skipped; a -pid that
// cannot be read is an error.
func (p pssProbe) measure() (kib int64, procs int, err error) {
	for _, pid := range p.pids {
		k, err := readPSS(p.procRoot, pid)
		if err != nil {
			return 0, 0, fmt.Errorf("PSS of pid %d: %w", pid, err)
		}
		kib += k
		procs++
	}
	if len(p.names) == 0 {
		return kib, procs, nil
	}
	found, err := findPIDsByComm(p.procRoot, p.names, p.self)
	if err != nil {
		return 0, 0, err
	}
	for _, pid := range found {
		if slices.Contains(p.pids, pid) {
			continue
		}
		k, err := readPSS(p.procRoot, pid)
		if err != nil && p.gone(pid) {
			continue // exited between listing and reading
		}
		if err != nil {
			return 0, 0, fmt.Errorf("PSS of pid %d: %w", pid, err)
		}
		kib += k
		procs++
	}
	if procs == 0 {
		return 0, 0, fmt.Errorf("no process matches -pidof %s", strings.Join(p.names, ","))
	}
	return kib, procs, nil
}

func (p pssProbe) gone(pid int) bool {
	_, err := os.Stat(filepath.Join(p.procRoot, strconv.Itoa(pid)))
	return err != nil
}
