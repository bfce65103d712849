package main

// End-to-end tests of sending (issue "Sending mail"): a real `roost serve`
// with its submission listeners, a DNS server in this process that says
// remote.test's MX is 127.0.0.1, and a receiving MX (go-smtp) on a
// loopback port that [outbound] mx_port points at. Nothing leaves the
// machine.

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/internal/testutil"
	"github.com/roostmail/roost/outbound"
)

// sendEnv is a Roost with accounts alice and bob in example.org, DKIM
// keys for example.org, and remote.test's MX.
type sendEnv struct {
	t   *testing.T
	in  *instance
	dns *testutil.DNSServer
	mx  *testutil.MX
	srv *server
	st  map[string]string

	mu      sync.Mutex
	onMail  func(from string) error
	onRcpt  func(to string) error
	entered chan string // OnMail calls, when hold is set
	hold    chan struct{}
}

func newSendEnv(t *testing.T, env ...string) *sendEnv {
	t.Helper()
	e := &sendEnv{t: t, in: newInstance(t), dns: testutil.NewDNSServer(t), entered: make(chan string, 10)}
	e.mx = testutil.NewMX(t, nil)
	e.mx.OnMail = func(from string) error {
		e.mu.Lock()
		f, hold := e.onMail, e.hold
		e.mu.Unlock()
		if hold != nil {
			e.entered <- from
			<-hold
		}
		if f != nil {
			return f(from)
		}
		return nil
	}
	e.mx.OnRcpt = func(to string) error {
		e.mu.Lock()
		f := e.onRcpt
		e.mu.Unlock()
		if f != nil {
			return f(to)
		}
		return nil
	}
	e.dns.Add("remote.test. MX 10 mx.remote.test.")
	e.dns.Add("mx.remote.test. A 127.0.0.1")
	e.in.env = append([]string{
		"ROOST_OUTBOUND_DNS_SERVER=" + e.dns.Addr,
		"ROOST_OUTBOUND_MX_PORT=" + e.mx.Port,
		"ROOST_OUTBOUND_RETRY_SCHEDULE=100ms",
		"ROOST_SUBMISSION_AUTH_FAILURE_DELAY=0s",
	}, env...)
	out := e.in.mustRun("", "dkim", "generate", "example.org")
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) == 5 && f[3] == "TXT" && strings.Contains(f[0], "._domainkey.") {
			e.dns.AddTXT(f[0], unquoteTXT(f[4])...)
			n++
		}
	}
	if n != 2 {
		t.Fatalf("dkim generate printed %d key records:\n%s", n, out)
	}
	e.srv = e.in.startServer()
	e.in.mustRun("alice-pw\n", "user", "add", "alice@example.org")
	e.in.mustRun("bob-pw\n", "user", "add", "bob@example.org")
	e.st = e.in.status()
	return e
}

func unquoteTXT(s string) []string {
	var out []string
	for _, p := range strings.Split(s, `" "`) {
		out = append(out, strings.Trim(p, `"`))
	}
	return out
}

func (e *sendEnv) set(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f()
}

// received waits for the MX to accept a message.
func (e *sendEnv) received() testutil.Received {
	e.t.Helper()
	select {
	case m := <-e.mx.Received:
		return m
	case <-time.After(readyTimeout):
		e.t.Fatalf("the MX received nothing:\n%s", e.srv.log())
	}
	return testutil.Received{}
}

func (e *sendEnv) wait(ch <-chan struct{}, what string) {
	e.t.Helper()
	select {
	case <-ch:
	case <-time.After(readyTimeout):
		e.t.Fatalf("no %q logged:\n%s", what, e.srv.log())
	}
}

// inbox returns an account's INBOX (the server must be stopped).
func inboxOf(t *testing.T, dataDir, addr string) []string {
	t.Helper()
	b := openBackend(t, dataDir)
	defer b.Close()
	return testutil.Inbox(t, b, addr)
}

