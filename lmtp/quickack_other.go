//go:build !linux

package lmtp

import (
	"net"
	"syscall"
)

// ackNow is Linux-only (TCP_QUICKACK); elsewhere delayed ACKs stay as the
// system has them.
func ackNow(syscall.RawConn) {}

func rawTCP(net.Conn) syscall.RawConn { return nil }
