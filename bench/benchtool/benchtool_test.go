package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRenderDovecotTemplate renders the real bench/dovecot.conf.tmpl: every
// field is known to the template and lands in the config.
func TestRenderDovecotTemplate(t *testing.T) {
	p := dovecotParams{Dir: "/tmp/dc", User: "mail", Group: "mail", IMAPPort: 11143, POP3Port: 11110,
		LMTPPort: 11024, ProcessMinAvail: 3}
	text, err := renderDovecot("../dovecot.conf.tmpl", p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"port = 11143", "port = 11110", "port = 11024", "base_dir = /tmp/dc/run",
		"args = username_format=%u /tmp/dc/passwd", "mail_uid = mail", "process_min_avail = 3", "service_count = 0"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered config lacks %q", want)
		}
	}
	if strings.Contains(text, "{{") || strings.Contains(text, "<no value>") {
		t.Error("rendered config has unexpanded fields")
	}
}

func TestRunRenderRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"render", "-tmpl", "../dovecot.conf.tmpl", "-dir", "relative", "-imap", "1", "-pop3", "2", "-lmtp", "3"},
		{"render", "-tmpl", "../dovecot.conf.tmpl", "-dir", "/tmp/x", "-imap", "1", "-pop3", "2"},
		{"nosuchcommand"},
	} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("run %q succeeded", args)
		}
	}
}

func TestParseStatPPID(t *testing.T) {
	tests := []struct {
		stat string
		want int
		ok   bool
	}{
		{"1234 (imap) S 77 1234 1234 0 -1", 77, true},
		// comm may hold spaces and parentheses.
		{"1234 (a) b (c) S 88 1 1 0", 88, true},
		{"1234 imap S 77", 0, false},
		{"1234 (imap) S", 0, false},
	}
	for _, tt := range tests {
		got, err := parseStatPPID(tt.stat)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseStatPPID(%q) = %d, %v; want %d, ok %v", tt.stat, got, err, tt.want, tt.ok)
		}
	}
}

// TestTreePSS sums a fake /proc: a root, its child and grandchild, and an
// unrelated process that must not count.
func TestTreePSS(t *testing.T) {
	root := t.TempDir()
	proc := func(pid, ppid int, pss int64) {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(pid) + " (x) S " + strconv.Itoa(ppid) + " 1 1 0\n"
		rollup := "Rss: 99 kB\nPss: " + strconv.FormatInt(pss, 10) + " kB\nPss_Anon: 1 kB\nPss_File: 2 kB\n"
		os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
		os.WriteFile(filepath.Join(dir, "smaps_rollup"), []byte(rollup), 0o644)
	}
	proc(10, 1, 1000)
	proc(11, 10, 200)
	proc(12, 11, 30)
	proc(20, 1, 5000) // not ours
	got, err := treePSS(root, []int{10})
	if err != nil {
		t.Fatal(err)
	}
	if got != (pssSample{KiB: 1230, FileKiB: 6, Processes: 3}) {
		t.Errorf("treePSS = %+v, want 1230 KiB (6 file-backed) in 3 processes", got)
	}
	if _, err := treePSS(root, []int{99}); err == nil {
		t.Error("treePSS of a missing root succeeded")
	}
}

