package outbound

import (
	"bytes"
	"context"
	"crypto"
	"errors"

	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/testutil"
)

// harness is a backend with accounts, a DNS server, a receiving MX for
// remote.test and an Engine between them.
type harness struct {
	t      *testing.T
	be     *backend.Backend
	dns    *testutil.DNSServer
	mx     *testutil.MX
	eng    *Engine
	logs   *testutil.SyncBuffer
	keys   []DKIMKey
	events chan attemptEvent

	mu      sync.Mutex
	results map[string]int
}

type attemptEvent struct {
	id    uint64
	again bool
}

func newHarness(t *testing.T, mod func(*Options, *harness)) *harness {
	t.Helper()
	be, err := backend.New(backend.Options{DataDir: t.TempDir(), Hostname: "mail.example.org", NoSync: true, LoginCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	for _, a := range []string{"alice@example.org", "bob@example.org"} {
		if err := be.CreateUser(context.Background(), a, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, be: be, dns: testutil.NewDNSServer(t), logs: &testutil.SyncBuffer{},
		events: make(chan attemptEvent, 100), results: make(map[string]int)}
	h.mx = testutil.NewMX(t, nil)
	h.dns.Add("remote.test. MX 10 mx.remote.test.")
	h.dns.Add("mx.remote.test. A 127.0.0.1")
	ed, rk, err := GenerateDKIMKeys()
	if err != nil {
		t.Fatal(err)
	}
	h.keys = []DKIMKey{{Selector: "e1", Signer: ed}, {Selector: "r1", Signer: rk}}
	for _, k := range h.keys {
		rec, _ := DKIMRecord(k.Signer)
		h.dns.AddTXT(k.Selector+"._domainkey.example.org", unquoteTXT(rec)...)
	}
	res, err := NewResolver(h.dns.Addr)
	if err != nil {
		t.Fatal(err)
	}
	port := 0
	for _, c := range h.mx.Port {
		port = port*10 + int(c-'0')
	}
	opts := Options{
		Backend:       be,
		Resolver:      res,
		Port:          port,
		RetrySchedule: []time.Duration{time.Millisecond},
		DKIM: func(domain string) []DKIMKey {
			if domain == "example.org" {
				return h.keys
			}
			return nil
		},
		IdleTimeout: time.Minute,
		OnResult: func(r string) {
			h.mu.Lock()
			h.results[r]++
			h.mu.Unlock()
		},
		Logger:       slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		afterAttempt: func(id uint64, again bool) { h.events <- attemptEvent{id, again} },
	}
	if mod != nil {
		mod(&opts, h)
	}
	h.start(opts)
	return h
}

func (h *harness) start(opts Options) {
	t := h.t
	eng, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	done := make(chan error, 1)
	go func() { done <- eng.Run() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("engine log:\n%s", h.logs.String())
		}
	})
}

// unquoteTXT splits `"a" "b"` into its strings.
func unquoteTXT(s string) []string {
	var out []string
	for _, p := range strings.Split(s, `" "`) {
		out = append(out, strings.Trim(p, `"`))
	}
	return out
}

func (h *harness) submit(from string, to []string, msg string) uint64 {
	h.t.Helper()
	body := "Received: from client.example ([127.0.0.1])\r\n\tby mail.example.org with ESMTPSA id X; Mon, 7 Dec 2026 10:00:00 +0000\r\n" + msg
	id, err := h.eng.Enqueue(context.Background(), backend.Outgoing{From: from, Account: from, Recipients: to, Body: []byte(body)})
	if err != nil {
		h.t.Fatal(err)
	}
	var n uint64
	for _, c := range id {
		n = n*10 + uint64(c-'0')
	}
	return n
}

// waitDone waits until message id has left the queue.
func (h *harness) waitDone(id uint64) {
	h.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-h.events:
			if ev.id == id && !ev.again {
				return
			}
		case <-timeout:
			h.t.Fatalf("message %d still queued", id)
		}
	}
}

// waitAttempts waits for n attempts at message id that leave it queued.
func (h *harness) waitAttempts(id uint64, n int) {
	h.t.Helper()
	timeout := time.After(30 * time.Second)
	for n > 0 {
		select {
		case ev := <-h.events:
			if ev.id == id {
				if !ev.again {
					h.t.Fatalf("message %d left the queue", id)
				}
				n--
			}
		case <-timeout:
			h.t.Fatalf("message %d: attempts missing", id)
		}
	}
}

func (h *harness) inbox(addr string) []string {
	h.t.Helper()
	return testutil.Inbox(h.t, h.be, addr)
}

func (h *harness) count(result string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.results[result]
}

const testMessage = "From: Alice <alice@example.org>\r\n" +
	"To: Carol <carol@remote.test>\r\n" +
	"Subject: Hello\r\n" +
	"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hello Carol.\r\n" +
	".a dot line\r\n"

