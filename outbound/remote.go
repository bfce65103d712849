package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/backend"
)

// NewResolver returns a resolver that asks the DNS server at addr
// ("host:port", or a host for port 53) instead of the system's.
func NewResolver(addr string) (*net.Resolver, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "53")
	}
	host, _, _ := net.SplitHostPort(addr)
	if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("outbound: DNS server %q: want an IP address", addr)
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}, nil
}

// ErrNullMX says a domain has a null MX record (RFC 7505): it accepts no
// mail.
var ErrNullMX = errors.New("domain accepts no mail (null MX, RFC 7505)")

// lookupMX returns the hosts to try for domain, in order (RFC 5321 §5.1):
// its MX hosts by preference (equal ones shuffled by the resolver), or
// the domain itself when it has no MX but an address. A permanent
// problem (null MX, no such domain) comes back as perm.
func (e *Engine) lookupMX(ctx context.Context, domain string) (hosts []string, perm *result, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.CommandTimeout)
	defer cancel()
	mxs, err := e.opts.Resolver.LookupMX(ctx, domain+".")
	var dnsErr *net.DNSError
	switch {
	case err == nil && len(mxs) == 1 && mxs[0].Host == ".":
		r := failed("5.1.10", "", "556 5.1.10 "+ErrNullMX.Error())
		return nil, &r, nil
	case err == nil && len(mxs) > 0:
		for _, mx := range mxs {
			if h := strings.TrimSuffix(mx.Host, "."); h != "" {
				hosts = append(hosts, h)
			}
		}
		return hosts, nil, nil
	case err == nil, errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		// No MX: the domain's own address is the implicit MX.
		if _, aerr := e.opts.Resolver.LookupIPAddr(ctx, domain+"."); aerr != nil {
			if errors.As(aerr, &dnsErr) && dnsErr.IsNotFound {
				r := failed("5.1.2", "", "550 5.1.2 Domain "+domain+" has no MX and no address")
				return nil, &r, nil
			}
			return nil, nil, aerr
		}
		return []string{domain}, nil, nil
	}
	return nil, nil, err
}

// CheckDomain is for the submission server (lmtp.SubmissionOptions): a
// domain with a null MX is refused at RCPT time with 556 5.1.10 (RFC 7505
// §4.2). Other lookup results are left to the queue.
func (e *Engine) CheckDomain(ctx context.Context, domain string) error {
	if e.opts.Relay != "" {
		return nil // the smarthost decides
	}
	mxs, err := e.opts.Resolver.LookupMX(ctx, domain+".")
	if err == nil && len(mxs) == 1 && mxs[0].Host == "." {
		return &smtp.SMTPError{Code: 556, EnhancedCode: smtp.EnhancedCode{5, 1, 10},
			Message: "Recipient domain " + domain + " accepts no mail (null MX)"}
	}
	return nil
}

// deliverRemote delivers one group of remote recipients: to the relay,
// or to the domain's MX hosts in order until one gives an answer.
func (e *Engine) deliverRemote(ctx context.Context, msg *queuedMsg, g group) map[string]result {
	all := func(r result) map[string]result {
		out := make(map[string]result, len(g.rcpts))
		for _, a := range g.rcpts {
			out[a] = r
		}
		return out
	}
	var hosts []string
	port := strconv.Itoa(e.opts.Port)
	auth := false
	if e.opts.Relay != "" {
		h, p, _ := net.SplitHostPort(e.opts.Relay)
		hosts, port, auth = []string{h}, p, e.opts.RelayUsername != ""
	} else {
		var perm *result
		var err error
		hosts, perm, err = e.lookupMX(ctx, g.name)
		switch {
		case perm != nil:
			return all(*perm)
		case err != nil:
			return all(deferred("4.4.3", "", "DNS lookup for "+g.name+" failed: "+err.Error()))
		}
	}
	last := deferred("4.4.1", "", "no host to try")
	for _, h := range hosts {
		if e.opts.Relay == "" && strings.EqualFold(h, e.opts.Hostname) {
			// RFC 5321 §5.1: never deliver to ourselves as if to the MX.
			last = deferred("4.4.6", h, "MX "+h+" is this server; mail loop")
			continue
		}
		results, next, failure := e.transact(ctx, msg, h, net.JoinHostPort(h, port), auth, g.rcpts)
		if !next {
			return results
		}
		last = failure
		if ctx.Err() != nil {
			break
		}
	}
	return all(last)
}

