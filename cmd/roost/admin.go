package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/roostmail/roost/autoconfig"
	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/outbound"
	"github.com/roostmail/roost/store"
)

// admin carries out control requests on a backend. The control server
// (inside `roost serve`) and the CLI's direct mode (no server running) both
// use it, so the two paths behave the same.
type admin struct {
	b       *backend.Backend
	dataDir string
	// outbound is the running server's queue engine; nil in direct mode.
	outbound *outbound.Engine
	// status lists the running server's listeners; nil in direct mode.
	status func() []string
	// maxMessageBytes is the backend's message size limit (imports).
	maxMessageBytes int64
}

// do executes req. Errors become one-line messages in the response.
func (a *admin) do(ctx context.Context, req request) response {
	var resp response
	lines, err := a.exec(ctx, withResponse(req, &resp))
	if err != nil {
		// Lines stay: check reports what it found and fails.
		return response{Error: oneLine(err.Error()), Lines: lines}
	}
	resp.OK, resp.Lines = true, lines
	return resp
}

func (a *admin) exec(ctx context.Context, req request) ([]string, error) {
	want := map[string]int{
		opPing: 0, opStatus: 0, opUserAdd: 1, opUserPasswd: 1, opUserDel: 1, opUserList: 0,
		opAliasAdd: 2, opAliasDel: 1, opAliasList: 0, opBackup: 1,
		opQueueList: 0, opQueueShow: 1, opQueueRetry: 1, opQueueDelete: 1,
		opCompact: -1, // none or one
	}
	for op, n := range moreOps {
		want[op] = n
	}
	if req.Op == opCheck || req.Op == opCheckRepair {
		rep, err := a.b.Check(ctx, req.Args, req.Op == opCheckRepair)
		return checkResult(rep, req.Op == opCheckRepair, err)
	}
	n, ok := want[req.Op]
	if !ok {
		return nil, fmt.Errorf("unknown operation %q", req.Op)
	}
	if n < 0 && len(req.Args) > 1 || n >= 0 && len(req.Args) != n {
		return nil, fmt.Errorf("%s takes %d arguments, got %d", req.Op, max(n, 1), len(req.Args))
	}
	b := a.b
	switch req.Op {
	case opPing:
		return nil, nil
	case opStatus:
		if a.status == nil {
			return nil, errors.New("not running")
		}
		return a.status(), nil
	case opUserAdd:
		addr := req.Args[0]
		err := b.CreateUser(ctx, addr, req.Password)
		if errors.Is(err, backend.ErrExists) {
			if _, lerr := b.LookupUser(ctx, addr); lerr == nil {
				return nil, fmt.Errorf("user %s already exists", addr)
			}
			return nil, fmt.Errorf("%s is an alias; delete the alias first", addr)
		}
		return a.done(wrapAdmin("user add", addr, err), "added %s to %s", addr, a.dataDir)
	case opUserPasswd:
		err := wrapAdmin("user passwd", req.Args[0], b.SetPassword(ctx, req.Args[0], req.Password))
		return a.done(err, "changed the password of %s in %s", req.Args[0], a.dataDir)
	case opUserDel:
		err := wrapAdmin("user del", req.Args[0], b.DeleteUser(ctx, req.Args[0]))
		return a.done(err, "deleted %s and its mail from %s", req.Args[0], a.dataDir)
	case opUserList:
		return a.userList(ctx)
	case opAliasAdd:
		alias, target := req.Args[0], req.Args[1]
		err := b.AddAlias(ctx, alias, target)
		if errors.Is(err, backend.ErrExists) {
			if _, lerr := b.LookupUser(ctx, alias); lerr == nil {
				return nil, fmt.Errorf("%s is a user; an alias cannot have the same address", alias)
			}
			return nil, fmt.Errorf("alias %s already exists", alias)
		}
		return a.done(wrapAdmin("alias add", alias, err), "added alias %s for %s to %s", alias, target, a.dataDir)
	case opAliasDel:
		err := b.DeleteAlias(ctx, req.Args[0])
		if errors.Is(err, backend.ErrNotFound) {
			return nil, fmt.Errorf("no such alias: %s", req.Args[0])
		}
		return a.done(wrapAdmin("alias del", req.Args[0], err), "deleted alias %s from %s", req.Args[0], a.dataDir)
	case opAliasList:
		aliases, err := b.Aliases(ctx)
		if err != nil {
			return nil, fmt.Errorf("alias list: %w", err)
		}
		lines := make([]string, 0, len(aliases))
		for _, al := range aliases {
			lines = append(lines, al[0]+"\t"+al[1])
		}
		return lines, nil
	default:
		return a.execMore(ctx, req)
	case opBackup:
		dir := req.Args[0]
		if err := a.checkBackupDir(dir); err != nil {
			return nil, err
		}
		if err := b.Backup(ctx, dir); err != nil {
			return nil, fmt.Errorf("backup to %s: %w", dir, err)
		}
		return []string{"backup of " + a.dataDir + " written to " + dir + " (files listed with their SHA-256 in " + filepath.Join(dir, store.ManifestName) + ")"}, nil
	case opQueueList, opQueueShow, opQueueRetry, opQueueDelete:
		return queueOp(ctx, b, a.outbound, req.Op, req.Args)
	case opCompact:
		addr := ""
		if len(req.Args) == 1 {
			addr = req.Args[0]
		}
		res, err := b.Compact(ctx, addr, req.progress)
		lines := make([]string, 0, len(res))
		for _, r := range res {
			lines = append(lines, fmt.Sprintf("%s\tbefore=%d\tafter=%d", r.File, r.Before, r.After))
		}
		return lines, wrapAdmin("compact", addr, err)
	}
}

