package lmtp

import (
	"net"
	"syscall"
	"testing"

	"github.com/roostmail/roost/internal/netlimit"
)

// TestAckNowReachesTheSocket: the fix for senders with Nagle on (ackNow)
// must find the TCP socket under the connection the listener hands the
// wire (wrapped by the connection limiter), and leave it in quick-ACK mode.
// If a wrapper stopped exposing the socket, the 40 ms stall would come back
// silently; BenchmarkSegmentedSender measures the stall itself.
func TestAckNowReachesTheSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	wl := netlimit.Wrap(l, netlimit.Options{MaxConns: 10, MaxConnsPerIP: 10})
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := wl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*net.TCPConn); ok {
		t.Fatal("the limiter no longer wraps connections: this test tests nothing")
	}
	rc := rawTCP(c)
	if rc == nil {
		t.Fatal("rawTCP found no socket under the limiter's connection")
	}
	// Enter delayed-ACK ("ping-pong") mode, then leave it with ackNow.
	rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0) })
	ackNow(rc)
	var quick int
	var gerr error
	rc.Control(func(fd uintptr) {
		quick, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	})
	if gerr != nil || quick != 1 {
		t.Fatalf("TCP_QUICKACK after ackNow = %d, %v; want 1", quick, gerr)
	}
	if rawTCP(nil) != nil {
		t.Fatal("rawTCP(nil) is not nil")
	}
}