// transact runs one SMTP transaction with host. next says the host gave
// no answer about the recipients (no connection, a refusing greeting, TLS
// required but missing): the next host should be tried, failure says why.
func (e *Engine) transact(ctx context.Context, msg *queuedMsg, host, hostport string, auth bool, rcpts []string) (results map[string]result, next bool, failure result) {
	verify := e.opts.RequireTLS || auth
	pc, err := e.pool.get(ctx, hostport+"|"+strconv.FormatBool(verify), func() (*pconn, error) {
		return e.dial(ctx, host, hostport, verify, auth)
	})
	if err != nil {
		return nil, true, deferred(statusOf(err, "4.4.1"), host, err.Error())
	}
	stop := context.AfterFunc(ctx, func() { pc.raw.Close() })
	defer stop()
	reusable := false
	defer func() { e.pool.put(pc, reusable) }()

	c := pc.client
	results = make(map[string]result, len(rcpts))
	utf8Needed := !isASCII(msg.entry.From)
	for _, r := range rcpts {
		utf8Needed = utf8Needed || !isASCII(r)
	}
	opts := &smtp.MailOptions{Size: msg.entry.Size, UTF8: utf8Needed}
	if err := c.Mail(msg.entry.From, opts); err != nil {
		r := replyResult(err, host)
		if r.state == backend.RecipientPending && !isSMTPError(err) {
			// The connection broke (a stale pooled one, say): next host.
			return nil, true, r
		}
		for _, a := range rcpts {
			results[a] = r
		}
		reusable = c.Reset() == nil
		return results, false, result{}
	}
	var accepted []string
	for _, a := range rcpts {
		if err := c.Rcpt(a, nil); err != nil {
			results[a] = replyResult(err, host)
			if !isSMTPError(err) {
				// Connection lost: nothing was sent, all of it is temporary.
				for _, b := range rcpts {
					if _, ok := results[b]; !ok {
						results[b] = replyResult(err, host)
					}
				}
				for _, b := range accepted {
					results[b] = replyResult(err, host)
				}
				return results, false, result{}
			}
			continue
		}
		accepted = append(accepted, a)
	}
	if len(accepted) == 0 {
		reusable = c.Reset() == nil
		return results, false, result{}
	}
	body, err := msg.reader()
	if err == nil {
		var w *smtp.DataCommand
		if w, err = c.Data(); err == nil {
			if _, err = io.Copy(w, body); err == nil {
				var resp *smtp.DataResponse
				resp, err = w.CloseWithResponse()
				if err == nil {
					for _, a := range accepted {
						results[a] = delivered(host, "250 "+resp.StatusText)
					}
					reusable = true
					return results, false, result{}
				}
			}
		}
	}
	r := replyResult(err, host)
	for _, a := range accepted {
		results[a] = r
	}
	reusable = isSMTPError(err) && c.Reset() == nil
	return results, false, result{}
}

func isSMTPError(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// replyResult turns a client error into a recipient's result: a 5xx reply
// is permanent, a 4xx reply or any other error (a lost connection, a
// timeout) temporary.
func replyResult(err error, host string) result {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		status := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode[0] == 0 {
			status = fmt.Sprintf("%d.0.0", se.Code/100)
		}
		text := fmt.Sprintf("%d %s %s", se.Code, status, se.Message)
		if se.Code >= 500 {
			return failed(status, host, text)
		}
		return deferred(status, host, text)
	}
	return deferred(statusOf(err, "4.4.2"), host, err.Error())
}

