package main

// End-to-end tests of what a mail app meets when it connects (issue:
// "Connect Thunderbird and Apple Mail"): TLS with the self-signed or a
// configured certificate, the plaintext policy, the login lockout, and the
// autoconfiguration answers of a running server.

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/testutil"
)

// deliverOverSMTP sends one message to rcpt through the server's SMTP port.
func deliverOverSMTP(t *testing.T, addr, rcpt, message string) {
	t.Helper()
	c := dialText(t, "tcp", addr)
	c.reply("220 ")
	c.send("EHLO client.test\r\n")
	c.reply("250")
	c.send("MAIL FROM:<sender@example.net>\r\n")
	c.reply("250 ")
	c.send("RCPT TO:<" + rcpt + ">\r\n")
	c.reply("250 ")
	c.send("DATA\r\n")
	c.reply("354 ")
	c.send(message + ".\r\n")
	c.reply("250 ")
	c.send("QUIT\r\n")
}

// TestCurlReachesIMAPSAndPOP3SWithPinnedCertificate: curl --ssl-reqd, with
// the generated self-signed certificate as its only trust anchor, reads mail
// over implicit TLS (IMAPS, POP3S) and over STARTTLS/STLS.
func TestCurlReachesIMAPSAndPOP3SWithPinnedCertificate(t *testing.T) {
	curl := testutil.RequireBinary(t, "curl")
	in := newInstance(t)
	in.env = []string{"ROOST_AUTH_PLAINTEXT=tls"}
	srv := in.startServer()
	in.mustRun("alice-pw\n", "user", "add", "alice@example.org")
	st := in.status()
	deliverOverSMTP(t, st["smtp"], "alice@example.org", "Subject: pinned\r\n\r\nover TLS only\r\n")
	cacert := filepath.Join(in.dataDir, "tls", "selfsigned-cert.pem")
	if _, err := os.Stat(cacert); err != nil {
		t.Fatalf("self-signed certificate not in data_dir: %v", err)
	}
	for _, tc := range []struct{ name, url, want string }{
		{"imaps", "imaps://" + st["imaps"] + "/INBOX;UID=1", "over TLS only"},
		{"imap starttls", "imap://" + st["imap"] + "/INBOX;UID=1", "over TLS only"},
		{"pop3s", "pop3s://" + st["pop3s"] + "/1", "over TLS only"},
		{"pop3 stls", "pop3://" + st["pop3"] + "/1", "over TLS only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The certificate names 127.0.0.1, so verification is on.
			cmd := exec.Command(curl, "-sS", "--ssl-reqd", "--cacert", cacert, "--max-time", "30",
				"-u", "alice@example.org:alice-pw", tc.url)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("curl %s: %v\n%s", tc.url, err, out)
			}
		})
	}
	// A client that trusts another certificate must fail: the pin is real.
	other := filepath.Join(t.TempDir(), "other.pem")
	certPEM, _ := makeCert(t, "other.test")
	os.WriteFile(other, certPEM, 0o600)
	if out, err := exec.Command(curl, "-sS", "--ssl-reqd", "--cacert", other, "--max-time", "30",
		"-u", "alice@example.org:alice-pw", "imaps://"+st["imaps"]+"/INBOX;UID=1").CombinedOutput(); err == nil {
		t.Fatalf("curl trusted a certificate it was not given:\n%s", out)
	}
	srv.stop(syscall.SIGTERM)
}

