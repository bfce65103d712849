// Command roost is the Roost mailbox server and its admin tool.
//
// `roost serve` runs every configured listener (SMTP, LMTP, IMAP, POP3,
// HTTP) on one store; the other commands manage accounts and aliases, make
// backups and print DNS records. Admin commands talk to a running server
// over its control socket (data_dir/control.sock) and open the store
// themselves when no server runs. This is the only package that reads
// configuration (koanf: a TOML file plus ROOST_ environment variables);
// every other package takes plain Options.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roostmail/roost/backend"
)

const usage = `Roost: a mail server (SMTP/LMTP in, IMAP and POP3 out, submission and sending).

Usage:
  roost serve                      run the server (all configured listeners); creates the store on first start
  roost init                       create an empty store in data_dir without starting the server
  roost user add ADDRESS           create an account (password read from stdin or prompted)
  roost user passwd ADDRESS        change an account's password
  roost user del ADDRESS           delete an account, its aliases and all its mail
  roost user list                  list accounts, one per line, address first, with usage
  roost user quota ADDRESS SIZE [--messages N]
                                   set a quota (SIZE like 2G or 500M; 0 for none; default)
  roost user disable ADDRESS [--reject-mail]
                                   refuse logins (and, with --reject-mail, mail: 550 5.2.1)
  roost user enable ADDRESS        allow logins and mail again
  roost user app-password add ADDRESS LABEL
                                   make a password for one mail app (printed once)
  roost user app-password list ADDRESS
  roost user app-password del ADDRESS LABEL
  roost alias add ALIAS ADDRESS    deliver mail for ALIAS to the account ADDRESS ("*@DOMAIN": catch-all)
  roost alias del ALIAS            remove an alias
  roost alias list                 list aliases: ALIAS, then its account
  roost backup DIR                 write a consistent copy of the store into DIR, with a manifest
  roost check [--repair] [ADDRESS...]
                                   verify the store (all accounts, or those given);
                                   --repair fixes counters, references and orphans
  roost restore DIR                check the backup in DIR and restore it into an empty data_dir (server stopped)
  roost compact [ADDRESS]          rewrite mail files to give back the space of deleted mail
                                   (one account's, or all); the server may keep running
  roost import maildir DIR ADDRESS import a Maildir (Dovecot's: UIDs, flags, keywords kept)
  roost import mbox FILE ADDRESS [--mailbox NAME] [--mboxo]
                                   import an mbox file (into INBOX by default)
  roost export maildir ADDRESS DIR [--layout fs]
                                   write the account's mail as a Maildir Dovecot reads
  roost export mbox ADDRESS DIR    write each mailbox as an mbox file in DIR
                                   (import and export: --json for a JSON summary)
  roost dns DOMAIN                 print the DNS records to publish for DOMAIN
  roost dkim generate DOMAIN       make DKIM signing keys (Ed25519, RSA-2048) for DOMAIN
  roost queue list                 list the messages waiting to be sent
  roost queue show ID              show one queued message and its recipients
  roost queue retry ID             try a queued message again now
  roost queue delete ID            remove a queued message without telling anyone
  roost status                     show whether a server runs, and its listeners
  roost status ADDRESS             show an account: state, quota usage, mailboxes
  roost version                    print the version
  roost help                       print this help

Global flag (anywhere on the command line):
  --config FILE                    TOML config file (default: $ROOST_CONFIG, else built-in defaults)

Admin commands work whether or not "roost serve" runs with the same config:
they use its control socket (data_dir/control.sock) when it answers, and
open the store directly otherwise. They never create a store: with no
server and no store at data_dir they fail and say where they looked.
`

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line is wrong
)

func main() {
	env := cliEnv{
		stdin:   os.Stdin,
		stdout:  os.Stdout,
		stderr:  os.Stderr,
		environ: os.Environ(),
	}
	// Signals are left at their defaults (Ctrl-C ends a password prompt);
	// serve installs its own handlers.
	os.Exit(run(context.Background(), os.Args[1:], env))
}

// cliEnv is what a command may touch of the outside world.
type cliEnv struct {
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	environ []string
}

// usageError is a wrong command line: printed with a hint, exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// run executes one command line and returns the exit code. Errors are one
// line on stderr.
func run(ctx context.Context, args []string, env cliEnv) int {
	configPath, rest, help, err := splitGlobalFlags(args)
	if err == nil && (help || len(rest) == 0) {
		if len(rest) == 0 && !help {
			fmt.Fprint(env.stderr, usage)
			return exitUsage
		}
		fmt.Fprint(env.stdout, usage)
		return exitOK
	}
	if err == nil {
		err = dispatch(ctx, configPath, rest, env)
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(env.stderr, "roost: %s (run \"roost help\" for usage)\n", oneLine(ue.msg))
		return exitUsage
	default:
		fmt.Fprintf(env.stderr, "roost: %s\n", oneLine(err.Error()))
		return exitError
	}
}

