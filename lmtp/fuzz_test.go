package lmtp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/testutil"
)

// dataSeeds are message data (after DATA) for the data fuzz targets:
// dot stuffing, bare CR and LF, ends that are not the end marker.
var dataSeeds = []string{
	".\r\n",
	"a\r\n.\r\n",
	"..\r\n.\r\n",
	"a\n.\r\n.\r\n",
	"a\r\r\n.\r\n",
	"a\r\n.\r\r\n.\r\n",
	"a\r\n.x\r\n.\r\n",
	"\r\n.\n\r\n.\r\n",
	"no end\r\n",
	"bare\rcr\r\n.\r\n",
	".\r.\r\n.\r\n",
	"trailing\r",
}

// addDataSeeds adds every seed, fed in pieces of 1, 3 and 255 bytes.
func addDataSeeds(f *testing.F, seeds []string) {
	for _, seed := range seeds {
		f.Add([]byte(seed), uint8(1))
		f.Add([]byte(seed), uint8(3))
		f.Add([]byte(seed), uint8(255))
	}
}

// FuzzDataScanner fuzzes the wire's reading of DATA (scanData).
//
// Property: fed the message data in pieces of any size, the wire hands
// go-smtp exactly the bytes up to and including the first CRLF "." CRLF
// (RFC 5321 §4.1.1.4; the start of the data counts as a line start), no
// more and no less, and no end without one; what it hands on has no bare
// CR left (each is replaced by a space), so go-smtp's own reader, whose
// quirks only concern bare CRs, ends at the same byte (FuzzMessage checks
// that end to end); and the wire's bare CR/LF flag is set exactly when the
// data up to the marker holds a CR not followed by LF or an LF not
// preceded by CR.
func FuzzDataScanner(f *testing.F) {
	addDataSeeds(f, dataSeeds)
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		if piece == 0 {
			piece = 1
		}
		w := &wire{dataState: stateBeginLine}
		handed, ended := scanPieces(data, int(piece), w)

		end := bytes.Index(append([]byte("\r\n"), data...), []byte("\r\n.\r\n"))
		switch {
		case ended && end < 0:
			t.Fatalf("the wire ended the data after %d bytes, without an end marker: %q", len(handed), data)
		case !ended && end >= 0:
			t.Fatalf("the wire did not end the data at the marker at %d: %q", end, data)
		case ended && end+3 != len(handed):
			t.Fatalf("the wire ended the data after %d bytes, the marker ends after %d: %q", len(handed), end+3, data)
		case !ended:
			return
		}
		for i, c := range handed {
			if c == '\r' && (i+1 == len(handed) || handed[i+1] != '\n') {
				t.Fatalf("a bare CR at %d went to go-smtp: %q", i, handed)
			}
		}
		if want := hasBareLineBreak(data[:len(handed)]); w.bare.Load() != want {
			t.Fatalf("bare = %v, want %v for %q", w.bare.Load(), want, data[:len(handed)])
		}
	})
}

func startsWithSpace(b []byte) bool { return len(b) > 0 && (b[0] == ' ' || b[0] == '\t') }

