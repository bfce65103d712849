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
	"github.com/roostmail/roost/store"
)

// admin carries out control requests on a backend. The control server
// (inside `roost serve`) and the CLI's direct mode (no server running) both
// use it, so the two paths behave the same.
type admin struct {
	b       *backend.Backend
	dataDir string
	// status lists the running server's listeners; nil in direct mode.
	status func() []string
}

// do executes req. Errors become one-line messages in the response.
func (a *admin) do(ctx context.Context, req request) response {
	lines, err := a.exec(ctx, req)
	if err != nil {
		// Lines stay: check reports what it found and fails.
		return response{Error: oneLine(err.Error()), Lines: lines}
	}
	return response{OK: true, Lines: lines}
}

func (a *admin) exec(ctx context.Context, req request) ([]string, error) {
	want := map[string]int{
		opPing: 0, opStatus: 0, opUserAdd: 1, opUserPasswd: 1, opUserDel: 1, opUserList: 0,
		opAliasAdd: 2, opAliasDel: 1, opAliasList: 0, opBackup: 1,
	}
	if req.Op == opCheck || req.Op == opCheckRepair {
		rep, err := a.b.Check(ctx, req.Args, req.Op == opCheckRepair)
		return checkResult(rep, req.Op == opCheckRepair, err)
	}
	n, ok := want[req.Op]
	if !ok {
		return nil, fmt.Errorf("unknown operation %q", req.Op)
	}
	if len(req.Args) != n {
		return nil, fmt.Errorf("%s takes %d arguments, got %d", req.Op, n, len(req.Args))
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
		return nil, wrapAdmin("user add", addr, err)
	case opUserPasswd:
		return nil, wrapAdmin("user passwd", req.Args[0], b.SetPassword(ctx, req.Args[0], req.Password))
	case opUserDel:
		return nil, wrapAdmin("user del", req.Args[0], b.DeleteUser(ctx, req.Args[0]))
	case opUserList:
		users, err := b.Users(ctx)
		if err != nil {
			return nil, fmt.Errorf("user list: %w", err)
		}
		lines := make([]string, 0, len(users))
		for _, u := range users {
			line := u.Address + "\tcreated=" + u.Created.UTC().Format(time.RFC3339)
			if u.QuotaBytes > 0 {
				line += fmt.Sprintf("\tquota=%d", u.QuotaBytes)
			}
			if u.Disabled {
				line += "\tdisabled"
			}
			lines = append(lines, line)
		}
		return lines, nil
	case opAliasAdd:
		alias, target := req.Args[0], req.Args[1]
		err := b.AddAlias(ctx, alias, target)
		if errors.Is(err, backend.ErrExists) {
			if _, lerr := b.LookupUser(ctx, alias); lerr == nil {
				return nil, fmt.Errorf("%s is a user; an alias cannot have the same address", alias)
			}
			return nil, fmt.Errorf("alias %s already exists", alias)
		}
		return nil, wrapAdmin("alias add", alias, err)
	case opAliasDel:
		err := b.DeleteAlias(ctx, req.Args[0])
		if errors.Is(err, backend.ErrNotFound) {
			return nil, fmt.Errorf("no such alias: %s", req.Args[0])
		}
		return nil, wrapAdmin("alias del", req.Args[0], err)
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
	case opBackup:
		dir := req.Args[0]
		if err := a.checkBackupDir(dir); err != nil {
			return nil, err
		}
		if err := b.Backup(ctx, dir); err != nil {
			return nil, fmt.Errorf("backup to %s: %w", dir, err)
		}
		return []string{"backup written to " + dir}, nil
	}
	return nil, fmt.Errorf("unknown operation %q", req.Op)
}

// wrapAdmin turns backend errors into the messages an admin reads; the
// backend's own texts already name the problem ("invalid address: ...",
// "no such user: ...", "empty password").
func wrapAdmin(cmd, addr string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, backend.ErrInvalidAddress), errors.Is(err, backend.ErrNoSuchUser),
		errors.Is(err, backend.ErrEmptyPassword):
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
	resp, err := callControl(ctx, sock, req)
	switch {
	case errors.Is(err, errNoServer) && req.Op == opStatus:
		return fmt.Errorf("roost is not running (no server answers on %s)", sock)
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
	case opUserAdd, opUserPasswd, opUserDel, opAliasAdd, opAliasDel, opCheck, opCheckRepair:
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

// runDirect opens the store itself (no server runs) and executes req.
func runDirect(ctx context.Context, cfg *Config, req request) (response, error) {
	b, err := backend.New(backend.Options{
		DataDir:         cfg.DataDir,
		Shards:          cfg.Shards,
		Hostname:        cfg.Hostname,
		MaxMessageBytes: backendMaxMessageBytes(cfg),
		Logger:          slog.New(slog.DiscardHandler),
	})
	if errors.Is(err, store.ErrLocked) {
		return response{}, fmt.Errorf("the store in %s is in use by another process (is roost serve running?), but no server answers on its control socket %s",
			cfg.DataDir, controlSocketPath(cfg.DataDir))
	}
	if err != nil {
		return response{}, fmt.Errorf("open store: %w", err)
	}
	a := &admin{b: b, dataDir: cfg.DataDir}
	resp := a.do(ctx, req)
	if err := b.Close(); err != nil && resp.OK {
		return response{}, fmt.Errorf("close store: %w", err)
	}
	return resp, nil
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
	_, err := io.WriteString(w, autoconfig.DNSRecords(domain, autoconfigOptions(cfg, nil, nil)))
	return err
}

// autoconfigOptions maps [autoconfig] onto the package's Options.
func autoconfigOptions(cfg *Config, domains func() []string, log *slog.Logger) autoconfig.Options {
	a := cfg.Autoconfig
	return autoconfig.Options{
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
}