// submitPython runs Python's smtplib in Thunderbird's order of commands:
// EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL, RCPT, DATA.
const submitPython = `
import smtplib, ssl, sys
host, port, cafile, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rcpts = sys.argv[5:]
ctx = ssl.create_default_context(cafile=cafile)
s = smtplib.SMTP(host, port, local_hostname="thunderbird.example", timeout=30)
s.set_debuglevel(1)
s.ehlo()
s.starttls(context=ctx)
s.ehlo()
s.login("alice@example.org", "alice-pw")
msg = ("From: Alice <alice@example.org>\r\nTo: " + ", ".join(rcpts) + "\r\nSubject: " + subject +
       "\r\nMessage-ID: <" + subject.replace(" ", "-") + "@example.org>\r\n\r\nHello from Alice.\r\n").encode()
s.sendmail("alice@example.org", rcpts, msg)
s.quit()
print("sent")
`

func (e *sendEnv) submit(subject string, rcpts ...string) {
	e.t.Helper()
	py := testutil.RequireBinary(e.t, "python3")
	script := filepath.Join(e.in.dir, "submit.py")
	if err := os.WriteFile(script, []byte(submitPython), 0o600); err != nil {
		e.t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.st["submission"])
	cafile := filepath.Join(e.in.dataDir, "tls", "selfsigned-cert.pem")
	out, err := runCmd(py, append([]string{script, host, port, cafile, subject}, rcpts...)...)
	if err != nil || !strings.Contains(out, "sent") {
		e.t.Fatalf("python: %v\n%s\nserver log:\n%s", err, out, e.srv.log())
	}
	if !strings.Contains(out, "AUTH PLAIN") || strings.Index(out, "STARTTLS") > strings.Index(out, "AUTH PLAIN") {
		e.t.Errorf("not Thunderbird's order (STARTTLS, then AUTH PLAIN):\n%s", out)
	}
}

func runCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// TestSendLocalAndRemote: alice sends to bob (local) and carol (remote)
// from Python's smtplib; bob's INBOX gets it, the MX gets it exactly once
// with valid Ed25519 and RSA DKIM signatures, the queue is empty after.
func TestSendLocalAndRemote(t *testing.T) {
	e := newSendEnv(t)
	done := e.srv.waitFor(outbound.DoneMessage)
	e.submit("local and remote", "bob@example.org", "carol@remote.test")
	got := e.received()
	e.wait(done, outbound.DoneMessage)
	if got.From != "alice@example.org" || strings.Join(got.To, ",") != "carol@remote.test" {
		t.Errorf("MX envelope %s → %v", got.From, got.To)
	}
	res, _ := outbound.NewResolver(e.dns.Addr)
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(got.Data), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(context.Background(), name) },
	})
	if err != nil || len(vs) != 2 {
		t.Fatalf("DKIM: %d signatures, %v\n%s", len(vs), err, got.Data)
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "example.org" {
			t.Errorf("DKIM signature %s: %v", v.Domain, v.Err)
		}
	}
	if !bytes.Contains(got.Data, []byte("Received: from thunderbird.example ([127.0.0.1])")) ||
		!bytes.Contains(got.Data, []byte("with ESMTPSA id")) || !bytes.Contains(got.Data, []byte("\r\nDate: ")) {
		t.Errorf("sent message: %s", got.Data)
	}

	resp, err := http.Get("http://" + e.st["metrics"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for series, want := range map[string]string{
		`roost_outbound_total{result="delivered"}`:      "2",
		`roost_outbound_total{result="failed"}`:         "0",
		`roost_outbound_queue_messages`:                 "0",
		`roost_connections_total{service="submission"}`: "1",
	} {
		if got := metricValue(string(body), series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	if !e.srv.logContains(`"msg":"delivery attempt"`, `"to":"remote.test"`, `"result":"delivered"`) {
		t.Errorf("no attempt logged:\n%s", e.srv.log())
	}
	e.srv.stop(syscall.SIGTERM)
	if n := len(e.mx.All()); n != 1 {
		t.Errorf("MX got %d copies", n)
	}
	box := inboxOf(t, e.in.dataDir, "bob@example.org")
	if len(box) != 1 || !strings.HasPrefix(box[0], "Return-Path: <alice@example.org>\r\n") || !strings.Contains(box[0], "Subject: local and remote") {
		t.Fatalf("bob's INBOX: %q", box)
	}
}

// TestSendSwaksImplicitTLS: swaks on the implicit-TLS port with AUTH LOGIN.
func TestSendSwaksImplicitTLS(t *testing.T) {
	swaks := testutil.RequireBinary(t, "swaks")
	e := newSendEnv(t)
	host, port, _ := net.SplitHostPort(e.st["submissions"])
	out, err := runCmd(swaks, "--server", host, "--port", port, "--tls-on-connect", "--auth", "LOGIN",
		"--auth-user", "alice@example.org", "--auth-password", "alice-pw", "--from", "alice@example.org",
		"--to", "carol@remote.test", "--header", "From: alice@example.org", "--helo", "swaks.example", "--timeout", "30")
	if err != nil || !strings.Contains(out, "250 2.0.0 Ok: queued as ") {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if got := e.received(); strings.Join(got.To, ",") != "carol@remote.test" {
		t.Errorf("MX got %+v", got)
	}
	e.srv.stop(syscall.SIGTERM)
}

// TestSendRetriesTemporaryFailure: an MX that answers 421 is tried again
// and the message arrives once.
func TestSendRetriesTemporaryFailure(t *testing.T) {
	e := newSendEnv(t)
	refused := false
	e.set(func() {
		e.onMail = func(string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			if !refused {
				refused = true
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Not now"}
			}
			return nil
		}
	})
	done := e.srv.waitFor(outbound.DoneMessage)
	e.submit("retried", "carol@remote.test")
	e.received()
	e.wait(done, outbound.DoneMessage)
	if !e.srv.logContains(`"msg":"delivery attempt"`, `"result":"deferred"`, "421 4.3.2") {
		t.Errorf("no deferred attempt logged:\n%s", e.srv.log())
	}
	e.srv.stop(syscall.SIGTERM)
	if n := len(e.mx.All()); n != 1 {
		t.Errorf("MX got %d copies", n)
	}
	if box := inboxOf(t, e.in.dataDir, "alice@example.org"); len(box) != 0 {
		t.Errorf("alice got %d messages (a DSN?)", len(box))
	}
}

// TestSendPermanentFailureDSN: a 550 from the MX puts a DSN into alice's
// INBOX.
func TestSendPermanentFailureDSN(t *testing.T) {
	e := newSendEnv(t)
	e.set(func() {
		e.onRcpt = func(string) error {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
	})
	done := e.srv.waitFor(outbound.DoneMessage)
	e.submit("bounced", "nobody@remote.test")
	e.wait(done, outbound.DoneMessage)
	e.srv.stop(syscall.SIGTERM)
	box := inboxOf(t, e.in.dataDir, "alice@example.org")
	if len(box) != 1 {
		t.Fatalf("alice has %d messages, want the DSN", len(box))
	}
	for _, want := range []string{"report-type=delivery-status", "Final-Recipient: rfc822; nobody@remote.test",
		"Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 No such user", "Subject: bounced"} {
		if !strings.Contains(box[0], want) {
			t.Errorf("DSN lacks %q:\n%s", want, box[0])
		}
	}
}

// TestSendSurvivesSIGKILL: messages queued, one in the middle of its
// delivery, when roost serve is killed: after a restart each arrives once,
// and a message delivered before the kill is not sent again.
func TestSendSurvivesSIGKILL(t *testing.T) {
	e := newSendEnv(t)
	done := e.srv.waitFor(outbound.DoneMessage)
	e.submit("before the kill", "carol@remote.test")
	e.received()
	e.wait(done, outbound.DoneMessage) // acknowledged and off the queue

	hold := make(chan struct{})
	e.set(func() { e.hold = hold })
	e.submit("during the kill", "bob@example.org", "carol@remote.test")
	e.submit("queued at the kill", "dave@remote.test")
	for range 2 {
		select {
		case <-e.entered: // a delivery is under way, inside MAIL
		case <-time.After(readyTimeout):
			t.Fatalf("no delivery started:\n%s", e.srv.log())
		}
	}
	if err := e.srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-e.srv.exited
	e.set(func() { e.hold = nil })
	close(hold)

	e.srv = e.in.startServer()
	for range 2 {
		e.received()
	}
	e.srv.stop(syscall.SIGTERM) // waits for what is in flight
	subjects := map[string]int{}
	for _, m := range e.mx.All() {
		i := bytes.Index(m.Data, []byte("Subject: "))
		j := bytes.Index(m.Data[i:], []byte("\r\n"))
		subjects[string(m.Data[i+9:i+j])]++
	}
	for _, s := range []string{"before the kill", "during the kill", "queued at the kill"} {
		if subjects[s] != 1 {
			t.Errorf("MX got %q %d times, want once (all: %v)", s, subjects[s], subjects)
		}
	}
	box := inboxOf(t, e.in.dataDir, "bob@example.org")
	if len(box) != 1 || !strings.Contains(box[0], "Subject: during the kill") {
		t.Errorf("bob has %d messages, want the one: %q", len(box), box)
	}
	b := openBackend(t, e.in.dataDir)
	defer b.Close()
	if n := b.QueueLen(); n != 0 {
		t.Errorf("%d messages left in the queue", n)
	}
}

// TestSubmissionRefusals: unauthenticated relay, sender spoofing and a
// password over plain text where the policy wants TLS are refused, on the
// submission listener and (relay) on the MX listener.
func TestSubmissionRefusals(t *testing.T) {
	e := newSendEnv(t, "ROOST_AUTH_PLAINTEXT=tls")
	c := dialText(t, "tcp", e.st["submission"])
	c.reply("220 ")
	c.send("EHLO client.test\r\n")
	if caps := c.reply("250"); strings.Contains(caps, "AUTH") || !strings.Contains(caps, "STARTTLS") {
		t.Errorf("EHLO over plain text: %q", caps)
	}
	c.send("AUTH PLAIN " + "AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3" + "\r\n") // alice@example.org / alice-pw
	c.reply("530 5.7.0")
	c.send("MAIL FROM:<alice@example.org>\r\n")
	c.reply("530 5.7.0")
	c.send("QUIT\r\n")

	mx := dialText(t, "tcp", e.st["smtp"])
	mx.reply("220 ")
	mx.send("EHLO client.test\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<carol@remote.test>\r\n")
	mx.reply("250")
	mx.reply("250 ")
	mx.reply("550 5.7.1")

	// Over implicit TLS alice may log in, but not send as bob.
	py := testutil.RequireBinary(t, "python3")
	host, port, _ := net.SplitHostPort(e.st["submissions"])
	out, err := runCmd(py, "-c", `import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
s = smtplib.SMTP_SSL(sys.argv[1], int(sys.argv[2]), context=ctx, timeout=30)
s.login("alice@example.org", "alice-pw")
try:
    s.sendmail("bob@example.org", ["carol@remote.test"], b"From: bob@example.org\r\n\r\nx\r\n")
except smtplib.SMTPSenderRefused as e:
    print("sender refused", e.smtp_code)
try:
    s.sendmail("alice@example.org", ["carol@remote.test"], b"From: bob@example.org\r\n\r\nx\r\n")
except smtplib.SMTPDataError as e:
    print("from refused", e.smtp_code)
`, host, port, filepath.Join(e.in.dataDir, "tls", "selfsigned-cert.pem"))
	if err != nil || !strings.Contains(out, "sender refused 553") || !strings.Contains(out, "from refused 553") {
		t.Errorf("spoofing: %v\n%s", err, out)
	}
	e.srv.stop(syscall.SIGTERM)
	if n := len(e.mx.All()); n != 0 {
		t.Errorf("MX got %d messages", n)
	}
}

// TestQueueCommands: roost queue list, show, retry and delete on a
// message the MX keeps deferring, with the server running and without.
func TestQueueCommands(t *testing.T) {
	e := newSendEnv(t, "ROOST_OUTBOUND_RETRY_SCHEDULE=1h")
	e.set(func() {
		e.onMail = func(string) error {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Disk full here"}
		}
	})
	attempted := e.srv.waitFor("delivery attempt")
	e.submit("queued", "carol@remote.test")
	e.wait(attempted, "delivery attempt")
	list := strings.TrimSpace(e.in.mustRun("", "queue", "list"))
	id, rest, _ := strings.Cut(list, "\t")
	if id == "" || strings.Contains(list, "\n") || !strings.Contains(rest, "from=alice@example.org") || !strings.Contains(rest, "pending=1") || !strings.Contains(rest, "attempts=1") {
		t.Fatalf("queue list: %q", list)
	}
	show := e.in.mustRun("", "queue", "show", id)
	if !strings.Contains(show, "rcpt\tcarol@remote.test\tpending\t451 4.3.0 Disk full here") {
		t.Errorf("queue show:\n%s", show)
	}
	if res := e.in.run("", "queue", "show", "999"); res.code != 1 || !strings.Contains(res.stderr, "no such queued message") {
		t.Errorf("queue show 999: %d %q", res.code, res.stderr)
	}
	if res := e.in.run("", "queue", "show", "x"); res.code != 1 {
		t.Errorf("queue show x: %d %q", res.code, res.stderr)
	}
	if res := e.in.run("", "queue", "frob"); res.code != 2 {
		t.Errorf("queue frob: %d", res.code)
	}

	e.set(func() { e.onMail = nil })
	done := e.srv.waitFor(outbound.DoneMessage)
	e.in.mustRun("", "queue", "retry", id)
	e.received()
	e.wait(done, outbound.DoneMessage)

	e.set(func() {
		e.onMail = func(string) error {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Again"}
		}
	})
	attempted = e.srv.waitFor("delivery attempt")
	e.submit("deleted", "carol@remote.test")
	e.wait(attempted, "delivery attempt")
	id2, _, _ := strings.Cut(strings.TrimSpace(e.in.mustRun("", "queue", "list")), "\t")
	e.srv.stop(syscall.SIGTERM)
	// Without a server, on the store.
	if out := e.in.mustRun("", "queue", "show", id2); !strings.Contains(out, "carol@remote.test\tpending") {
		t.Errorf("queue show without server:\n%s", out)
	}
	e.in.mustRun("", "queue", "retry", id2)
	e.in.mustRun("", "queue", "delete", id2)
	if out := e.in.mustRun("", "queue", "list"); strings.TrimSpace(out) != "" {
		t.Errorf("queue list after delete: %q", out)
	}
	if n := len(e.mx.All()); n != 1 {
		t.Errorf("MX got %d messages", n)
	}
}

// TestAutoconfigAnnouncesSubmission: with Roost's submission enabled and
// no submission_host, apps are told to send through Roost, and roost dns
// prints the submission SRV records, SPF, DMARC and DKIM.
func TestAutoconfigAnnouncesSubmission(t *testing.T) {
	e := newSendEnv(t)
	resp, err := http.Get("http://" + e.st["http"] + "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tb struct {
		Provider struct {
			Outgoing []struct {
				Hostname string `xml:"hostname"`
				Port     int    `xml:"port"`
				Socket   string `xml:"socketType"`
			} `xml:"outgoingServer"`
		} `xml:"emailProvider"`
	}
	if err := xml.Unmarshal(body, &tb); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range tb.Provider.Outgoing {
		got = append(got, s.Hostname+"/"+itoa(s.Port)+"/"+s.Socket)
	}
	if strings.Join(got, " ") != "mail.test/465/SSL mail.test/587/STARTTLS" {
		t.Errorf("outgoing servers %v:\n%s", got, body)
	}
	dns := e.in.mustRun("", "dns", "example.org")
	for _, want := range []string{
		"_submissions._tcp.example.org.\t3600\tIN\tSRV\t0 1 465 mail.test.",
		"_submission._tcp.example.org.\t3600\tIN\tSRV\t0 1 587 mail.test.",
		"example.org.\t3600\tIN\tTXT\t\"v=spf1 mx -all\"",
		"_dmarc.example.org.\t3600\tIN\tTXT\t\"v=DMARC1;",
		"._domainkey.example.org.\t3600\tIN\tTXT\t\"v=DKIM1; k=ed25519; p=",
		"._domainkey.example.org.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=",
	} {
		if !strings.Contains(dns, want) {
			t.Errorf("roost dns lacks %q:\n%s", want, dns)
		}
	}
	if res := e.in.run("", "dkim", "generate", "example.org"); res.code != 1 || !strings.Contains(res.stderr, "already") {
		t.Errorf("second dkim generate the same day: %d %q", res.code, res.stderr)
	}
	if res := e.in.run("", "dkim", "generate", "not a domain"); res.code != 1 {
		t.Errorf("dkim generate of a bad domain: %d", res.code)
	}
	e.srv.stop(syscall.SIGTERM)
}
