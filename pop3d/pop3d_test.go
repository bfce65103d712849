package pop3d

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/roostmail/roost/backend"
)

func TestGreetingAndCapa(t *testing.T) {
	for _, tc := range []struct {
		name    string
		withTLS bool
		want    []string
	}{
		{"plain", false, []string{"TOP", "UIDL", "USER", "SASL PLAIN", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "IMPLEMENTATION Roost"}},
		{"tls configured", true, []string{"TOP", "UIDL", "USER", "SASL PLAIN", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS", "EXPIRE NEVER", "IMPLEMENTATION Roost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{withTLS: tc.withTLS})
			c := dial(t, e.addr)
			if got := c.multiLines("CAPA"); !slices.Equal(got, tc.want) {
				t.Errorf("CAPA in AUTHORIZATION = %q, want %q", got, tc.want)
			}
			c.login()
			// RFC 2449 §5: AUTHORIZATION capabilities are listed in both states.
			if got := c.multiLines("CAPA"); !slices.Equal(got, tc.want) {
				t.Errorf("CAPA in TRANSACTION = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGreeting(t *testing.T) {
	e := newEnv(t, envConfig{})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	if g := c.line(); g != "+OK pop.example.org Roost POP3 server ready" {
		t.Errorf("greeting %q", g)
	}
}

func TestAuthorizationState(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.deliver(msg("one", "hello"))
	c := dial(t, e.addr)
	for _, cmd := range []string{"STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 0", "UIDL"} {
		c.expectErr(cmd, "log in first")
	}
	c.expectErr("PASS x", "send USER first")
	c.expectErr("USER", "USER needs a name")
	c.expectErr("FROB", "unknown command")
	c.send("")
	c.expectErr("", "empty command")
	c.expectErr("STLS", "STLS not available")
	c.expectOK("USER " + testUser)
	c.expectErr("PASS wrong", "[AUTH] ")
	// After a failed PASS, PASS alone is not enough (RFC 1939 §7).
	c.expectErr("PASS "+testPass, "send USER first")
	c.expectOK("USER " + strings.ToUpper(testUser)) // addresses are case-insensitive
	if r := c.expectOK("PASS " + testPass); r != "+OK maildrop has 1 messages ("+strconv.Itoa(len(msg("one", "hello")))+" octets)" {
		t.Errorf("PASS reply %q", r)
	}
	for _, cmd := range []string{"USER x", "PASS x", "AUTH PLAIN", "STLS", "APOP x y"} {
		c.expectErr(cmd, "command not valid in the TRANSACTION state")
	}
	c.expectErr("FROB", "unknown command")
	if r := c.expectOK("NOOP"); r != "+OK" {
		t.Errorf("NOOP reply %q", r)
	}
	c.expectOK("QUIT")
	c.expectClosed(nil)
}

func TestQuitInAuthorization(t *testing.T) {
	e := newEnv(t, envConfig{})
	c := dial(t, e.addr)
	c.expectOK("USER " + testUser)
	c.expectOK("QUIT")
	c.expectClosed(nil)
}

func TestAuthPlain(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.deliver(msg("one", "hello"))
	plain := func(authz, user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
	}
	t.Run("initial response", func(t *testing.T) {
		c := dial(t, e.addr)
		c.expectOK("AUTH PLAIN " + plain("", testUser, testPass))
		c.expectOK("STAT")
		c.expectOK("QUIT")
		e.waitEnded(1)
	})
	t.Run("continuation", func(t *testing.T) {
		c := dial(t, e.addr)
		if r := c.cmd("AUTH PLAIN"); r != "+ " {
			t.Fatalf("got %q, want continuation", r)
		}
		c.expectOK(plain(testUser, testUser, testPass))
		c.expectOK("QUIT")
		e.waitEnded(1)
	})
	t.Run("failures and errors", func(t *testing.T) {
		c := dial(t, e.addr)
		if got := c.multiLines("AUTH"); !slices.Equal(got, []string{"PLAIN"}) {
			t.Errorf("AUTH list = %q", got)
		}
		c.expectErr("AUTH CRAM-MD5", "unsupported SASL mechanism")
		if r := c.cmd("AUTH PLAIN"); r != "+ " {
			t.Fatalf("got %q, want continuation", r)
		}
		c.expectErr("*", "authentication cancelled")
		c.expectErr("AUTH PLAIN !!!", "invalid base64")
		c.expectErr("AUTH PLAIN =", "malformed PLAIN response")
		c.expectErr("AUTH PLAIN "+plain("", testUser, "wrong"), "[AUTH] authentication failed")
		c.expectErr("AUTH PLAIN "+plain("bob@example.org", testUser, testPass), "[AUTH] authentication failed")
		// A SASL response may be longer than a command, but not unbounded.
		if r := c.cmd("AUTH PLAIN"); r != "+ " {
			t.Fatalf("got %q, want continuation", r)
		}
		c.expectErr(strings.Repeat("A", 10000), "SASL response too long")
		c.expectOK("AUTH PLAIN " + plain("", testUser, testPass))
	})
}

// testMessages are stored and must come back from RETR byte for byte.
var testMessages = []struct {
	name string
	raw  []byte
}{
	{"plain", msg("plain", "Hello,", "", "a plain message.")},
	{"dots", msg("dots", ".", "..", ".leading dot", "middle . dot", "...", ". ", "end")},
	{"header only", []byte("From: bob@example.net\r\nSubject: header only\r\n")},
	{"header only no final CRLF", []byte("From: bob@example.net\r\nSubject: header only, unterminated")},
	{"empty body", []byte("From: bob@example.net\r\nSubject: empty body\r\n\r\n")},
	{"bare LF", []byte("From: bob@example.net\nSubject: bare LF\n\nline one\n.dot line\n\nlast\n")},
	{"mixed endings", []byte("From: bob@example.net\r\nSubject: mixed\r\n\r\none\ntwo\r\n\n.\nthree\r")},
	{"no final line break", []byte("From: bob@example.net\r\nSubject: unterminated\r\n\r\nlast line")},
	{"large with dots across chunks", largeMessage(700 << 10)},
}

// largeMessage has dot-led lines everywhere, including across the store's
// 256 KiB chunks and the server's 64 KiB copy buffer.
func largeMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: bob@example.net\r\nSubject: large\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, ".%d %s\r\n", i, strings.Repeat("x", i%97))
		case 1:
			b.WriteString(".\r\n")
		default:
			fmt.Fprintf(&b, "line %d\r\n", i)
		}
	}
	return b.Bytes()
}