// verifyDKIM checks every signature of data through DNS.
func verifyDKIM(t *testing.T, res *net.Resolver, data []byte) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(context.Background(), name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestRemoteDeliveryWithDKIM(t *testing.T) {
	h := newHarness(t, nil)
	id := h.submit("alice@example.org", []string{"carol@remote.test", "dave@remote.test"}, testMessage)
	h.waitDone(id)
	all := h.mx.All()
	if len(all) != 1 {
		t.Fatalf("MX got %d messages, want exactly 1", len(all))
	}
	got := all[0]
	if got.From != "alice@example.org" || strings.Join(got.To, ",") != "carol@remote.test,dave@remote.test" {
		t.Errorf("envelope %s → %v", got.From, got.To)
	}
	if !bytes.HasSuffix(got.Data, []byte(testMessage)) || !bytes.Contains(got.Data, []byte("Received: from client.example")) {
		t.Errorf("message changed: %q", got.Data)
	}
	res, _ := NewResolver(h.dns.Addr)
	vs := verifyDKIM(t, res, got.Data)
	if len(vs) != 2 {
		t.Fatalf("%d signatures, want Ed25519 and RSA", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "example.org" {
			t.Errorf("signature %+v: %v", v, v.Err)
		}
	}
	// A changed body no longer verifies: the check is real.
	bad := bytes.Replace(got.Data, []byte("Hello Carol."), []byte("Hello Carla."), 1)
	for _, v := range verifyDKIM(t, res, bad) {
		if v.Err == nil {
			t.Errorf("tampered message verified (%s)", v.Domain)
		}
	}
	if h.be.QueueLen() != 0 || h.count("delivered") != 2 {
		t.Errorf("queue %d, delivered %d", h.be.QueueLen(), h.count("delivered"))
	}
	if !strings.Contains(h.logs.String(), `msg="delivery attempt"`) {
		t.Errorf("no attempt logged")
	}
}

func TestLocalDelivery(t *testing.T) {
	h := newHarness(t, nil)
	id := h.submit("alice@example.org", []string{"bob@example.org", "carol@remote.test"}, testMessage)
	h.waitDone(id)
	box := h.inbox("bob@example.org")
	if len(box) != 1 || !strings.HasPrefix(box[0], "Return-Path: <alice@example.org>\r\nReceived: ") ||
		!strings.HasSuffix(box[0], testMessage) || strings.Contains(box[0], "DKIM-Signature") {
		t.Fatalf("bob's INBOX: %q", box)
	}
	if len(h.mx.All()) != 1 {
		t.Errorf("remote copy: %d", len(h.mx.All()))
	}
}

func TestTemporaryFailureRetried(t *testing.T) {
	var mu sync.Mutex
	refusals := 2
	h := newHarness(t, func(o *Options, h *harness) {
		h.mx.OnMail = func(string) error {
			mu.Lock()
			defer mu.Unlock()
			if refusals > 0 {
				refusals--
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Try again later"}
			}
			return nil
		}
	})
	id := h.submit("alice@example.org", []string{"carol@remote.test"}, testMessage)
	h.waitAttempts(id, 2)
	e, err := h.be.Queued(context.Background(), id)
	if err == nil && (e.Attempts != 2 || !strings.Contains(e.Recipients[0].LastResult, "421 4.3.2")) {
		t.Errorf("after two refusals: %+v", e)
	}
	h.waitDone(id)
	if n := len(h.mx.All()); n != 1 {
		t.Fatalf("MX got %d copies", n)
	}
	if h.count("deferred") != 2 || h.count("delivered") != 1 {
		t.Errorf("results %v", h.results)
	}
	if box := h.inbox("alice@example.org"); len(box) != 0 {
		t.Errorf("a DSN for a message that got through: %q", box)
	}
}

func TestPermanentFailureDSN(t *testing.T) {
	h := newHarness(t, func(o *Options, h *harness) {
		h.mx.OnRcpt = func(to string) error {
			if strings.HasPrefix(to, "nobody@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
			}
			return nil
		}
	})
	id := h.submit("alice@example.org", []string{"nobody@remote.test", "carol@remote.test"}, testMessage)
	h.waitDone(id)
	if all := h.mx.All(); len(all) != 1 || strings.Join(all[0].To, ",") != "carol@remote.test" {
		t.Fatalf("MX got %+v", all)
	}
	box := h.inbox("alice@example.org")
	if len(box) != 1 {
		t.Fatalf("alice has %d messages, want the DSN", len(box))
	}
	dsn := box[0]
	for _, want := range []string{
		"Return-Path: <>\r\n",
		"multipart/report", "report-type=delivery-status",
		"Content-Type: message/delivery-status",
		"Reporting-MTA: dns; mail.example.org",
		"Final-Recipient: rfc822; nobody@remote.test",
		"Action: failed", "Status: 5.1.1",
		"Remote-MTA: dns; mx.remote.test",
		"Diagnostic-Code: smtp; 550 5.1.1 No such user",
		"Content-Type: text/rfc822-headers",
		"Subject: Hello",
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q", want)
		}
	}
	if strings.Contains(dsn, "carol@remote.test\r\nAction") {
		t.Errorf("the delivered recipient is in the DSN")
	}
	if h.be.QueueLen() != 0 {
		t.Errorf("queue not empty")
	}
}

func TestDomainProblems(t *testing.T) {
	for _, tc := range []struct {
		name, domain, status string
		records              []string
	}{
		{"null MX", "nullmx.test", "5.1.10", []string{"nullmx.test. MX 0 ."}},
		{"no such domain", "nxdomain.test", "5.1.2", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			for _, r := range tc.records {
				h.dns.Add(r)
			}
			id := h.submit("alice@example.org", []string{"x@" + tc.domain}, testMessage)
			h.waitDone(id)
			box := h.inbox("alice@example.org")
			if len(box) != 1 || !strings.Contains(box[0], "Status: "+tc.status) {
				t.Fatalf("DSN: %q", box)
			}
		})
	}
	h := newHarness(t, nil)
	h.dns.Add("nullmx.test. MX 0 .")
	var se *smtp.SMTPError
	if err := h.eng.CheckDomain(context.Background(), "nullmx.test"); !errors.As(err, &se) || se.Code != 556 {
		t.Errorf("CheckDomain(null MX) = %v", err)
	}
	if err := h.eng.CheckDomain(context.Background(), "remote.test"); err != nil {
		t.Errorf("CheckDomain(remote.test) = %v", err)
	}
}