// done is the answer of a command that changes the store: on success one
// line saying what changed in which store (so an admin sees at once when
// a command went to another store than the server's).
func (a *admin) done(err error, format string, args ...any) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf(format, args...)}, nil
}

// wrapAdmin turns backend errors into the messages an admin reads; the
// backend's own texts already name the problem ("invalid address: ...",
// "no such user: ...", "empty password").
func wrapAdmin(cmd, addr string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, backend.ErrInvalidAddress), errors.Is(err, backend.ErrNoSuchUser),
		errors.Is(err, backend.ErrEmptyPassword), errors.Is(err, backend.ErrNoAppPassword),
		errors.Is(err, backend.ErrAppPasswordExists):
		return err
	}
	return fmt.Errorf("%s %s: %w", cmd, addr, err)
}

// checkBackupDir refuses a relative directory (the server's working
// directory is not the admin's) and the data directory itself, whose live
// files a backup would overwrite.
func (a *admin) checkBackupDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("backup directory %q must be an absolute path", dir)
	}
	data, err := filepath.Abs(a.dataDir)
	if err != nil {
		return err
	}
	if filepath.Clean(dir) == data {
		return fmt.Errorf("backup directory %s is the data directory", dir)
	}
	if fi1, err := os.Stat(dir); err == nil {
		if fi2, err := os.Stat(data); err == nil && os.SameFile(fi1, fi2) {
			return fmt.Errorf("backup directory %s is the data directory", dir)
		}
	}
	return nil
}

// runAdmin executes an admin command: through the server's control socket
// when a server answers there, else directly on the store.
func runAdmin(ctx context.Context, cfg *Config, req request, env cliEnv) error {
	if err := prepareRequest(&req, env); err != nil {
		return err
	}
	sock := controlSocketPath(cfg.DataDir)
	if req.Op == opCompact {
		bar := newProgressBar(env.stderr, "compacting")
		defer bar.finish()
		req.progress = bar.update
	}
	resp, err := callControl(ctx, sock, req)
	switch {
	case errors.Is(err, errNoServer) && req.Op == opStatus && len(req.Args) == 0:
		return fmt.Errorf("roost is not running on data_dir %s (no server answers on %s)", cfg.DataDir, sock)
	case errors.Is(err, errNoServer) && (req.Op == opCheck || req.Op == opCheckRepair):
		resp, err = checkDirect(ctx, cfg, req)
		if err != nil {
			return err
		}
	case errors.Is(err, errNoServer):
		resp, err = runDirect(ctx, cfg, req)
		if err != nil {
			return err
		}
	case err != nil:
		return err
	}
	for _, l := range resp.Lines {
		fmt.Fprintln(env.stdout, l)
	}
	if !resp.OK {
		if resp.Error == "" {
			resp.Error = "the server reported a failure without a reason"
		}
		return errors.New(resp.Error)
	}
	return nil
}

