package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// pop3Client is a small POP3 client (RFC 1939): enough for load, with
// multi-line responses read byte-exactly (CRLF kept, dot-unstuffed).
type pop3Client struct {
	conn    net.Conn
	tp      *textproto.Conn
	timeout time.Duration
	stop    func() bool
}

// pop3Error is a -ERR reply; the session goes on after it.
type pop3Error struct {
	cmd string
	msg string
}

func (e *pop3Error) Error() string { return fmt.Sprintf("%s: -ERR %s", e.cmd, e.msg) }

// dialPOP3 connects and reads the +OK greeting (RFC 1939 §4).
func dialPOP3(ctx context.Context, addr string, timeout time.Duration) (*pop3Client, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &pop3Client{conn: conn, tp: textproto.NewConn(conn), timeout: timeout}
	c.stop = context.AfterFunc(ctx, func() { conn.Close() })
	c.conn.SetDeadline(time.Now().Add(timeout))
	if _, err := c.status("greeting"); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// status reads one status line: "+OK text" or "-ERR text" (RFC 1939 §3).
func (c *pop3Client) status(cmd string) (string, error) {
	line, err := c.tp.ReadLine()
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	switch {
	case line == "+OK" || strings.HasPrefix(line, "+OK "):
		return strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " "), nil
	case line == "-ERR" || strings.HasPrefix(line, "-ERR "):
		return "", &pop3Error{cmd: cmd, msg: strings.TrimPrefix(strings.TrimPrefix(line, "-ERR"), " ")}
	}
	return "", fmt.Errorf("%s: malformed status line %q", cmd, line)
}

// cmd sends one command line and reads its status line.
func (c *pop3Client) cmd(name, format string, args ...any) (string, error) {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	if err := c.tp.PrintfLine(format, args...); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return c.status(name)
}

func (c *pop3Client) user(name string) error {
	_, err := c.cmd("USER", "USER %s", name)
	return err
}

func (c *pop3Client) pass(password string) error {
	_, err := c.cmd("PASS", "PASS %s", password)
	return err
}

// stat returns the number of messages and their total size (RFC 1939 §5).
func (c *pop3Client) stat() (count int, size int64, err error) {
	text, err := c.cmd("STAT", "STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("STAT: malformed reply %q", text)
	}
	count, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || count < 0 || size < 0 {
		return 0, 0, fmt.Errorf("STAT: malformed reply %q", text)
	}
	return count, size, nil
}

// retr copies message n to w and returns its size in octets.
func (c *pop3Client) retr(n int, w io.Writer) (int64, error) {
	if _, err := c.cmd("RETR", "RETR %d", n); err != nil {
		return 0, err
	}
	// A big message may take longer than one command timeout; the deadline
	// is extended as data keeps arriving.
	size, err := readMultiline(c.tp.R, w, func() { c.conn.SetDeadline(time.Now().Add(c.timeout)) })
	if err != nil {
		return size, fmt.Errorf("RETR %d: %w", n, err)
	}
	return size, nil
}

func (c *pop3Client) dele(n int) error {
	_, err := c.cmd("DELE", "DELE %d", n)
	return err
}

// quit ends the session; the server deletes DELE'd messages now (RFC 1939 §6).
func (c *pop3Client) quit() error {
	_, err := c.cmd("QUIT", "QUIT")
	c.close()
	return err
}

func (c *pop3Client) close() {
	c.stop()
	c.conn.Close()
}

// errMultilineEOF means the connection ended inside a multi-line response.
var errMultilineEOF = errors.New("connection closed before the terminating \".\" line")

// readMultiline copies a multi-line response body (RFC 1939 §3) from r to w:
// lines up to the terminating ".\r\n", with the leading dot of a
// byte-stuffed line removed and CRLF kept, so the result is the message
// exactly as stored. progress, if not nil, is called after each chunk.
// Lines longer than r's buffer are passed through in pieces.
func readMultiline(r *bufio.Reader, w io.Writer, progress func()) (int64, error) {
	var n int64
	atLineStart := true
	for {
		chunk, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = errMultilineEOF
			}
			return n, err
		}
		complete := err == nil
		if atLineStart && len(chunk) > 0 && chunk[0] == '.' {
			if complete && (bytes.Equal(chunk, []byte(".\r\n")) || bytes.Equal(chunk, []byte(".\n"))) {
				return n, nil
			}
			chunk = chunk[1:]
		}
		m, werr := w.Write(chunk)
		n += int64(m)
		if werr != nil {
			return n, werr
		}
		atLineStart = complete
		if progress != nil {
			progress()
		}
	}
}
