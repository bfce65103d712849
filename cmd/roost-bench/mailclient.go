package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// mailClient is a minimal SMTP/LMTP client for load: one connection carries
// transaction after transaction, with RSET between them. It is our own
// rather than go-smtp's Client because that one re-sends EHLO/LHLO after every
// RSET and cannot pipeline, which would make the tool measure round trips
// instead of the server; this one behaves like Postfix's smtp/lmtp client.
type mailClient struct {
	conn    net.Conn
	tp      *textproto.Conn
	lmtp    bool
	timeout time.Duration
	ext     map[string]string // EHLO/LHLO keywords, upper case
	used    bool              // a transaction ran: RSET before the next
	// segmented makes the client send as stdio-buffered MTAs do: Nagle's
	// algorithm on, no pipelining, and the body and the final "." in
	// writes of their own. A receiver that delays its ACKs meanwhile
	// stalls such a client for the delayed-ACK timeout per message.
	segmented bool
	stop      func() bool // detaches the context watcher
	// Buffers reused by every transaction, so that sending a message
	// allocates nothing (see commands).
	data     []byte // the dot-stuffed message
	cmdBuf   []byte
	cmdEnds  []int
	cmdVerbs []string
	cmds     []mailCmd
}

// replyError is a 4xx/5xx reply. The connection stays usable after it.
type replyError struct {
	cmd  string
	code int
	msg  string
}

func (e *replyError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.cmd, e.code, e.msg)
}

// dialMail connects, reads the greeting and says LHLO (LMTP, RFC 2033 §4.1)
// or EHLO (SMTP, RFC 5321 §4.1.1.1).
func dialMail(ctx context.Context, addr string, lmtp bool, timeout time.Duration, segmented bool) (*mailClient, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok && segmented {
		tc.SetNoDelay(false)
	}
	c := &mailClient{conn: conn, tp: textproto.NewConn(fastIO(conn)), lmtp: lmtp, timeout: timeout,
		ext: make(map[string]string), segmented: segmented}
	// Closing the connection is what unblocks a read on cancellation.
	c.stop = context.AfterFunc(ctx, func() { conn.Close() })
	c.deadline()
	if _, _, err := c.tp.ReadResponse(2); err != nil {
		c.close()
		return nil, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	hello := "EHLO"
	if lmtp {
		hello = "LHLO"
	}
	if err := c.tp.PrintfLine("%s roost-bench.localhost", hello); err != nil {
		c.close()
		return nil, fmt.Errorf("%s: %w", hello, err)
	}
	_, msg, err := c.tp.ReadResponse(2)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("%s: %w", hello, err)
	}
	lines := strings.Split(msg, "\n")
	for _, line := range lines[1:] { // the first line is the server's name
		kw, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		c.ext[strings.ToUpper(kw)] = arg
	}
	return c, nil
}

// authPlain logs in with AUTH PLAIN (RFC 4954, RFC 4616), for the
// submission port.
func (c *mailClient) authPlain(user, pass string) error {
	c.deadline()
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	if err := c.tp.PrintfLine("AUTH PLAIN %s", resp); err != nil {
		return fmt.Errorf("AUTH: %w", err)
	}
	if code, msg, err := c.tp.ReadResponse(235); err != nil {
		return &replyError{cmd: "AUTH", code: code, msg: msg}
	}
	return nil
}

func (c *mailClient) deadline() {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
}

// pipelining reports whether commands may be sent in groups (RFC 2920).
// LMTP servers must support it (RFC 2033 §4.2), but we still ask.
func (c *mailClient) pipelining() bool {
	_, ok := c.ext["PIPELINING"]
	return ok && !c.segmented
}

// deliveryResult is the outcome of one transaction.
type deliveryResult struct {
	accepted int   // recipients the message was delivered to
	rejected int   // recipients refused at RCPT or (LMTP) after DATA
	err      error // first reply error, or nil when every recipient got it
}

// send runs one mail transaction: [RSET] MAIL, RCPT..., DATA, message, and
// reads one final reply per accepted recipient for LMTP (RFC 2033 §4.2) or
// one reply for SMTP. A returned error means the connection is unusable;
// refusals by the server are in deliveryResult.err.
func (c *mailClient) send(from string, rcpts []string, msg []byte) (deliveryResult, error) {
	return c.sendStuffed(from, rcpts, msg, nil)
}