func TestRetrByteForByte(t *testing.T) {
	e := newEnv(t, envConfig{})
	var raws [][]byte
	for _, m := range testMessages {
		raws = append(raws, m.raw)
	}
	e.deliver(raws...)
	c := dial(t, e.addr)
	c.login()

	list := c.multiLines("LIST")
	if len(list) != len(testMessages) {
		t.Fatalf("LIST has %d entries, want %d", len(list), len(testMessages))
	}
	var total int64
	for i, m := range testMessages {
		want := crlfForm(m.raw)
		if got := list[i]; got != fmt.Sprintf("%d %d", i+1, len(want)) {
			t.Errorf("%s: LIST line %q, want size %d", m.name, got, len(want))
		}
		if r := c.expectOK(fmt.Sprintf("LIST %d", i+1)); r != fmt.Sprintf("+OK %d %d", i+1, len(want)) {
			t.Errorf("%s: LIST n = %q", m.name, r)
		}
		status := c.expectOK(fmt.Sprintf("RETR %d", i+1))
		if status != fmt.Sprintf("+OK %d octets", len(want)) {
			t.Errorf("%s: RETR status %q", m.name, status)
		}
		raw, data := c.multi()
		if !bytes.Equal(data, want) {
			t.Errorf("%s: RETR sent %q\nwant %q", m.name, trunc(data), trunc(want))
		}
		if bytes.Equal(crlfForm(m.raw), m.raw) && !bytes.Equal(data, m.raw) {
			t.Errorf("%s: a CRLF message must come back exactly as delivered", m.name)
		}
		// Byte-stuffing on the wire: every line that begins with "." has
		// one more, and nothing else changes.
		if wantRaw := stuff(want); !bytes.Equal(raw, wantRaw) {
			t.Errorf("%s: wire form %q\nwant %q", m.name, trunc(raw), trunc(wantRaw))
		}
		total += int64(len(want))
	}
	if r := c.expectOK("STAT"); r != fmt.Sprintf("+OK %d %d", len(testMessages), total) {
		t.Errorf("STAT = %q, want %d %d", r, len(testMessages), total)
	}
	// The dots message on the wire, spelt out.
	c.expectOK("RETR 2")
	raw, _ := c.multi()
	if !bytes.HasSuffix(raw, []byte("\r\n..\r\n...\r\n..leading dot\r\nmiddle . dot\r\n....\r\n.. \r\nend\r\n")) {
		t.Errorf("dots message wire form %q", raw)
	}
	c.expectOK("QUIT")
}

