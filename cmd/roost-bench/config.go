package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// scenarios lists every SCENARIO with its one-line help.
var scenarios = []struct{ name, help string }{
	{"deliver", "LMTP (-lmtp) or SMTP (-smtp) deliveries to -n accounts over -c reused connections"},
	{"imap", "-c IMAP clients looping login/select/fetch/store/idle/logout sessions (or -rate sessions/s)"},
	{"pop3", "-c POP3 clients: USER/PASS, STAT, RETR all, optional DELE (-dele), QUIT"},
	{"idle", "hold -c IDLE connections for -duration; server PSS via -pid or -pidof"},
	{"bigbox", "fill one mailbox with -messages via LMTP, time SELECT/FETCH/SEARCH and deliveries"},
	{"smoke", "a few seconds of deliver (LMTP), imap and pop3 with tiny counts; fails on any error"},
}

// config is the parsed command line.
type config struct {
	scenario string

	lmtp, smtp, imap, pop3 string
	useSMTP                bool // deliver over SMTP: -smtp given and -lmtp not

	users       string
	n           int
	pass        string
	from        string
	auth        string // deliver: AUTH PLAIN as this account (submission)
	concurrency int
	duration    time.Duration
	count       int64
	rate        float64
	size        sizeDist
	rcpts       int
	json        bool
	seed        uint64
	quiet       bool
	timeout     time.Duration
	segmented   bool // deliver: Nagle on, every command, the body and the "." in writes of their own

	idleFor  time.Duration // imap: how long each session stays in IDLE
	dele     bool          // pop3: DELE every retrieved message
	pids     []int         // idle: server processes to measure
	pidof    []string      // idle: comm name prefixes of server processes
	messages int           // bigbox: target mailbox size
	probes   int           // bigbox: deliveries timed per mailbox

	procRoot string // "/proc"; tests point it at a fake tree

	cpuProfile string // hidden -cpuprofile: write the tool's own CPU profile here
}

// usageError is a bad command line; main exits 2 for it.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// Per-scenario defaults that differ from the shared ones.
var (
	defaultConcurrency = map[string]int{"idle": 100, "bigbox": 32, "smoke": 2}
	defaultDuration    = map[string]time.Duration{"idle": 10 * time.Second, "smoke": time.Minute}
	defaultSize        = map[string]string{"bigbox": "2k"}
)

// parseConfig parses `SCENARIO [flags]`. Help output goes to stderr.
func parseConfig(args []string, stderr io.Writer) (*config, error) {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		printUsage(stderr, nil)
		if len(args) == 0 {
			return nil, usagef("missing SCENARIO")
		}
		return nil, flag.ErrHelp
	}
	cfg := &config{scenario: args[0], procRoot: "/proc"}
	known := false
	for _, s := range scenarios {
		known = known || s.name == cfg.scenario
	}
	if !known {
		return nil, usagef("unknown scenario %q (want one of %s)", cfg.scenario, scenarioNames())
	}

	fs := flag.NewFlagSet("roost-bench "+cfg.scenario, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.lmtp, "lmtp", "127.0.0.1:2424", "LMTP `address`")
	fs.StringVar(&cfg.smtp, "smtp", "127.0.0.1:2525", "SMTP `address` (deliver uses it when given without -lmtp)")
	fs.StringVar(&cfg.imap, "imap", "127.0.0.1:1143", "IMAP `address`")
	fs.StringVar(&cfg.pop3, "pop3", "127.0.0.1:1110", "POP3 `address`")
	fs.StringVar(&cfg.users, "users", "user%d@example.org", "account name `pattern`: printf with one %d, accounts are 1..n")
	fs.IntVar(&cfg.n, "n", 100, "number of accounts")
	fs.StringVar(&cfg.pass, "pass", "secret", "`password` of every account")
	fs.StringVar(&cfg.from, "from", "loadgen@example.net", "envelope sender `address` of deliveries")
	fs.StringVar(&cfg.auth, "auth", "", "deliver over -smtp: log in as `account` (AUTH PLAIN, password -pass) on every connection, as on Roost's submission port")
	fs.IntVar(&cfg.concurrency, "c", 8, "concurrency: connections or clients; idle, bigbox and smoke default to 100, 32 and 2")
	fs.DurationVar(&cfg.duration, "duration", 30*time.Second, "run `time`; idle: hold time (default 10s), smoke: upper bound (default 1m), bigbox: unused")
	fs.Int64Var(&cfg.count, "count", 0, "stop after `K` operations (deliver: messages; imap, pop3: sessions); with -count alone there is no time limit")
	fs.Float64Var(&cfg.rate, "rate", 0, "fixed rate: start `R` operations per second (imap sessions, deliver messages, pop3 sessions); 0 = back to back")
	sizeFlag := fs.String("size", "mixed", "message `size`: 10k (fixed), 2k-20k (uniform) or mixed (90% 2-20 kB text, 10% with a 50-500 kB attachment); bigbox default 2k")
	fs.IntVar(&cfg.rcpts, "rcpts", 1, "recipients per delivered message")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object (smoke: one per scenario, a line each) instead of a table")
	fs.Uint64Var(&cfg.seed, "seed", 1, "random `seed`: same seed, same messages and account choices")
	fs.BoolVar(&cfg.quiet, "q", false, "no progress output on stderr")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "network timeout of each command")
	fs.BoolVar(&cfg.segmented, "segmented", false, "deliver: send like a stdio-buffered MTA: Nagle on (no TCP_NODELAY), no pipelining, each command, the body and the final dot in a write of its own")
	fs.DurationVar(&cfg.idleFor, "idle", 100*time.Millisecond, "imap: time each session spends in IDLE (0 skips IDLE)")
	fs.BoolVar(&cfg.dele, "dele", false, "pop3: DELE every retrieved message before QUIT")
	pidFlag := fs.String("pid", "", "idle: comma-separated server `PIDs` whose PSS is summed")
	pidofFlag := fs.String("pidof", "", "idle: comma-separated process `names`; sums every process whose /proc/PID/comm starts with one of them")
	fs.IntVar(&cfg.messages, "messages", 100000, "bigbox: messages in the big mailbox")
	fs.IntVar(&cfg.probes, "probes", 5, "bigbox: timed deliveries per mailbox (median reported)")
	// Hidden (not in -h): for finding where the load tool's own CPU goes,
	// which is CPU taken from the server under test on a shared machine.
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write roost-bench's own CPU profile to `file`")

	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stderr, fs)
			return nil, flag.ErrHelp
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if !set["c"] {
		if c, ok := defaultConcurrency[cfg.scenario]; ok {
			cfg.concurrency = c
		}
	}
	if !set["duration"] {
		if d, ok := defaultDuration[cfg.scenario]; ok {
			cfg.duration = d
		} else if set["count"] {
			cfg.duration = 0 // -count alone: no time limit
		}
	}
	if !set["size"] {
		if s, ok := defaultSize[cfg.scenario]; ok {
			*sizeFlag = s
		}
	}
	cfg.useSMTP = set["smtp"] && !set["lmtp"]

	var err error
	if cfg.size, err = parseSizeDist(*sizeFlag); err != nil {
		return nil, usageError{fmt.Errorf("-size: %w", err)}
	}
	if cfg.pids, err = parsePIDList(*pidFlag); err != nil {
		return nil, usageError{fmt.Errorf("-pid: %w", err)}
	}
	for _, name := range strings.Split(*pidofFlag, ",") {
		if name = strings.TrimSpace(name); name != "" {
			cfg.pidof = append(cfg.pidof, name)
		}
	}
	return cfg, cfg.validate()
}

