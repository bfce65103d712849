package lmtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// FuzzDirectData is a differential test of the wire's own reading of DATA
// (wire.dataReader) against go-smtp's data reader, which it replaces.
//
// Property: for message data fed to the wire in pieces of any size, what
// the wire's direct reader gives the session is byte for byte what a real
// go-smtp server's data reader makes of the bytes the wire would have
// handed it (those up to the end marker, bare CRs replaced), and the
// direct reader fails with smtp.ErrTooLongLine exactly when go-smtp's does
// (the same MaxLineLength on both).
func FuzzDirectData(f *testing.F) {
	addDataSeeds(f, dataSeeds)
	addDataSeeds(f, []string{
		"...x\r\n..\r\n.\r\n",
		strings.Repeat("x", 70) + "\r\n.\r\n",
		strings.Repeat("y", 64) + "\r\n" + strings.Repeat("z", 63) + "\r\n.\r\n",
		"line\n" + strings.Repeat("w", 66) + "\r\n.\r\n",
	})
	const lineLimit = 64
	ref := newReferenceSMTP(f, lineLimit)
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		if piece == 0 {
			piece = 1
		}
		// What the wire hands go-smtp (scanData), and what its direct
		// reader makes of the same input fed in the same pieces.
		handed, ended := scanPieces(data, int(piece), nil)
		if !ended {
			return // no end marker: both wait for more
		}
		var direct []byte
		w := &wire{srv: &Server{opts: Options{MaxLineLength: lineLimit}}, dataState: stateBeginLine, lineLen: 1}
		var directErr error
		in, rest := []byte(nil), data
		for w.dataState != stateEOF && directErr == nil {
			if len(in) == 0 || (len(in) == 1 && in[0] == '\r') {
				k := min(int(piece), len(rest))
				in = append(in, rest[:k]...)
				rest = rest[k:]
			}
			var out []byte
			i := w.scanDataTo(in, &out)
			directErr = w.checkDataLines(in[:i])
			direct = append(direct, out...)
			in = in[i:]
		}

		got, gotErr := ref.data(t, handed)
		switch {
		case errors.Is(gotErr, smtp.ErrTooLongLine) != errors.Is(directErr, smtp.ErrTooLongLine):
			t.Fatalf("go-smtp: %v, direct: %v, for %q", gotErr, directErr, handed)
		case gotErr != nil && !errors.Is(gotErr, smtp.ErrTooLongLine):
			t.Fatalf("go-smtp: %v for %q", gotErr, handed)
		case gotErr == nil && string(got) != string(direct):
			t.Fatalf("go-smtp read %q, the wire %q, from %q", got, direct, handed)
		}
	})
}

// scanPieces runs scanData over data fed in pieces and returns what it
// approves, up to the end marker, and whether it found one.
func scanPieces(data []byte, piece int, w *wire) ([]byte, bool) {
	if w == nil {
		w = &wire{dataState: stateBeginLine}
	}
	var in, handed []byte
	rest := data
	for w.dataState != stateEOF {
		if len(in) == 0 || (len(in) == 1 && in[0] == '\r') {
			if len(rest) == 0 {
				break
			}
			k := min(piece, len(rest))
			in = append(in, rest[:k]...)
			rest = rest[k:]
		}
		i := w.scanData(in)
		handed = append(handed, in[:i]...)
		in = in[i:]
	}
	return handed, w.dataState == stateEOF
}

// referenceSMTP is a plain go-smtp server (no wire) whose session reports
// what its data reader gave it.
type referenceSMTP struct {
	addr string
	got  chan refData
}

type refData struct {
	data []byte
	err  error
}

func newReferenceSMTP(tb testing.TB, lineLimit int) *referenceSMTP {
	ref := &referenceSMTP{got: make(chan refData, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &refSession{ref}, nil }))
	srv.Domain = "reference.test"
	srv.MaxLineLength = lineLimit
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ref.addr = l.Addr().String()
	go srv.Serve(l)
	tb.Cleanup(func() { srv.Close() })
	return ref
}

// data sends one transaction whose DATA is handed (ending in the end
// marker) and returns what the session's data reader read.
func (ref *referenceSMTP) data(t *testing.T, handed []byte) ([]byte, error) {
	c, err := net.Dial("tcp", ref.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	expect := func(code string) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reference server: %v", err)
			}
			if !strings.HasPrefix(line, code) {
				t.Fatalf("reference server: %q, want %s", line, code)
			}
			if len(line) < 4 || line[3] != '-' {
				return
			}
		}
	}
	expect("220")
	for _, cmd := range []struct{ line, code string }{
		{"EHLO fuzz.test\r\n", "250"}, {"MAIL FROM:<a@fuzz.test>\r\n", "250"},
		{"RCPT TO:<b@fuzz.test>\r\n", "250"}, {"DATA\r\n", "354"},
	} {
		if _, err := io.WriteString(c, cmd.line); err != nil {
			t.Fatal(err)
		}
		expect(cmd.code)
	}
	if _, err := c.Write(handed); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-ref.got:
		return d.data, d.err
	case <-time.After(time.Minute):
		t.Fatalf("the reference server never finished reading %q", handed)
		return nil, nil
	}
}

type refSession struct{ ref *referenceSMTP }

func (s *refSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *refSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *refSession) Reset()                               {}
func (s *refSession) Logout() error                        { return nil }
func (s *refSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.ref.got <- refData{b, err}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}
