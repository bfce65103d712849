package backend

import (
	"fmt"
	"net"

	"github.com/roostmail/roost/internal/netlimit"
)

// PlaintextPolicy says when a password may be sent over a connection
// ([auth] plaintext).
type PlaintextPolicy string

const (
	// PlaintextTLSOrLoopback allows password authentication over TLS, or
	// from a loopback address (the default: safe, and easy for development).
	PlaintextTLSOrLoopback PlaintextPolicy = "tls-or-loopback"
	// PlaintextTLS allows it only over TLS (IMAP then advertises LOGINDISABLED).
	PlaintextTLS PlaintextPolicy = "tls"
	// PlaintextAlways allows it everywhere.
	PlaintextAlways PlaintextPolicy = "always"
)

// ParsePlaintextPolicy checks a configured policy ("" is the default).
func ParsePlaintextPolicy(s string) (PlaintextPolicy, error) {
	switch p := PlaintextPolicy(s); p {
	case "":
		return PlaintextTLSOrLoopback, nil
	case PlaintextTLSOrLoopback, PlaintextTLS, PlaintextAlways:
		return p, nil
	}
	return "", fmt.Errorf("unknown plaintext policy %q (want tls-or-loopback, tls or always)", s)
}

// Allowed reports whether a password may be accepted on a connection that
// is (or is not) protected by TLS, from remote.
func (p PlaintextPolicy) Allowed(isTLS bool, remote net.Addr) bool {
	switch p {
	case PlaintextAlways:
		return true
	case PlaintextTLS:
		return isTLS
	default:
		return isTLS || netlimit.IsLoopback(remote)
	}
}
