package main

// The IMAP front end's wiring (see listeners.go).

import (
	"fmt"

	"github.com/roostmail/roost/imapd"
)

// imapEndpoints builds the IMAP server for [imap] listen and tls_listen.
func imapEndpoints(d deps) ([]endpoint, error) {
	c := d.cfg.IMAP
	if c.Listen == "" && c.TLSListen == "" {
		return nil, nil
	}
	srv, err := imapd.New(imapd.Options{
		Backend:       d.backend,
		Hostname:      d.cfg.Hostname,
		TLSConfig:     d.tls,
		Plaintext:     d.plaintext,
		MaxConns:      c.MaxConnections,
		MaxConnsPerIP: c.MaxConnectionsPerIP,
		// 0 in the config is no cap: negative for the server.
		MaxUnauthenticated:      noCap(c.MaxUnauthenticated),
		HandshakeTimeout:        d.cfg.TLS.HandshakeTimeout,
		LoginTimeout:            c.LoginTimeout,
		IdleTimeout:             c.IdleTimeout,
		AppendLimit:             c.AppendLimit,
		AuthFailureDelay:        noDelay(c.AuthFailureDelay),
		MaxPendingUpdates:       c.MaxPendingUpdates,
		MaxPendingNotifications: c.MaxPendingNotifications,
		MaxLineLength:           c.MaxLineLength,
		MaxBadCommands:          c.MaxBadCommands,
		DisableCompress:         !c.Compress,
		CommandTimeout:          c.CommandTimeout,
		WriteTimeout:            c.WriteTimeout,
		Logger:                  d.log.With("service", "imap"),
	})
	if err != nil {
		return nil, fmt.Errorf("[imap]: %w", err)
	}
	return []endpoint{
		{name: "imap", key: "imap.listen", addr: c.Listen, server: srv},
		{name: "imaps", key: "imap.tls_listen", addr: c.TLSListen, tls: true, server: srv},
	}, nil
}