// oneLine keeps an error message to one line, as scripts expect.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// commandFlags are the flags of single commands, which splitGlobalFlags
// passes on in place; true marks one that takes a value.
var commandFlags = map[string]bool{
	"--messages": true, "--reject-mail": false, "--mailbox": true, "--mboxo": false,
	"--layout": true, "--json": false, "--repair": false,
}

// splitGlobalFlags takes --config FILE (also --config=FILE, -config) and
// -h/--help from anywhere on the command line and returns the remaining
// words, command flags (commandFlags) among them. "--" ends flag
// processing.
func splitGlobalFlags(args []string) (configPath string, rest []string, help bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			return configPath, rest, help, nil
		case a == "--config" || a == "-config":
			if i+1 >= len(args) || args[i+1] == "" {
				return "", nil, false, usagef("%s needs a file name", a)
			}
			configPath = args[i+1]
			i++
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			_, configPath, _ = strings.Cut(a, "=")
			if configPath == "" {
				return "", nil, false, usagef("%s needs a file name", a)
			}
		case a == "-h" || a == "-help" || a == "--help":
			help = true
		case isCommandFlag(a):
			rest = append(rest, a)
			if commandFlags[a] {
				if i+1 >= len(args) {
					return "", nil, false, usagef("%s needs a value", a)
				}
				rest = append(rest, args[i+1])
				i++
			}
		case strings.Contains(a, "=") && commandFlags[a[:strings.IndexByte(a, '=')]]:
			name, v, _ := strings.Cut(a, "=")
			rest = append(rest, name, v)
		case strings.HasPrefix(a, "-") && a != "-":
			return "", nil, false, usagef("unknown flag %s", a)
		default:
			rest = append(rest, a)
		}
	}
	return configPath, rest, help, nil
}

// dispatch runs the command named by args[0].
func dispatch(ctx context.Context, configPath string, args []string, env cliEnv) error {
	cmd, args := args[0], args[1:]
	switch cmd {
	case "help":
		fmt.Fprint(env.stdout, usage)
		return nil
	case "version":
		if err := wantArgs(args, 0, "version"); err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, readBuildInfo())
		return nil
	}
	// Check the command line before loading the config, so a typo gets a
	// usage message rather than a config error.
	var req request
	switch cmd {
	case "serve":
		if err := wantArgs(args, 0, "serve"); err != nil {
			return err
		}
	case "init":
		if err := wantArgs(args, 0, "init"); err != nil {
			return err
		}
	case "user", "alias":
		r, err := parseAdmin(cmd, args)
		if err != nil {
			return err
		}
		req = r
	case "backup":
		if err := wantArgs(args, 1, "backup DIR"); err != nil {
			return err
		}
		req = request{Op: opBackup, Args: args}
	case "compact":
		if len(args) > 1 {
			return usagef("usage: roost compact [ADDRESS]")
		}
		req = request{Op: opCompact, Args: args}
	case "restore":
		if err := wantArgs(args, 1, "restore DIR"); err != nil {
			return err
		}
	case "dns":
		if err := wantArgs(args, 1, "dns DOMAIN"); err != nil {
			return err
		}
	case "check":
		req = request{Op: opCheck}
		for _, a := range args {
			if a == "--repair" {
				req.Op = opCheckRepair
				continue
			}
			req.Args = append(req.Args, a)
		}
	case "dkim":
		if len(args) == 0 || args[0] != "generate" {
			return usagef("usage: roost dkim generate DOMAIN")
		}
		if err := wantArgs(args[1:], 1, "dkim generate DOMAIN"); err != nil {
			return err
		}
	case "queue":
		r, err := parseQueue(args)
		if err != nil {
			return err
		}
		req = r
	case "status":
		switch len(args) {
		case 0:
			req = request{Op: opStatus}
		case 1:
			req = request{Op: opUserStatus, Args: args}
		default:
			return usagef("usage: roost status [ADDRESS]")
		}
	case "import", "export":
		job, err := parseMigrate(cmd, args)
		if err != nil {
			return err
		}
		cfg, err := loadConfig(configPath, env.environ)
		if err != nil {
			return err
		}
		return runMigrate(ctx, cfg, job, env)
	default:
		return usagef("unknown command %q", cmd)
	}

	cfg, err := loadConfig(configPath, env.environ)
	if err != nil {
		return err
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, env.stderr)
	case "dns":
		return printDNS(cfg, args[0], env.stdout)
	case "init":
		return runInit(ctx, cfg, env)
	case "restore":
		return runRestore(ctx, cfg, args[0], env)
	case "dkim":
		return dkimGenerate(cfg, args[1], env.stdout, time.Now())
	}
	return runAdmin(ctx, cfg, req, env)
}

func wantArgs(args []string, n int, form string) error {
	if len(args) != n {
		return usagef("usage: roost %s", form)
	}
	return nil
}

