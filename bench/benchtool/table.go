package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
)

// servers are the two sides of every comparison, in table order. Result
// files are OUT/<scenario>.<server>.json (roost-bench -json output).
var servers = []string{"roost", "dovecot"}

// doc is one decoded JSON result.
type doc map[string]any

// num returns the number at a dotted path ("commands.select.p50_ms").
func (d doc) num(path string) (float64, bool) {
	var cur any = map[string]any(d)
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return 0, false
		}
		if cur, ok = m[k]; !ok {
			return 0, false
		}
	}
	f, ok := cur.(float64)
	return f, ok
}

func (d doc) str(key string) string {
	s, _ := d[key].(string)
	return s
}

// results holds every result file of one output directory.
type results struct {
	dir  string
	docs map[string]doc // "deliver16.roost", "idle.dovecot.pss-before"
}

func loadResults(dir string) (*results, error) {
	r := &results{dir: dir, docs: map[string]doc{}}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d doc
		if err := json.Unmarshal(b, &d); err != nil {
			// A run that died mid-way leaves an empty or partial file;
			// it shows up as "no result" below.
			continue
		}
		r.docs[strings.TrimSuffix(filepath.Base(f), ".json")] = d
	}
	if len(r.docs) == 0 {
		return nil, fmt.Errorf("no result files (*.json) in %s: %w", dir, fs.ErrNotExist)
	}
	return r, nil
}

func (r *results) get(name string) (doc, bool) {
	d, ok := r.docs[name]
	return d, ok
}

// target is an issue 7 goal for one metric: the ratio Roost/Dovecot (or,
// with own, Roost's own figure) compared with value.
type target struct {
	atLeast bool
	value   float64
	own     bool
}

func (t *target) String() string {
	op := "<="
	if t.atLeast {
		op = ">="
	}
	if t.own {
		return fmt.Sprintf("Roost %s %.1f", op, t.value)
	}
	return fmt.Sprintf("ratio %s %.1f", op, t.value)
}

func (t *target) met(ratio, own float64) bool {
	x := ratio
	if t.own {
		x = own
	}
	if t.atLeast {
		return x >= t.value
	}
	return x <= t.value
}

// flatTolerance is how much slower a delivery into the big mailbox may be
// than one into a small one and still count as "no slower": the medians of
// a handful of fsync-bound deliveries differ by more than that by chance.
const flatTolerance = 1.10

// row is one line of the comparison: a metric of one scenario.
type row struct {
	scenario string // result file prefix
	metric   string
	higher   bool // higher is better
	value    func(r *results, server string) (float64, bool)
	target   *target
}

// field reads a number from OUT/<scenario>.<server>.json.
func field(scenario, path string) func(*results, string) (float64, bool) {
	return func(r *results, server string) (float64, bool) {
		d, ok := r.get(scenario + "." + server)
		if !ok {
			return 0, false
		}
		return d.num(path)
	}
}

// idlePSSPerConn is (PSS idling - PSS before) / connections idling, from the
// process-tree samples bench/compare takes around roost-bench idle.
func idlePSSPerConn(r *results, server string) (float64, bool) {
	before, ok1 := r.get("idle." + server + ".pss-before")
	after, ok2 := r.get("idle." + server + ".pss-after")
	run, ok3 := r.get("idle." + server)
	if !ok1 || !ok2 || !ok3 {
		return 0, false
	}
	b, _ := before.num("kib")
	a, _ := after.num("kib")
	n, _ := run.num("established")
	if n <= 0 {
		return 0, false
	}
	return (a - b) / n, true
}

func idlePSSTotal(r *results, server string) (float64, bool) {
	after, ok := r.get("idle." + server + ".pss-after")
	if !ok {
		return 0, false
	}
	kib, ok := after.num("kib")
	return kib / 1024, ok
}

func idlePSSFile(r *results, server string) (float64, bool) {
	after, ok := r.get("idle." + server + ".pss-after")
	if !ok {
		return 0, false
	}
	kib, ok := after.num("file_kib")
	return kib / 1024, ok
}