func TestMXOrderAndImplicitMX(t *testing.T) {
	h := newHarness(t, nil)
	h.dns.Add("multi.test. MX 20 second.multi.test.")
	h.dns.Add("multi.test. MX 10 first.multi.test.")
	h.dns.Add("noMX.test. A 127.0.0.1")
	hosts, perm, err := h.eng.lookupMX(context.Background(), "multi.test")
	if err != nil || perm != nil || strings.Join(hosts, ",") != "first.multi.test,second.multi.test" {
		t.Errorf("multi.test: %v %v %v", hosts, perm, err)
	}
	hosts, perm, err = h.eng.lookupMX(context.Background(), "nomx.test")
	if err != nil || perm != nil || strings.Join(hosts, ",") != "nomx.test" {
		t.Errorf("nomx.test: %v %v %v", hosts, perm, err)
	}
	id := h.submit("alice@example.org", []string{"a@nomx.test"}, testMessage)
	h.waitDone(id)
	if n := len(h.mx.All()); n != 1 {
		t.Fatalf("implicit MX: %d messages", n)
	}
	// The preferred MX does not answer (nothing listens on 127.0.0.2):
	// the next one gets the message.
	h.dns.Add("fallback.test. MX 5 down.fallback.test.")
	h.dns.Add("fallback.test. MX 10 mx.remote.test.")
	h.dns.Add("down.fallback.test. A 127.0.0.2")
	id = h.submit("alice@example.org", []string{"a@fallback.test"}, testMessage)
	h.waitDone(id)
	if all := h.mx.All(); len(all) != 2 || all[1].To[0] != "a@fallback.test" {
		t.Fatalf("fallback MX: %+v", all)
	}
}

func TestGiveUp(t *testing.T) {
	h := newHarness(t, func(o *Options, h *harness) {
		o.GiveUpAfter = 50 * time.Millisecond
		o.RetrySchedule = []time.Duration{10 * time.Millisecond}
		h.mx.OnRcpt = func(string) error {
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox busy"}
		}
	})
	id := h.submit("alice@example.org", []string{"carol@remote.test"}, testMessage)
	h.waitDone(id)
	box := h.inbox("alice@example.org")
	if len(box) != 1 || !strings.Contains(box[0], "Status: 5.2.1") || !strings.Contains(box[0], "gave up after") {
		t.Fatalf("DSN after giving up: %q", box)
	}
	if len(h.mx.All()) != 0 {
		t.Errorf("delivered after all")
	}
}

func TestConnectionReuse(t *testing.T) {
	h := newHarness(t, func(o *Options, h *harness) { o.MaxConnsPerHost = 1 })
	var ids []uint64
	for range 3 {
		ids = append(ids, h.submit("alice@example.org", []string{"carol@remote.test"}, testMessage))
	}
	for range ids {
		select {
		case <-h.mx.Received:
		case <-time.After(30 * time.Second):
			t.Fatal("messages missing")
		}
	}
	if n := h.mx.Connections(); n != 1 {
		t.Errorf("%d connections for 3 messages to one host with a limit of 1", n)
	}
}