// prepareRequest checks addresses before anything else happens (so a typo
// does not cost a password prompt), reads the password where one is
// needed, and makes a backup directory absolute.
func prepareRequest(req *request, env cliEnv) error {
	switch req.Op {
	case opUserQuota, opUserDisable, opUserEnable, opUserStatus, opAppPasswordAdd, opAppPasswordList, opAppPasswordDel:
		n, err := backend.NormalizeAddress(req.Args[0])
		if err != nil {
			return err
		}
		req.Args[0] = n
	case opUserAdd, opUserPasswd, opUserDel, opAliasAdd, opAliasDel, opCheck, opCheckRepair, opCompact:
		for i, a := range req.Args {
			n, err := backend.NormalizeAddress(a)
			if err != nil {
				return err
			}
			req.Args[i] = n
		}
	case opBackup:
		dir, err := filepath.Abs(req.Args[0])
		if err != nil {
			return err
		}
		req.Args[0] = dir
	}
	if req.Op == opUserAdd || req.Op == opUserPasswd {
		pw, err := readPassword(env, req.Args[0])
		if err != nil {
			return err
		}
		req.Password = pw
	}
	return nil
}

// runDirect opens the store itself (no server runs) and executes req. It
// never creates a store: a command run with another config or from
// another directory than the server would otherwise make a second, empty
// store and change that one (only `roost serve` and `roost init` create).
func runDirect(ctx context.Context, cfg *Config, req request) (response, error) {
	a, err := openDirect(cfg)
	if err != nil {
		return response{}, err
	}
	resp := a.do(ctx, req)
	if err := a.b.Close(); err != nil && resp.OK {
		return response{}, fmt.Errorf("close store: %w", err)
	}
	return resp, nil
}

// noStoreError says where the CLI looked and how to point it elsewhere.
func noStoreError(cfg *Config) error {
	return fmt.Errorf("no Roost store in %s (no roost.db there, and no server answers on %s); "+
		"point the command at the server's store with --config FILE or ROOST_DATA_DIR=DIR, "+
		"or create a new store there with \"roost init\" or \"roost serve\"",
		cfg.DataDir, controlSocketPath(cfg.DataDir))
}

// runInit creates an empty store in data_dir (what `roost serve` does on
// its first start), so that accounts can be added before the server runs.
func runInit(ctx context.Context, cfg *Config, env cliEnv) error {
	if _, err := callControl(ctx, controlSocketPath(cfg.DataDir), request{Op: opPing}); err == nil {
		return fmt.Errorf("a server already runs on the store in %s", cfg.DataDir)
	} else if !errors.Is(err, errNoServer) {
		return err
	}
	exists, err := store.Exists(cfg.DataDir)
	if err != nil {
		return err
	}
	if exists {
		fmt.Fprintf(env.stdout, "a store already exists in %s; nothing changed\n", cfg.DataDir)
		return nil
	}
	b, err := backend.New(backend.Options{
		DataDir:  cfg.DataDir,
		Shards:   cfg.Shards,
		Hostname: cfg.Hostname,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("the store in %s is in use by another process", cfg.DataDir)
	}
	if err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	if err := b.Close(); err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	fmt.Fprintf(env.stdout, "created a store in %s\n", cfg.DataDir)
	return nil
}

// runRestore restores the backup in dir into data_dir, which must hold no
// store, with no server running. The backup is checked first against its
// manifest (store.Restore refuses a partial or altered one), then the copy
// goes through checkStore before it becomes data_dir.
func runRestore(ctx context.Context, cfg *Config, dir string, env cliEnv) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := callControl(ctx, controlSocketPath(cfg.DataDir), request{Op: opPing}); err == nil {
		return fmt.Errorf("a server runs on data_dir %s: stop it before restoring", cfg.DataDir)
	} else if !errors.Is(err, errNoServer) {
		return err
	}
	m, err := store.ReadManifest(dir)
	if err != nil {
		return err
	}
	if m.Shards != cfg.Shards {
		return fmt.Errorf("the backup in %s was made with shards = %d, but the config says shards = %d; restore with the same setting", dir, m.Shards, cfg.Shards)
	}
	m, err = store.Restore(dir, cfg.DataDir, func(staging string) error { return checkStore(ctx, cfg, staging) })
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "restored %d files (backup of %s) from %s into %s\n",
		len(m.Files), m.Created.Format(time.RFC3339), dir, cfg.DataDir)
	return nil
}

