// Command roost-bench is Roost's load generator (issue 7). It speaks LMTP,
// SMTP, IMAP and POP3 to any mail server, Roost or Dovecot, and reports
// throughput, latency percentiles and server memory, as a table or as JSON.
//
//	roost-bench deliver -lmtp 127.0.0.1:2424 -users 'user%d@example.org' -n 100 -c 16 -duration 30s -json
//
// Scenarios: deliver, imap, pop3, idle, bigbox, smoke; `roost-bench SCENARIO -h`
// lists the flags. Everything but flag parsing lives in functions that tests
// call through run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "roost-bench: %v (see roost-bench -h)\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "roost-bench: %v\n", err)
		os.Exit(1)
	}
}
