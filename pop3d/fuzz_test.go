package pop3d

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/testutil"
)

// FuzzDotWriter fuzzes the RETR/TOP encoder (dotWriter and copyLines).
//
// Property (a round trip): for any message and any read size, what is sent
// is well-formed POP3 multi-line data (every line ends in CRLF, the last
// line is "."), undoing the byte-stuffing gives back the message with bare
// LFs as CRLF and a final CRLF added if it lacked one, cut after the asked
// number of lines for TOP; and for RETR the octet count sent equals the
// one LIST announced (backend.Parsed.CRLFSize), whether the message takes
// the clean fast path or not.
func FuzzDotWriter(f *testing.F) {
	for _, seed := range []string{
		"",
		"Subject: x\r\n\r\nbody\r\n",
		".\r\n",
		"..\r\n.\r\n",
		"a\r\n.b\r\n..c\r\n",
		"bare\nlf\n.dot\n",
		"no final newline",
		"cr at end\r",
		"\r\r\n\n\r",
		".",
		"\n.\n.\r\n",
	} {
		f.Add([]byte(seed), int8(-1), uint16(1))
		f.Add([]byte(seed), int8(1), uint16(3))
		f.Add([]byte(seed), int8(0), uint16(65535))
	}
	f.Fuzz(func(t *testing.T, msg []byte, lines int8, chunk uint16) {
		if chunk == 0 {
			chunk = 1
		}
		size := backend.ParseMessage(msg).CRLFSize(int64(len(msg)))
		for _, clean := range []bool{false, size == int64(len(msg))} {
			var out bytes.Buffer
			bw := bufio.NewWriterSize(&out, 4096)
			dw := dotWriter{w: bw, bol: true, clean: clean}
			if err := copyLines(&dw, bytes.NewReader(msg), int64(lines), make([]byte, chunk)); err != nil {
				t.Fatal(err)
			}
			if err := dw.close(); err != nil {
				t.Fatal(err)
			}
			bw.Flush()

			want := msg
			if lines >= 0 {
				want = firstLines(msg, int(lines))
			}
			want = crlfForm(want)
			got, err := undot(out.Bytes())
			if err != nil {
				t.Fatalf("clean=%v: %v in %q", clean, err, out.Bytes())
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("clean=%v lines=%d: sent %q, undone %q, want %q", clean, lines, out.Bytes(), got, want)
			}
			if dw.n != int64(len(want)) {
				t.Fatalf("clean=%v: counted %d octets, sent %d", clean, dw.n, len(want))
			}
			if lines < 0 && dw.n != size {
				t.Fatalf("clean=%v: RETR sent %d octets, LIST announces %d", clean, dw.n, size)
			}
		}
	})
}

// firstLines is the beginning of msg up to and including its n-th LF.
func firstLines(msg []byte, n int) []byte {
	off := 0
	for ; n > 0; n-- {
		i := bytes.IndexByte(msg[off:], '\n')
		if i < 0 {
			return msg
		}
		off += i + 1
	}
	return msg[:off]
}

// undot checks and decodes a multi-line response body ending in ".\r\n".
func undot(b []byte) ([]byte, error) {
	var out []byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			return nil, errors.New("line without CRLF")
		}
		line := b[:i]
		b = b[i+2:]
		if string(line) == "." {
			if len(b) != 0 {
				return nil, errors.New("data after the terminating line")
			}
			return out, nil
		}
		if bytes.IndexByte(line, '\n') >= 0 {
			return nil, errors.New("LF inside a line")
		}
		if len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		out = append(append(out, line...), '\r', '\n')
	}
	return nil, errors.New("no terminating line")
}

// fuzzMaildrop is what the account of FuzzSession holds at the start of
// every input: a plain message, one with lines that need byte-stuffing and
// bare LFs, one without a final line break.
var fuzzMaildrop = [][]byte{
	[]byte("From: a@example.net\r\nSubject: one\r\n\r\nbody one\r\n"),
	[]byte("Subject: dots\n\n.\n..\r\n.x\nend\n"),
	[]byte("Subject: unterminated\r\n\r\nno newline at the end"),
}