// sendStuffed is send with msg already dot-stuffed into data (RFC 5321
// §4.5.2, as appendDotStuffed does), or with data nil to stuff it here.
func (c *mailClient) sendStuffed(from string, rcpts []string, msg, data []byte) (deliveryResult, error) {
	var res deliveryResult
	c.deadline()
	cmds := c.commands(from, rcpts, len(msg))

	// RFC 2920 §3.1: with PIPELINING the whole group goes out at once and
	// the replies are read in order; otherwise one command per round trip.
	pipe := c.pipelining()
	if pipe {
		for _, cmd := range cmds {
			if _, err := c.tp.W.Write(cmd.line); err != nil {
				return res, fmt.Errorf("%s: %w", cmd.verb, err)
			}
		}
		if err := c.tp.W.Flush(); err != nil {
			return res, fmt.Errorf("send commands: %w", err)
		}
	}
	var mailOK bool
	for _, cmd := range cmds {
		if !pipe && cmd.verb == "DATA" && res.accepted == 0 {
			return res, nil // nobody to send it to
		}
		if !pipe {
			if _, err := c.tp.W.Write(cmd.line); err != nil {
				return res, fmt.Errorf("%s: %w", cmd.verb, err)
			}
			if err := c.tp.W.Flush(); err != nil {
				return res, fmt.Errorf("%s: %w", cmd.verb, err)
			}
		}
		want := 2 // any 2yz (RFC 5321 §4.2.1)
		if cmd.verb == "DATA" {
			want = 3
		}
		code, _, err := c.tp.ReadResponse(want)
		var perr *textproto.Error
		switch {
		case err == nil:
		case errors.As(err, &perr):
			rerr := &replyError{cmd: cmd.verb, code: perr.Code, msg: perr.Msg}
			if res.err == nil {
				res.err = rerr
			}
		default:
			return res, fmt.Errorf("%s: %w", cmd.verb, err)
		}
		switch {
		case cmd.verb == "MAIL":
			mailOK = err == nil
		case cmd.verb == "RCPT":
			if err == nil && mailOK {
				res.accepted++
			} else {
				res.rejected++
			}
		case cmd.verb == "DATA" && code == 354 && res.accepted == 0:
			// RFC 2920 §3.1: a server that says 354 with no valid
			// recipient gets an empty message; we cannot know how many
			// replies follow, so give up on this connection.
			return res, fmt.Errorf("DATA: server said 354 with no accepted recipient")
		case cmd.verb == "DATA" && err != nil:
			res.rejected += res.accepted
			res.accepted = 0
			return res, nil
		}
	}

	// RFC 5321 §4.5.2: leading dots doubled, CRLF.CRLF at the end.
	c.deadline()
	if c.segmented {
		// As a stdio-buffered MTA: the body goes out now (in writes of
		// the bufio.Writer's size), the "." line in a write of its own.
		w := c.tp.DotWriter()
		if _, err := w.Write(msg); err != nil {
			return res, fmt.Errorf("DATA body: %w", err)
		}
		if err := c.tp.W.Flush(); err != nil {
			return res, fmt.Errorf("DATA body: %w", err)
		}
		if err := w.Close(); err != nil {
			return res, fmt.Errorf("DATA body: %w", err)
		}
	} else {
		// The body and the final "." in one write, stuffed into a buffer
		// the connection keeps (DotWriter would cost more CPU than the
		// rest of the delivery).
		if data == nil {
			c.data = appendDotStuffed(c.data[:0], msg)
			data = c.data
		}
		if _, err := c.tp.W.Write(data); err != nil {
			return res, fmt.Errorf("DATA body: %w", err)
		}
		if err := c.tp.W.Flush(); err != nil {
			return res, fmt.Errorf("DATA body: %w", err)
		}
	}
	replies := 1
	if c.lmtp {
		replies = res.accepted
	}
	delivered := 0
	for range replies {
		_, _, err := c.tp.ReadResponse(2)
		var perr *textproto.Error
		switch {
		case err == nil:
			delivered++
		case errors.As(err, &perr):
			if res.err == nil {
				res.err = &replyError{cmd: "DATA", code: perr.Code, msg: perr.Msg}
			}
		default:
			return res, fmt.Errorf("reply after DATA: %w", err)
		}
	}
	if !c.lmtp && delivered == 0 {
		// SMTP: one refusal after DATA refuses every recipient.
		res.rejected += res.accepted
		res.accepted = 0
	} else if c.lmtp {
		res.rejected += res.accepted - delivered
		res.accepted = delivered
	}
	return res, nil
}

// mailCmd is one command of a transaction.
type mailCmd struct {
	verb string // RSET, MAIL, RCPT or DATA
	line []byte // what goes on the wire, CRLF included
}

// commands returns the commands of one transaction: [RSET] MAIL, one RCPT
// per recipient, DATA, in buffers the client reuses (valid until the next
// call).
func (c *mailClient) commands(from string, rcpts []string, size int) []mailCmd {
	b := c.cmdBuf[:0]
	ends := c.cmdEnds[:0]
	verbs := c.cmdVerbs[:0]
	if c.used {
		b = append(b, "RSET\r\n"...)
		ends, verbs = append(ends, len(b)), append(verbs, "RSET")
	}
	c.used = true
	b = append(b, "MAIL FROM:<"...)
	b = append(b, from...)
	b = append(b, '>')
	if _, ok := c.ext["SIZE"]; ok {
		b = append(b, " SIZE="...) // RFC 1870 §6
		b = strconv.AppendInt(b, int64(size), 10)
	}
	b = append(b, "\r\n"...)
	ends, verbs = append(ends, len(b)), append(verbs, "MAIL")
	for _, r := range rcpts {
		b = append(b, "RCPT TO:<"...)
		b = append(b, r...)
		b = append(b, ">\r\n"...)
		ends, verbs = append(ends, len(b)), append(verbs, "RCPT")
	}
	b = append(b, "DATA\r\n"...)
	ends, verbs = append(ends, len(b)), append(verbs, "DATA")

	cmds := c.cmds[:0]
	start := 0
	for i, end := range ends {
		cmds = append(cmds, mailCmd{verb: verbs[i], line: b[start:end:end]})
		start = end
	}
	c.cmdBuf, c.cmdEnds, c.cmdVerbs, c.cmds = b, ends, verbs, cmds
	return cmds
}

// quit says QUIT politely and closes.
func (c *mailClient) quit() {
	c.conn.SetDeadline(time.Now().Add(min(c.timeout, 2*time.Second)))
	if c.tp.PrintfLine("QUIT") == nil {
		c.tp.ReadResponse(2)
	}
	c.close()
}

func (c *mailClient) close() {
	c.stop()
	c.conn.Close()
}
