package testutil

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// Converse sends input to a server on a new connection, half-closes it,
// and returns everything the server sends until it closes, and whether the
// connection was reset (a server that hangs up with input unread). It
// fails t if the server sends more than limit bytes, or neither answers
// nor closes within timeout (a hang). For fuzz targets of whole sessions.
func Converse(t testing.TB, network, addr string, input []byte, limit int, timeout time.Duration) (out []byte, reset bool) {
	t.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	go func() {
		conn.Write(input)
		if hc, ok := conn.(interface{ CloseWrite() error }); ok {
			hc.CloseWrite()
		}
	}()
	out, err = io.ReadAll(io.LimitReader(conn, int64(limit)+1))
	if len(out) > limit {
		t.Fatalf("the server sent more than %d bytes for %d bytes of input", limit, len(input))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server neither answered nor closed within %s (sent %.200q)", timeout, out)
	}
	return out, errors.Is(err, syscall.ECONNRESET)
}
