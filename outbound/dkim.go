package outbound

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/dkim"
)

// DKIMKey is one signing key of a domain (RFC 6376 §3.1: the selector
// names its public key record, SELECTOR._domainkey.DOMAIN).
type DKIMKey struct {
	Selector string
	Signer   crypto.Signer // ed25519.PrivateKey or *rsa.PrivateKey
}

// dkimHeaders are the fields signed (RFC 6376 §5.4.1). From is listed
// twice so that a second From: added later breaks the signature (§8.15).
var dkimHeaders = []string{
	"From", "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// fromDomain returns the domain of the message's (first) From: address.
func fromDomain(body []byte) (string, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(body)))
	if err != nil {
		return "", fmt.Errorf("read header: %w", err)
	}
	from, err := (&mail.Header{Header: message.Header{Header: h}}).AddressList("From")
	if err != nil || len(from) == 0 {
		return "", errors.New("no From: address")
	}
	_, d, _ := strings.Cut(from[0].Address, "@")
	return strings.ToLower(d), nil
}

// sign returns the DKIM-Signature fields for body, one per key of its
// From: domain (Ed25519 and RSA side by side, RFC 8463 §4), or nil.
func (e *Engine) sign(body []byte) ([]byte, error) {
	if e.opts.DKIM == nil {
		return nil, nil
	}
	domain, err := fromDomain(body)
	if err != nil {
		return nil, err
	}
	keys := e.opts.DKIM(domain)
	if len(keys) == 0 {
		return nil, nil
	}
	var signers []*dkim.Signer
	var ws []io.Writer
	for _, k := range keys {
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             dkimHeaders,
		})
		if err != nil {
			return nil, fmt.Errorf("dkim %s/%s: %w", domain, k.Selector, err)
		}
		signers = append(signers, s)
		ws = append(ws, s)
	}
	if _, err := io.Copy(io.MultiWriter(ws...), bytes.NewReader(body)); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	var out []byte
	for _, s := range signers {
		if err := s.Close(); err != nil {
			return nil, fmt.Errorf("dkim: %w", err)
		}
		out = append(out, s.Signature()...)
	}
	return out, nil
}

// GenerateDKIMKeys makes a new Ed25519 key (RFC 8463) and a new RSA-2048
// key, which every verifier understands.
func GenerateDKIMKeys() (ed crypto.Signer, rsaKey crypto.Signer, err error) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	return edKey, rk, nil
}

// MarshalDKIMKey encodes a private key as PEM (PKCS #8).
func MarshalDKIMKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseDKIMKey decodes a PEM private key (PKCS #8, or PKCS #1 for RSA).
func ParseDKIMKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type == "RSA PRIVATE KEY" {
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("RSA key of %d bits is too short for DKIM (RFC 8301 §3.2)", k.N.BitLen())
		}
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T (want Ed25519 or RSA)", k)
}

// DKIMRecord returns the TXT record data for a key (RFC 6376 §3.6.1):
// "v=DKIM1; k=ed25519; p=...", split into strings of at most 255 octets.
func DKIMRecord(k crypto.Signer) (string, error) {
	var alg string
	var pub []byte
	switch p := k.Public().(type) {
	case ed25519.PublicKey:
		alg, pub = "ed25519", p // RFC 8463 §4.2: the raw 32 bytes
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(p)
		if err != nil {
			return "", err
		}
		alg, pub = "rsa", der
	default:
		return "", fmt.Errorf("unsupported key type %T", p)
	}
	return txtStrings("v=DKIM1; k=" + alg + "; p=" + base64.StdEncoding.EncodeToString(pub)), nil
}

// txtStrings quotes s as one or more TXT character-strings (RFC 1035
// §3.3.14: at most 255 octets each), which DNS joins again.
func txtStrings(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}

// DNSRecords returns the zone-file lines that let other servers trust
// mail from domain: the DKIM key records, SPF (RFC 7208: only the
// domain's MX hosts send its mail) and DMARC (RFC 7489). Fields are
// tab-separated like autoconfig.DNSRecords.
func DNSRecords(domain string, keys []DKIMKey) (string, error) {
	zone := strings.TrimSuffix(strings.ToLower(domain), ".") + "."
	var b strings.Builder
	rec := func(name, data string) {
		fmt.Fprintf(&b, "%s\t3600\tIN\tTXT\t%s\n", name, data)
	}
	b.WriteString(";\n; Outbound mail: SPF (RFC 7208), DMARC (RFC 7489), DKIM (RFC 6376)\n")
	rec(zone, `"v=spf1 mx -all"`)
	rec("_dmarc."+zone, `"v=DMARC1; p=quarantine; adkim=s; aspf=s"`)
	if len(keys) == 0 {
		b.WriteString("; No DKIM key for " + zone + " yet: run \"roost dkim generate " + strings.TrimSuffix(zone, ".") + "\".\n")
	}
	for _, k := range keys {
		data, err := DKIMRecord(k.Signer)
		if err != nil {
			return "", fmt.Errorf("DKIM key %s: %w", k.Selector, err)
		}
		rec(k.Selector+"._domainkey."+zone, data)
	}
	return b.String(), nil
}
