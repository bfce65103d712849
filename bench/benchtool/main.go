// Command benchtool is the Go half of bench/compare, the side-by-side
// benchmark of Roost and Dovecot (issue 7). The shell script drives the
// servers and cmd/roost-bench; benchtool does what is awkward in shell:
//
//	benchtool render -tmpl bench/dovecot.conf.tmpl -dir D -imap P -pop3 P -lmtp P -o D/dovecot.conf
//	benchtool passwd -users 'user%d@example.org' -n 100 -pass secret   # passwd-file lines
//	benchtool ports -n 6                                                # free loopback ports
//	benchtool wait -timeout 30s 127.0.0.1:1143 ...                      # until they accept
//	benchtool pss PID                                                   # PSS of PID and its descendants
//	benchtool pids PID                                                  # PID and its descendants, one a line
//	benchtool sample [-metrics URL] PID                                 # CPU time of the tree, Roost's counters
//	benchtool strace -in FILE                                           # calls counted by strace -c -o FILE
//	benchtool login -imap 127.0.0.1:1143 -users 'box%d@example.org' -n 100 -pass secret
//	benchtool table -dir OUT [-markdown]                                # the comparison table
//
// It is not part of Roost; it lives here so that `bench/compare` needs
// nothing but Go and Debian packages.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/roostmail/roost/backend"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "benchtool: %v\n", err)
		os.Exit(1)
	}
}

const usage = "usage: benchtool render|passwd|ports|wait|pss|pids|sample|strace|login|table [flags]"

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("benchtool "+cmd, flag.ContinueOnError)
	switch cmd {
	case "render":
		return cmdRender(fs, args, stdout)
	case "passwd":
		return cmdPasswd(fs, args, stdout)
	case "ports":
		return cmdPorts(fs, args, stdout)
	case "wait":
		return cmdWait(fs, args)
	case "pss":
		return cmdPSS(fs, args, stdout)
	case "pids":
		return cmdPIDs(fs, args, stdout)
	case "sample":
		return cmdSample(fs, args, stdout)
	case "strace":
		return cmdStrace(fs, args, stdout)
	case "login":
		return cmdLogin(fs, args)
	case "table":
		return cmdTable(fs, args, stdout)
	}
	return fmt.Errorf("unknown command %q; %s", cmd, usage)
}

// dovecotParams are the fields of bench/dovecot.conf.tmpl.
type dovecotParams struct {
	Dir                          string
	User, Group                  string
	IMAPPort, POP3Port, LMTPPort int
	ProcessMinAvail              int
}

func cmdRender(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	var p dovecotParams
	tmpl := fs.String("tmpl", "bench/dovecot.conf.tmpl", "template `file`")
	out := fs.String("o", "", "output `file` (default stdout)")
	fs.StringVar(&p.Dir, "dir", "", "Dovecot state `directory` (absolute)")
	fs.StringVar(&p.User, "user", "mail", "system `user` owning the mail")
	fs.StringVar(&p.Group, "group", "mail", "system `group` owning the mail")
	fs.IntVar(&p.IMAPPort, "imap", 0, "IMAP `port` on 127.0.0.1")
	fs.IntVar(&p.POP3Port, "pop3", 0, "POP3 `port` on 127.0.0.1")
	fs.IntVar(&p.LMTPPort, "lmtp", 0, "LMTP `port` on 127.0.0.1")
	fs.IntVar(&p.ProcessMinAvail, "min-avail", 4, "process_min_avail of every service")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !filepath.IsAbs(p.Dir) {
		return fmt.Errorf("-dir %q must be an absolute path", p.Dir)
	}
	for name, port := range map[string]int{"imap": p.IMAPPort, "pop3": p.POP3Port, "lmtp": p.LMTPPort} {
		if port <= 0 || port > 65535 {
			return fmt.Errorf("-%s: need a port number, got %d", name, port)
		}
	}
	text, err := renderDovecot(*tmpl, p)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = io.WriteString(stdout, text)
		return err
	}
	return os.WriteFile(*out, []byte(text), 0o644)
}

func renderDovecot(tmplFile string, p dovecotParams) (string, error) {
	t, err := template.New(filepath.Base(tmplFile)).Option("missingkey=error").ParseFiles(tmplFile)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", tmplFile, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, p); err != nil {
		return "", fmt.Errorf("render %s: %w", tmplFile, err)
	}
	return b.String(), nil
}