func (cfg *config) validate() error {
	if err := checkUserPattern(cfg.users); err != nil {
		return usageError{fmt.Errorf("-users: %w", err)}
	}
	switch {
	case cfg.n < 1:
		return usagef("-n must be at least 1")
	case cfg.concurrency < 1:
		return usagef("-c must be at least 1")
	case cfg.count < 0:
		return usagef("-count must not be negative")
	case cfg.duration < 0:
		return usagef("-duration must not be negative")
	case cfg.duration == 0 && cfg.count == 0 && cfg.scenario != "bigbox" && cfg.scenario != "idle":
		return usagef("need -duration or -count")
	case cfg.rate < 0:
		return usagef("-rate must not be negative")
	case cfg.rcpts < 1 || cfg.rcpts > cfg.n:
		return usagef("-rcpts must be between 1 and -n (%d)", cfg.n)
	case cfg.timeout <= 0:
		return usagef("-timeout must be positive")
	case cfg.idleFor < 0:
		return usagef("-idle must not be negative")
	case cfg.messages < 1:
		return usagef("-messages must be at least 1")
	case cfg.probes < 1:
		return usagef("-probes must be at least 1")
	case cfg.scenario == "bigbox" && cfg.n < 2:
		return usagef("bigbox needs -n 2 or more: account 1 gets the big mailbox, account 2 is the comparison")
	}
	for _, addr := range []string{cfg.lmtp, cfg.smtp, cfg.imap, cfg.pop3} {
		if _, _, err := splitHostPort(addr); err != nil {
			return usageError{err}
		}
	}
	return nil
}

// checkUserPattern accepts a printf pattern with exactly one %d (and %%).
func checkUserPattern(p string) error {
	verbs := 0
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+1 < len(p) && p[i+1] == '%' {
			i++
			continue
		}
		if i+1 < len(p) && p[i+1] == 'd' {
			verbs++
			i++
			continue
		}
		return fmt.Errorf("pattern %q: only %%d and %%%% are allowed", p)
	}
	if verbs != 1 {
		return fmt.Errorf("pattern %q: want exactly one %%d", p)
	}
	return nil
}

// user returns the name of account i (1-based).
func (cfg *config) user(i int) string {
	return fmt.Sprintf(cfg.users, i)
}

func parsePIDList(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("bad PID %q", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func splitHostPort(addr string) (string, string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("address %q: %w", addr, err)
	}
	return host, port, nil
}

func scenarioNames() string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: roost-bench SCENARIO [flags]")
	fmt.Fprintln(w, "\nScenarios:")
	for _, s := range scenarios {
		fmt.Fprintf(w, "  %-8s %s\n", s.name, s.help)
	}
	if fs == nil {
		fmt.Fprintln(w, "\nRun `roost-bench SCENARIO -h` for the flags.")
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	fs.VisitAll(func(f *flag.Flag) {
		if !hiddenFlags[f.Name] {
			shown.Var(f.Value, f.Name, f.Usage)
			shown.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	shown.SetOutput(w)
	shown.PrintDefaults()
}

// hiddenFlags are accepted but left out of -h: tools for working on
// roost-bench itself, not for measuring servers.
var hiddenFlags = map[string]bool{"cpuprofile": true}
