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
	"runtime/debug"
	"strings"
)

const usage = `Roost: a mailbox server (SMTP/LMTP in, IMAP and POP3 out).

Usage:
  roost serve                      run the server (all configured listeners)
  roost user add ADDRESS           create an account (password read from stdin or prompted)
  roost user passwd ADDRESS        change an account's password
  roost user del ADDRESS           delete an account, its aliases and all its mail
  roost user list                  list accounts, one per line, address first
  roost alias add ALIAS ADDRESS    deliver mail for ALIAS to the account ADDRESS
  roost alias del ALIAS            remove an alias
  roost alias list                 list aliases: ALIAS, then its account
  roost backup DIR                 write a consistent copy of the store into DIR
  roost check [--repair] [ADDRESS...]
                                   verify the store (all accounts, or those given);
                                   --repair fixes counters, references and orphans
  roost dns DOMAIN                 print the DNS records to publish for DOMAIN
  roost status                     show whether a server runs, and its listeners
  roost version                    print the version
  roost help                       print this help

Global flag (anywhere on the command line):
  --config FILE                    TOML config file (default: $ROOST_CONFIG, else built-in defaults)

Admin commands work whether or not "roost serve" runs with the same config:
they use its control socket (data_dir/control.sock) when it answers, and
open the store directly otherwise.
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

// splitGlobalFlags takes --config FILE (also --config=FILE, -config) and
// -h/--help from anywhere on the command line and returns the remaining
// words. "--" ends flag processing.
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
		case a == "--repair" || a == "-repair":
			// A flag of check; the command checks where it may appear.
			rest = append(rest, "--repair")
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
		fmt.Fprintln(env.stdout, versionString())
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
	case "status":
		if err := wantArgs(args, 0, "status"); err != nil {
			return err
		}
		req = request{Op: opStatus}
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
		return request{}, usagef("%s needs a subcommand (add, del, list%s)", cmd, map[bool]string{true: ", passwd"}[cmd == "user"])
	}
	sub, args := args[0], args[1:]
	type form struct {
		op   string
		args int
		text string
	}
	forms := map[string]form{
		"user add":    {opUserAdd, 1, "user add ADDRESS"},
		"user passwd": {opUserPasswd, 1, "user passwd ADDRESS"},
		"user del":    {opUserDel, 1, "user del ADDRESS"},
		"user list":   {opUserList, 0, "user list"},
		"alias add":   {opAliasAdd, 2, "alias add ALIAS ADDRESS"},
		"alias del":   {opAliasDel, 1, "alias del ALIAS"},
		"alias list":  {opAliasList, 0, "alias list"},
	}
	f, ok := forms[cmd+" "+sub]
	if !ok {
		return request{}, usagef("unknown command %q", cmd+" "+sub)
	}
	if err := wantArgs(args, f.args, f.text); err != nil {
		return request{}, err
	}
	return request{Op: f.op, Args: args}, nil
}

// versionString reports the module version and VCS revision the binary was
// built from, as recorded by the Go toolchain.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "roost (unknown version)"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "(devel)"
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	return "roost " + v + " " + bi.GoVersion
}