func hasBareLineBreak(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') || c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// fuzzEnv is a server for the session fuzz targets: its log discarded (a
// fuzzing run would keep it all in memory) and generous error limits.
func fuzzEnv(f *testing.F, lmtp bool) *env {
	return newEnv(f, envOptions{opts: Options{
		LMTP:            lmtp,
		MaxMessageBytes: 64 << 10,
		MaxErrors:       1000,
		Logger:          slog.New(slog.DiscardHandler),
	}})
}

// replyLine is one line of an SMTP reply (RFC 5321 §4.2).
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9]([ -].*)?$`)

// FuzzSession fuzzes an SMTP or LMTP session over a real connection: the
// input is everything a client sends.
//
// Properties: the server never panics and never hangs (it replies and
// closes once the client has sent everything); everything it sends is
// reply lines (three digits 2xx-5xx, then " " or "-"; lines of one reply
// share their code; every line ends in CRLF) and no more replies than the
// input can ask for (two per line: LMTP answers DATA once per
// recipient); the output is bounded; and no message with a bare CR or LF,
// or over the size limit, is ever stored (SMTP smuggling).
func FuzzSession(f *testing.F) {
	for _, seed := range []struct {
		lmtp  bool
		input string
	}{
		{false, "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"},
		{true, "LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\nx\r\n.\r\n"},
		{false, "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=99999999999\r\nMAIL FROM:<a@b.example> SIZE=x\r\nRSET\r\nNOOP\r\nVRFY a\r\nHELP\r\n"},
		{false, "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nBDAT 5\r\nab\r\ncBDAT 0 LAST\r\n"},
		{false, "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nBDAT 3 LAST\r\na\nb"},
		{false, "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\na\n.\r\nsmuggled\r\n.\r\n"},
		{false, "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\na\r\r\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"},
		{false, "HELO c\r\nSTARTTLS\r\nAUTH PLAIN\r\nEXPN x\r\nXYZZY\r\n\r\nMAIL\r\nRCPT\r\nDATA\r\nBDAT\r\nBDAT x\r\nBDAT 99999999999\r\n"},
		{false, "EHLO " + strings.Repeat("x", 5000) + "\r\nNOOP\r\n"},
		{true, "LHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n" + strings.Repeat("y", 70000) + "\r\n.\r\nQUIT\r\n"},
		{false, "ehlo c\nmail from:<a@b.example>\nrcpt to:<alice@example.org>\ndata\nx\n.\n"},
	} {
		f.Add(seed.lmtp, []byte(seed.input))
	}
	envs := map[bool]*env{false: fuzzEnv(f, false), true: fuzzEnv(f, true)}
	f.Fuzz(func(t *testing.T, lmtp bool, input []byte) {
		if len(input) > 256<<10 {
			t.Skip("long inputs only slow the fuzzer down")
		}
		e := envs[lmtp]
		e.t = t
		for _, addr := range []string{"alice@example.org", "bob@example.org"} {
			emptyInbox(t, e, addr) // a failed input leaves its messages
		}
		lines := bytes.Count(input, []byte("\n")) + 1
		out, reset := testutil.Converse(t, e.net, e.addr, input, 8192*lines, 30*time.Second)
		if err := checkReplies(out, 2*lines+3, reset); err != nil {
			t.Fatalf("%v\ninput:  %q\noutput: %q", err, input, out)
		}
		for _, addr := range []string{"alice@example.org", "bob@example.org"} {
			for _, m := range e.inbox(addr) {
				_, _, body := splitTrace(t, m)
				if hasBareLineBreak(body) || startsWithSpace(m[len(m)-len(body):]) {
					t.Fatalf("stored a message with a bare CR or LF or leading white space: %q\ninput: %q", body, input)
				}
				if len(body) > 64<<10 {
					t.Fatalf("stored a message of %d bytes, over the limit", len(body))
				}
			}
			emptyInbox(t, e, addr)
		}
	})
}

// checkReplies checks that out is a sequence of at most max well-formed
// replies (a reset may cut it, but only between lines).
func checkReplies(out []byte, max int, reset bool) error {
	replies := 0
	code := ""
	for len(out) > 0 {
		i := bytes.Index(out, []byte("\r\n"))
		if i < 0 {
			return fmt.Errorf("output ends in a partial line %q", out)
		}
		line := string(out[:i])
		out = out[i+2:]
		if strings.ContainsAny(line, "\r\n") || !replyLine.MatchString(line) {
			return fmt.Errorf("not a reply line: %q", line)
		}
		if code != "" && line[:3] != code {
			return fmt.Errorf("reply line %q continues a %s reply", line, code)
		}
		code = line[:3]
		if len(line) == 3 || line[3] == ' ' {
			code = ""
			replies++
		}
	}
	if code != "" && !reset {
		return fmt.Errorf("the last reply (%s) is not finished", code)
	}
	if replies > max {
		return fmt.Errorf("%d replies, more than the input can ask for (%d)", replies, max)
	}
	return nil
}

// emptyInbox expunges an account's INBOX, so a fuzzing run's store does
// not grow.
func emptyInbox(t *testing.T, e *env, addr string) {
	t.Helper()
	u, err := e.be.LookupUser(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if mb.Messages > 0 {
		if _, err := u.Expunge(mb.ID, nil, false); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzMessage fuzzes message transfer: the input is a message, sent with
// DATA (dot-stuffed) or BDAT (in chunks of the given size), over SMTP or
// LMTP.
//
// Property (a round trip): a message with CRLF line ends only is accepted
// (250) and stored byte for byte behind the trace headers (for DATA, with
// a final CRLF added if it lacked one, as a client must); a message with a
// bare CR or LF, or one that starts with white space (which would fold
// into the Received header), is refused with 550 5.6.0 and nothing is
// stored; either way the session stays in step (NOOP answers 250
// afterwards).
func FuzzMessage(f *testing.F) {
	for _, seed := range []string{
		"Subject: x\r\n\r\nbody\r\n",
		"",
		".\r\n..\r\n.x\r\n",
		"no final newline",
		"a\nb\r\n",
		"a\rb\r\n",
		"x\r\n.\r\n",
		"x\r\n.\n.\r\n",
		"\r\n\r\n",
		"x\r",
		"\r\n.",
	} {
		f.Add([]byte(seed), false, uint16(0))
		f.Add([]byte(seed), true, uint16(1))
		f.Add([]byte(seed), false, uint16(7))
	}
	envs := map[bool]*env{false: fuzzEnv(f, false), true: fuzzEnv(f, true)}
	f.Fuzz(func(t *testing.T, msg []byte, lmtp bool, chunk uint16) {
		if len(msg) > 60<<10 {
			t.Skip("over the size limit")
		}
		e := envs[lmtp]
		e.t = t
		emptyInbox(t, e, "alice@example.org") // a failed input leaves its message
		c := e.dial()
		c.c.(*net.TCPConn).SetNoDelay(true)
		if lmtp {
			c.cmd("LHLO client.example", "250 ")
		} else {
			c.cmd("EHLO client.example", "250 ")
		}
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		want := msg
		var reply []string
		if chunk == 0 {
			if len(want) > 0 && !bytes.HasSuffix(want, []byte("\r\n")) {
				want = append(append([]byte(nil), want...), '\r', '\n')
			}
			c.cmd("DATA", "354 ")
			c.write(stuff(want) + ".\r\n")
			reply = c.expect("")
		} else {
			rest := msg
			for {
				k := min(int(chunk), len(rest))
				last := k == len(rest)
				cmd := fmt.Sprintf("BDAT %d", k)
				if last {
					cmd += " LAST"
				}
				c.write(cmd + "\r\n" + string(rest[:k]))
				reply = c.expect("")
				rest = rest[k:]
				if last || !strings.HasPrefix(reply[0], "250 ") {
					break
				}
			}
		}
		got := reply[len(reply)-1]
		stored := e.inbox("alice@example.org")
		if hasBareLineBreak(want) || startsWithSpace(want) {
			if !strings.HasPrefix(got, "550 5.6.0 ") || len(stored) != 0 {
				t.Fatalf("message with a bare CR or LF or leading white space: %q, %d stored; want 550 5.6.0, none", got, len(stored))
			}
		} else {
			if !strings.HasPrefix(got, "250 ") || len(stored) != 1 {
				t.Fatalf("clean message: %q, %d stored; want 250, one", got, len(stored))
			}
			if _, _, body := splitTrace(t, stored[0]); !bytes.Equal(body, want) {
				t.Fatalf("stored %q, sent %q", body, want)
			}
		}
		c.cmd("NOOP", "250 ")
		c.cmd("QUIT", "221 ")
		emptyInbox(t, e, "alice@example.org")
	})
}

// stuff applies RFC 5321 §4.5.2 transparency: a line that starts with "."
// gets another. Lines are what CRLF separates (a bare LF does not start
// one for the server either).
func stuff(msg []byte) string {
	var b strings.Builder
	bol := true
	for i, c := range msg {
		if bol && c == '.' {
			b.WriteByte('.')
		}
		b.WriteByte(c)
		bol = c == '\n' && i > 0 && msg[i-1] == '\r'
	}
	return b.String()
}