// statusError carries an RFC 3463 status with an error.
type statusError struct {
	status string
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func statusOf(err error, def string) string {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	return def
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// dial connects to hostport and gets the session ready for MAIL: the
// greeting, EHLO, STARTTLS when offered (or required), and AUTH for the
// relay.
//
// The greeting, the first EHLO and STARTTLS are done here over
// net/textproto, because go-smtp v0.25's client cannot start TLS on a
// session that has already said EHLO, and we must see the EHLO reply to
// know whether STARTTLS is offered. go-smtp then takes over the (TLS)
// connection, handed a copy of the greeting, and says EHLO again, as
// RFC 3207 §4.2 requires after TLS anyway.
func (e *Engine) dial(ctx context.Context, host, hostport string, verify, auth bool) (*pconn, error) {
	d := net.Dialer{Timeout: e.opts.ConnectTimeout, Resolver: e.opts.Resolver}
	raw, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, &statusError{"4.4.1", fmt.Errorf("connect to %s: %w", hostport, err)}
	}
	dc := &deadlineConn{Conn: raw, read: e.opts.CommandTimeout, write: e.opts.DataTimeout}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	fail := func(status string, err error) (*pconn, error) {
		raw.Close()
		return nil, &statusError{status, fmt.Errorf("%s: %w", host, err)}
	}
	tp := textproto.NewConn(dc)
	code, greeting, err := tp.ReadResponse(220)
	if err != nil {
		if code >= 500 {
			return fail("5.0.0", fmt.Errorf("greeting: %w", err))
		}
		return fail("4.4.2", fmt.Errorf("greeting: %w", err))
	}
	var conn net.Conn = dc
	isTLS := false
	id, _ := tp.Cmd("EHLO %s", e.opts.Hostname)
	tp.StartResponse(id)
	_, ehlo, err := tp.ReadResponse(250)
	tp.EndResponse(id)
	offersTLS := err == nil && hasKeyword(ehlo, "STARTTLS")
	switch {
	case offersTLS:
		id, _ := tp.Cmd("STARTTLS")
		tp.StartResponse(id)
		_, _, err := tp.ReadResponse(220)
		tp.EndResponse(id)
		if err != nil {
			if verify {
				return fail("4.7.10", fmt.Errorf("STARTTLS refused: %w", err))
			}
			break // carry on in clear text
		}
		if tp.R.Buffered() > 0 {
			// RFC 3207 §4, CVE-2011-0411: nothing may come before TLS.
			return fail("4.7.10", errors.New("data injected before TLS"))
		}
		tc := tls.Client(dc, e.tlsConfig(host, verify))
		if err := tc.HandshakeContext(ctx); err != nil {
			// RFC 7435 §5: a failed handshake is not a reason to send in
			// clear text over the same connection; the next attempt may.
			return fail("4.7.10", fmt.Errorf("TLS handshake: %w", err))
		}
		conn, isTLS = tc, true
	case verify:
		return fail("4.7.10", errors.New("STARTTLS is required but not offered"))
	}
	if !isTLS && tp.R.Buffered() > 0 {
		return fail("4.4.2", errors.New("server sent unexpected data"))
	}
	c := smtp.NewClient(&greetedConn{Conn: conn, greeting: []byte("220 " + oneLine(greeting) + "\r\n")})
	c.CommandTimeout, c.SubmissionTimeout = e.opts.CommandTimeout, e.opts.DataTimeout
	if err := c.Hello(e.opts.Hostname); err != nil {
		return fail("4.4.2", err)
	}
	if auth {
		if !isTLS {
			return fail("4.7.10", errors.New("no TLS: will not send the relay password"))
		}
		if err := c.Auth(sasl.NewPlainClient("", e.opts.RelayUsername, e.opts.RelayPassword)); err != nil {
			return fail(statusOf(err, "4.7.8"), fmt.Errorf("relay login: %w", err))
		}
	} else if err := c.Noop(); err != nil { // greet and EHLO now, so a refusal is a dial error
		return fail("4.4.2", err)
	}
	return &pconn{client: c, raw: raw, host: host}, nil
}

func hasKeyword(ehlo, kw string) bool {
	for _, l := range strings.Split(ehlo, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && strings.EqualFold(f[0], kw) {
			return true
		}
	}
	return false
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// greetedConn replays the server's greeting to go-smtp, which expects to
// read one, then reads from the connection.
type greetedConn struct {
	net.Conn
	greeting []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.greeting) > 0 {
		n := copy(p, g.greeting)
		g.greeting = g.greeting[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// deadlineConn gives every read and write a deadline of its own: a remote
// server that stops answering, or stops taking data, is given up on after
// that long, however long a large message takes in all. go-smtp's own
// deadlines (set around commands) are ignored.
type deadlineConn struct {
	net.Conn
	read, write time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.read))
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.write))
	return c.Conn.Write(p)
}