// FuzzSession fuzzes a POP3 session over a real connection: the input is
// everything a client sends (with loggedIn, after a correct USER/PASS).
//
// Properties: the server never panics and never hangs (it answers and
// closes once the client has sent everything); every complete command
// line gets exactly one response, in order, and nothing else is sent:
// single-line responses are "+OK" or "-ERR" lines, the SASL continuation
// is "+ ", multi-line responses (CAPA, AUTH, LIST, UIDL, RETR, TOP) end
// with "." and every line ends in CRLF; a response is bounded in size (at
// most about three times the maildrop); after a response that closes the
// session nothing follows.
func FuzzSession(f *testing.F) {
	for _, seed := range []struct {
		loggedIn bool
		input    string
	}{
		{false, "CAPA\r\nQUIT\r\n"},
		{false, "USER alice@example.org\r\nPASS secret pass\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 2\r\nTOP 1 0\r\nQUIT\r\n"},
		{false, "AUTH\r\nAUTH PLAIN\r\nAGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldCBwYXNz\r\nSTAT\r\n"},
		{false, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldCBwYXNz\r\nLIST 1\r\nUIDL 3\r\n"},
		{false, "AUTH PLAIN\r\n*\r\nAUTH PLAIN =\r\nAUTH LOGIN\r\nAUTH PLAIN !!!\r\n"},
		{false, "USER x\r\nPASS y\r\nUSER x\r\nPASS y\r\nUSER x\r\nPASS y\r\nNOOP\r\n"},
		{false, "STAT\r\nRETR 1\r\nSTLS\r\nAPOP a b\r\n\r\n"},
		{true, "RETR 1\r\nRETR 2\r\nRETR 3\r\nTOP 2 1\r\nTOP 3 100\r\n"},
		{true, "DELE 1\r\nLIST 1\r\nRETR 1\r\nRSET\r\nLIST\r\nDELE 2\r\nDELE 3\r\nQUIT\r\n"},
		{true, "LIST 0\r\nLIST 4\r\nLIST 4294967296\r\nTOP 1 -1\r\nTOP 1 x\r\nRETR\r\nDELE 1 2\r\n"},
		{true, "USER a\r\nPASS b\r\nAUTH PLAIN\r\nstat\r\nnoop\n\n"},
		{true, "NOOP\r\nRETR 1\r\n" + strings.Repeat("x", 300) + "\r\nNOOP\r\nRETR 2"},
		{false, "USER " + strings.Repeat("u", 250) + "\r\n"},
		{true, "TOP 2 0\r\nTOP 2 1\r\nTOP 3 0\r\nQUIT"},
	} {
		f.Add(seed.loggedIn, []byte(seed.input))
	}
	e := newEnv(f, envConfig{
		// The login cache spares every correct login its Argon2id hash.
		backend: func(o *backend.Options) { o.LoginCacheTTL = time.Hour },
		opts: func(o *Options) {
			o.AuthFailureDelay = -1
			o.Logger = slog.New(slog.DiscardHandler) // t.Log on f panics inside the fuzz function
		},
	})
	var limit int
	for _, m := range fuzzMaildrop {
		limit += 3 * len(m)
	}
	limit += 4096
	f.Fuzz(func(t *testing.T, loggedIn bool, input []byte) {
		if len(input) > 64<<10 {
			t.Skip("long inputs only slow the fuzzer down")
		}
		resetMaildrop(t, e)
		if loggedIn {
			input = append([]byte("USER "+testUser+"\r\nPASS "+testPass+"\r\n"), input...)
		}
		out, reset := testutil.Converse(t, "tcp", e.addr, input, len(input)*limit+limit, ioTimeout)
		e.waitEnded(1)
		if err := checkResponses(input, out, reset, limit); err != nil {
			t.Fatalf("%v\ninput:  %q\noutput: %q", err, input, out)
		}
	})
}

// resetMaildrop puts the INBOX back into its fuzzMaildrop state when a
// session has deleted from it.
func resetMaildrop(t *testing.T, e *testEnv) {
	t.Helper()
	e.t = t
	mb, msgs := e.inbox()
	if len(msgs) == len(fuzzMaildrop) {
		return
	}
	if _, err := e.user().Expunge(mb.ID, nil, false); err != nil {
		t.Fatal(err)
	}
	e.deliver(fuzzMaildrop...)
}

// checkResponses replays input as the server reads it and checks out
// against it (see FuzzSession).
func checkResponses(input, out []byte, reset bool, limit int) error {
	r := &respReader{b: out}
	greeting, ok := r.line()
	if !ok || !strings.HasPrefix(greeting, "+OK ") {
		return fmt.Errorf("greeting %q", greeting)
	}
	state := stateAuthorization
	sasl := false // the next line is a SASL response
	closed := false
	for n := 1; len(input) > 0; n++ {
		i := bytes.IndexByte(input, '\n')
		if i < 0 {
			break // an unfinished line gets no answer
		}
		line := strings.TrimSuffix(string(input[:i]), "\r")
		input = input[i+1:]
		if closed {
			if r.rest() != "" {
				return fmt.Errorf("line %d: %q sent after the session ended", n, r.rest())
			}
			return nil
		}
		start := r.off
		status, ok := r.line()
		if !ok {
			if reset && r.cut() {
				// The server closed with input unread (QUIT, a fatal
				// error) and the reset took its last responses.
				return nil
			}
			return fmt.Errorf("line %d %.80q: no response", n, line)
		}
		name, arg, _ := strings.Cut(line, " ")
		name = strings.ToUpper(name)
		// readLine's limit counts the line with its LF.
		tooLong := i+1 > DefaultMaxLineLength && !sasl || i+1 > minSASLLine
		if sasl {
			sasl = false
			name = "(sasl)"
			if tooLong {
				name = "(sasl too long)"
			}
		} else if tooLong {
			name = "(too long)"
		}
		switch {
		case status == "+ " && name == "AUTH":
			sasl = true
			continue
		case strings.HasPrefix(status, "+OK"):
		case strings.HasPrefix(status, "-ERR "):
		default:
			return fmt.Errorf("line %d %.80q: response %q", n, line, status)
		}
		ok200 := strings.HasPrefix(status, "+OK")
		multi := false
		args := strings.Fields(arg)
		switch name {
		case "CAPA":
			multi = ok200
		case "AUTH":
			multi = ok200 && strings.TrimSpace(arg) == ""
		case "LIST", "UIDL":
			multi = ok200 && state == stateTransaction && len(args) == 0
		case "RETR", "TOP":
			multi = ok200 && state == stateTransaction
		}
		if multi {
			if err := r.multi(); err != nil {
				return fmt.Errorf("line %d %.80q: %v", n, line, err)
			}
		}
		if r.off-start > limit {
			return fmt.Errorf("line %d %.80q: a response of %d bytes", n, line, r.off-start)
		}
		switch {
		case name == "QUIT" && ok200,
			strings.Contains(status, "closing connection"):
			closed = true
		case strings.HasPrefix(status, "+OK maildrop has"):
			state = stateTransaction // a login (or RSET, in that state already)
		}
	}
	if r.rest() != "" && !closed {
		return fmt.Errorf("unasked-for output %q", r.rest())
	}
	if r.rest() != "" && closed {
		return fmt.Errorf("%q sent after the session ended", r.rest())
	}
	return nil
}

// respReader reads POP3 responses from a buffer.
type respReader struct {
	b   []byte
	off int
}

func (r *respReader) rest() string { return string(r.b[r.off:]) }

// cut reports whether the output ended at a line boundary (a reset may cut
// it there, never in the middle of a line).
func (r *respReader) cut() bool { return r.off == len(r.b) }

func (r *respReader) line() (string, bool) {
	i := bytes.Index(r.b[r.off:], []byte("\r\n"))
	if i < 0 {
		return "", false
	}
	l := string(r.b[r.off : r.off+i])
	r.off += i + 2
	return l, !strings.Contains(l, "\n")
}

func (r *respReader) multi() error {
	for {
		l, ok := r.line()
		if !ok {
			return errors.New("unterminated multi-line response")
		}
		if l == "." {
			return nil
		}
	}
}