// parseAdmin turns "user ..." and "alias ..." into a control request.
func parseAdmin(cmd string, args []string) (request, error) {
	if len(args) == 0 {
		return request{}, usagef("%s needs a subcommand (add, del, list%s)", cmd, map[bool]string{true: ", passwd, quota, disable, enable, app-password"}[cmd == "user"])
	}
	sub, args := args[0], args[1:]
	if cmd == "user" && sub == "app-password" {
		if len(args) == 0 {
			return request{}, usagef("user app-password needs a subcommand (add, list, del)")
		}
		sub, args = sub+" "+args[0], args[1:]
	}
	flags, args, err := takeFlags(args, "--messages", "--reject-mail")
	if err != nil {
		return request{}, err
	}
	type form struct {
		op    string
		args  int
		text  string
		flags []string
	}
	forms := map[string]form{
		"user add":               {opUserAdd, 1, "user add ADDRESS", nil},
		"user passwd":            {opUserPasswd, 1, "user passwd ADDRESS", nil},
		"user del":               {opUserDel, 1, "user del ADDRESS", nil},
		"user list":              {opUserList, 0, "user list", nil},
		"user quota":             {opUserQuota, 2, "user quota ADDRESS SIZE [--messages N]", []string{"--messages"}},
		"user disable":           {opUserDisable, 1, "user disable ADDRESS [--reject-mail]", []string{"--reject-mail"}},
		"user enable":            {opUserEnable, 1, "user enable ADDRESS", nil},
		"user app-password add":  {opAppPasswordAdd, 2, "user app-password add ADDRESS LABEL", nil},
		"user app-password list": {opAppPasswordList, 1, "user app-password list ADDRESS", nil},
		"user app-password del":  {opAppPasswordDel, 2, "user app-password del ADDRESS LABEL", nil},
		"alias add":              {opAliasAdd, 2, "alias add ALIAS ADDRESS", nil},
		"alias del":              {opAliasDel, 1, "alias del ALIAS", nil},
		"alias list":             {opAliasList, 0, "alias list", nil},
	}
	f, ok := forms[cmd+" "+sub]
	if !ok {
		return request{}, usagef("unknown command %q", cmd+" "+sub)
	}
	for name := range flags {
		if !slices.Contains(f.flags, name) {
			return request{}, usagef("%s does not take %s", cmd+" "+sub, name)
		}
	}
	if err := wantArgs(args, f.args, f.text); err != nil {
		return request{}, err
	}
	switch f.op {
	case opUserQuota:
		bytes, err := parseSize(args[1])
		if err != nil {
			return request{}, usageError{err.Error()}
		}
		msgs := int64(0) // the default
		if v, ok := flags["--messages"]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return request{}, usagef("--messages wants a number of messages (0 for none), not %q", v)
			}
			msgs = n
			if n == 0 {
				msgs = backend.NoLimit
			}
		}
		args = []string{args[0], strconv.FormatInt(bytes, 10), strconv.FormatInt(msgs, 10)}
	case opUserDisable:
		mode := ""
		if _, ok := flags["--reject-mail"]; ok {
			mode = "reject-mail"
		}
		args = append(args, mode)
	}
	return request{Op: f.op, Args: args}, nil
}

// hasFlag reports whether a word is a flag (and not "-", stdin).
func hasFlag(a string) bool { return strings.HasPrefix(a, "-") && a != "-" }

func isCommandFlag(a string) bool {
	_, ok := commandFlags[a]
	return ok
}

// takeFlags removes the command flags among names from args and returns
// their values ("" for those without one).
func takeFlags(args []string, names ...string) (map[string]string, []string, error) {
	flags := map[string]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		takesValue, known := commandFlags[a]
		if !known {
			if hasFlag(a) {
				return nil, nil, usagef("unknown flag %s", a)
			}
			rest = append(rest, a)
			continue
		}
		if !slices.Contains(names, a) {
			return nil, nil, usagef("this command does not take %s", a)
		}
		if _, dup := flags[a]; dup {
			return nil, nil, usagef("%s given twice", a)
		}
		if takesValue {
			if i+1 >= len(args) {
				return nil, nil, usagef("%s needs a value", a)
			}
			flags[a] = args[i+1]
			i++
		} else {
			flags[a] = ""
		}
	}
	return flags, rest, nil
}

// parseQueue turns "queue ..." into a control request.
func parseQueue(args []string) (request, error) {
	if len(args) == 0 {
		return request{}, usagef("queue needs a subcommand (list, show, retry, delete)")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "list":
		return request{Op: opQueueList}, wantArgs(rest, 0, "queue list")
	case "show", "retry", "delete":
		return request{Op: "queue." + sub, Args: rest}, wantArgs(rest, 1, "queue "+sub+" ID")
	default:
		return request{}, usagef("unknown command %q", "queue "+sub)
	}
}