// sampleDelta is after - before of a number in the samples bench/compare
// took around a run (OUT/<scenario>.<server>.sample-{before,after}.json).
func sampleDelta(r *results, scenario, server, key string) (float64, bool) {
	before, ok1 := r.get(scenario + "." + server + ".sample-before")
	after, ok2 := r.get(scenario + "." + server + ".sample-after")
	if !ok1 || !ok2 {
		return 0, false
	}
	b, ok1 := before.num(key)
	a, ok2 := after.num(key)
	return a - b, ok1 && ok2
}

// cpuPerDelivery is the CPU time the server's process tree used during the
// run, per successful delivery (one per recipient), in ms.
func cpuPerDelivery(scenario string) func(*results, string) (float64, bool) {
	return func(r *results, server string) (float64, bool) {
		cpu, ok1 := sampleDelta(r, scenario, server, "cpu_sec")
		n, ok2 := field(scenario, "recipients")(r, server)
		if !ok1 || !ok2 || n <= 0 {
			return 0, false
		}
		return cpu * 1000 / n, true
	}
}

// perStoreSync is deliveries per sync by Roost's own counters
// (roost_deliveries_total{result="ok"} over roost_store_syncs_total).
func perStoreSync(scenario string) func(*results, string) (float64, bool) {
	return func(r *results, server string) (float64, bool) {
		d, ok1 := sampleDelta(r, scenario, server, "deliveries")
		y, ok2 := sampleDelta(r, scenario, server, "store_syncs")
		if !ok1 || !ok2 || y <= 0 {
			return 0, false
		}
		return d / y, true
	}
}

// perStraceSync is the run's successful deliveries over the fdatasync and
// fsync calls strace counted in the server's process tree meanwhile
// (OUT/<scenario>.<server>.strace.json).
func perStraceSync(scenario string) func(*results, string) (float64, bool) {
	return func(r *results, server string) (float64, bool) {
		st, ok := r.get(scenario + "." + server + ".strace")
		n, ok2 := field(scenario, "recipients")(r, server)
		if !ok || !ok2 {
			return 0, false
		}
		fd, _ := st.num("fdatasync")
		fs, _ := st.num("fsync")
		if fd+fs <= 0 {
			return 0, false
		}
		return n / (fd + fs), true
	}
}

func bigboxFlatness(r *results, server string) (float64, bool) {
	big, ok1 := field("bigbox", "deliver_ms")(r, server)
	small, ok2 := field("bigbox", "deliver_empty_ms")(r, server)
	if !ok1 || !ok2 || small <= 0 {
		return 0, false
	}
	return big / small, true
}

