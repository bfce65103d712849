package main

// This file and listeners_imap.go are the only places that know the
// front-end packages (lmtp, pop3d; imapd) and map the config onto their
// Options. A front end whose listen addresses are all empty is not created.

import (
	"fmt"
	"time"

	"github.com/roostmail/roost/lmtp"
	"github.com/roostmail/roost/pop3d"
)

// wiredServices names the services frontEnds can create (tests skip what
// is not wired).
func wiredServices() []string {
	return []string{"smtp", "lmtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"}
}

// backendMaxMessageBytes is the backend's size cap: the largest message
// any front end may hand it (SMTP, LMTP, IMAP APPEND), plus the room the
// SMTP/LMTP receiver needs for the trace headers it prepends, so that a
// message of exactly max_message_bytes is accepted. Each front end
// enforces its own configured limit.
func backendMaxMessageBytes(cfg *Config) int64 {
	return max(cfg.SMTP.MaxMessageBytes, cfg.LMTP.MaxMessageBytes, cfg.Submission.MaxMessageBytes, cfg.IMAP.AppendLimit) + lmtp.TraceReserve
}

// noDelay maps a configured "0s" delay to the front ends' "none" (negative;
// their zero means the default).
func noDelay(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// frontEnds builds the protocol servers and lists their endpoints.
func frontEnds(d deps) ([]endpoint, error) {
	cfg := d.cfg
	var eps []endpoint

	smtpOpts := func(c SMTPConfig, isLMTP bool, service string) lmtp.Options {
		o := lmtp.Options{
			Backend:          d.backend,
			Hostname:         cfg.Hostname,
			LMTP:             isLMTP,
			MaxConns:         c.MaxConnections,
			MaxConnsPerIP:    c.MaxConnectionsPerIP,
			HandshakeTimeout: cfg.TLS.HandshakeTimeout,
			IdleTimeout:      c.CommandTimeout,
			DataTimeout:      c.DataTimeout,
			MaxMessageBytes:  c.MaxMessageBytes,
			MaxRecipients:    c.MaxRecipients,
			MaxLineLength:    c.MaxLineLength,
			MaxErrors:        c.MaxErrors,
			// 0 in the config is no cap: negative for the server.
			MaxUnauthenticated: noCap(c.MaxUnauthenticated),
			// [accounts] over_quota: "defer" (452 4.2.2) or "reject" (552 5.2.2).
			OverQuotaPermanent: cfg.Accounts.OverQuota == "reject",
			Logger:             d.log.With("service", service),
		}
		if !isLMTP {
			o.TLSConfig = d.tls // STARTTLS (RFC 3207); LMTP never offers it
		}
		return o
	}
	if cfg.SMTP.Listen != "" {
		srv, err := lmtp.New(smtpOpts(cfg.SMTP, false, "smtp"))
		if err != nil {
			return nil, fmt.Errorf("[smtp]: %w", err)
		}
		eps = append(eps, endpoint{name: "smtp", key: "smtp.listen", addr: cfg.SMTP.Listen, server: srv})
	}
	if cfg.LMTP.Listen != "" {
		srv, err := lmtp.New(smtpOpts(cfg.LMTP, true, "lmtp"))
		if err != nil {
			return nil, fmt.Errorf("[lmtp]: %w", err)
		}
		eps = append(eps, endpoint{name: "lmtp", key: "lmtp.listen", addr: cfg.LMTP.Listen, server: srv})
	}

	if c := cfg.Submission; c.Listen != "" || c.TLSListen != "" {
		o := smtpOpts(SMTPConfig{
			MaxMessageBytes:     c.MaxMessageBytes,
			MaxRecipients:       c.MaxRecipients,
			MaxLineLength:       c.MaxLineLength,
			CommandTimeout:      c.CommandTimeout,
			DataTimeout:         c.DataTimeout,
			MaxConnections:      c.MaxConnections,
			MaxConnectionsPerIP: c.MaxConnectionsPerIP,
			MaxUnauthenticated:  c.MaxUnauthenticated,
			MaxErrors:           c.MaxErrors,
		}, false, "submission")
		o.Submission = &lmtp.SubmissionOptions{
			Plaintext:        d.plaintext,
			AuthFailureDelay: noDelay(c.AuthFailureDelay),
			Enqueue:          d.outbound.Enqueue,
			CheckDomain:      d.outbound.CheckDomain,
		}
		srv, err := lmtp.New(o)
		if err != nil {
			return nil, fmt.Errorf("[submission]: %w", err)
		}
		eps = append(eps,
			endpoint{name: "submission", key: "submission.listen", addr: c.Listen, server: srv},
			endpoint{name: "submissions", key: "submission.tls_listen", addr: c.TLSListen, tls: true, server: srv})
	}

	imap, err := imapEndpoints(d)
	if err != nil {
		return nil, err
	}
	eps = append(eps, imap...)

	if c := cfg.POP3; c.Listen != "" || c.TLSListen != "" {
		srv, err := pop3d.New(pop3d.Options{
			Backend:            d.backend,
			Hostname:           cfg.Hostname,
			TLSConfig:          d.tls,
			Plaintext:          d.plaintext,
			MaxConns:           c.MaxConnections,
			MaxConnsPerIP:      c.MaxConnectionsPerIP,
			MaxUnauthenticated: noCap(c.MaxUnauthenticated),
			HandshakeTimeout:   cfg.TLS.HandshakeTimeout,
			IdleTimeout:        c.IdleTimeout,
			CommandTimeout:     c.CommandTimeout,
			MaxLineLength:      c.MaxLineLength,
			MaxFailedLogins:    c.MaxFailedLogins,
			AuthFailureDelay:   noDelay(c.AuthFailureDelay),
			KeepFlags:          c.KeepFlags,
			Logger:             d.log.With("service", "pop3"),
		})
		if err != nil {
			return nil, fmt.Errorf("[pop3]: %w", err)
		}
		eps = append(eps,
			endpoint{name: "pop3", key: "pop3.listen", addr: c.Listen, server: srv},
			endpoint{name: "pop3s", key: "pop3.tls_listen", addr: c.TLSListen, tls: true, server: srv})
	}
	return eps, nil
}

// noCap maps a configured cap where 0 means "no cap" onto a server option
// where 0 means the default and a negative value none.
func noCap(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