func stuff(b []byte) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(b, []byte("\r\n")) {
		if len(l) > 0 && l[0] == '.' {
			out = append(out, '.')
		}
		out = append(out, l...)
	}
	return out
}

func trunc(b []byte) []byte {
	if len(b) > 300 {
		return append(b[:300:300], "..."...)
	}
	return b
}

func TestTop(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.deliver(
		msg("top", "one", ".two", "three"),
		[]byte("From: bob@example.net\r\nSubject: header only\r\n"),
		[]byte("From: bob@example.net\nSubject: bare\n\na\nb\nc\n"),
	)
	hdr := "From: bob@example.net\r\nTo: alice@example.org\r\nSubject: top\r\nMessage-ID: <top@example.net>\r\n\r\n"
	c := dial(t, e.addr)
	c.login()
	for _, tc := range []struct {
		cmd  string
		want string
	}{
		{"TOP 1 0", hdr},
		{"TOP 1 1", hdr + "one\r\n"},
		{"TOP 1 2", hdr + "one\r\n.two\r\n"},
		{"TOP 1 3", hdr + "one\r\n.two\r\nthree\r\n"},
		{"TOP 1 100", hdr + "one\r\n.two\r\nthree\r\n"},
		{"TOP 2 0", "From: bob@example.net\r\nSubject: header only\r\n"},
		{"TOP 2 5", "From: bob@example.net\r\nSubject: header only\r\n"},
		{"TOP 3 0", "From: bob@example.net\r\nSubject: bare\r\n\r\n"},
		{"TOP 3 2", "From: bob@example.net\r\nSubject: bare\r\n\r\na\r\nb\r\n"},
	} {
		c.expectOK(tc.cmd)
		raw, data := c.multi()
		if string(data) != tc.want {
			t.Errorf("%s: got %q, want %q", tc.cmd, data, tc.want)
		}
		if !bytes.Equal(raw, stuff(data)) {
			t.Errorf("%s: not byte-stuffed: %q", tc.cmd, raw)
		}
	}
	for _, cmd := range []string{"TOP", "TOP 1", "TOP 1 -1", "TOP 1 x", "TOP x 1", "TOP 0 1", "TOP 9 1", "TOP 1 1 1"} {
		c.expectErr(cmd, "")
	}
	c.expectOK("QUIT")
	// TOP is no retrieval: no \Seen.
	e.waitEnded(1)
	_, msgs := e.inbox()
	for _, m := range msgs {
		if m.Has(backend.FlagSeen) {
			t.Errorf("UID %d got \\Seen from TOP", m.UID)
		}
	}
}