// rows is the table, in order. Targets are issue 7's.
var rows = []row{
	{"deliver16", "messages/s", true, field("deliver16", "messages_per_sec"), &target{atLeast: true, value: 5.0}},
	{"deliver16", "latency p50 ms", false, field("deliver16", "p50_ms"), nil},
	{"deliver16", "latency p99 ms", false, field("deliver16", "p99_ms"), &target{value: 1.0}},
	{"deliver16", "server CPU ms per delivery", false, cpuPerDelivery("deliver16"), nil},
	{"deliver16", "deliveries per store sync (counter)", true, perStoreSync("deliver16"), &target{atLeast: true, value: 4, own: true}},
	{"deliver16-strace", "messages/s under strace", true, field("deliver16-strace", "messages_per_sec"), nil},
	{"deliver16-strace", "deliveries per fdatasync+fsync", true, perStraceSync("deliver16-strace"), &target{atLeast: true, value: 4, own: true}},
	{"deliver16-strace", "deliveries per store sync (counter)", true, perStoreSync("deliver16-strace"), nil},
	{"deliver1", "messages/s", true, field("deliver1", "messages_per_sec"), nil},
	{"deliver1", "latency p50 ms", false, field("deliver1", "p50_ms"), nil},
	{"deliver1", "server CPU ms per delivery", false, cpuPerDelivery("deliver1"), nil},
	{"deliver1", "deliveries per store sync (counter)", true, perStoreSync("deliver1"), nil},
	{"deliver1-strace", "deliveries per fdatasync+fsync", true, perStraceSync("deliver1-strace"), nil},
	{"imap", "IMAP commands/s", true, field("imap", "ops_per_sec"), &target{atLeast: true, value: 1.5}},
	{"imap", "sessions/s", true, field("imap", "sessions_per_sec"), nil},
	{"imap", "LOGIN p50 ms", false, field("imap", "commands.login.p50_ms"), nil},
	{"imap", "SELECT p50 ms", false, field("imap", "commands.select.p50_ms"), nil},
	{"imap", "FETCH 50 envelopes p50 ms", false, field("imap", "commands.fetch_envelope.p50_ms"), nil},
	{"imap-nocache", "IMAP commands/s", true, field("imap-nocache", "ops_per_sec"), nil},
	{"imap-nocache", "LOGIN p50 ms", false, field("imap-nocache", "commands.login.p50_ms"), nil},
	{"pop3", "MB/s", true, field("pop3", "mb_per_sec"), &target{atLeast: true, value: 1.0}},
	{"pop3", "messages/s", true, field("pop3", "messages_per_sec"), nil},
	{"idle", "PSS per idle connection KiB", false, idlePSSPerConn, &target{value: 0.1}},
	{"idle", "server PSS, all idling, MiB", false, idlePSSTotal, nil},
	{"idle", "  of which file-backed, MiB", false, idlePSSFile, nil},
	{"idle", "connections idling", true, field("idle", "established"), nil},
	{"bigbox", "fill (LMTP) messages/s", true, field("bigbox", "fill_messages_per_sec"), nil},
	{"bigbox", "SELECT ms", false, field("bigbox", "select_ms"), &target{value: 1.0}},
	{"bigbox", "FETCH 1:* (FLAGS) ms", false, field("bigbox", "fetch_flags_ms"), nil},
	{"bigbox", "UID SEARCH UNSEEN ms", false, field("bigbox", "uid_search_unseen_ms"), nil},
	{"bigbox", "FETCH one BODY.PEEK[] ms", false, field("bigbox", "fetch_one_ms"), nil},
	{"bigbox", "delivery into big box ms", false, field("bigbox", "deliver_ms"), nil},
	{"bigbox", "delivery into small box ms", false, field("bigbox", "deliver_empty_ms"), nil},
	{"bigbox", "big ÷ small delivery time", false, bigboxFlatness, &target{value: flatTolerance, own: true}},
}

// scenarioLabel describes a scenario from its Roost (else Dovecot) result.
func scenarioLabel(r *results, scenario string) string {
	var d doc
	for _, s := range servers {
		if x, ok := r.get(scenario + "." + s); ok {
			d = x
			break
		}
	}
	c, _ := d.num("concurrency")
	switch scenario {
	case "deliver16", "deliver1":
		return fmt.Sprintf("deliver LMTP -c %d, %s", int(c), sizeLabel(d.str("size")))
	case "deliver16-strace", "deliver1-strace":
		return fmt.Sprintf("deliver LMTP -c %d, %s, under strace", int(c), sizeLabel(d.str("size")))
	case "imap":
		return fmt.Sprintf("imap -c %d", int(c))
	case "imap-nocache":
		return fmt.Sprintf("imap -c %d, Roost login cache off", int(c))
	case "pop3":
		return fmt.Sprintf("pop3 -c %d", int(c))
	case "idle":
		n, _ := d.num("connections")
		return fmt.Sprintf("idle -c %d", int(n))
	case "bigbox":
		n, _ := d.num("messages")
		return fmt.Sprintf("bigbox %d msgs", int(n))
	}
	return scenario
}

