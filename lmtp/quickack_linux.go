package lmtp

import (
	"net"
	"syscall"
)

// ackNow makes the kernel acknowledge what has been received at once
// instead of delaying the ACK (TCP_QUICKACK, which Linux clears again by
// itself, so it is set after every read of message data).
//
// Why: a sender with Nagle's algorithm on (no TCP_NODELAY: stdio-buffered
// MTAs, many scripts) that writes the body and then the final "." in two
// writes may send the second only once the first is acknowledged. While
// message data arrives the receiver sends nothing (the reply comes after
// the end marker), so the ACK waits for the delayed-ACK timer: 40 ms per
// message on Linux. RFC 1122 §4.2.3.2 allows ACKing every segment.
func ackNow(rc syscall.RawConn) {
	if rc == nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

// rawTCP returns the socket under c (through wrappers that expose the
// connection they wrap), or nil for one that is not TCP.
func rawTCP(c net.Conn) syscall.RawConn {
	for c != nil {
		if tc, ok := c.(*net.TCPConn); ok {
			rc, err := tc.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}
