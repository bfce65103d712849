package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat: 100
// on every Linux that Go supports.
const clockTicks = 100

// sample is what bench/compare records just before and just after a run,
// to give per-delivery figures: the CPU time the server's process tree
// has used, and (Roost only, from its [metrics] listener) its delivery and
// store sync counters.
type sample struct {
	CPUSec float64 `json:"cpu_sec"`
	// Deliveries is roost_deliveries_total{result="ok"}, StoreSyncs
	// roost_store_syncs_total; both absent without -metrics.
	Deliveries *float64 `json:"deliveries,omitempty"`
	StoreSyncs *float64 `json:"store_syncs,omitempty"`
}

// cmdSample prints a sample of the process trees of the given PIDs (and of
// the metrics at -metrics) as JSON.
func cmdSample(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	url := fs.String("metrics", "", "Roost's /metrics `URL` (empty: no counters)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	roots, err := parsePIDs(fs.Args())
	if err != nil {
		return err
	}
	var s sample
	if s.CPUSec, err = treeCPU("/proc", roots); err != nil {
		return err
	}
	if *url != "" {
		m, err := scrape(*url)
		if err != nil {
			return err
		}
		d, ok1 := m[`roost_deliveries_total{result="ok"}`]
		y, ok2 := m["roost_store_syncs_total"]
		if !ok1 || !ok2 {
			return fmt.Errorf("sample: %s has no roost_deliveries_total or roost_store_syncs_total", *url)
		}
		s.Deliveries, s.StoreSyncs = &d, &y
	}
	return json.NewEncoder(stdout).Encode(s)
}

func parsePIDs(args []string) ([]int, error) {
	var pids []int
	for _, a := range args {
		pid, err := strconv.Atoi(a)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("bad PID %q", a)
		}
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		return nil, errors.New("need at least one PID")
	}
	return pids, nil
}

// cmdPIDs prints the given PIDs and all their descendants, one a line (for
// strace -p: a Dovecot's lmtp processes are children of its master).
func cmdPIDs(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	roots, err := parsePIDs(fs.Args())
	if err != nil {
		return fmt.Errorf("pids: %w", err)
	}
	children, err := childMap("/proc")
	if err != nil {
		return err
	}
	for _, pid := range descendants(roots, children) {
		fmt.Fprintln(stdout, pid)
	}
	return nil
}

// descendants returns roots and everything below them, each once, roots
// first.
func descendants(roots []int, children map[int][]int) []int {
	var out []int
	seen := map[int]bool{}
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

// treeCPU sums user and system time over roots and their descendants, plus
// what the roots' children that have exited used (cutime, cstime), in
// seconds.
func treeCPU(procRoot string, roots []int) (float64, error) {
	children, err := childMap(procRoot)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, pid := range descendants(roots, children) {
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
		if err != nil {
			if isRoot(pid, roots) {
				return 0, err
			}
			continue // it exited meanwhile
		}
		t, err := parseStatCPU(string(b), isRoot(pid, roots))
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		ticks += t
	}
	return float64(ticks) / clockTicks, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15 of /proc/PID/stat),
// with withChildren also cutime+cstime (16 and 17), in clock ticks.
func parseStatCPU(stat string, withChildren bool) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no comm")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, errors.New("stat: short")
	}
	// Field k is f[k-3]: utime (14) is f[11], cstime (17) f[14].
	last := 12
	if withChildren {
		last = 14
	}
	var sum int64
	for k := 11; k <= last; k++ {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: field %d: %w", k+3, err)
		}
		sum += v
	}
	return sum, nil
}

// scrape reads a Prometheus text exposition: series (name with labels, as
// written) to value.
func scrape(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return parseExposition(resp.Body)
}

func parseExposition(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// straceCounts is a `strace -c` summary: calls by system call.
type straceCounts map[string]int64

// cmdStrace reads the summary `strace -c -o FILE` wrote and prints the
// call counts as JSON ({"fdatasync": 1234, "fsync": 5}).
func cmdStrace(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	in := fs.String("in", "", "the `file` strace -c -o wrote")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := parseStraceSummary(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	return json.NewEncoder(stdout).Encode(c)
}

// parseStraceSummary reads the table of `strace -c`:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	100.00    0.445115         830       536           fdatasync
//
// (the errors column may be empty). The "total" line is left out.
func parseStraceSummary(r io.Reader) (straceCounts, error) {
	out := straceCounts{}
	sc := bufio.NewScanner(r)
	header := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) > 0 && f[0] == "%":
			header = true
			continue
		case !header || len(f) < 5 || strings.HasPrefix(f[0], "---"):
			continue
		}
		name := f[len(f)-1]
		if name == "total" {
			continue
		}
		n, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("strace summary: calls of %s: %w", name, err)
		}
		out[name] = n
	}
	if !header {
		return nil, errors.New("strace summary: no table")
	}
	return out, sc.Err()
}
