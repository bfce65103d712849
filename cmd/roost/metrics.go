package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roostmail/roost/backend"
)

// metrics are the Prometheus metrics served on /metrics. They live in their
// own registry (no global state): the Go runtime and process collectors,
// plus what cmd/roost observes from outside the front ends: connections per
// service (counted on the listeners it hands them), logins by result (on
// the backend's login limiter), deliveries by result (the backend's
// OnDeliver hook), and the number of accounts and served domains.
type metrics struct {
	reg        *prometheus.Registry
	connTotal  *prometheus.CounterVec
	connOpen   *prometheus.GaugeVec
	logins     *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	outbound   *prometheus.CounterVec
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		connTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_connections_total",
			Help: "Connections accepted, by service (smtp, lmtp, submission, submissions, imap, imaps, pop3, pop3s), including those then refused by a connection limit.",
		}, []string{"service"}),
		connOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roost_connections_open",
			Help: "Connections currently open, by service.",
		}, []string{"service"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_logins_total",
			Help: "Password logins (IMAP, POP3 and submission), by result: ok, failed (unknown user or wrong password), locked (refused by the failed-login lockout).",
		}, []string{"result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_deliveries_total",
			Help: "Messages stored into an account (one per accepted recipient account), by result: ok, over_quota, too_big, error.",
		}, []string{"result"}),
		outbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_outbound_total",
			Help: "Outbound delivery attempts, one per recipient and attempt, by result: delivered, deferred (to be retried), failed (permanently), bounced (the sender was sent a failure report).",
		}, []string{"result"}),
	}
	for _, r := range []string{"delivered", "deferred", "failed", "bounced"} {
		m.outbound.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "failed", "locked"} {
		m.logins.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "over_quota", "too_big", "error"} {
		m.deliveries.WithLabelValues(r)
	}
	bi := readBuildInfo()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "roost_build_info",
		Help:        "Always 1; the labels say what this binary was built from (as `roost version` prints it).",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "goversion": bi.GoVersion},
	})
	buildInfo.Set(1)
	reg.MustRegister(
		buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		m.connTotal, m.connOpen, m.logins, m.deliveries, m.outbound,
	)
	return m
}

// watchBackend adds the gauges read from the backend at scrape time.
func (m *metrics) watchBackend(b *backend.Backend) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "roost_accounts",
			Help: "Accounts in the store.",
		}, func() float64 {
			users, err := b.Users(context.Background())
			if err != nil {
				return -1
			}
			return float64(len(users))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "roost_domains",
			Help: "Mail domains served (the domains of accounts and aliases).",
		}, func() float64 { return float64(len(b.Domains())) }),
		// Beside roost_deliveries_total: deliveries per sync is how many
		// deliveries shared one (group commit and the store's journal).
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "roost_store_syncs_total",
			Help: "fsyncs (fdatasync) the store has issued for mail: journal writes, mail file checkpoints, and two per synced bbolt commit of a mail file.",
		}, func() float64 { return float64(b.StoreSyncs()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "roost_store_open_files",
			Help: "Mail files open (see [store] max_open_files and idle_close).",
		}, func() float64 { return float64(b.OpenMailFiles()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "roost_outbound_queue_messages",
			Help: "Messages in the outbound queue (submitted, not yet delivered to every recipient).",
		}, func() float64 { return float64(b.QueueLen()) }),
	)
}

// onOutbound is the outbound engine's OnResult hook.
func (m *metrics) onOutbound(result string) { m.outbound.WithLabelValues(result).Inc() }

// onDeliver is the backend's OnDeliver hook.
func (m *metrics) onDeliver(results []error) {
	for _, err := range results {
		r := "ok"
		switch {
		case err == nil:
		case errors.Is(err, backend.ErrOverQuota):
			r = "over_quota"
		case errors.Is(err, backend.ErrTooBig):
			r = "too_big"
		default:
			r = "error"
		}
		m.deliveries.WithLabelValues(r).Inc()
	}
}

// loginLimiter wraps the backend's login limiter to count login results.
func (m *metrics) loginLimiter(inner backend.LoginLimiter) backend.LoginLimiter {
	return &countingLimiter{inner: inner, m: m}
}

type countingLimiter struct {
	inner backend.LoginLimiter
	m     *metrics
}

func (l *countingLimiter) Allow(ip, account string) (time.Duration, bool) {
	wait, ok := l.inner.Allow(ip, account)
	if !ok {
		l.m.logins.WithLabelValues("locked").Inc()
	}
	return wait, ok
}

func (l *countingLimiter) Failed(ip, account string) {
	l.m.logins.WithLabelValues("failed").Inc()
	l.inner.Failed(ip, account)
}

func (l *countingLimiter) Succeeded(ip, account string) {
	l.m.logins.WithLabelValues("ok").Inc()
	l.inner.Succeeded(ip, account)
}

// handler serves the registry in the Prometheus exposition format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// wrapListener counts the connections accepted on ln under service. The
// series exist (at 0) from the start so dashboards see every listener.
func (m *metrics) wrapListener(ln net.Listener, service string) net.Listener {
	total := m.connTotal.WithLabelValues(service)
	open := m.connOpen.WithLabelValues(service)
	return &countingListener{Listener: ln, total: total, open: open}
}

type countingListener struct {
	net.Listener
	total prometheus.Counter
	open  prometheus.Gauge
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.total.Inc()
	l.open.Inc()
	return &countedConn{Conn: c, open: l.open}, nil
}

type countedConn struct {
	net.Conn
	open prometheus.Gauge
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.open.Dec)
	return err
}

// NetConn exposes the wrapped connection, as tls.Conn and netlimit do.
func (c *countedConn) NetConn() net.Conn { return c.Conn }