// cmdPasswd prints Dovecot passwd-file lines for accounts 1..n of a pattern,
// each with its own salt and exactly Roost's argon2id cost (m=19 MiB, t=2,
// p=1; backend.HashPassword). Dovecot's ARGON2ID scheme verifies PHC
// strings with the parameters they carry, so both servers pay the same
// per-login hashing cost.
func cmdPasswd(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	pattern := fs.String("users", "user%d@example.org", "account name `pattern` with one %d")
	n := fs.Int("n", 100, "number of accounts")
	pass := fs.String("pass", "secret", "`password` of every account")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if strings.Count(*pattern, "%d") != 1 || *n < 1 {
		return errors.New("need -users with one %d and -n >= 1")
	}
	lines := make([]string, *n)
	errs := make([]error, *n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i := range *n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			hash, err := backend.HashPassword(*pass)
			lines[i], errs[i] = fmt.Sprintf(*pattern, i+1)+":{ARGON2ID}"+hash+"::::::", err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return w.Flush()
}

// cmdPorts prints n TCP ports on 127.0.0.1 that were free a moment ago.
func cmdPorts(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	n := fs.Int("n", 1, "how many ports")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range *n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Fprintln(stdout, l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// cmdWait returns once every address accepts a TCP connection and sends
// its first line (a greeting), or fails after -timeout.
func cmdWait(fs *flag.FlagSet, args []string) error {
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this `long`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	for _, addr := range fs.Args() {
		var last error
		for {
			if last = greeting(ctx, addr); last == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not ready after %s: %w", addr, *timeout, last)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func greeting(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

// pssSample is the summed PSS of a process tree, and its file-backed part
// (program text, libraries, and for Roost the bbolt files it maps: pages
// the kernel can drop and read again).
type pssSample struct {
	KiB       int64 `json:"kib"`
	FileKiB   int64 `json:"file_kib"`
	Processes int   `json:"processes"`
}

// cmdPSS prints the PSS sum of each given PID and all its descendants, as
// JSON. Unlike matching process names, it cannot pick up unrelated
// processes (on a shared machine `imap` also matches `imapd.test`).
func cmdPSS(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	roots, err := parsePIDs(fs.Args())
	if err != nil {
		return fmt.Errorf("pss: %w", err)
	}
	s, err := treePSS("/proc", roots)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(s)
}

// treePSS sums /proc/PID/smaps_rollup Pss over roots and their descendants.
// A descendant that exits while we read is skipped; a root must be readable.
func treePSS(procRoot string, roots []int) (pssSample, error) {
	children, err := childMap(procRoot)
	if err != nil {
		return pssSample{}, err
	}
	var s pssSample
	for _, pid := range descendants(roots, children) {
		one, err := readPss(procRoot, pid)
		if err != nil {
			if isRoot(pid, roots) {
				return pssSample{}, err
			}
			continue
		}
		s.KiB += one.KiB
		s.FileKiB += one.FileKiB
		s.Processes++
	}
	return s, nil
}

func isRoot(pid int, roots []int) bool {
	for _, r := range roots {
		if r == pid {
			return true
		}
	}
	return false
}

// childMap maps each PID to its children, from /proc/PID/stat.
func childMap(procRoot string) (map[int][]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	m := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue
		}
		ppid, err := parseStatPPID(string(b))
		if err != nil {
			continue
		}
		m[ppid] = append(m[ppid], pid)
	}
	return m, nil
}

// parseStatPPID returns field 4 of /proc/PID/stat; the comm field (2) is in
// parentheses and may itself contain spaces and parentheses.
func parseStatPPID(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no comm")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, errors.New("stat: short")
	}
	return strconv.Atoi(f[1])
}

// readPss reads the Pss and Pss_File lines of /proc/PID/smaps_rollup.
func readPss(procRoot string, pid int) (pssSample, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return pssSample{}, err
	}
	defer f.Close()
	var s pssSample
	havePss := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "Pss" && name != "Pss_File") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return pssSample{}, fmt.Errorf("pid %d: malformed %s line in smaps_rollup", pid, name)
		}
		kib, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return pssSample{}, fmt.Errorf("pid %d: malformed %s line in smaps_rollup", pid, name)
		}
		if name == "Pss" {
			s.KiB, havePss = kib, true
		} else {
			s.FileKiB = kib
		}
	}
	if !havePss {
		return pssSample{}, fmt.Errorf("pid %d: no Pss line in smaps_rollup", pid)
	}
	return s, nil
}

// cmdLogin logs in to accounts 1..n over IMAP one after the other (LOGIN,
// LOGOUT), to warm a server's login cache without a burst of concurrent
// password hashes: a burst would leave a Go heap (or an auth process) large
// for a while and blur a memory measurement that follows.
func cmdLogin(fs *flag.FlagSet, args []string) error {
	addr := fs.String("imap", "127.0.0.1:1143", "IMAP `address`")
	pattern := fs.String("users", "user%d@example.org", "account name `pattern` with one %d")
	n := fs.Int("n", 100, "number of accounts")
	pass := fs.String("pass", "secret", "`password` of every account")
	timeout := fs.Duration("timeout", 30*time.Second, "per-login `timeout`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if strings.Count(*pattern, "%d") != 1 || *n < 1 {
		return errors.New("need -users with one %d and -n >= 1")
	}
	for i := 1; i <= *n; i++ {
		if err := imapLogin(*addr, fmt.Sprintf(*pattern, i), *pass, *timeout); err != nil {
			return err
		}
	}
	return nil
}

// imapLogin does greeting, LOGIN (RFC 9051 §6.2.3) and LOGOUT.
func imapLogin(addr, user, pass string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
		return fmt.Errorf("%s: bad greeting %q: %v", addr, line, err)
	}
	quote := func(s string) string { return strconv.Quote(s) } // IMAP quoted string for plain ASCII
	if _, err := fmt.Fprintf(c, "a LOGIN %s %s\r\n", quote(user), quote(pass)); err != nil {
		return err
	}
	if err := imapTagged(r, "a"); err != nil {
		return fmt.Errorf("%s: LOGIN %s: %w", addr, user, err)
	}
	if _, err := io.WriteString(c, "b LOGOUT\r\n"); err != nil {
		return err
	}
	return imapTagged(r, "b")
}

// imapTagged reads until the tagged response of tag and fails unless OK.
func imapTagged(r *bufio.Reader, tag string) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			if strings.HasPrefix(rest, "OK") {
				return nil
			}
			return fmt.Errorf("%s", strings.TrimSpace(line))
		}
	}
}