func TestRequireTLS(t *testing.T) {
	cert := testutil.SelfSigned(t, "mx.remote.test")
	t.Run("not offered", func(t *testing.T) {
		h := newHarness(t, func(o *Options, h *harness) {
			o.RequireTLS = true
			o.RetrySchedule = []time.Duration{time.Hour}
		})
		id := h.submit("alice@example.org", []string{"carol@remote.test"}, testMessage)
		h.waitAttempts(id, 1)
		e, _ := h.be.Queued(context.Background(), id)
		if len(h.mx.All()) != 0 || !strings.Contains(e.Recipients[0].LastResult, "STARTTLS is required") {
			t.Fatalf("without TLS: %+v", e)
		}
	})
	for _, require := range []bool{false, true} {
		t.Run("offered, require="+map[bool]string{false: "no", true: "yes"}[require], func(t *testing.T) {
			h := newHarness(t, func(o *Options, h *harness) {
				h.mx = testutil.NewMX(t, cert.Server)
				port := 0
				for _, c := range h.mx.Port {
					port = port*10 + int(c-'0')
				}
				o.Port, o.RequireTLS = port, require
				o.RootCAs = cert.Client.RootCAs
			})
			id := h.submit("alice@example.org", []string{"carol@remote.test"}, testMessage)
			h.waitDone(id)
			if all := h.mx.All(); len(all) != 1 || !all[0].TLS {
				t.Fatalf("over TLS: %+v", all)
			}
		})
	}
}

func TestRelay(t *testing.T) {
	cert := testutil.SelfSigned(t, "localhost")
	h := newHarness(t, func(o *Options, h *harness) {
		relay := testutil.NewMX(t, cert.Server)
		relay.Auth = &[2]string{"roost", "relay-secret"}
		h.mx = relay
		o.Relay = "localhost:" + relay.Port
		o.RelayUsername, o.RelayPassword = "roost", "relay-secret"
		o.RootCAs = cert.Client.RootCAs
		o.Resolver = net.DefaultResolver // "localhost" from /etc/hosts; no MX is looked up
	})
	// No MX record exists for elsewhere.test: the relay takes everything.
	id := h.submit("alice@example.org", []string{"x@elsewhere.test", "y@remote.test"}, testMessage)
	h.waitDone(id)
	all := h.mx.All()
	if len(all) != 1 || all[0].Auth != "roost" || !all[0].TLS || len(all[0].To) != 2 {
		t.Fatalf("relay got %+v", all)
	}
}

// TestRestartResumes: a message queued when the engine stops is delivered
// by the next one, once.
func TestRestartResumes(t *testing.T) {
	h := newHarness(t, func(o *Options, h *harness) { o.RetrySchedule = []time.Duration{time.Hour} })
	h.mx.OnMail = func(string) error {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 5}, Message: "Busy"}
	}
	id := h.submit("alice@example.org", []string{"carol@remote.test", "bob@example.org"}, testMessage)
	h.waitAttempts(id, 1)
	if err := h.eng.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.mx.OnMail = nil
	opts := h.eng.opts
	h.start(opts)
	if err := h.eng.Retry(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	h.waitDone(id)
	if n := len(h.mx.All()); n != 1 {
		t.Fatalf("MX got %d copies", n)
	}
	if n := len(h.inbox("bob@example.org")); n != 1 {
		t.Fatalf("bob got %d copies", n)
	}
}

func TestDKIMKeysRoundTrip(t *testing.T) {
	ed, rk, err := GenerateDKIMKeys()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []crypto.Signer{ed, rk} {
		pemData, err := MarshalDKIMKey(k)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseDKIMKey(pemData)
		if err != nil {
			t.Fatal(err)
		}
		r1, _ := DKIMRecord(k)
		r2, _ := DKIMRecord(back)
		if r1 != r2 {
			t.Errorf("record changed after round trip")
		}
	}
	recs, err := DNSRecords("example.org", []DKIMKey{{"s1", ed}, {"s2", rk}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"example.org.\t3600\tIN\tTXT\t\"v=spf1 mx -all\"",
		"_dmarc.example.org.\t3600\tIN\tTXT\t\"v=DMARC1;",
		"s1._domainkey.example.org.\t3600\tIN\tTXT\t\"v=DKIM1; k=ed25519; p=",
		"s2._domainkey.example.org.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=",
	} {
		if !strings.Contains(recs, want) {
			t.Errorf("records lack %q:\n%s", want, recs)
		}
	}
	for _, line := range strings.Split(recs, "\n") {
		for _, s := range strings.Split(line, `"`) {
			if len(s) > 255 {
				t.Errorf("TXT string of %d octets", len(s))
			}
		}
	}
	if _, err := ParseDKIMKey([]byte("junk")); err == nil {
		t.Error("junk key parsed")
	}
}
