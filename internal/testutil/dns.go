package testutil

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// DNSServer is an authoritative DNS server on a loopback UDP port that
// answers from records the test adds, so that MX lookups in tests never
// leave the machine. Unknown names get NXDOMAIN; known names without
// records of the asked type get an empty answer (NODATA).
type DNSServer struct {
	Addr string // "127.0.0.1:port"

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
}

// NewDNSServer starts a DNS server, stopped when the test ends.
func NewDNSServer(t testing.TB) *DNSServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &DNSServer{Addr: pc.LocalAddr().String(), records: make(map[string][]dns.RR)}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

// Add adds a record in zone-file syntax, e.g. "remote.test. MX 10 mx.remote.test."
// or "mx.remote.test. A 127.0.0.1". It panics on a syntax error (a bug in
// the test).
func (s *DNSServer) Add(record string) {
	rr, err := dns.NewRR(record)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := fqdn(rr.Header().Name)
	s.records[name] = append(s.records[name], rr)
}

// AddTXT adds a TXT record with the given character-strings.
func (s *DNSServer) AddTXT(name string, txt ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := fqdn(name)
	s.records[n] = append(s.records[n], &dns.TXT{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: txt})
}

func (s *DNSServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	s.mu.Lock()
	for _, q := range req.Question {
		rrs, ok := s.records[fqdn(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	s.mu.Unlock()
	w.WriteMsg(m)
}
