package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/roostmail/roost/autoconfig"
	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/certs"
	"github.com/roostmail/roost/outbound"
	"github.com/roostmail/roost/store"
)

// shutdownTimeout bounds a graceful shutdown: in-flight deliveries and
// commands get this long to finish before connections are closed.
const shutdownTimeout = 30 * time.Second

// unixSocketMode is the mode of the LMTP unix socket: the server's user and
// group (e.g. the MTA's group) may connect.
const unixSocketMode = 0o660

// readyMessage is logged once every listener accepts connections (tests
// and scripts wait for it).
const readyMessage = "roost ready"

// frontEnd is the shape every protocol server has (lmtp, imapd, pop3d).
type frontEnd interface {
	// Serve accepts on a plain listener (STARTTLS offered when TLS is set).
	Serve(l net.Listener) error
	// ServeTLS accepts on a listener whose connections start with TLS.
	ServeTLS(l net.Listener) error
	// Shutdown stops accepting and ends sessions, bounded by ctx.
	Shutdown(ctx context.Context) error
}

// endpoint is one configured listener of a front end.
type endpoint struct {
	name   string // service name in logs and metrics: smtp, lmtp, imap, imaps, pop3, pop3s
	key    string // config key of the address, for error messages
	addr   string // "host:port" or, for LMTP, "unix:/path"; "" disables
	tls    bool   // implicit TLS (ServeTLS)
	server frontEnd
}

// deps are what the front ends are built from.
type deps struct {
	cfg       *Config
	backend   *backend.Backend
	tls       *tls.Config
	plaintext backend.PlaintextPolicy
	outbound  *outbound.Engine
	log       *slog.Logger
}

// newLogger returns the server's logger as [log] configures it.
func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	switch c.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// listenAddr opens a listener: TCP for host:port, a unix socket (mode
// 0660, replacing a stale one) for unix:/path.
func listenAddr(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return listenUnix(path, unixSocketMode)
	}
	return net.Listen("tcp", addr)
}

// boundEndpoint is an endpoint with its open listener.
type boundEndpoint struct {
	endpoint
	ln net.Listener
}

