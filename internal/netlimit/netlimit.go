// Package netlimit caps the number of connections a listener accepts, overall
// and per remote IP, for every Roost front end.
//
// A connection over a limit is not silently dropped: the Reject callback gets
// it first so the protocol can say why (SMTP "421 4.7.0", IMAP "* BYE",
// POP3 "-ERR [SYS/TEMP]") before it is closed.
package netlimit

import (
	"net"
	"sync"
	"time"
)

// Options are the limits of one listener. Zero means unlimited.
type Options struct {
	MaxConns      int // connections open at once, overall
	MaxConnsPerIP int // connections open at once from one remote IP
	// Reject, if set, is called (in its own goroutine) for a connection
	// that is over a limit, before it is closed. reason is "overall" or "per-ip".
	Reject func(c net.Conn, reason string)
	// RejectTimeout bounds how long Reject may write (default 5s).
	RejectTimeout time.Duration
}

// Listener wraps a net.Listener and enforces Options.
type Listener struct {
	net.Listener
	opts Options

	mu    sync.Mutex
	total int
	perIP map[string]int
}

// Wrap returns l limited by opts.
func Wrap(l net.Listener, opts Options) *Listener {
	if opts.RejectTimeout == 0 {
		opts.RejectTimeout = 5 * time.Second
	}
	return &Listener{Listener: l, opts: opts, perIP: make(map[string]int)}
}

// Accept returns the next connection within the limits. Connections over a
// limit are handed to Reject and closed; Accept then waits for the next one.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := RemoteIP(c)
		if reason := l.admit(ip); reason != "" {
			go l.reject(c, reason)
			continue
		}
		return &conn{Conn: c, l: l, ip: ip}, nil
	}
}

func (l *Listener) admit(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.MaxConns > 0 && l.total >= l.opts.MaxConns {
		return "overall"
	}
	if l.opts.MaxConnsPerIP > 0 && l.perIP[ip] >= l.opts.MaxConnsPerIP {
		return "per-ip"
	}
	l.total++
	l.perIP[ip]++
	return ""
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func (l *Listener) reject(c net.Conn, reason string) {
	defer c.Close()
	if l.opts.Reject != nil {
		_ = c.SetDeadline(time.Now().Add(l.opts.RejectTimeout))
		l.opts.Reject(c, reason)
	}
}

// Open reports the number of connections currently open.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

type conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// NetConn exposes the wrapped connection (as tls.Conn does), so code that
// needs the concrete type can reach it.
func (c *conn) NetConn() net.Conn { return c.Conn }

// RemoteIP returns the IP of c's remote address as a string ("" for unix sockets
// and other addresses without an IP).
func RemoteIP(c net.Conn) string {
	return AddrIP(c.RemoteAddr())
}

// AddrIP returns the IP part of addr, or "" if it has none.
func AddrIP(addr net.Addr) string {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return ""
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	return host
}

// IsLoopback reports whether addr is a loopback address (127.0.0.0/8, ::1)
// or a unix socket, which only local processes can reach.
func IsLoopback(addr net.Addr) bool {
	if addr == nil {
		return false
	}
	if addr.Network() == "unix" {
		return true
	}
	ip := net.ParseIP(AddrIP(addr))
	return ip != nil && ip.IsLoopback()
}

// Limit turns a configured limit into an Options value: 0 means the
// front end's default def, a negative value means unlimited (0 here).
func Limit(configured, def int) int {
	switch {
	case configured == 0:
		return def
	case configured < 0:
		return 0
	}
	return configured
}