// TestPlaintextPolicy: under "tls" a password over a plain connection is
// refused (IMAP advertises LOGINDISABLED); under the default
// "tls-or-loopback" it is accepted from a loopback address.
func TestPlaintextPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy  string
		allowed bool
	}{{"tls", false}, {"tls-or-loopback", true}, {"always", true}} {
		t.Run(tc.policy, func(t *testing.T) {
			in := newInstance(t)
			in.env = []string{"ROOST_AUTH_PLAINTEXT=" + tc.policy, "ROOST_IMAP_AUTH_FAILURE_DELAY=0s", "ROOST_POP3_AUTH_FAILURE_DELAY=0s"}
			srv := in.startServer()
			in.mustRun("alice-pw\n", "user", "add", "alice@example.org")
			st := in.status()

			imap := dialText(t, "tcp", st["imap"])
			imap.reply("* OK")
			imap.send("a CAPABILITY\r\n")
			caps := imap.reply("* CAPABILITY")
			imap.reply("a OK")
			if got := strings.Contains(caps, "LOGINDISABLED"); got == tc.allowed {
				t.Errorf("IMAP capabilities %q: LOGINDISABLED present = %v", caps, got)
			}
			imap.send("b LOGIN alice@example.org alice-pw\r\n")
			if tc.allowed {
				imap.reply("b OK")
			} else {
				line := imap.reply("b ")
				if strings.HasPrefix(line, "b OK") {
					t.Errorf("IMAP LOGIN over plain text accepted under %q", tc.policy)
				}
			}

			pop := dialText(t, "tcp", st["pop3"])
			pop.reply("+OK")
			pop.send("USER alice@example.org\r\n")
			if tc.allowed {
				pop.reply("+OK")
				pop.send("PASS alice-pw\r\n")
				pop.reply("+OK")
			} else {
				pop.reply("-ERR")
			}
			srv.stop(syscall.SIGTERM)
		})
	}
}

// TestLoginLockout: after [auth] max_failures bad passwords even the right
// password is refused, with the same answer for an unknown user; once the
// lockout has passed the right password works again.
func TestLoginLockout(t *testing.T) {
	in := newInstance(t)
	in.env = []string{"ROOST_AUTH_MAX_FAILURES=3", "ROOST_AUTH_FAILURE_WINDOW=1m", "ROOST_AUTH_LOCKOUT=2s",
		"ROOST_IMAP_AUTH_FAILURE_DELAY=0s"}
	srv := in.startServer()
	in.mustRun("alice-pw\n", "user", "add", "alice@example.org")
	st := in.status()
	login := func(tag, user, pass string) string {
		c := dialText(t, "tcp", st["imap"])
		c.reply("* OK")
		c.send(tag + " LOGIN " + user + " " + pass + "\r\n")
		return c.reply(tag + " ")
	}
	// Unknown user and wrong password get the same answer.
	unknown := login("u", "nobody@example.org", "x")
	wrong := login("w", "alice@example.org", "wrong")
	if !strings.HasPrefix(wrong, "w NO") || strings.TrimPrefix(wrong, "w") != strings.TrimPrefix(unknown, "u") {
		t.Fatalf("wrong password %q differs from unknown user %q", wrong, unknown)
	}
	// Two failures so far from this IP; the third engages the lockout.
	if r := login("a", "alice@example.org", "wrong"); !strings.HasPrefix(r, "a NO") {
		t.Fatalf("bad password: %q", r)
	}
	if r := login("c", "alice@example.org", "alice-pw"); !strings.HasPrefix(r, "c NO") {
		t.Fatalf("right password during lockout: %q", r)
	}
	if !srv.logContains("remote_ip", "127.0.0.1") {
		t.Errorf("auth failure log lines carry no remote_ip:\n%s", srv.log())
	}
	// The lockout lifts: poll (bounded) until the right password works.
	deadline := time.Now().Add(time.Minute)
	for {
		if r := login("d", "alice@example.org", "alice-pw"); strings.HasPrefix(r, "d OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lockout did not lift within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
	srv.stop(syscall.SIGTERM)
}

// makeCert returns a self-signed certificate and key for host (and
// 127.0.0.1) in PEM.
func makeCert(t *testing.T, host string) (certPEM, keyPEM []byte) {
	c := testutil.SelfSigned(t, host, "127.0.0.1")
	return c.CertPEM, c.KeyPEM
}

func fingerprintPEM(t *testing.T, certPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:])
}

func servedFingerprint(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sum := sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:])
}

