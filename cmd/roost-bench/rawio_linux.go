package main

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawIOConn is a TCP connection whose reads and writes bypass the runtime's
// blocking-system-call path. The socket is non-blocking (the runtime made
// it so), so a read or write never blocks in the kernel: when there is
// nothing to read or no room to write, syscall.RawConn waits for the poller
// as net.Conn does, deadlines and Close included. What it saves: a read or
// write through syscall.Syscall tells the scheduler it may block, and after
// an idle moment that wakes the runtime's monitor thread (sysmon) into a
// 20 µs polling loop. A load tool idles between every pair of replies, and
// on a small VM those wake-ups cost about as much CPU as the reads and
// writes themselves (roost-bench deliver: 0.20 -> 0.15 ms per delivery).
//
// One goroutine may read while another writes, as with net.Conn; the
// callbacks are made once so that no read or write allocates.
type rawIOConn struct {
	*net.TCPConn
	rc      syscall.RawConn
	rd, wr  rawOp
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

// rawOp is the state of one read or write across RawConn callbacks.
type rawOp struct {
	p     []byte
	n     int
	errno syscall.Errno
}

// fastIO returns conn with raw reads and writes when it is a TCP connection,
// else conn itself.
func fastIO(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return conn
	}
	c := &rawIOConn{TCPConn: tc, rc: rc}
	c.readFn, c.writeFn = c.read, c.write
	return c
}

// read is the RawConn.Read callback: false means "not readable yet, wait".
func (c *rawIOConn) read(fd uintptr) bool {
	op := &c.rd
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&op.p[0])), uintptr(len(op.p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		op.n, op.errno = int(r), e
		return true
	}
}

// write is the RawConn.Write callback; it writes all of op.p, waiting for
// room (false) as often as needed.
func (c *rawIOConn) write(fd uintptr) bool {
	op := &c.wr
	for op.n < len(op.p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&op.p[op.n])), uintptr(len(op.p)-op.n))
		switch e {
		case 0:
			op.n += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			op.errno = e
			return true
		}
	}
	return true
}

func (c *rawIOConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rd = rawOp{p: p}
	err := c.rc.Read(c.readFn)
	n, errno := c.rd.n, c.rd.errno
	c.rd = rawOp{}
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawIOConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wr = rawOp{p: p}
	err := c.rc.Write(c.writeFn)
	n, errno := c.wr.n, c.wr.errno
	c.wr = rawOp{}
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError wraps err as net.Conn's methods do. RawConn has wrapped a
// deadline or a closed connection already, as "raw-read" or "raw-write":
// that becomes op, so messages read as they do with net.Conn.
func (c *rawIOConn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		e := *oe
		e.Op = op
		return &e
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