// checkStore is the store consistency check a restore runs on the
// restored copy before accepting it: the store checker (roost check) on
// the copy opened read-only. Any violation refuses the restore; the
// message names the first few.
func checkStore(ctx context.Context, cfg *Config, dir string) error {
	st, err := store.Open(store.Options{Dir: dir, Shards: cfg.Shards, ReadOnly: true, MustExist: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := st.Check(ctx, nil, false)
	if err != nil {
		return fmt.Errorf("store check: %w", err)
	}
	if n := rep.Unrepaired(); n > 0 {
		var first []string
		for _, v := range rep.Violations[:min(3, len(rep.Violations))] {
			first = append(first, v.String())
		}
		return fmt.Errorf("store check: %d problems in the backup (roost check on it lists them all), first: %s", n, strings.Join(first, "; "))
	}
	return nil
}

// openDirect opens the store for admin requests when no server runs.
func openDirect(cfg *Config) (*admin, error) {
	opts := backendOptions(cfg, slog.New(slog.DiscardHandler))
	opts.MustExist = true
	b, err := backend.New(opts)
	if errors.Is(err, backend.ErrNoStore) {
		return nil, noStoreError(cfg)
	}
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("the store in %s is in use by another process (is roost serve running?), but no server answers on its control socket %s",
			cfg.DataDir, controlSocketPath(cfg.DataDir))
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &admin{b: b, dataDir: cfg.DataDir, maxMessageBytes: backendMaxMessageBytes(cfg)}, nil
}

// maxPasswordBytes bounds a password read from stdin.
const maxPasswordBytes = 4096

// readPassword gets a password without it ever being a command-line
// argument: from a terminal, prompted twice without echo; otherwise the
// first line of stdin (for scripts: `echo "$PW" | roost user add ...`).
func readPassword(env cliEnv, addr string) (string, error) {
	if f, ok := env.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(env.stderr, "Password for %s: ", addr)
		pw1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if len(pw1) == 0 {
			return "", backend.ErrEmptyPassword
		}
		fmt.Fprint(env.stderr, "Repeat password: ")
		pw2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(pw1) != string(pw2) {
			return "", errors.New("the passwords do not match")
		}
		return string(pw1), nil
	}
	r := bufio.NewReader(io.LimitReader(env.stdin, maxPasswordBytes+2))
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if len(pw) > maxPasswordBytes {
		return "", fmt.Errorf("password longer than %d bytes", maxPasswordBytes)
	}
	if pw == "" {
		return "", fmt.Errorf("%w (give it as one line on stdin, or run in a terminal to be prompted)", backend.ErrEmptyPassword)
	}
	return pw, nil
}

// printDNS prints the DNS records for a mail domain.
func printDNS(cfg *Config, domain string, w io.Writer) error {
	domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	if !autoconfig.ValidDomain(domain) {
		return fmt.Errorf("invalid domain name %q", domain)
	}
	if _, err := io.WriteString(w, autoconfig.DNSRecords(domain, autoconfigOptions(cfg, nil, nil))); err != nil {
		return err
	}
	keys, err := newDKIMKeyring(cfg.DataDir, slog.New(slog.DiscardHandler)).all(domain)
	if err != nil {
		return fmt.Errorf("DKIM keys of %s: %w", domain, err)
	}
	recs, err := outbound.DNSRecords(domain, keys)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, recs)
	return err
}

// autoconfigOptions maps [autoconfig] onto the package's Options.
func autoconfigOptions(cfg *Config, domains func() []string, log *slog.Logger) autoconfig.Options {
	a := cfg.Autoconfig
	o := autoconfig.Options{
		Hostname:       a.Hostname,
		IMAPSPort:      a.IMAPSPort,
		IMAPPort:       a.IMAPPort,
		POP3SPort:      a.POP3SPort,
		POP3Port:       a.POP3Port,
		SubmissionHost: a.SubmissionHost,
		SubmissionPort: a.SubmissionPort,
		DisplayName:    a.DisplayName,
		Domains:        domains,
		Logger:         log,
	}
	// Roost's own submission is announced unless submission_host names
	// another server.
	if a.SubmissionHost == "" && (cfg.Submission.Listen != "" || cfg.Submission.TLSListen != "") {
		o.SubmissionHost = a.Hostname
		if cfg.Submission.TLSListen != "" {
			o.Submission = append(o.Submission, autoconfig.SubmissionPort{Port: a.SubmissionsPort, ImplicitTLS: true})
		}
		if cfg.Submission.Listen != "" {
			port := a.SubmissionPort
			if port == 0 {
				port = autoconfig.DefaultSubmissionPort
			}
			o.Submission = append(o.Submission, autoconfig.SubmissionPort{Port: port})
		}
	}
	return o
}