func TestTransactionCommands(t *testing.T) {
	e := newEnv(t, envConfig{})
	m1, m2, m3 := msg("m1", "a"), msg("m2", "bb"), msg("m3", "ccc")
	uids := e.deliver(m1, m2, m3)
	mb, _ := e.inbox()
	// The unique-id as session.uidl makes it, which TestUIDLMatchesDovecot
	// checks against a real Dovecot's.
	uidl := func(uid uint32) string {
		return (&session{mbox: mb}).uidl(&message{Message: backend.Message{UID: uid}})
	}

	c := dial(t, e.addr)
	c.login()
	total := len(m1) + len(m2) + len(m3)
	if r := c.expectOK("STAT"); r != fmt.Sprintf("+OK 3 %d", total) {
		t.Errorf("STAT %q", r)
	}
	wantUIDL := []string{"1 " + uidl(uids[0]), "2 " + uidl(uids[1]), "3 " + uidl(uids[2])}
	if got := c.multiLines("UIDL"); !slices.Equal(got, wantUIDL) {
		t.Errorf("UIDL %q, want %q", got, wantUIDL)
	}
	if r := c.expectOK("UIDL 2"); r != "+OK 2 "+uidl(uids[1]) {
		t.Errorf("UIDL 2 = %q", r)
	}
	for _, cmd := range []string{"LIST 0", "LIST 4", "LIST x", "LIST -1", "LIST 1 2", "RETR", "RETR 4", "DELE", "DELE 4", "UIDL 4", "STAT 1", "RSET 1"} {
		c.expectErr(cmd, "")
	}
	if r := c.expectOK("DELE 2"); r != "+OK message 2 deleted" {
		t.Errorf("DELE reply %q", r)
	}
	c.expectErr("DELE 2", "message 2 already deleted")
	c.expectErr("RETR 2", "message 2 already deleted")
	c.expectErr("LIST 2", "message 2 already deleted")
	c.expectErr("TOP 2 0", "message 2 already deleted")
	c.expectErr("UIDL 2", "message 2 already deleted")
	if r := c.expectOK("STAT"); r != fmt.Sprintf("+OK 2 %d", len(m1)+len(m3)) {
		t.Errorf("STAT after DELE %q", r)
	}
	if got := c.multiLines("LIST"); !slices.Equal(got, []string{fmt.Sprintf("1 %d", len(m1)), fmt.Sprintf("3 %d", len(m3))}) {
		t.Errorf("LIST after DELE %q", got)
	}
	if got := c.multiLines("UIDL"); !slices.Equal(got, []string{wantUIDL[0], wantUIDL[2]}) {
		t.Errorf("UIDL after DELE %q", got)
	}
	if r := c.expectOK("RSET"); r != fmt.Sprintf("+OK maildrop has 3 messages (%d octets)", total) {
		t.Errorf("RSET %q", r)
	}
	c.expectOK("RETR 2")
	c.multi()
	c.expectOK("DELE 1")
	c.expectOK("DELE 3")
	// Until QUIT nothing is deleted.
	if _, msgs := e.inbox(); len(msgs) != 3 {
		t.Fatalf("%d messages in INBOX before QUIT, want 3", len(msgs))
	}
	if r := c.expectOK("QUIT"); r != "+OK Roost POP3 server signing off (1 messages left)" {
		t.Errorf("QUIT %q", r)
	}
	c.expectClosed(nil)

	_, msgs := e.inbox()
	if len(msgs) != 1 || msgs[0].UID != uids[1] {
		t.Fatalf("INBOX after QUIT: %+v, want only UID %d", msgs, uids[1])
	}
	if !msgs[0].Has(backend.FlagSeen) {
		t.Errorf("retrieved message has no \\Seen")
	}
	// Message numbers start again at 1; the UIDL is unchanged.
	c = dial(t, e.addr)
	c.login()
	if got := c.multiLines("UIDL"); !slices.Equal(got, []string{"1 " + uidl(uids[1])}) {
		t.Errorf("UIDL in the next session %q", got)
	}
	c.expectOK("DELE 1")
	if r := c.expectOK("QUIT"); r != "+OK Roost POP3 server signing off (maildrop empty)" {
		t.Errorf("QUIT %q", r)
	}
}

