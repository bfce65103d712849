package testutil

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// MX is a receiving SMTP server on a loopback port (go-smtp) for tests of
// sending: it records every message it accepts, and the test decides its
// replies.
type MX struct {
	Addr string // "127.0.0.1:port"
	Port string

	// Hooks, set before mail arrives; nil accepts. They may return an
	// *smtp.SMTPError to refuse with that reply.
	OnMail func(from string) error
	OnRcpt func(to string) error
	OnData func() error
	// Auth, if set, requires AUTH PLAIN with these credentials.
	Auth *[2]string

	Received chan Received // every accepted message, in order
	conns    atomic.Int32

	srv *smtp.Server
	mu  sync.Mutex
	all []Received
}

// Received is a message the MX accepted.
type Received struct {
	From string
	To   []string
	Data []byte
	TLS  bool
	Auth string // the user name it logged in with
}

// NewMX starts an MX; with tlsConfig it offers STARTTLS. It stops when the
// test ends.
func NewMX(t testing.TB, tlsConfig *tls.Config) *MX {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mx := &MX{Addr: l.Addr().String(), Received: make(chan Received, 100)}
	_, mx.Port, _ = net.SplitHostPort(mx.Addr)
	mx.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		mx.conns.Add(1)
		return &mxSession{mx: mx, c: c}, nil
	}))
	mx.srv.Domain = "mx.remote.test"
	mx.srv.TLSConfig = tlsConfig
	mx.srv.AllowInsecureAuth = tlsConfig == nil
	go mx.srv.Serve(l)
	t.Cleanup(func() { mx.srv.Close() })
	return mx
}

// Connections returns how many connections (sessions) the MX has had.
func (mx *MX) Connections() int { return int(mx.conns.Load()) }

// All returns every message accepted so far.
func (mx *MX) All() []Received {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return append([]Received(nil), mx.all...)
}

type mxSession struct {
	mx   *MX
	c    *smtp.Conn
	msg  Received
	user string
}

func (s *mxSession) AuthMechanisms() []string {
	if s.mx.Auth == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *mxSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if s.mx.Auth == nil || username != s.mx.Auth[0] || password != s.mx.Auth[1] {
			return smtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *mxSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.mx.Auth != nil && s.user == "" {
		return smtp.ErrAuthRequired
	}
	if f := s.mx.OnMail; f != nil {
		if err := f(from); err != nil {
			return err
		}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.msg = Received{From: from, TLS: isTLS, Auth: s.user}
	return nil
}

func (s *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if f := s.mx.OnRcpt; f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	s.msg.To = append(s.msg.To, to)
	return nil
}

func (s *mxSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(s.msg.To) == 0 {
		return errors.New("no recipients")
	}
	if f := s.mx.OnData; f != nil {
		if err := f(); err != nil {
			return err
		}
	}
	s.msg.Data = data
	s.mx.mu.Lock()
	s.mx.all = append(s.mx.all, s.msg)
	s.mx.mu.Unlock()
	s.mx.Received <- s.msg
	return nil
}

func (s *mxSession) Reset()        { s.msg = Received{} }
func (s *mxSession) Logout() error { return nil }