// writeResults writes name -> object as OUT/name.json.
func writeResults(t *testing.T, files map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	for name, obj := range files {
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestTable(t *testing.T) {
	dir := writeResults(t, map[string]any{
		"deliver16.roost":         map[string]any{"scenario": "deliver", "concurrency": 16, "size": "10240", "messages_per_sec": 1000.0, "p50_ms": 10.0, "p99_ms": 40.0, "errors": 0},
		"deliver16.dovecot":       map[string]any{"scenario": "deliver", "concurrency": 16, "size": "10240", "messages_per_sec": 250.0, "p50_ms": 40.0, "p99_ms": 80.0, "errors": 0},
		"imap.roost":              map[string]any{"scenario": "imap", "concurrency": 16, "ops_per_sec": 300.0, "errors": 2, "first_error": "user1: boom"},
		"idle.roost":              map[string]any{"scenario": "idle", "connections": 10, "established": 10},
		"idle.dovecot":            map[string]any{"scenario": "idle", "connections": 10, "established": 8},
		"idle.roost.pss-before":   map[string]any{"kib": 1000, "processes": 1},
		"idle.roost.pss-after":    map[string]any{"kib": 1500, "processes": 1},
		"idle.dovecot.pss-before": map[string]any{"kib": 10000, "processes": 20},
		"idle.dovecot.pss-after":  map[string]any{"kib": 14000, "processes": 28},
		"bigbox.roost":            map[string]any{"scenario": "bigbox", "messages": 100, "target": 100, "deliver_ms": 2.0, "deliver_empty_ms": 1.0},
	})
	r, err := loadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := buildTable(r)
	find := func(scenario, metric string) tableLine {
		for _, l := range lines {
			if strings.HasPrefix(l[0], scenario) && l[1] == metric {
				return l
			}
		}
		t.Fatalf("no row %s / %s in %v", scenario, metric, lines)
		return nil
	}
	if l := find("deliver LMTP -c 16, 10 KiB", "messages/s"); l[3] != "1000" || l[4] != "250" || l[5] != "4.00" || l[6] != "ratio >= 5.0: MISSED" {
		t.Errorf("deliver row = %q", l)
	}
	if l := find("deliver LMTP", "latency p50 ms"); l[2] != "lower" || l[5] != "0.25" {
		t.Errorf("latency row = %q", l)
	}
	// Dovecot's imap result is missing: no ratio, no verdict.
	if l := find("imap -c 16", "IMAP commands/s"); l[4] != "-" || l[5] != "-" || l[6] != "ratio >= 1.5: n/a" {
		t.Errorf("imap row = %q", l)
	}
	// (1500-1000)/10 = 50 KiB against (14000-10000)/8 = 500 KiB.
	if l := find("idle -c 10", "PSS per idle connection KiB"); l[3] != "50.0" || l[4] != "500" || l[5] != "0.10" || l[6] != "ratio <= 0.1: met" {
		t.Errorf("idle row = %q", l)
	}
	if l := find("bigbox", "big ÷ small delivery time"); l[3] != "2.00" || l[6] != "Roost <= 1.1: MISSED" {
		t.Errorf("bigbox row = %q", l)
	}

	p := strings.Join(problems(r), "\n")
	for _, want := range []string{"imap.roost: 2 errors; first: user1: boom", "idle.dovecot: only 8 of 10", "deliver1"} {
		if want == "deliver1" {
			if strings.Contains(p, want) {
				t.Errorf("problems mention deliver1, which was not run:\n%s", p)
			}
			continue
		}
		if !strings.Contains(p, want) {
			t.Errorf("problems lack %q:\n%s", want, p)
		}
	}

	var md bytes.Buffer
	if err := run([]string{"table", "-dir", dir, "-markdown"}, &md); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(md.String(), "| scenario | metric |") || !strings.Contains(md.String(), "|---|---|---|---:|") {
		t.Errorf("markdown table:\n%s", md.String())
	}
}

func TestTableNoResults(t *testing.T) {
	if err := run([]string{"table", "-dir", t.TempDir()}, &bytes.Buffer{}); err == nil {
		t.Error("table of an empty directory succeeded")
	}
}

// TestDeliveryCounters: CPU per delivery, deliveries per store sync (the
// counters) and per fdatasync+fsync (strace) come from the samples taken
// around a run and from the strace summary.
func TestDeliveryCounters(t *testing.T) {
	dir := writeResults(t, map[string]any{
		"deliver16.roost":                       map[string]any{"scenario": "deliver", "concurrency": 16, "size": "10240", "recipients": 5000, "messages_per_sec": 500.0},
		"deliver16.dovecot":                     map[string]any{"scenario": "deliver", "concurrency": 16, "size": "10240", "recipients": 1000, "messages_per_sec": 100.0},
		"deliver16.roost.sample-before":         map[string]any{"cpu_sec": 10.0, "deliveries": 100, "store_syncs": 400},
		"deliver16.roost.sample-after":          map[string]any{"cpu_sec": 14.0, "deliveries": 5100, "store_syncs": 1400},
		"deliver16.dovecot.sample-before":       map[string]any{"cpu_sec": 1.0},
		"deliver16.dovecot.sample-after":        map[string]any{"cpu_sec": 3.0},
		"deliver16-strace.roost":                map[string]any{"scenario": "deliver", "concurrency": 16, "size": "10240", "recipients": 900},
		"deliver16-strace.dovecot":              map[string]any{"scenario": "deliver", "concurrency": 16, "size": "10240", "recipients": 300},
		"deliver16-strace.roost.strace":         map[string]any{"fdatasync": 300},
		"deliver16-strace.dovecot.strace":       map[string]any{"fdatasync": 500, "fsync": 100},
		"deliver16-strace.roost.sample-before":  map[string]any{"cpu_sec": 0, "deliveries": 0, "store_syncs": 0},
		"deliver16-strace.roost.sample-after":   map[string]any{"cpu_sec": 1, "deliveries": 900, "store_syncs": 300},
		"deliver16-strace.dovecot.sample-after": map[string]any{"cpu_sec": 1},
	})
	r, err := loadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := buildTable(r)
	find := func(scenario, metric string) tableLine {
		for _, l := range lines {
			if l[0] == scenario && l[1] == metric {
				return l
			}
		}
		t.Fatalf("no row %s / %s in %v", scenario, metric, lines)
		return nil
	}
	// 4 s over 5000 deliveries against 2 s over 1000.
	if l := find("deliver LMTP -c 16, 10 KiB", "server CPU ms per delivery"); l[3] != "0.80" || l[4] != "2.00" || l[5] != "0.40" {
		t.Errorf("CPU row = %q", l)
	}
	// 5000 deliveries, 1000 syncs; Dovecot has no counters.
	if l := find("deliver LMTP -c 16, 10 KiB", "deliveries per store sync (counter)"); l[3] != "5.00" || l[4] != "-" || l[6] != "Roost >= 4.0: met" {
		t.Errorf("counter row = %q", l)
	}
	if l := find("deliver LMTP -c 16, 10 KiB, under strace", "deliveries per fdatasync+fsync"); l[3] != "3.00" || l[4] != "0.50" || l[6] != "Roost >= 4.0: MISSED" {
		t.Errorf("strace row = %q", l)
	}
}

func TestParseStraceSummary(t *testing.T) {
	const out = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 90.00    0.445115         830       536           fdatasync
 10.00    0.045115         830        12         1 fsync
------ ----------- ----------- --------- --------- ----------------
100.00    0.490230         830       548         1 total
`
	c, err := parseStraceSummary(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if c["fdatasync"] != 536 || c["fsync"] != 12 || len(c) != 2 {
		t.Fatalf("counts %v", c)
	}
	if _, err := parseStraceSummary(strings.NewReader("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n")); err == nil {
		t.Fatal("a file without a summary table parsed")
	}
}

func TestParseStatCPU(t *testing.T) {
	// Fields 14-17: utime 120, stime 30, cutime 7, cstime 3.
	stat := "4242 (roost (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 120 30 7 3 20 0 12 0 100 1000 100"
	for _, tc := range []struct {
		children bool
		want     int64
	}{{false, 150}, {true, 160}} {
		got, err := parseStatCPU(stat, tc.children)
		if err != nil || got != tc.want {
			t.Errorf("parseStatCPU(children=%v) = %d, %v; want %d", tc.children, got, err, tc.want)
		}
	}
}

func TestParseExposition(t *testing.T) {
	m, err := parseExposition(strings.NewReader("# HELP x y\n# TYPE roost_store_syncs_total counter\nroost_store_syncs_total 1234\nroost_deliveries_total{result=\"ok\"} 5e+03\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m["roost_store_syncs_total"] != 1234 || m[`roost_deliveries_total{result="ok"}`] != 5000 {
		t.Fatalf("parsed %v", m)
	}
}