// sizeLabel turns roost-bench's "10240" into "10 KiB"; "mixed" stays.
func sizeLabel(s string) string {
	n, err := strconv.Atoi(s)
	if err != nil {
		return s
	}
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// fmtNum prints a figure with about three significant digits.
func fmtNum(x float64) string {
	switch a := math.Abs(x); {
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

// tableLine is one formatted row.
type tableLine []string

// buildTable evaluates every row that has at least one figure.
func buildTable(r *results) []tableLine {
	out := []tableLine{{"scenario", "metric", "better", "Roost", "Dovecot", "Roost/Dovecot", "target"}}
	for _, rw := range rows {
		v := map[string]float64{}
		have := map[string]bool{}
		for _, s := range servers {
			v[s], have[s] = rw.value(r, s)
		}
		if !have["roost"] && !have["dovecot"] {
			continue
		}
		cell := func(s string) string {
			if !have[s] {
				return "-"
			}
			return fmtNum(v[s])
		}
		better := "lower"
		if rw.higher {
			better = "higher"
		}
		ratio, ratioCell := math.NaN(), "-"
		if have["roost"] && have["dovecot"] && v["dovecot"] != 0 {
			ratio = v["roost"] / v["dovecot"]
			ratioCell = fmtRatio(ratio)
		}
		tgt := ""
		if rw.target != nil {
			verdict := "n/a"
			switch {
			case rw.target.own && have["roost"]:
				verdict = metWord(rw.target.met(0, v["roost"]))
			case !rw.target.own && !math.IsNaN(ratio):
				verdict = metWord(rw.target.met(ratio, 0))
			}
			tgt = rw.target.String() + ": " + verdict
		}
		out = append(out, tableLine{scenarioLabel(r, rw.scenario), rw.metric, better,
			cell("roost"), cell("dovecot"), ratioCell, tgt})
	}
	return out
}

// fmtRatio prints a ratio with two decimals, or two significant digits when
// it is tiny (0.0012 rather than 0.00).
func fmtRatio(x float64) string {
	if x != 0 && math.Abs(x) < 0.1 {
		return strconv.FormatFloat(x, 'g', 2, 64)
	}
	return fmt.Sprintf("%.2f", x)
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// problems lists what went wrong in the runs: failed operations, missing
// results, connections that were not established, a short mailbox.
func problems(r *results) []string {
	var out []string
	for _, sc := range []string{"deliver16", "deliver1", "deliver16-strace", "deliver1-strace", "prefill", "imap", "imap-nocache", "pop3", "idle", "bigbox"} {
		for _, s := range servers {
			name := sc + "." + s
			d, ok := r.get(name)
			if !ok {
				if sc != "prefill" && anyResult(r, sc) {
					out = append(out, fmt.Sprintf("%s: no result (see %s.err)", name, name))
				}
				continue
			}
			if n, _ := d.num("errors"); n > 0 {
				out = append(out, fmt.Sprintf("%s: %d errors; first: %s", name, int(n), d.str("first_error")))
			} else if fe := d.str("first_error"); fe != "" {
				out = append(out, fmt.Sprintf("%s: error: %s", name, fe))
			}
			if sc == "idle" {
				asked, _ := d.num("connections")
				got, _ := d.num("established")
				if got < asked {
					out = append(out, fmt.Sprintf("%s: only %d of %d connections idling", name, int(got), int(asked)))
				}
				if dropped, _ := d.num("dropped"); dropped > 0 {
					out = append(out, fmt.Sprintf("%s: %d connections dropped by the server during the hold", name, int(dropped)))
				}
			}
			if sc == "bigbox" {
				have, _ := d.num("messages")
				want, _ := d.num("target")
				if have < want {
					out = append(out, fmt.Sprintf("%s: mailbox has %d of %d messages", name, int(have), int(want)))
				}
			}
		}
	}
	return out
}

func anyResult(r *results, scenario string) bool {
	for _, s := range servers {
		if _, ok := r.get(scenario + "." + s); ok {
			return true
		}
	}
	_, err := os.Stat(filepath.Join(r.dir, scenario+".roost.err"))
	return err == nil
}

func cmdTable(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	dir := fs.String("dir", "", "output `directory` of bench/compare")
	markdown := fs.Bool("markdown", false, "print a Markdown table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("table: need -dir")
	}
	r, err := loadResults(*dir)
	if err != nil {
		return err
	}
	writeTable(stdout, buildTable(r), *markdown)
	if p := problems(r); len(p) > 0 {
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, "Problems:")
		for _, line := range p {
			fmt.Fprintln(stdout, "  - "+line)
		}
	}
	return nil
}

func writeTable(w io.Writer, lines []tableLine, markdown bool) {
	if markdown {
		for i, l := range lines {
			fmt.Fprintf(w, "| %s |\n", strings.Join(l, " | "))
			if i == 0 {
				seps := make([]string, len(l))
				for j := range seps {
					seps[j] = "---"
					if j >= 3 && j <= 5 {
						seps[j] = "---:"
					}
				}
				fmt.Fprintf(w, "|%s|\n", strings.Join(seps, "|"))
			}
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	prev := ""
	for i, l := range lines {
		cells := append(tableLine(nil), l...)
		if i > 0 && cells[0] == prev {
			cells[0] = "" // the scenario once per group
		} else {
			prev = cells[0]
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}
