package imapd

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/roostmail/roost/internal/mutf7"
)

// fuzzSession is a session over an in-memory input, selected in a mailbox
// of 20 messages, whose output goes nowhere.
func fuzzSession(t *testing.T, input []byte) (*session, func()) {
	a, b := net.Pipe()
	go io.Copy(io.Discard, b)
	srv := &Server{opts: Options{MaxLineLength: 4096, AppendLimit: 1 << 16, MaxBadCommands: 20}, log: slog.New(slog.DiscardHandler)}
	c := &conn{srv: srv, log: srv.log, raw: a, transport: a, sessCancel: func() {}}
	c.out.c, c.out.w = c, a
	c.in = newInbuf(bytes.NewReader(input))
	c.in.maxDiscard = srv.drainLimit()
	s := newSession(c)
	s.state = stateSelected
	s.sel = &selected{ghosts: map[uint32]bool{}, own: map[uint32]uint64{}}
	for u := uint32(1); u <= 20; u++ {
		s.sel.uids = append(s.sel.uids, 2*u)
	}
	return s, func() { a.Close(); b.Close() }
}

// FuzzCommandParser feeds arbitrary command lines (with literals) to the
// parser's argument readers: sequence sets, search keys, fetch attributes,
// literals, mailbox names in modified UTF-7 and UTF-8, flag lists, STATUS
// items, SELECT parameters, NOTIFY's event groups (kind&0x20). Properties:
// no panic; every reader stops
// within the command's budget (max_line_length) and what is left of a
// command is skipped without reading more than the command holds; a
// sequence set, once written out, reads back the same; modified UTF-7
// round-trips every valid UTF-8 name; what is read and dropped of refused
// literals stays within the drain limit; a short LIST pattern matches as
// the plain recursive reading of RFC 9051 §6.3.9 does (referenceMatch).
func FuzzCommandParser(f *testing.F) {
	seeds := []string{
		"1:*,5,7:3 (UID FLAGS BODY.PEEK[1.2.MIME] BINARY[2]<0.10> BODY[HEADER.FIELDS (From To)]<5.6>)",
		"$ (ENVELOPE BODYSTRUCTURE RFC822.SIZE MODSEQ) (CHANGEDSINCE 5 VANISHED)",
		"RETURN (MIN MAX COUNT SAVE PARTIAL -1:-10) CHARSET UTF-8 OR (FROM \"a\" TO b) NOT UID 1:5 SINCE 1-Jan-2020 MODSEQ 7",
		"ALL NEW OLD RECENT KEYWORD $x UNKEYWORD y HEADER Subject {3+}\r\nabc LARGER 10 SMALLER 5000",
		"\"Entw&APw-rfe\" (MESSAGES UNSEEN HIGHESTMODSEQ SIZE)",
		"INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1,3:5 41,43:45)))",
		"{5}\r\nhello (\\Seen $Forwarded \\Draft)",
		"~{4}\r\n\x00\x01\x02\x03 rest",
		"R&D (CONDSTORE)",
		"((((((((((ALL))))))))))",
		"\"unterminated",
		"{99999999999999999999+}\r\n",
		"4294967296:1",
	}
	for i, s := range seeds {
		f.Add(byte(i), []byte(s))
	}
	for _, s := range []string{
		`(SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) MessageExpunge FlagChange)) (PERSONAL (MailboxName))`,
		`(SELECTED-DELAYED (MessageNew MessageExpunge)) (SUBTREE (INBOX "a b" {3+}` + "\r\nx&y" + `) (MessageNew)) (MAILBOXES x NONE)`,
		`(INBOXES (AnnotationChange XFoo)) (SUBSCRIBED (SubscriptionChange MailboxMetadataChange ServerMetadataChange))`,
		`(SELECTED (MessageNew (((( MessageExpunge)) (PERSONAL ()`,
	} {
		f.Add(byte(0x20), []byte(s))
	}
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		input := append(append([]byte(nil), data...), "\r\n"...)
		s, done := fuzzSession(t, input)
		defer done()
		c := s.c
		line, err := c.in.readLine(nil, s.srv.opts.MaxLineLength)
		p := &parser{c: c, line: line, used: len(line) + 2, limit: s.srv.opts.MaxLineLength, utf8: kind&0x80 != 0, lit: parseLitHeader(line)}
		if err == errLineTooLong {
			p.setTooLong()
		} else if err != nil {
			return
		}
		var perr error
		switch {
		case kind&0x20 != 0:
			g := groupParse{n: &notifyState{}}
			for perr = g.group(p); perr == nil && p.consume(' '); {
				perr = g.group(p)
			}
		case kind%8 == 0:
			var set numSet
			set, perr = p.seqSet()
			if perr == nil && !set.saved {
				// Round trip: written out and read again, the same set.
				var out []byte
				for i, r := range set.ranges {
					if i > 0 {
						out = append(out, ',')
					}
					out = appendSeq(out, r.start)
					if r.stop != r.start {
						out = append(out, ':')
						out = appendSeq(out, r.stop)
					}
				}
				q := &parser{c: c, line: out, limit: len(out) + 2}
				again, err := q.seqSet()
				if err != nil || len(again.ranges) != len(set.ranges) {
					t.Fatalf("%q read back from %q: %v %v", out, line, again, err)
				}
				for i := range again.ranges {
					if again.ranges[i] != set.ranges[i] {
						t.Fatalf("%q read back as %v, was %v", out, again.ranges, set.ranges)
					}
				}
			}
		case kind%8 == 1:
			var o searchOpts
			if p.peek() == 'R' {
				perr = p.searchReturn(&o)
				if perr == nil {
					perr = p.sp()
				}
			}
			if perr == nil {
				_, perr = s.searchProgram(p, &o)
			}
		case kind%8 == 2:
			_, perr = p.fetchArgs(kind&0x40 != 0)
		case kind%8 == 3:
			var name string
			name, perr = p.mailbox()
			if perr == nil && utf8.ValidString(name) {
				if d, err := mutf7.Decode(mutf7.Encode(name)); err != nil || d != name {
					t.Fatalf("modified UTF-7 round trip of %q: %q %v", name, d, err)
				}
			}
		case kind%8 == 4:
			_, perr = p.flagList(true)
		case kind%8 == 5:
			_, perr = p.statusItems()
		case kind%8 == 6:
			_, perr = p.selectParams()
		case kind%8 == 7:
			var pat string
			pat, perr = p.listMailbox()
			if perr == nil && len(pat) <= 12 {
				m := newListMatcher(pat, '/')
				plain := strings.NewReplacer("*", "", "%", "").Replace(pat)
				for _, name := range []string{"", "a", "a/b", "ab/c", "INBOX", "b/a/", plain, plain + "/x", "x" + plain} {
					if got, want := m.match(name), referenceMatch(pat, name); got != want {
						t.Fatalf("LIST pattern %q matches %q: %v, want %v", pat, name, got, want)
					}
				}
			}
		}
		_ = perr
		if p.used > p.limit+2 {
			t.Fatalf("the command used %d octets, limit %d", p.used, p.limit)
		}
		if err := p.skipRest(); err != nil && !isStatus(err) && err != errCloseConn && err != errDrainTooLarge && err != errLineFlood && err != io.EOF && err != io.ErrUnexpectedEOF {
			t.Fatalf("skipRest: %v", err)
		}
		if p.drained > s.srv.drainLimit() {
			t.Fatalf("drained %d octets, limit %d", p.drained, s.srv.drainLimit())
		}
		if len(c.out.b) > 4096 {
			t.Fatalf("%d octets of output for one command", len(c.out.b))
		}
	})
}

func appendSeq(b []byte, n uint32) []byte {
	if n == 0 {
		return append(b, '*')
	}
	return appendNum(b, uint64(n))
}

// FuzzInflater: the COMPRESS decoder never panics or loops on garbage, and
// its output is bounded by what deflate can expand (258 octets per bit).
func FuzzInflater(f *testing.F) {
	f.Add([]byte{0x03, 0x00})
	f.Add([]byte{0x01, 0x05, 0x00, 0xfa, 0xff, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _ := io.ReadAll(io.LimitReader(newInflater(newInbuf(bytes.NewReader(data))), 1<<22))
		if len(out) > 258*8*len(data)+64 {
			t.Fatalf("%d octets out of %d in", len(out), len(data))
		}
	})
}