func (c *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (c *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

// pconn is an SMTP session with a remote host, ready for MAIL.
type pconn struct {
	client *smtp.Client
	raw    net.Conn
	host   string
	key    string
	timer  *time.Timer // closes it when idle too long
}

// pool keeps sessions for reuse and caps the sessions open to one host
// (in use and idle together).
type pool struct {
	max  int
	idle time.Duration

	mu      sync.Mutex
	hosts   map[string]*hostConns
	changed chan struct{} // closed and replaced whenever a slot frees
	closed  bool
}

type hostConns struct {
	open  int
	ready []*pconn
}

func newPool(max int, idle time.Duration) *pool {
	return &pool{max: max, idle: idle, hosts: make(map[string]*hostConns), changed: make(chan struct{})}
}

func (p *pool) signal() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// get returns an idle session for key, or dials a new one when fewer
// than max are open, or waits for one of those.
func (p *pool) get(ctx context.Context, key string, dial func() (*pconn, error)) (*pconn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errors.New("shutting down")
		}
		h := p.hosts[key]
		if h == nil {
			h = &hostConns{}
			p.hosts[key] = h
		}
		if n := len(h.ready); n > 0 {
			pc := h.ready[n-1]
			h.ready = h.ready[:n-1]
			pc.timer.Stop()
			p.mu.Unlock()
			return pc, nil
		}
		if h.open < p.max {
			h.open++
			p.mu.Unlock()
			pc, err := dial()
			if err != nil {
				p.release(key)
				return nil, err
			}
			pc.key = key
			return pc, nil
		}
		wait := p.changed
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *pool) release(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := p.hosts[key]; h != nil {
		h.open--
		if h.open == 0 && len(h.ready) == 0 {
			delete(p.hosts, key)
		}
	}
	p.signal()
}

// put returns a session after a transaction: kept for the next message
// to that host when reusable, else closed.
func (p *pool) put(pc *pconn, reusable bool) {
	p.mu.Lock()
	if !reusable || p.closed {
		p.mu.Unlock()
		pc.client.Close()
		p.release(pc.key)
		return
	}
	h := p.hosts[pc.key]
	h.ready = append(h.ready, pc)
	pc.timer = time.AfterFunc(p.idle, func() { p.expire(pc) })
	p.signal()
	p.mu.Unlock()
}

// expire closes a session idle for too long.
func (p *pool) expire(pc *pconn) {
	p.mu.Lock()
	h := p.hosts[pc.key]
	found := false
	if h != nil {
		for i, c := range h.ready {
			if c == pc {
				h.ready = append(h.ready[:i], h.ready[i+1:]...)
				found = true
				break
			}
		}
	}
	p.mu.Unlock()
	if found {
		quit(pc)
		p.release(pc.key)
	}
}

func quit(pc *pconn) {
	if err := pc.client.Quit(); err != nil {
		pc.client.Close()
	}
}

// closeAll ends every idle session (Shutdown).
func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	var all []*pconn
	for _, h := range p.hosts {
		all = append(all, h.ready...)
		h.ready = nil
	}
	p.signal()
	p.mu.Unlock()
	for _, pc := range all {
		pc.timer.Stop()
		quit(pc)
	}
}
