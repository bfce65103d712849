package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testLogger logs to the test's output, shown on failure or with -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// syncBuffer is a log sink that tests can read while handshakes write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pemPair is a generated certificate and key with the certificate's fingerprint.
type pemPair struct {
	cert, key   []byte
	fingerprint string
}

func newPair(t *testing.T, hostname string) pemPair {
	t.Helper()
	certPEM, keyPEM, err := newSelfSigned(hostname, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	return pemPair{cert: certPEM, key: keyPEM, fingerprint: fingerprint(block.Bytes)}
}

// writePair writes p to certFile/keyFile and moves both mtimes to mtime, so
// that the change is visible to a stat whatever the filesystem's timestamp
// granularity.
func writePair(t *testing.T, certFile, keyFile string, certPEM, keyPEM []byte, mtime time.Time) {
	t.Helper()
	for _, f := range []struct {
		path string
		data []byte
	}{{certFile, certPEM}, {keyFile, keyPEM}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// serveTLS accepts TLS connections on a loopback port with cfg, completes
// each handshake and closes the connection. It returns the address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = c.(*tls.Conn).Handshake() // failures are seen by the client
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// peerFingerprint dials addr and returns the fingerprint of the certificate
// the server presented.
func peerFingerprint(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
}

// fakeClock is a manually stepped clock for the change check.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestSelfSignedGeneratedThenReused(t *testing.T) {
	dataDir := t.TempDir()
	first, err := New(Options{DataDir: dataDir, Hostname: "mail.example.org", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, certFile, keyFile := selfSignedPaths(dataDir)

	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("key file mode = %o, want 600", mode)
	}

	leaf := first.current.Load().cert.Leaf
	for _, name := range []string{"mail.example.org", "localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("certificate does not cover %s: %v", name, err)
		}
	}
	if validity := leaf.NotAfter.Sub(leaf.NotBefore); validity < 700*24*time.Hour || validity > 740*24*time.Hour {
		t.Errorf("validity = %v, want about two years", validity)
	}

	tests := []struct {
		name     string
		hostname string
		wantSame bool
	}{
		{"same host name reuses", "mail.example.org", true},
		{"host name differing in case reuses", "MAIL.example.org.", true},
		{"new host name regenerates", "imap.example.org", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := os.ReadFile(certFile)
			if err != nil {
				t.Fatal(err)
			}
			prev := fingerprintOfPEM(t, before)
			m, err := New(Options{DataDir: dataDir, Hostname: tt.hostname, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Fingerprint() == prev; got != tt.wantSame {
				t.Errorf("same fingerprint = %v, want %v", got, tt.wantSame)
			}
			if err := m.current.Load().cert.Leaf.VerifyHostname(strings.TrimSuffix(tt.hostname, ".")); err != nil {
				t.Errorf("certificate does not cover %s: %v", tt.hostname, err)
			}
		})
	}
}

func fingerprintOfPEM(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return fingerprint(block.Bytes)
}

func TestSelfSignedBrokenFilesRegenerated(t *testing.T) {
	dataDir := t.TempDir()
	dir, certFile, _ := selfSignedPaths(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{DataDir: dataDir, Hostname: "mail.example.org", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if m.Fingerprint() == "" {
		t.Fatal("no certificate")
	}
}

func TestNewOptionErrors(t *testing.T) {
	dir := t.TempDir()
	good := newPair(t, "mail.example.org")
	other := newPair(t, "other.example.org")
	certFile := filepath.Join(dir, "cert.pem")
	keyFile := filepath.Join(dir, "key.pem")
	otherKey := filepath.Join(dir, "other-key.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	missing := filepath.Join(dir, "missing.pem")
	for path, data := range map[string][]byte{certFile: good.cert, keyFile: good.key, otherKey: other.key, garbage: []byte("not PEM")} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name      string
		opts      Options
		wantErr   []string // substrings of the error; nil means success
		wantPrint string
	}{
		{name: "given files load", opts: Options{CertFile: certFile, KeyFile: keyFile}, wantPrint: good.fingerprint},
		{name: "missing certificate", opts: Options{CertFile: missing, KeyFile: keyFile}, wantErr: []string{"certificate file", missing}},
		{name: "missing key", opts: Options{CertFile: certFile, KeyFile: missing}, wantErr: []string{"key file", missing}},
		{name: "mismatched key", opts: Options{CertFile: certFile, KeyFile: otherKey}, wantErr: []string{certFile, otherKey, "does not match"}},
		{name: "garbage certificate", opts: Options{CertFile: garbage, KeyFile: keyFile}, wantErr: []string{garbage}},
		{name: "only certificate set", opts: Options{CertFile: certFile}, wantErr: []string{"both"}},
		{name: "only key set", opts: Options{KeyFile: keyFile}, wantErr: []string{"both"}},
		{name: "self-signed without host name", opts: Options{DataDir: dir}, wantErr: []string{"host name"}},
		{name: "self-signed without data directory", opts: Options{Hostname: "mail.example.org"}, wantErr: []string{"data directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Logger = testLogger(t)
			m, err := New(tt.opts)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got := m.Fingerprint(); got != tt.wantPrint {
					t.Errorf("fingerprint = %s, want %s", got, tt.wantPrint)
				}
				return
			}
			if err == nil {
				t.Fatal("New succeeded, want error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestHandshakeSeesCertificate(t *testing.T) {
	dataDir := t.TempDir()
	m, err := New(Options{DataDir: dataDir, Hostname: "mail.example.org", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, m.TLSConfig())

	roots := x509.NewCertPool()
	roots.AddCert(m.current.Load().cert.Leaf)
	// A client that trusts the certificate (as after a user accepted it)
	// verifies it for each of its names.
	for _, serverName := range []string{"mail.example.org", "localhost", "127.0.0.1"} {
		t.Run(serverName, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: serverName})
			if err != nil {
				t.Fatalf("verified handshake: %v", err)
			}
			defer conn.Close()
			if got := fingerprint(conn.ConnectionState().PeerCertificates[0].Raw); got != m.Fingerprint() {
				t.Errorf("server presented %s, want %s", got, m.Fingerprint())
			}
		})
	}
}

func TestProtocolVersions(t *testing.T) {
	m, err := New(Options{DataDir: t.TempDir(), Hostname: "mail.example.org", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, m.TLSConfig())
	tests := []struct {
		name    string
		version uint16
		wantOK  bool
	}{
		{"TLS 1.0 refused", tls.VersionTLS10, false},
		{"TLS 1.1 refused", tls.VersionTLS11, false},
		{"TLS 1.2 accepted", tls.VersionTLS12, true},
		{"TLS 1.3 accepted", tls.VersionTLS13, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{
				InsecureSkipVerify: true,
				MinVersion:         tt.version,
				MaxVersion:         tt.version,
			})
			if !tt.wantOK {
				if err == nil {
					conn.Close()
					t.Fatal("handshake succeeded, want refusal")
				}
				// The server's protocol_version alert, not a client-side
				// configuration problem.
				if !strings.Contains(err.Error(), "protocol version") {
					t.Errorf("error = %v, want a protocol version alert", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer conn.Close()
			if got := conn.ConnectionState().Version; got != tt.version {
				t.Errorf("negotiated %x, want %x", got, tt.version)
			}
		})
	}
}

// setupGiven starts a Manager on given files holding pair a, with a fake
// clock, and a TLS server using it.
func setupGiven(t *testing.T, logs *syncBuffer) (m *Manager, clock *fakeClock, addr, certFile, keyFile string, a pemPair) {
	t.Helper()
	dir := t.TempDir()
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	a = newPair(t, "mail.example.org")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	writePair(t, certFile, keyFile, a.cert, a.key, base)

	var logger *slog.Logger
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, nil))
	} else {
		logger = testLogger(t)
	}
	clock = &fakeClock{t: time.Unix(1_000_000, 0)}
	m, err := New(Options{CertFile: certFile, KeyFile: keyFile, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	m.now = clock.Now
	m.nextCheck.Store(clock.Now().Add(m.interval).UnixNano())
	addr = serveTLS(t, m.TLSConfig())
	if got := peerFingerprint(t, addr); got != a.fingerprint {
		t.Fatalf("initial certificate %s, want %s", got, a.fingerprint)
	}
	return m, clock, addr, certFile, keyFile, a
}

func TestHotReloadOnFileChange(t *testing.T) {
	m, clock, addr, certFile, keyFile, a := setupGiven(t, nil)
	b := newPair(t, "mail.example.org")
	writePair(t, certFile, keyFile, b.cert, b.key, time.Now().Truncate(time.Second))

	// Within the check interval handshakes do not stat the files.
	if got := peerFingerprint(t, addr); got != a.fingerprint {
		t.Errorf("before the check interval: server presented %s, want the old %s", got, a.fingerprint)
	}
	clock.Advance(m.interval)
	if got := peerFingerprint(t, addr); got != b.fingerprint {
		t.Errorf("after the check interval: server presented %s, want the new %s", got, b.fingerprint)
	}
	if m.Fingerprint() != b.fingerprint {
		t.Errorf("Fingerprint() = %s, want %s", m.Fingerprint(), b.fingerprint)
	}
}

func TestHotReloadAtomicRename(t *testing.T) {
	// Renewers replace files by rename, often keeping the mtime of the
	// file they wrote earlier: the new inode must count as a change.
	m, clock, addr, certFile, keyFile, _ := setupGiven(t, nil)
	fi, err := os.Stat(certFile)
	if err != nil {
		t.Fatal(err)
	}
	b := newPair(t, "mail.example.org")
	dir := filepath.Dir(certFile)
	newCert, newKey := filepath.Join(dir, "new-cert.pem"), filepath.Join(dir, "new-key.pem")
	writePair(t, newCert, newKey, b.cert, b.key, fi.ModTime())
	for from, to := range map[string]string{newKey: keyFile, newCert: certFile} {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(m.interval)
	if got := peerFingerprint(t, addr); got != b.fingerprint {
		t.Errorf("server presented %s, want the new %s", got, b.fingerprint)
	}
}

func TestReloadOnSignal(t *testing.T) {
	m, _, addr, certFile, keyFile, _ := setupGiven(t, nil)
	b := newPair(t, "mail.example.org")
	writePair(t, certFile, keyFile, b.cert, b.key, time.Now().Truncate(time.Second))
	// No clock step: Reload (SIGHUP) does not wait for the check interval.
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := peerFingerprint(t, addr); got != b.fingerprint {
		t.Errorf("server presented %s, want the new %s", got, b.fingerprint)
	}
}

func TestBrokenReloadKeepsOldCertificate(t *testing.T) {
	other := newPair(t, "other.example.org")
	tests := []struct {
		name       string
		breakFiles func(t *testing.T, certFile, keyFile string, a pemPair, mtime time.Time)
	}{
		{"half-written certificate", func(t *testing.T, certFile, keyFile string, a pemPair, mtime time.Time) {
			writePair(t, certFile, keyFile, other.cert[:len(other.cert)/2], a.key, mtime)
		}},
		{"mismatched key", func(t *testing.T, certFile, keyFile string, a pemPair, mtime time.Time) {
			writePair(t, certFile, keyFile, other.cert, a.key, mtime)
		}},
		{"empty key", func(t *testing.T, certFile, keyFile string, a pemPair, mtime time.Time) {
			writePair(t, certFile, keyFile, a.cert, nil, mtime)
		}},
		{"missing certificate", func(t *testing.T, certFile, keyFile string, a pemPair, mtime time.Time) {
			if err := os.Remove(certFile); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		for _, via := range []string{"Reload", "check"} {
			t.Run(tt.name+" via "+via, func(t *testing.T) {
				logs := &syncBuffer{}
				m, clock, addr, certFile, keyFile, a := setupGiven(t, logs)
				tt.breakFiles(t, certFile, keyFile, a, time.Now().Truncate(time.Second))

				if via == "Reload" {
					if err := m.Reload(); err == nil {
						t.Error("Reload succeeded on broken files")
					}
				} else {
					clock.Advance(m.interval)
				}
				if got := peerFingerprint(t, addr); got != a.fingerprint {
					t.Errorf("server presented %s, want the old %s", got, a.fingerprint)
				}
				if !strings.Contains(logs.String(), "reload failed") {
					t.Errorf("no error logged; logs:\n%s", logs)
				}

				// Once the files are whole again the new certificate is served.
				writePair(t, certFile, keyFile, other.cert, other.key, time.Now().Add(time.Hour).Truncate(time.Second))
				clock.Advance(m.interval)
				if got := peerFingerprint(t, addr); got != other.fingerprint {
					t.Errorf("after repair: server presented %s, want %s", got, other.fingerprint)
				}
			})
		}
	}
}

func TestBrokenFileLoggedOnce(t *testing.T) {
	logs := &syncBuffer{}
	m, clock, addr, certFile, keyFile, a := setupGiven(t, logs)
	writePair(t, certFile, keyFile, []byte("half"), a.key, time.Now().Truncate(time.Second))
	for range 3 {
		clock.Advance(m.interval)
		peerFingerprint(t, addr)
	}
	if n := strings.Count(logs.String(), "reload failed"); n != 1 {
		t.Errorf("reload failure logged %d times for one unchanged broken file, want 1", n)
	}
}

func TestCheckDisabled(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	a, b := newPair(t, "mail.example.org"), newPair(t, "mail.example.org")
	writePair(t, certFile, keyFile, a.cert, a.key, time.Now().Add(-time.Hour))
	m, err := New(Options{CertFile: certFile, KeyFile: keyFile, CheckInterval: -1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	m.now = clock.Now
	addr := serveTLS(t, m.TLSConfig())
	writePair(t, certFile, keyFile, b.cert, b.key, time.Now())
	clock.Advance(time.Hour)
	if got := peerFingerprint(t, addr); got != a.fingerprint {
		t.Errorf("with the check disabled the server presented %s, want the old %s", got, a.fingerprint)
	}
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := peerFingerprint(t, addr); got != b.fingerprint {
		t.Errorf("after Reload the server presented %s, want %s", got, b.fingerprint)
	}
}

func TestConcurrentHandshakesDuringReload(t *testing.T) {
	// Run with -race: handshakes and reloads share the Manager.
	m, clock, addr, certFile, keyFile, _ := setupGiven(t, nil)
	b := newPair(t, "mail.example.org")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				errs <- err
				return
			}
			conn.Close()
		})
	}
	writePair(t, certFile, keyFile, b.cert, b.key, time.Now())
	clock.Advance(m.interval)
	if err := m.Reload(); err != nil {
		t.Error(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("handshake: %v", err)
	}
}