func TestKeepFlags(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprint("keep_flags=", keep), func(t *testing.T) {
			e := newEnv(t, envConfig{opts: func(o *Options) { o.KeepFlags = keep }})
			e.deliver(msg("one", "1"), msg("two", "2"))
			c := dial(t, e.addr)
			c.login()
			c.expectOK("RETR 1")
			c.multi()
			c.expectOK("QUIT")
			e.waitEnded(1)
			_, msgs := e.inbox()
			if got := msgs[0].Has(backend.FlagSeen); got == keep {
				t.Errorf("RETR'd message \\Seen = %v with keep_flags=%v", got, keep)
			}
			if msgs[1].Has(backend.FlagSeen) {
				t.Errorf("message not retrieved got \\Seen")
			}
		})
	}
}

func TestMessageListFixedForSession(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.deliver(msg("one", "1"))
	c := dial(t, e.addr)
	c.login()
	e.deliver(msg("two", "2"))
	if r := c.expectOK("STAT"); !strings.HasPrefix(r, "+OK 1 ") {
		t.Errorf("STAT during session %q: new mail must wait for the next login", r)
	}
	c.expectErr("RETR 2", "no such message")
	c.expectOK("QUIT")
	c = dial(t, e.addr)
	c.login()
	if r := c.expectOK("STAT"); !strings.HasPrefix(r, "+OK 2 ") {
		t.Errorf("STAT in the next session %q", r)
	}
}

func TestMessageExpungedByIMAPDuringSession(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.deliver(msg("one", "1"), msg("two", "2"))
	c := dial(t, e.addr)
	c.login()
	mb, msgs := e.inbox()
	if _, err := e.user().Expunge(mb.ID, []uint32{msgs[0].UID}, false); err != nil {
		t.Fatal(err)
	}
	c.expectErr("RETR 1", "message was removed by another session")
	c.expectErr("TOP 1 0", "message was removed by another session")
	c.expectOK("RETR 2")
	c.multi()
	c.expectOK("DELE 1") // already gone: deleting it again is harmless
	c.expectOK("QUIT")
	e.waitEnded(1)
	if _, msgs := e.inbox(); len(msgs) != 1 {
		t.Errorf("%d messages left, want 1", len(msgs))
	}
}

func TestPipelining(t *testing.T) {
	e := newEnv(t, envConfig{})
	m1, m2 := msg("one", ".1"), msg("two", "2")
	e.deliver(m1, m2)
	c := dial(t, e.addr)
	// RFC 2449 §6.6: the whole session in one write.
	c.send("CAPA\r\nUSER " + testUser + "\r\nPASS " + testPass + "\r\nSTAT\r\nRETR 1\r\nLIST\r\nRETR 2\r\nDELE 1\r\nNOOP\r\nQUIT")
	c.multi()
	c.expectOK("")
	c.expectOK("")
	c.expectOK("")
	c.expectOK("")
	if _, d := c.multi(); !bytes.Equal(d, m1) {
		t.Errorf("RETR 1 = %q", d)
	}
	c.expectOK("")
	c.multi()
	c.expectOK("")
	if _, d := c.multi(); !bytes.Equal(d, m2) {
		t.Errorf("RETR 2 = %q", d)
	}
	c.expectOK("")
	c.expectOK("")
	c.expectOK("")
	c.expectClosed(nil)
	e.waitEnded(1)
	if _, msgs := e.inbox(); len(msgs) != 1 {
		t.Errorf("%d messages left, want 1", len(msgs))
	}
}
