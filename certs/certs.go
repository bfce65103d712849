// Package certs loads, generates (self-signed) and hot-reloads the TLS
// certificate that every Roost listener presents: implicit TLS (IMAPS 993,
// POP3S 995, RFC 8314 §3), STARTTLS (IMAP RFC 9051 §6.2.1, POP3 RFC 2595,
// SMTP RFC 3207) and the autoconfig HTTPS endpoint.
//
// An operator either points Roost at a certificate and key (for example the
// files an ACME client renews) or lets Roost generate a self-signed one on
// first start. In both cases the Manager notices replaced files without a
// restart, and Reload is the SIGHUP hook.
package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how often, at most, a TLS handshake looks at the
// certificate files to see whether they changed.
const DefaultCheckInterval = time.Second

// Names of the generated self-signed files, under DataDir/tls.
const (
	selfSignedDir      = "tls"
	selfSignedCertName = "selfsigned-cert.pem"
	selfSignedKeyName  = "selfsigned-key.pem"
)

// Options say where the certificate comes from.
type Options struct {
	// CertFile and KeyFile are PEM files (certificate chain, leaf first, and
	// its private key). Set both to use your own certificate; leave both
	// empty to use a generated self-signed one.
	CertFile string
	KeyFile  string
	// DataDir is Roost's data directory; the self-signed certificate lives
	// in DataDir/tls. Only needed when CertFile/KeyFile are empty.
	DataDir string
	// Hostname is the public host name of the server, put in the
	// self-signed certificate. Only needed when CertFile/KeyFile are empty.
	Hostname string
	// CheckInterval bounds how often a handshake stats the files to detect
	// a replaced certificate: 0 means DefaultCheckInterval, negative turns
	// the automatic check off (Reload still works).
	CheckInterval time.Duration
	// Logger receives load, generation and reload events; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Manager holds the current certificate and reloads it when its files change.
// It is safe for concurrent use.
type Manager struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger
	// now is the clock of the change check; tests replace it to step time
	// deterministically.
	now func() time.Time

	current   atomic.Pointer[loadedCert]
	nextCheck atomic.Int64 // unix nanoseconds before which handshakes skip the check

	mu   sync.Mutex // serialises reloads
	seen fileStamps // guarded by mu: the files as they were at the last load attempt
}

// loadedCert is one immutable, successfully loaded certificate.
type loadedCert struct {
	cert        *tls.Certificate
	fingerprint string
}

// New loads the configured certificate, or generates (first start) or reuses
// (later starts) a self-signed one when no files are configured.
func New(opts Options) (*Manager, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	interval := opts.CheckInterval
	if interval == 0 {
		interval = DefaultCheckInterval
	}
	m := &Manager{interval: interval, log: log, now: time.Now}

	switch {
	case opts.CertFile != "" && opts.KeyFile != "":
		m.certFile, m.keyFile = opts.CertFile, opts.KeyFile
	case opts.CertFile != "" || opts.KeyFile != "":
		return nil, errors.New("certs: set both the certificate file and the key file, or neither for a self-signed certificate")
	default:
		certFile, keyFile, err := ensureSelfSigned(opts.DataDir, opts.Hostname, log)
		if err != nil {
			return nil, err
		}
		m.certFile, m.keyFile = certFile, keyFile
	}

	stamps := statFiles(m.certFile, m.keyFile)
	lc, err := loadPair(m.certFile, m.keyFile)
	if err != nil {
		return nil, err
	}
	m.seen = stamps
	m.current.Store(lc)
	m.nextCheck.Store(m.now().Add(m.interval).UnixNano())
	m.logLoaded("TLS certificate loaded", lc)
	return m, nil
}

// TLSConfig returns a new server configuration presenting the current
// certificate; callers may adjust the copy (e.g. NextProtos) freely.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		// RFC 8996 deprecates TLS 1.0 and 1.1; RFC 8314 §4.1 asks mail
		// servers for TLS 1.2 or later.
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.getCertificate,
	}
}

// Fingerprint returns the SHA-256 of the current leaf certificate's DER, in
// lowercase hex: what a user compares when a client shows a self-signed
// certificate.
func (m *Manager) Fingerprint() string {
	return m.current.Load().fingerprint
}

// Reload reads the certificate files again now; cmd/roost calls it on
// SIGHUP. On failure the previous certificate stays in use, the error is
// logged and returned.
func (m *Manager) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reloadLocked(statFiles(m.certFile, m.keyFile))
}

