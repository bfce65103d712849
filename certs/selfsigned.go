package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// selfSignedValidity is how long a generated certificate is valid. Two
	// years keeps clients' "accept this certificate" exception stable for a
	// long time; Roost regenerates it on start once it gets close to expiry.
	selfSignedValidity = 2 * 365 * 24 * time.Hour
	// selfSignedRenewBefore: a certificate expiring within this window is
	// replaced on start rather than reused.
	selfSignedRenewBefore = 30 * 24 * time.Hour
)

// ensureSelfSigned returns the paths of a usable self-signed certificate for
// hostname under dataDir, generating one when there is none, when it is
// unreadable or mismatched, when it does not name hostname, or when it is
// about to expire.
func ensureSelfSigned(dataDir, hostname string, log *slog.Logger) (certFile, keyFile string, err error) {
	hostname = strings.TrimSuffix(strings.TrimSpace(hostname), ".")
	if hostname == "" {
		return "", "", errors.New("certs: a host name is needed to generate a self-signed certificate (or configure a certificate and key file)")
	}
	if dataDir == "" {
		return "", "", errors.New("certs: a data directory is needed to store the self-signed certificate (or configure a certificate and key file)")
	}
	dir, certFile, keyFile := selfSignedPaths(dataDir)

	lc, loadErr := loadPair(certFile, keyFile)
	switch {
	case loadErr == nil:
		leaf := lc.cert.Leaf
		if leaf.VerifyHostname(hostname) == nil && time.Now().Add(selfSignedRenewBefore).Before(leaf.NotAfter) {
			log.Info("reusing self-signed TLS certificate", "cert_file", certFile,
				"hostname", hostname, "fingerprint_sha256", lc.fingerprint)
			return certFile, keyFile, nil
		}
		log.Warn("self-signed TLS certificate does not match the host name or is about to expire; generating a new one",
			"cert_file", certFile, "hostname", hostname, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	case errors.Is(loadErr, fs.ErrNotExist):
		// First start (or a half-finished earlier generation): generate.
	default:
		// These files are Roost's own; replacing a broken pair loses nothing.
		log.Warn("self-signed TLS certificate unusable; generating a new one", "err", loadErr)
	}

	certPEM, keyPEM, err := newSelfSigned(hostname, time.Now())
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("certs: create directory %s: %w", dir, err)
	}
	// Key first: after a crash between the two writes the pair mismatches
	// and the next start regenerates, instead of pairing a new certificate
	// with nothing.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	block, _ := pem.Decode(certPEM)
	log.Warn("generated a self-signed TLS certificate; mail clients will ask users to accept it, "+
		"they should check that its SHA-256 fingerprint matches",
		"cert_file", certFile, "hostname", hostname, "fingerprint_sha256", fingerprint(block.Bytes))
	return certFile, keyFile, nil
}

// newSelfSigned creates an ECDSA P-256 key and a self-signed server
// certificate for hostname, "localhost", 127.0.0.1 and ::1, PEM encoded.
func newSelfSigned(hostname string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	// RFC 5280 §4.1.2.2: a positive serial of at most 20 octets; random so
	// that two generated certificates never share one.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostname, Organization: []string{"Roost self-signed"}},
		// Backdated an hour to tolerate clients whose clock is a bit behind.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	// RFC 6125 §6.4.4: clients match names against the SANs, not the CN.
	names := []string{hostname, "localhost"}
	for _, name := range names {
		if ip := net.ParseIP(name); ip != nil {
			if !ip.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		if !containsFold(tmpl.DNSNames, name) {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create self-signed certificate for %s: %w", hostname, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: encode private key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// writeFileAtomic writes data to path through a temporary file, fsync and
// rename, so that a reader (or a crash) never sees a half-written file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: create temporary file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// Set the mode before any secret byte is written (CreateTemp uses 0600
	// already; Chmod makes the intent explicit and sets 0644 for the cert).
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("certs: chmod %s: %w", f.Name(), err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("certs: write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("certs: fsync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: close %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("certs: rename %s to %s: %w", f.Name(), path, err)
	}
	// Make the rename itself durable.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