// TestReplacedCertificateServedWithoutRestart: new [tls] cert/key files are
// served on new connections (after SIGHUP, as certbot hooks do) by the same
// process, on IMAPS and POP3S.
func TestReplacedCertificateServedWithoutRestart(t *testing.T) {
	in := newInstance(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c1, k1 := makeCert(t, "mail.test")
	os.WriteFile(certFile, c1, 0o600)
	os.WriteFile(keyFile, k1, 0o600)
	in.env = []string{"ROOST_TLS_CERT=" + certFile, "ROOST_TLS_KEY=" + keyFile}
	srv := in.startServer()
	st := in.status()
	if got := servedFingerprint(t, st["imaps"]); got != fingerprintPEM(t, c1) {
		t.Fatalf("IMAPS serves %s, want the configured %s", got, fingerprintPEM(t, c1))
	}
	pid := srv.cmd.Process.Pid
	c2, k2 := makeCert(t, "mail.test")
	// Replace as an ACME client does: write aside, rename over.
	for _, f := range []struct {
		path string
		data []byte
	}{{certFile, c2}, {keyFile, k2}} {
		os.WriteFile(f.path+".new", f.data, 0o600)
		os.Rename(f.path+".new", f.path)
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	want := fingerprintPEM(t, c2)
	deadline := time.Now().Add(time.Minute)
	for _, svc := range []string{"imaps", "pop3s"} {
		for servedFingerprint(t, st[svc]) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s still serves the old certificate:\n%s", svc, srv.log())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if srv.cmd.Process.Pid != pid {
		t.Fatal("server restarted")
	}
	srv.stop(syscall.SIGTERM)
}

// TestAutoconfigFromRunningServer: the HTTP listener answers Thunderbird,
// Outlook and Apple with the public host name and ports from [autoconfig],
// and `roost dns` prints the matching records.
func TestAutoconfigFromRunningServer(t *testing.T) {
	in := newInstance(t)
	in.env = []string{"ROOST_AUTOCONFIG_HOSTNAME=imap.example.org", "ROOST_AUTOCONFIG_IMAPS_PORT=10993",
		"ROOST_AUTOCONFIG_POP3S_PORT=10995", "ROOST_AUTOCONFIG_SUBMISSION_HOST=smtp.example.org", "ROOST_AUTOCONFIG_SUBMISSION_PORT=587"}
	srv := in.startServer()
	in.mustRun("alice-pw\n", "user", "add", "alice@example.org")
	base := "http://" + in.status()["http"]

	resp, err := http.Get(base + "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	var tb struct {
		Provider struct {
			Incoming []struct {
				Type     string `xml:"type,attr"`
				Hostname string `xml:"hostname"`
				Port     int    `xml:"port"`
				Socket   string `xml:"socketType"`
			} `xml:"incomingServer"`
		} `xml:"emailProvider"`
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := xml.Unmarshal(body, &tb); err != nil {
		t.Fatalf("Thunderbird XML: %v\n%s", err, body)
	}
	found := map[string]bool{}
	for _, s := range tb.Provider.Incoming {
		if s.Hostname != "imap.example.org" {
			t.Errorf("incoming server host %q", s.Hostname)
		}
		found[s.Type+"/"+s.Socket+"/"+itoa(s.Port)] = true
	}
	for _, want := range []string{"imap/SSL/10993", "imap/STARTTLS/143", "pop3/SSL/10995", "pop3/STARTTLS/110"} {
		if !found[want] {
			t.Errorf("Thunderbird config lacks %s: %v", want, found)
		}
	}

	req := `<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@example.org</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`
	resp, err = http.Post(base+"/autodiscover/autodiscover.xml", "text/xml", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("<Server>imap.example.org</Server>")) || !bytes.Contains(body, []byte("<Port>10993</Port>")) {
		t.Errorf("autodiscover %d:\n%s", resp.StatusCode, body)
	}

	resp, err = http.Get(base + "/apple/profile.mobileconfig?emailaddress=alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	py := testutil.RequireBinary(t, "python3")
	check := exec.Command(py, "-c", `import plistlib,sys
p = plistlib.loads(sys.stdin.buffer.read())
m = [c for c in p["PayloadContent"] if c["PayloadType"] == "com.apple.mail.managed"][0]
assert m["IncomingMailServerHostName"] == "imap.example.org", m
assert m["IncomingMailServerPortNumber"] == 10993, m
assert m["IncomingMailServerUseSSL"] is True, m
assert m["EmailAddress"] == "alice@example.org", m
print("ok")`)
	check.Stdin = bytes.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("mobileconfig: %v\n%s\n%s", err, out, body)
	}

	dns := in.mustRun("", "dns", "example.org")
	for _, want := range []string{"_imaps._tcp.example.org.", "10993", "imap.example.org.", "_submission._tcp.example.org.", "autoconfig.example.org.", "autodiscover.example.org.", "MX"} {
		if !strings.Contains(dns, want) {
			t.Errorf("roost dns lacks %q:\n%s", want, dns)
		}
	}
	srv.stop(syscall.SIGTERM)
}

func itoa(n int) string { return strconv.Itoa(n) }