// getCertificate is the tls.Config hook, called once per handshake.
func (m *Manager) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m.checkForChanges()
	return m.current.Load().cert, nil
}

// checkForChanges reloads the certificate when its files changed, at most
// once per interval.
//
// Why stat at handshake time rather than fsnotify: certificate renewers
// replace files by rename (acme.sh, most scripts) or by swapping symlinks
// (certbot's live/ links, Kubernetes secret volumes). An inotify watch
// follows the old inode, so catching these needs directory watches,
// symlink resolution and re-arming, plus a goroutine and a Close to manage.
// Two stat calls per interval on the handshake path follow symlinks for free,
// need no goroutine, and the only cost of laziness is that nobody is served
// the new certificate before somebody connects, which is harmless.
func (m *Manager) checkForChanges() {
	if m.interval < 0 {
		return
	}
	now := m.now().UnixNano()
	next := m.nextCheck.Load()
	if now < next {
		return
	}
	// Exactly one handshake wins the check; the others go on with the
	// current certificate instead of queueing behind the stat calls.
	if !m.nextCheck.CompareAndSwap(next, now+int64(m.interval)) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	stamps := statFiles(m.certFile, m.keyFile)
	if stamps.equal(m.seen) {
		return
	}
	// The error is logged by reloadLocked; the handshake keeps going with
	// the previous certificate.
	_ = m.reloadLocked(stamps)
}

// reloadLocked loads the files whose state before reading was stamps. The
// stamps are remembered even on failure, so a broken file is reported once
// and retried when it changes again (e.g. when a half-written file is
// complete), not on every check.
func (m *Manager) reloadLocked(stamps fileStamps) error {
	m.seen = stamps
	lc, err := loadPair(m.certFile, m.keyFile)
	if err != nil {
		m.log.Error("TLS certificate reload failed; still serving the previous certificate",
			"err", err, "fingerprint_sha256", m.current.Load().fingerprint)
		return fmt.Errorf("certs: reload: %w", err)
	}
	old := m.current.Swap(lc)
	if old.fingerprint != lc.fingerprint {
		m.logLoaded("TLS certificate reloaded", lc)
	}
	return nil
}

func (m *Manager) logLoaded(msg string, lc *loadedCert) {
	leaf := lc.cert.Leaf
	m.log.Info(msg,
		"cert_file", m.certFile,
		"subject", leaf.Subject.String(),
		"dns_names", strings.Join(leaf.DNSNames, ","),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
		"fingerprint_sha256", lc.fingerprint)
	if remaining := time.Until(leaf.NotAfter); remaining < 14*24*time.Hour {
		m.log.Warn("TLS certificate expires soon or has expired",
			"cert_file", m.certFile, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

// loadPair reads and checks a certificate and key; errors name the file.
func loadPair(certFile, keyFile string) (*loadedCert, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read certificate file %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read key file %s: %w", keyFile, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: certificate file %s with key file %s: %w", certFile, keyFile, err)
	}
	if pair.Leaf == nil { // X509KeyPair fills Leaf since Go 1.23; stay safe.
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certs: parse certificate file %s: %w", certFile, err)
		}
	}
	return &loadedCert{cert: &pair, fingerprint: fingerprint(pair.Certificate[0])}, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// fileStamp is what a cheap stat tells about a file; a replaced file shows a
// different size, mtime or inode.
type fileStamp struct {
	info os.FileInfo // nil when stat failed (e.g. file briefly missing)
}

func (a fileStamp) equal(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil
	}
	return a.info.Size() == b.info.Size() &&
		a.info.ModTime().Equal(b.info.ModTime()) &&
		os.SameFile(a.info, b.info)
}

type fileStamps struct{ cert, key fileStamp }

func (a fileStamps) equal(b fileStamps) bool {
	return a.cert.equal(b.cert) && a.key.equal(b.key)
}

// statFiles uses os.Stat, which follows symlinks, so a swapped symlink
// (certbot live/ → archive/) counts as a change.
func statFiles(certFile, keyFile string) fileStamps {
	var s fileStamps
	if fi, err := os.Stat(certFile); err == nil {
		s.cert.info = fi
	}
	if fi, err := os.Stat(keyFile); err == nil {
		s.key.info = fi
	}
	return s
}

// selfSignedPaths returns where the generated certificate and key live.
func selfSignedPaths(dataDir string) (dir, certFile, keyFile string) {
	dir = filepath.Join(dataDir, selfSignedDir)
	return dir, filepath.Join(dir, selfSignedCertName), filepath.Join(dir, selfSignedKeyName)
}