// serve runs the server until SIGINT/SIGTERM (or ctx is done), then shuts
// everything down gracefully. SIGHUP reloads the TLS certificate.
func serve(ctx context.Context, cfg *Config, stderr io.Writer) error {
	log := newLogger(cfg.Log, stderr)
	bi := readBuildInfo()
	log.Info("starting roost", "version", bi.Version, "commit", bi.Commit, "modified", bi.Modified, "go", bi.GoVersion, "data_dir", cfg.DataDir)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	plaintext, err := backend.ParsePlaintextPolicy(cfg.Auth.Plaintext)
	if err != nil {
		return fmt.Errorf("config: auth.plaintext: %w", err)
	}
	loginCacheTTL := cfg.Auth.LoginCacheTTL
	if loginCacheTTL == 0 {
		loginCacheTTL = -1 // "0s" in the config turns the cache off
	}
	m := newMetrics()
	bopts := backendOptions(cfg, log)
	bopts.LoginCacheTTL = loginCacheTTL
	bopts.Limiter = m.loginLimiter(backend.NewAuthLimiter(backend.AuthLimiterOptions{
		MaxFailures:          cfg.Auth.MaxFailures,
		Window:               cfg.Auth.FailureWindow,
		Lockout:              cfg.Auth.Lockout,
		Delay:                cfg.Auth.Delay,
		MaxDelay:             cfg.Auth.MaxDelay,
		AccountLockAddresses: cfg.Auth.AccountLockAddresses,
		IPv6Prefix:           cfg.Auth.IPv6Prefix,
		KnownGoodTTL:         cfg.Auth.KnownGoodTTL,
		MaxTracked:           cfg.Auth.MaxTracked,
	}))
	bopts.OnDeliver = m.onDeliver
	b, err := backend.New(bopts)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("the store in %s is in use by another process: is another roost serve running with this data_dir?", cfg.DataDir)
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	// Until the servers run, a failure closes what is open and returns.
	var opened []io.Closer
	fail := func(err error) error {
		for i := len(opened) - 1; i >= 0; i-- {
			opened[i].Close()
		}
		b.Close()
		return err
	}

	cm, err := certs.New(certs.Options{
		CertFile: cfg.TLS.Cert,
		KeyFile:  cfg.TLS.Key,
		DataDir:  cfg.DataDir,
		Hostname: cfg.Hostname,
		Logger:   log,
	})
	if err != nil {
		return fail(fmt.Errorf("TLS certificate: %w", err))
	}
	m.watchBackend(b)
	eng, err := newOutbound(cfg, b, newDKIMKeyring(cfg.DataDir, log), m.onOutbound, log)
	if err != nil {
		return fail(err)
	}
	eps, err := frontEnds(deps{cfg: cfg, backend: b, tls: cm.TLSConfig(), plaintext: plaintext, outbound: eng, log: log})
	if err != nil {
		return fail(err)
	}

	// Bind every socket before serving any, so a port in use is a clean
	// start-up error rather than a half-running server.
	var bound []boundEndpoint
	for _, ep := range eps {
		if ep.addr == "" {
			continue
		}
		ln, err := listenAddr(ep.addr)
		if err != nil {
			return fail(fmt.Errorf("%s listener (%s = %q): %w", ep.name, ep.key, ep.addr, err))
		}
		opened = append(opened, ln)
		bound = append(bound, boundEndpoint{endpoint: ep, ln: ln})
	}
	var httpLn net.Listener
	if cfg.HTTP.Listen != "" {
		httpLn, err = net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fail(fmt.Errorf("http listener (http.listen = %q): %w", cfg.HTTP.Listen, err))
		}
		opened = append(opened, httpLn)
	}
	var metricsLn net.Listener
	if cfg.Metrics.Listen != "" {
		metricsLn, err = net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fail(fmt.Errorf("metrics listener (metrics.listen = %q): %w", cfg.Metrics.Listen, err))
		}
		opened = append(opened, metricsLn)
	}

	status := func() []string {
		lines := []string{"pid\t" + strconv.Itoa(os.Getpid()), "data_dir\t" + cfg.DataDir}
		for _, be := range bound {
			lines = append(lines, be.name+"\t"+listenerAddr(be.ln))
		}
		if httpLn != nil {
			lines = append(lines, "http\t"+httpLn.Addr().String())
		}
		if metricsLn != nil {
			lines = append(lines, "metrics\t"+metricsLn.Addr().String())
		}
		return append(lines, "tls_fingerprint\t"+cm.Fingerprint())
	}
	ctl, err := startControl(controlSocketPath(cfg.DataDir), &admin{b: b, dataDir: cfg.DataDir, status: status, outbound: eng,
		maxMessageBytes: backendMaxMessageBytes(cfg)}, log)
	if err != nil {
		return fail(err)
	}
	// Retention ([retention]) runs in the background until shutdown.
	retentionCtx, stopRetention := context.WithCancel(context.Background())
	retentionDone := make(chan struct{})
	go func() {
		defer close(retentionDone)
		b.RunRetention(retentionCtx, cfg.Retention.policy(), cfg.Retention.Interval)
	}()

	// Serve. A server that stops on its own (not after Shutdown) is fatal.
	errc := make(chan error, len(bound)+2)
	go func() {
		if err := eng.Run(); err != nil {
			errc <- err
		}
	}()
	for _, be := range bound {
		ln := m.wrapListener(be.ln, be.name)
		go func() {
			serveFn := be.server.Serve
			if be.tls {
				serveFn = be.server.ServeTLS
			}
			if err := serveFn(ln); err != nil {
				errc <- fmt.Errorf("%s on %s: %w", be.name, listenerAddr(be.ln), err)
			}
		}()
		log.Info("listening", "service", be.name, "addr", listenerAddr(be.ln), "implicit_tls", be.tls)
	}
	var httpSrv *http.Server
	if httpLn != nil {
		httpSrv = newHTTPServer(cfg, b, log)
		go func() {
			if err := httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http on %s: %w", httpLn.Addr(), err)
			}
		}()
		log.Info("listening", "service", "http", "addr", httpLn.Addr().String())
	}
	var metricsSrv *http.Server
	if metricsLn != nil {
		metricsSrv = newMetricsServer(m, log)
		go func() {
			if err := metricsSrv.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics on %s: %w", metricsLn.Addr(), err)
			}
		}()
		log.Info("listening", "service", "metrics", "addr", metricsLn.Addr().String())
	}
	log.Info(readyMessage, "version", bi.Version, "commit", bi.Commit, "pid", os.Getpid(), "data_dir", cfg.DataDir, "hostname", cfg.Hostname,
		"control_socket", controlSocketPath(cfg.DataDir), "tls_fingerprint", cm.Fingerprint())

	var fatal error
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if err := cm.Reload(); err != nil {
					log.Error("SIGHUP: TLS certificate reload failed; the previous one stays in use", "err", err)
				} else {
					log.Info("SIGHUP: TLS certificate reloaded", "tls_fingerprint", cm.Fingerprint())
				}
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "timeout", shutdownTimeout.String())
			break wait
		case err := <-errc:
			log.Error("server stopped unexpectedly; shutting down", "err", err)
			fatal = err
			break wait
		case <-ctx.Done():
			log.Info("shutting down", "reason", context.Cause(ctx).Error())
			break wait
		}
	}

	// Graceful shutdown, bounded; a second SIGINT/SIGTERM cuts it short.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig != syscall.SIGHUP {
					log.Warn("second signal: closing connections now", "signal", sig.String())
					cancel()
					return
				}
			case <-sctx.Done():
				return
			}
		}
	}()
	var errs []error
	if err := ctl.Shutdown(sctx); err != nil {
		errs = append(errs, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	shutdown := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(sctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
		}()
	}
	seen := make(map[frontEnd]bool)
	for _, be := range bound {
		if !seen[be.server] {
			seen[be.server] = true
			shutdown(be.name, be.server.Shutdown)
		}
	}
	if httpSrv != nil {
		shutdown("http", httpSrv.Shutdown)
	}
	if metricsSrv != nil {
		shutdown("metrics", metricsSrv.Shutdown)
	}
	wg.Wait()
	// The queue stops after the submission servers: what they took is
	// queued; what is in flight gets what is left of the timeout.
	if err := eng.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("outbound: %w", err))
	}
	// Servers close their listeners; make sure the socket files are gone
	// before the store lock is released to a possible next server.
	for _, be := range bound {
		if path, ok := strings.CutPrefix(be.addr, "unix:"); ok {
			be.ln.Close()
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				log.Warn("remove unix socket", "path", path, "err", err)
			}
		}
	}
	stopRetention()
	<-retentionDone
	if err := b.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close store: %w", err))
	}
	for _, err := range errs {
		log.Warn("shutdown", "err", err)
	}
	if fatal != nil {
		return fatal
	}
	log.Info("stopped")
	return nil
}

// listenerAddr shows a listener's address as configured: host:port, or
// unix:/path for a unix socket.
func listenerAddr(ln net.Listener) string {
	if a, ok := ln.Addr().(*net.UnixAddr); ok {
		return "unix:" + a.Name
	}
	return ln.Addr().String()
}

// healthz answers "ok" while the server runs (for load balancers and
// container health checks).
func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// newHTTPServer serves mail-client autoconfiguration and /healthz. It is
// the listener published as autoconfig.<domain>, so it serves no metrics.
func newHTTPServer(cfg *Config, b *backend.Backend, log *slog.Logger) *http.Server {
	hlog := log.With("service", "http")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("/", autoconfig.NewHandler(autoconfigOptions(cfg, b.Domains, hlog)))
	return newHTTPServerFor(mux, hlog)
}

// newMetricsServer serves /metrics and /healthz on [metrics] listen.
func newMetricsServer(m *metrics, log *slog.Logger) *http.Server {
	mlog := log.With("service", "metrics")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler())
	mux.HandleFunc("GET /healthz", healthz)
	return newHTTPServerFor(mux, mlog)
}

func newHTTPServerFor(mux *http.ServeMux, hlog *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(hlog.Handler(), slog.LevelWarn),
	}
}
