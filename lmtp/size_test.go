package lmtp

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

type nullSession struct{}

func (nullSession) Mail(string, *smtp.MailOptions) error { return nil }
func (nullSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (nullSession) Data(io.Reader) error                 { return nil }
func (nullSession) Reset()                               {}
func (nullSession) Logout() error                        { return nil }

// TestGoSMTPParsesSizeAs32Bit shows why the wire takes SIZE out of MAIL
// itself (size.go): go-smtp on its own answers a declared size of 2^32 with
// "501" where RFC 1870 §6.2 wants "552". If this test fails, go-smtp has
// been fixed and rewriteMailSize can go.
func TestGoSMTPParsesSizeAs32Bit(t *testing.T) {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return nullSession{}, nil }))
	srv.Domain = testHostname
	srv.MaxMessageBytes = 1000
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, c)
	cl.expect("220 ")
	cl.cmd("EHLO client.example", "250 ")
	cl.cmd("MAIL FROM:<a@remote.example> SIZE=4294967295", "552 5.3.4 ") // fits 32 bits: compared
	cl.cmd("MAIL FROM:<a@remote.example> SIZE=4294967296", "501 5.5.4 Unable to parse SIZE")
}

// TestDeclaredSize: a declared size above the limit gets 552 5.3.4 however
// large, a malformed one 501 5.5.4, over SMTP and LMTP.
func TestDeclaredSize(t *testing.T) {
	const limit = 10000
	cases := []struct{ params, reply string }{
		{"SIZE=10000", "250 "},
		{"SIZE=0", "250 "},
		{"SIZE=000000000000000000000000010000", "250 "},
		{"size=9999 BODY=8BITMIME", "250 "},
		{"SIZE=10001", "552 5.3.4 "},
		{"SIZE=4294967295", "552 5.3.4 "},
		{"SIZE=4294967296", "552 5.3.4 "},
		{"SIZE=18446744073709551615", "552 5.3.4 "},
		{"SIZE=18446744073709551616", "552 5.3.4 "},
		{"SIZE=" + strings.Repeat("9", 900), "552 5.3.4 "},
		{"BODY=8BITMIME SIZE=99999999999999999999", "552 5.3.4 "},
		{"SIZE=1 SIZE=99999999999", "552 5.3.4 "}, // the last one counts, as in go-smtp
		{"SIZE=", "501 5.5.4 "},
		{"SIZE", "501 5.5.4 "},
		{"SIZE=abc", "501 5.5.4 "},
		{"SIZE=-1", "501 5.5.4 "},
		{"SIZE=+5", "501 5.5.4 "},
		{"SIZE=1.5", "501 5.5.4 "},
		{"SIZE=0x10", "501 5.5.4 "},
		{"SIZE=5=5", "501 5.5.4 "},
		{"SIZE=99999999999 BODY=NONSENSE", "501 5.5.4 "},
	}
	for _, lmtp := range []bool{false, true} {
		e := newEnv(t, envOptions{opts: Options{LMTP: lmtp, MaxMessageBytes: limit, MaxErrors: 100}})
		c := e.dial()
		if lmtp {
			c.cmd("LHLO client.example", "250 ")
		} else {
			c.cmd("EHLO client.example", "250 ")
		}
		for _, tc := range cases {
			c.write("MAIL FROM:<sender@remote.example> " + tc.params + "\r\n")
			lines := c.expect("")
			if got := lines[len(lines)-1]; !strings.HasPrefix(got, tc.reply) {
				t.Errorf("lmtp=%v MAIL FROM:<...> %.60s: %q, want %q", lmtp, tc.params, got, tc.reply)
			}
			if strings.HasPrefix(tc.reply, "250") {
				c.cmd("RSET", "250 ")
			}
		}
		// A path that looks like a parameter is a path: not rewritten.
		c.cmd(`MAIL FROM:<"x SIZE=99999999999"@remote.example> SIZE=100`, "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		replies := 1
		if r := c.data("Subject: s\r\n\r\nbody\r\n", replies); !strings.HasPrefix(r[0], "250 ") {
			t.Fatalf("lmtp=%v: message after a declared size: %q", lmtp, r)
		}
		rp, _, _ := splitTrace(t, e.inbox("alice@example.org")[0])
		if rp != `Return-Path: <"x SIZE=99999999999"@remote.example>` {
			t.Errorf("lmtp=%v: stored %q", lmtp, rp)
		}
		c.cmd("QUIT", "221 ")
	}
}

func TestRewriteMailSize(t *testing.T) {
	cases := []struct {
		in, out string
		size    uint64
		set     bool
	}{
		{"MAIL FROM:<a@b> SIZE=5\r\n", "MAIL FROM:<a@b> SIZE=0\r\n", 5, true},
		{"mail from:<a@b>   size=7  BODY=7BIT\n", "MAIL FROM:<a@b> SIZE=0 BODY=7BIT\n", 7, true},
		{"MAIL FROM:<> SIZE=99999999999999999999999\r\n", "MAIL FROM:<> SIZE=0\r\n", ^uint64(0), true},
		{"MAIL FROM:<a@b>SIZE=3\r\n", "MAIL FROM:<a@b> SIZE=0\r\n", 3, true},
		{"MAIL FROM:a@b SIZE=3\r\n", "MAIL FROM:a@b SIZE=0\r\n", 3, true},
		{"MAIL FROM:<@relay.example:a@b> SIZE=3\r\n", "MAIL FROM:<@relay.example:a@b> SIZE=0\r\n", 3, true},
		{`MAIL FROM:<"a\" SIZE=9"@b> SIZE=3` + "\r\n", `MAIL FROM:<"a\" SIZE=9"@b> SIZE=0` + "\r\n", 3, true},
		{"MAIL FROM:<a@b> SIZE=abc\r\n", "MAIL FROM:<a@b> SIZE=abc\r\n", 0, false},
		{"MAIL FROM:<a@b>\r\n", "MAIL FROM:<a@b>\r\n", 0, false},
		{"MAIL FROM:<a b@c> SIZE=3\r\n", "MAIL FROM:<a b@c> SIZE=3\r\n", 0, false}, // go-smtp: 501 on the path
		{"MAIL FROM:<a@b SIZE=3\r\n", "MAIL FROM:<a@b SIZE=3\r\n", 0, false},
		{"MAIL TO:<a@b> SIZE=3\r\n", "MAIL TO:<a@b> SIZE=3\r\n", 0, false},
		{"RCPT TO:<a@b> SIZE=3\r\n", "RCPT TO:<a@b> SIZE=3\r\n", 0, false},
	}
	for _, tc := range cases {
		out, d := rewriteMailSize([]byte(tc.in))
		if string(out) != tc.out || d.set != tc.set || d.size != tc.size {
			t.Errorf("rewriteMailSize(%q) = %q, %+v; want %q, {set:%v size:%d}", tc.in, out, d, tc.out, tc.set, tc.size)
		}
	}
}
