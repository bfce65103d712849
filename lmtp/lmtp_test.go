package lmtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/backend"
)

func unfold(s string) string { return strings.ReplaceAll(s, "\r\n\t", " ") }

func TestSMTPDelivery(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	lines := c.cmd("EHLO client.example", "250 ")
	for _, kw := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE " + itoa(e.srv.maxSize), "SMTPUTF8", "CHUNKING"} {
		if !hasKeyword(lines, kw) {
			t.Errorf("EHLO reply lacks %s: %q", kw, lines)
		}
	}
	if hasKeyword(lines, "STARTTLS") {
		t.Errorf("STARTTLS offered without a TLS config: %q", lines)
	}

	// One recipient, with case, a +tag subaddress and declared size.
	msg := sampleMessage("hello")
	c.cmd("MAIL FROM:<sender@remote.example> SIZE=500 BODY=8BITMIME", "250 ")
	c.cmd("RCPT TO:<Alice+news@EXAMPLE.org>", "250 ")
	reply := c.data(msg, 1)
	if !strings.HasPrefix(reply[0], "250 2.0.0 Ok: queued as ") {
		t.Fatalf("DATA reply %q", reply)
	}
	queueID := strings.TrimPrefix(reply[0], "250 2.0.0 Ok: queued as ")

	// Two recipients, one through an alias, in the same session.
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<postmaster@example.org>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.data(sampleMessage("second"), 1)

	// CHUNKING (RFC 3030): no dot-stuffing, any chunk boundaries.
	third := sampleMessage("third")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.write("BDAT 101\r\n" + third[:101])
	c.expect("250 ")
	c.write("BDAT " + itoa(int64(len(third)-101)) + " LAST\r\n" + third[101:])
	c.expect("250 2.0.0 Ok: queued as ")
	c.cmd("QUIT", "221 ")

	alice := e.inbox("alice@example.org")
	if len(alice) != 3 {
		t.Fatalf("alice has %d messages, want 3", len(alice))
	}
	if _, _, rest := splitTrace(t, alice[2]); string(rest) != third {
		t.Errorf("BDAT message differs: %q", rest)
	}
	rp, received, rest := splitTrace(t, alice[0])
	if !bytes.Equal(rest, []byte(msg)) {
		t.Errorf("stored message differs from what was sent:\n got %q\nwant %q", rest, msg)
	}
	if rp != "Return-Path: <sender@remote.example>" {
		t.Errorf("Return-Path = %q", rp)
	}
	for _, want := range []string{
		"Received: from client.example ([127.0.0.1]) by " + testHostname + " with ESMTP id " + queueID,
		" for <alice+news@example.org>; ",
	} {
		if !strings.Contains(unfold(received), want) {
			t.Errorf("Received header %q lacks %q", received, want)
		}
	}
	if _, err := time.Parse(time.RFC1123Z, received[strings.LastIndex(received, "\t")+1:]); err != nil {
		t.Errorf("Received date: %v", err)
	}
	_, received2, rest2 := splitTrace(t, alice[1])
	if string(rest2) != sampleMessage("second") {
		t.Errorf("second message differs: %q", rest2)
	}
	if strings.Contains(received2, " for <") {
		t.Errorf("Received names one recipient of several: %q", received2)
	}
	if bob := e.inbox("bob@example.org"); len(bob) != 1 {
		t.Errorf("bob has %d messages, want 1", len(bob))
	}
}

func TestLMTPDelivery(t *testing.T) {
	for _, unix := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "unix"}[unix]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{opts: Options{LMTP: true}, unix: unix})
			c := e.dial()
			c.cmd("EHLO client.example", "500 ") // LMTP wants LHLO (RFC 2033 §4.1)
			lines := c.cmd("LHLO mta.example", "250 ")
			for _, kw := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE " + itoa(e.srv.maxSize), "SMTPUTF8", "CHUNKING"} {
				if !hasKeyword(lines, kw) {
					t.Errorf("LHLO reply lacks %s: %q", kw, lines)
				}
			}
			msg := sampleMessage("lmtp " + name)
			c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
			c.cmd("RCPT TO:<alice@example.org>", "250 ")
			c.cmd("RCPT TO:<bob@example.org>", "250 ")
			replies := c.data(msg, 2)
			for i, who := range []string{"alice", "bob"} {
				if want := "250 2.0.0 <" + who + "@example.org> Ok: queued as "; !strings.HasPrefix(replies[i], want) {
					t.Errorf("reply %d = %q, want %q...", i, replies[i], want)
				}
			}
			// BDAT over LMTP: one status per recipient after the LAST chunk.
			c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
			c.cmd("RCPT TO:<alice@example.org>", "250 ")
			c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1 ")
			c.write("BDAT " + itoa(int64(len(msg))) + " LAST\r\n" + msg)
			c.expect("250 2.0.0 <alice@example.org> ")
			c.cmd("QUIT", "221 ")
			if n := e.count("alice@example.org"); n != 2 {
				t.Errorf("alice has %d messages, want 2", n)
			}
			for _, who := range []string{"alice@example.org", "bob@example.org"} {
				got := e.inbox(who)[:1]
				_, received, rest := splitTrace(t, got[0])
				if !bytes.Equal(rest, []byte(msg)) {
					t.Errorf("%s: stored message differs:\n got %q\nwant %q", who, rest, msg)
				}
				from := "([127.0.0.1])"
				if unix {
					from = "(local)"
				}
				if want := "from mta.example " + from + " by " + testHostname + " with LMTP id "; !strings.Contains(unfold(received), want) {
					t.Errorf("Received %q lacks %q", received, want)
				}
			}
		})
	}
}

func TestLMTPPerRecipientStatus(t *testing.T) {
	e := newEnv(t, envOptions{opts: Options{LMTP: true}})
	ctx := context.Background()
	// carol is full already: refused at RCPT time.
	carol, err := e.be.ResolveRecipient(ctx, "carol@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if errs := e.be.Deliver(ctx, []byte("Subject: filler\r\n\r\nfiller filler filler\r\n"), []backend.Recipient{carol}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	must(t, e.be.UpdateAccount(ctx, "carol@example.org", 10, false))
	// bob has room for a small message, not for this one: refused after DATA.
	must(t, e.be.UpdateAccount(ctx, "bob@example.org", 200, false))
	// dave is disabled, his mail refused.
	must(t, e.be.SetDisabled(ctx, "dave@example.net", true, true))

	c := e.dial()
	c.cmd("LHLO mta.example", "250 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.cmd("RCPT TO:<carol@example.org>", "452 4.2.2 ")
	c.cmd("RCPT TO:<dave@example.net>", "550 5.2.1 ")
	c.cmd("RCPT TO:<ALICE+dup@example.org>", "250 ")
	msg := sampleMessage("mixed") + strings.Repeat("padding line\r\n", 20)
	replies := c.data(msg, 3)
	want := []string{"250 2.0.0 <alice@example.org> ", "452 4.2.2 <bob@example.org> ", "250 2.0.0 <ALICE+dup@example.org> "}
	for i := range want {
		if !strings.HasPrefix(replies[i], want[i]) {
			t.Errorf("status %d = %q, want %q...", i, replies[i], want[i])
		}
	}
	c.cmd("QUIT", "221 ")
	// alice was named twice (two addresses, one account): one copy.
	if n := e.count("alice@example.org"); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
	if n := e.count("bob@example.org"); n != 0 {
		t.Errorf("bob has %d messages, want 0", n)
	}
}

// TestSMTPMixedResults: SMTP has one reply per message; over-quota at
// DATA time for one of two recipients is reported (the sender learns of
// it), while the other recipient has the message.
func TestSMTPMixedResults(t *testing.T) {
	e := newEnv(t, envOptions{opts: Options{OverQuotaPermanent: true}})
	must(t, e.be.UpdateAccount(context.Background(), "bob@example.org", 200, false))
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	reply := c.data(sampleMessage("mixed")+strings.Repeat("padding line\r\n", 20), 1)
	if !strings.HasPrefix(reply[0], "552 5.2.2 ") {
		t.Errorf("reply %q, want 552 5.2.2 (OverQuotaPermanent)", reply)
	}
	if e.count("alice@example.org") != 1 || e.count("bob@example.org") != 0 {
		t.Errorf("alice %d, bob %d messages; want 1, 0", e.count("alice@example.org"), e.count("bob@example.org"))
	}
}

func TestSMTPReplyFolding(t *testing.T) {
	tmp := errors.New("disk on fire")
	over := fmt.Errorf("%w: x", backend.ErrOverQuota)
	for _, tc := range []struct {
		results []error
		want    int
	}{
		{[]error{nil, nil}, 250},
		{[]error{nil, over}, 452},
		{[]error{over, tmp}, 452},
		{[]error{nil, tmp}, 451},
		{[]error{backend.ErrTooBig}, 552},
	} {
		got := (&Server{}).smtpReply(tc.results, "Q")
		if got.Code != tc.want {
			t.Errorf("%v: %d, want %d", tc.results, got.Code, tc.want)
		}
		if strings.Contains(got.Message, "fire") {
			t.Errorf("internal error text in reply %q", got.Message)
		}
	}
}

func TestWithProtocol(t *testing.T) {
	for _, tc := range []struct {
		verb            string
		lmtp, tls, utf8 bool
		want            string
	}{
		{"HELO", false, false, false, "SMTP"},
		{"EHLO", false, false, false, "ESMTP"},
		{"EHLO", false, true, false, "ESMTPS"},
		{"EHLO", false, false, true, "UTF8SMTP"},
		{"EHLO", false, true, true, "UTF8SMTPS"},
		{"LHLO", true, false, false, "LMTP"},
		{"LHLO", true, true, false, "LMTPS"},
		{"LHLO", true, false, true, "UTF8LMTP"},
	} {
		if got := withProtocol(tc.verb, tc.lmtp, tc.tls, tc.utf8); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc, got, tc.want)
		}
	}
}

func TestRecipientChecks(t *testing.T) {
	e := newEnv(t, envOptions{})
	must(t, e.be.SetDisabled(context.Background(), "dave@example.net", true, true))
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "502 5.5.1 ") // no MAIL yet
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	for _, tc := range []struct{ rcpt, want string }{
		{"someone@elsewhere.net", "550 5.7.1 "}, // never an open relay
		{"alice@example.org.evil.net", "550 5.7.1 "},
		{"nobody@example.org", "550 5.1.1 "},
		{"alice@example,org", "501 5.1.3 "},
		{"dave@example.net", "550 5.2.1 "},
		{"ALICE@Example.ORG", "250 "},
		{"alice+tag@example.org", "250 "},
		{"postmaster@example.org", "250 "},
	} {
		c.cmd("RCPT TO:<"+tc.rcpt+">", tc.want)
	}
	c.cmd("MAIL FROM:<again@remote.example>", "503 5.5.1 ") // nested MAIL
	c.cmd("RSET", "250 ")
	c.cmd("QUIT", "221 ")
}

// sizedMessage returns a message of exactly n bytes.
func sizedMessage(n int) string {
	const h = "Subject: size\r\n\r\n"
	var b strings.Builder
	b.WriteString(h)
	for rem := n - len(h); rem > 0; {
		l := min(rem, 100)
		if rem-l == 1 {
			l = 50
		}
		b.WriteString(strings.Repeat("x", l-2) + "\r\n")
		rem -= l
	}
	return b.String()
}

func TestSizeLimits(t *testing.T) {
	const limit = 10000
	e := newEnv(t, envOptions{opts: Options{MaxMessageBytes: limit}})
	c := e.dial()
	lines := c.cmd("EHLO client.example", "250 ")
	if !hasKeyword(lines, "SIZE 10000") {
		t.Errorf("EHLO does not advertise SIZE 10000: %q", lines)
	}
	// Declared up front (RFC 1870).
	c.cmd("MAIL FROM:<sender@remote.example> SIZE=10001", "552 5.3.4 ")
	// Exactly the limit is fine.
	c.cmd("MAIL FROM:<sender@remote.example> SIZE=10000", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	if r := c.data(sizedMessage(limit), 1); !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("message of exactly the limit: %q", r)
	}
	// Not declared: refused while reading, and the session stays in step.
	for _, n := range []int{limit + 1, 300000} {
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		if r := c.data(sizedMessage(n), 1); !strings.HasPrefix(r[0], "552 5.3.4 ") {
			t.Errorf("message of %d bytes: %q, want 552 5.3.4", n, r)
		}
		c.cmd("NOOP", "250 ")
	}
	// The same with BDAT (RFC 3030).
	big := sizedMessage(limit + 1)
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.write("BDAT 6000\r\n" + big[:6000])
	c.expect("250 ")
	c.write("BDAT " + itoa(int64(len(big)-6000)) + " LAST\r\n" + big[6000:])
	c.expect("552 5.3.4 ")
	c.cmd("NOOP", "250 ")
	c.cmd("QUIT", "221 ")

	if n := e.count("alice@example.org"); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
	_, _, rest := splitTrace(t, e.inbox("alice@example.org")[0])
	if len(rest) != limit {
		t.Errorf("stored message is %d bytes plus trace, want %d", len(rest), limit)
	}
}

func TestMaxMessageBytesFitsBackend(t *testing.T) {
	e := newEnv(t, envOptions{beMax: 1 << 20, opts: Options{MaxMessageBytes: 1 << 20}})
	if want := int64(1<<20 - TraceReserve); e.srv.maxSize != want {
		t.Errorf("limit %d, want %d (backend limit less TraceReserve)", e.srv.maxSize, want)
	}
	c := e.dial()
	// The largest message accepted still fits with the longest trace: a
	// long HELO name and a reverse-path that needs quoting.
	c.cmd("EHLO "+strings.Repeat("h", 900), "250 ")
	from := `"` + strings.Repeat(`\"`, 100) + `x"@` + strings.Repeat("d", 140) + ".example"
	c.cmd("MAIL FROM:<"+from+">", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	if r := c.data(sizedMessage(int(e.srv.maxSize)), 1); !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("largest message: %q", r)
	}
}

// TestBareLineEndings: bare CR or LF anywhere in the data is refused with
// 550 5.6.0, over SMTP DATA, LMTP DATA and BDAT, and the session stays in
// step. go-smtp itself passes them through (and drops a CR after a leading
// dot), which is why the wire checks the raw bytes.
func TestBareLineEndings(t *testing.T) {
	payloads := []struct{ name, data string }{
		{"LF in body", "Subject: x\r\n\r\nline one\nline two\r\n"},
		{"CR in body", "Subject: x\r\n\r\nline one\rline two\r\n"},
		{"LF in header", "Subject: x\nX-Evil: y\r\n\r\nbody\r\n"},
		{"LF at line start", "Subject: x\r\n\r\nbody\r\n\nmore\r\n"},
		{"CR before CRLF", "Subject: x\r\n\r\nbody\r\r\n"},
		{"dot CR", "Subject: x\r\n\r\n.\rhidden by go-smtp\r\n"},
	}
	for _, lmtp := range []bool{false, true} {
		e := newEnv(t, envOptions{opts: Options{LMTP: lmtp, MaxErrors: 100}})
		c := e.dial()
		hello, replies := "EHLO client.example", 1
		if lmtp {
			hello, replies = "LHLO client.example", 2
		}
		c.cmd(hello, "250 ")
		for _, p := range payloads {
			c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
			c.cmd("RCPT TO:<alice@example.org>", "250 ")
			c.cmd("RCPT TO:<bob@example.org>", "250 ")
			c.cmd("DATA", "354 ")
			c.write(p.data + ".\r\n")
			for range replies {
				c.expect("550 5.6.0 ")
			}
			c.cmd("NOOP", "250 ")
		}
		// BDAT.
		chunk := "Subject: x\n\nbody\r\n"
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		c.write("BDAT " + itoa(int64(len(chunk))) + " LAST\r\n" + chunk)
		c.expect("550 5.6.0 ")
		// A clean message right after goes through.
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		c.data(sampleMessage("clean"), 1)
		c.cmd("QUIT", "221 ")
		if n := e.count("alice@example.org"); n != 1 {
			t.Errorf("lmtp=%v: alice has %d messages, want only the clean one", lmtp, n)
		}
		if n := e.count("bob@example.org"); n != 0 {
			t.Errorf("lmtp=%v: bob has %d messages, want 0", lmtp, n)
		}
	}
}

// TestSmuggling: an end of data that is not CRLF "." CRLF followed by a
// second transaction (SMTP smuggling) must not start that transaction: the
// whole thing is one message, refused for its bare line ends, and the next
// reply the client gets is for its next real command.
func TestSmuggling(t *testing.T) {
	const smuggled = "MAIL FROM:<ceo@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n" +
		"From: ceo@example.org\r\nSubject: smuggled\r\n\r\nwire the money\r\n"
	ends := []string{"\n.\n", "\r.\r\n", "\n.\r\n", "\r\n.\n", "\r\n.\r\r\n", "\r\n.\r"}
	for _, lmtp := range []bool{false, true} {
		e := newEnv(t, envOptions{opts: Options{LMTP: lmtp}})
		for _, end := range ends {
			t.Run(fmt.Sprintf("%q/lmtp=%v", end, lmtp), func(t *testing.T) {
				c := e.dial()
				c.cmd(map[bool]string{false: "EHLO", true: "LHLO"}[lmtp]+" attacker.example", "250 ")
				c.cmd("MAIL FROM:<attacker@attacker.example>", "250 ")
				c.cmd("RCPT TO:<alice@example.org>", "250 ")
				c.cmd("DATA", "354 ")
				c.write("Subject: innocent\r\n\r\nhello" + end + smuggled + ".\r\n" + "NOOP\r\n")
				c.expect("550 5.6.0 ")
				c.expect("250 2.0.0 ") // NOOP: no reply to a smuggled command came first
				c.cmd("QUIT", "221 ")
				if n := e.count("bob@example.org"); n != 0 {
					t.Errorf("smuggled message delivered to bob")
				}
				if n := e.count("alice@example.org"); n != 0 {
					t.Errorf("alice has %d messages, want 0", n)
				}
			})
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, envOptions{opts: Options{IdleTimeout: 100 * time.Millisecond}})
	c := e.dial()
	// The client says nothing.
	c.expect("421 4.4.2 ")
	c.expectClosed()
}

func TestStalledClientDropped(t *testing.T) {
	for _, bdat := range []bool{false, true} {
		t.Run(map[bool]string{false: "DATA", true: "BDAT"}[bdat], func(t *testing.T) {
			e := newEnv(t, envOptions{opts: Options{DataTimeout: 100 * time.Millisecond}})
			c := e.dial()
			c.cmd("EHLO client.example", "250 ")
			c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
			c.cmd("RCPT TO:<alice@example.org>", "250 ")
			if bdat {
				c.write("BDAT 1000 LAST\r\nSubject: stalled\r\n\r\npartial")
			} else {
				c.cmd("DATA", "354 ")
				c.write("Subject: stalled\r\n\r\npartial")
			}
			// ... and then nothing more.
			c.expect("421 4.4.2 ")
			c.expectClosed()
			if n := e.count("alice@example.org"); n != 0 {
				t.Errorf("%d messages stored from a stalled transfer", n)
			}
			e.srv.Shutdown(context.Background()) // waits for the session's log line
			if !strings.Contains(e.logs.String(), `reason="data timeout"`) {
				t.Errorf("log does not record the data timeout:\n%s", e.logs.String())
			}
		})
	}
}

// pacedWrite writes data in chunks, one per tick, so that the whole
// transfer takes at least chunks*tick however fast the machine is: the
// pacing is what guarantees the duration, not a measurement. stop ends it
// early.
func pacedWrite(c net.Conn, data []byte, chunks int, tick time.Duration, stop <-chan struct{}) error {
	tk := time.NewTicker(tick)
	defer tk.Stop()
	size := (len(data) + chunks - 1) / chunks
	for len(data) > 0 {
		select {
		case <-tk.C:
		case <-stop:
			return nil
		}
		n := min(size, len(data))
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// TestSlowLargeMessage sends a 40 MiB message in 250 paced writes over at
// least 2.5 s with a DataTimeout of 2 s: it must arrive, since the deadline
// is per read. (go-smtp's ReadTimeout, one deadline for the whole DATA,
// would cut it.) The stored copy is compared byte for byte.
func TestSlowLargeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("40 MiB transfer")
	}
	const size = 40 << 20
	e := newEnv(t, envOptions{beMax: size + 1<<20, opts: Options{
		LMTP:        true,
		DataTimeout: 2 * time.Second,
	}})
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString("From: big@remote.example\r\nSubject: 40 MiB\r\n\r\n")
	line := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/==\r\n")
	for i := 0; b.Len() < size-len(line)-100; i++ {
		line[0] = "0123456789"[i%10]
		b.Write(line)
	}
	b.WriteString(".leading dot\r\nend\r\n")
	msg := b.Bytes()

	c := e.dial()
	c.cmd("LHLO client.example", "250 ")
	c.cmd("MAIL FROM:<big@remote.example> SIZE="+itoa(int64(len(msg))), "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	start := time.Now()
	wire := append([]byte(dotStuff(string(msg))), ".\r\n"...)
	if err := pacedWrite(c.c, wire, 250, 10*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	c.expect("250 2.0.0 <alice@example.org> ")
	t.Logf("40 MiB in %v with DataTimeout %v", time.Since(start).Round(time.Millisecond), 2*time.Second)
	c.cmd("QUIT", "221 ")

	stored := e.inbox("alice@example.org")
	if len(stored) != 1 {
		t.Fatalf("%d messages stored", len(stored))
	}
	if _, _, rest := splitTrace(t, stored[0]); !bytes.Equal(rest, msg) {
		t.Errorf("40 MiB message differs after storage (%d bytes, want %d)", len(rest), len(msg))
	}
}

// TestMaxDataDuration: a client that trickles a byte now and then keeps
// the per-read deadline happy, so the hard cap on a whole message ends it.
func TestMaxDataDuration(t *testing.T) {
	e := newEnv(t, envOptions{opts: Options{MaxDataDuration: 300 * time.Millisecond}})
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	got := make(chan []string, 1)
	stop := make(chan struct{})
	go func() {
		lines, _ := c.reply()
		close(stop)
		got <- lines
	}()
	// 10000 ticks of 5 ms: far longer than the cap, which ends it first.
	trickle := bytes.Repeat([]byte("x"), 10000)
	pacedWrite(c.c, trickle, len(trickle), 5*time.Millisecond, stop)
	<-stop
	lines := <-got
	// (A byte the client sends after the server closed draws a reset, but
	// the reply already received stays readable.)
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "421 4.4.2 ") {
		t.Errorf("reply %q, want 421 4.4.2", lines)
	}
	if n := e.count("alice@example.org"); n != 0 {
		t.Errorf("%d messages stored", n)
	}
	e.srv.Shutdown(context.Background()) // flushes the log line
	if !strings.Contains(e.logs.String(), `reason="data took too long"`) {
		t.Errorf("log does not record the cap:\n%s", e.logs.String())
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	const accounts, messages = 20, 200
	var addrs []string
	for i := range accounts {
		addrs = append(addrs, fmt.Sprintf("user%02d@example.org", i))
	}
	for _, lmtp := range []bool{false, true} {
		t.Run(map[bool]string{false: "smtp", true: "lmtp"}[lmtp], func(t *testing.T) {
			e := newEnv(t, envOptions{accounts: addrs, opts: Options{LMTP: lmtp, MaxConnsPerIP: -1}})
			start := make(chan struct{})
			errs := make(chan error, messages)
			var wg sync.WaitGroup
			for i := range messages {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					errs <- sendOne(e, lmtp, addrs[i%accounts], fmt.Sprintf("Subject: message %d\r\n\r\nbody %d\r\n", i, i))
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			seen := make(map[string]bool)
			for _, a := range addrs {
				if n := e.count(a); n != messages/accounts {
					t.Errorf("%s has %d messages, want %d", a, n, messages/accounts)
				}
				for _, m := range e.inbox(a) {
					_, _, rest := splitTrace(t, m)
					seen[string(rest)] = true
				}
			}
			if len(seen) != messages {
				t.Errorf("%d distinct messages stored, want %d", len(seen), messages)
			}
		})
	}
}

// sendOne delivers a message with go-smtp's client (usable off the test
// goroutine: it returns errors).
func sendOne(e *env, lmtp bool, to, msg string) error {
	conn, err := net.Dial(e.net, e.addr)
	if err != nil {
		return err
	}
	var c *smtp.Client
	if lmtp {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if err := c.Mail("sender@remote.example", nil); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		return fmt.Errorf("rcpt: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of data: %w", err)
	}
	return c.Quit()
}

func TestConnectionLimits(t *testing.T) {
	t.Run("overall", func(t *testing.T) {
		e := newEnv(t, envOptions{opts: Options{MaxConns: 2}})
		e.dial()
		e.dial()
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		cl := newClient(t, c)
		cl.expect("421 4.7.0 ")
		cl.expectClosed()
	})
	t.Run("per IP", func(t *testing.T) {
		e := newEnv(t, envOptions{opts: Options{MaxConnsPerIP: 1}})
		e.dial()
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		cl := newClient(t, c)
		cl.expect("421 4.7.0 ")
		cl.expectClosed()
		// Another loopback address is another IP.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		c2, err := d.Dial("tcp", e.addr)
		if err != nil {
			t.Skipf("cannot dial from 127.0.0.2: %v", err)
		}
		newClient(t, c2).expect("220 ")
	})
	t.Run("unix socket has no per-IP limit", func(t *testing.T) {
		e := newEnv(t, envOptions{unix: true, opts: Options{LMTP: true, MaxConnsPerIP: 1, MaxConns: 2}})
		e.dial()
		e.dial()
		c, err := net.Dial("unix", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		newClient(t, c).expect("421 4.7.0 ")
	})
}

func TestMaxRecipients(t *testing.T) {
	e := newEnv(t, envOptions{opts: Options{MaxRecipients: 3}})
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	for _, to := range []string{"alice", "bob", "carol"} {
		c.cmd("RCPT TO:<"+to+"@example.org>", "250 ")
	}
	c.cmd("RCPT TO:<dave@example.net>", "452 4.5.3 ") // RFC 5321 §4.5.3.1.10
	c.data(sampleMessage("three"), 1)
	for _, to := range []string{"alice@example.org", "bob@example.org", "carol@example.org"} {
		if n := e.count(to); n != 1 {
			t.Errorf("%s has %d messages", to, n)
		}
	}
	if n := e.count("dave@example.net"); n != 0 {
		t.Errorf("dave got the message")
	}
}

func TestMaxLineLength(t *testing.T) {
	if _, err := New(Options{Backend: newEnv(t, envOptions{}).be, MaxLineLength: 999}); err == nil {
		t.Error("MaxLineLength 999 accepted")
	}
	e := newEnv(t, envOptions{opts: Options{MaxLineLength: 1000}})
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	// 1000 octets with CRLF is the RFC 5321 §4.5.3.1.6 minimum: accepted.
	c.cmd("NOOP "+strings.Repeat("x", 1000-len("NOOP ")-2), "250 ")
	c.cmd("NOOP "+strings.Repeat("x", 1001-len("NOOP ")-2), "500 5.4.0 ")
	c.expectClosed()

	// A data line over the limit ends the transfer too, with one reply.
	c = e.dial()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.write("Subject: long\r\n\r\n" + strings.Repeat("y", 998) + "\r\n" + strings.Repeat("z", 1500) + "\r\n.\r\n")
	c.expect("500 5.5.2 ")
	c.expectClosed()
	if n := e.count("alice@example.org"); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

func TestMaxErrors(t *testing.T) {
	t.Run("disconnect", func(t *testing.T) {
		e := newEnv(t, envOptions{opts: Options{MaxErrors: 3}})
		c := e.dial()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("FOO", "500 5.5.2 ")
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1 ")
		c.cmd("RCPT TO:<someone@elsewhere.net>", "550 5.7.1 ")
		c.expect("421 4.7.0 ")
		c.expectClosed()
	})
	t.Run("more than go-smtp's own three", func(t *testing.T) {
		e := newEnv(t, envOptions{opts: Options{MaxErrors: 8}})
		c := e.dial()
		for range 7 {
			c.cmd("BOGUS command", "500 5.5.2 ")
		}
		c.cmd("NOOP", "250 ")
		c.cmd("HELP", "502 5.5.1 ")
		c.expect("421 4.7.0 ")
		c.expectClosed()
	})
	t.Run("delivery resets the count", func(t *testing.T) {
		e := newEnv(t, envOptions{opts: Options{MaxErrors: 3}})
		c := e.dial()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1 ")
		c.cmd("RCPT TO:<nobody2@example.org>", "550 5.1.1 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		c.data(sampleMessage("ok"), 1)
		c.cmd("XYZZY", "500 5.5.2 ")
		c.cmd("XYZZY", "500 5.5.2 ")
		c.cmd("NOOP", "250 ")
	})
}

func TestLiberalSyntax(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.cmd("ehlo client.example", "250 ")
	// A space after the colon (RFC 5321 does not allow it; many clients send it).
	c.cmd("MAIL FROM: <sender@remote.example>", "250 ")
	c.cmd("RCPT TO: <alice@example.org>", "250 ")
	c.data(sampleMessage("space"), 1)
	// The null reverse-path of a bounce (RFC 5321 §4.5.5).
	c.cmd("mail from:<>", "250 ")
	c.cmd("rcpt to:<alice@example.org>", "250 ")
	c.data(sampleMessage("bounce"), 1)
	c.cmd("MAIL FROM: <>", "250 ")
	c.cmd("RCPT TO: <alice@example.org>", "250 ")
	c.data(sampleMessage("bounce 2"), 1)
	// A quoted local part comes back quoted.
	c.cmd(`MAIL FROM:<"john doe"@remote.example>`, "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.data(sampleMessage("quoted"), 1)
	// Control characters cannot reach the Return-Path header (nor any
	// reply that echoes an argument, such as the greeting's).
	c.cmd("MAIL FROM:<a\rb@remote.example>", "500 5.5.2 ")
	c.cmd("EHLO a\rb", "500 5.5.2 ")
	c.cmd("EHLO a\x00b", "500 5.5.2 ")
	c.cmd("NOOP\x7f", "500 5.5.2 ")
	c.cmd("QUIT", "221 ")

	want := []string{"<sender@remote.example>", "<>", "<>", `<"john doe"@remote.example>`}
	got := e.inbox("alice@example.org")
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		if rp, _, _ := splitTrace(t, m); rp != "Return-Path: "+want[i] {
			t.Errorf("message %d: %q, want Return-Path: %s", i, rp, want[i])
		}
	}
}

func TestSTARTTLS(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	e := newEnv(t, envOptions{opts: Options{TLSConfig: serverTLS}})
	c := e.dial()
	lines := c.cmd("EHLO client.example", "250 ")
	if !hasKeyword(lines, "STARTTLS") {
		t.Fatalf("STARTTLS not offered: %q", lines)
	}
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("STARTTLS", "503 5.5.1 ") // not inside a transaction
	c.cmd("RSET", "250 ")
	// A command pipelined after STARTTLS came in clear text: it must be
	// dropped, not run as if it came over TLS (RFC 3207 §4).
	c.write("STARTTLS\r\nMAIL FROM:<injected@attacker.example>\r\n")
	c.expect("220 2.0.0 ")
	tc := tls.Client(c.c, clientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, tc)
	// The client must greet again (RFC 3207 §4.2); the injected MAIL got
	// no reply, so this one is for our MAIL.
	c.cmd("MAIL FROM:<sender@remote.example>", "503 5.5.1 ")
	lines = c.cmd("EHLO client.example", "250 ")
	if hasKeyword(lines, "STARTTLS") {
		t.Errorf("STARTTLS offered again over TLS: %q", lines)
	}
	c.cmd("STARTTLS", "503 5.5.1 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.data(sampleMessage("tls"), 1)
	c.cmd("QUIT", "221 ")
	_, received, _ := splitTrace(t, e.inbox("alice@example.org")[0])
	if !strings.Contains(received, " with ESMTPS id ") {
		t.Errorf("Received %q lacks ESMTPS", received)
	}
}

func TestImplicitTLS(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	e := newEnv(t, envOptions{tls: true, opts: Options{TLSConfig: serverTLS}})
	conn, err := tls.Dial("tcp", e.addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	c.expect("220 ")
	lines := c.cmd("EHLO client.example", "250 ")
	if hasKeyword(lines, "STARTTLS") {
		t.Errorf("STARTTLS offered on implicit TLS: %q", lines)
	}
	c.cmd("MAIL FROM:<sender@remote.example> SMTPUTF8", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.data(sampleMessage("implicit tls"), 1)
	c.cmd("QUIT", "221 ")
	_, received, _ := splitTrace(t, e.inbox("alice@example.org")[0])
	if !strings.Contains(received, " with UTF8SMTPS id ") {
		t.Errorf("Received %q lacks UTF8SMTPS", received)
	}

	// A client that never finishes the handshake is dropped.
	e2 := newEnv(t, envOptions{tls: true, opts: Options{TLSConfig: serverTLS, HandshakeTimeout: 100 * time.Millisecond}})
	raw, err := net.Dial("tcp", e2.addr)
	if err != nil {
		t.Fatal(err)
	}
	newClient(t, raw).expectClosed()
}

func TestNoSTARTTLSOverLMTP(t *testing.T) {
	serverTLS, _ := testTLS(t)
	e := newEnv(t, envOptions{opts: Options{LMTP: true, TLSConfig: serverTLS}})
	c := e.dial()
	if lines := c.cmd("LHLO client.example", "250 "); hasKeyword(lines, "STARTTLS") {
		t.Errorf("STARTTLS offered over LMTP: %q", lines)
	}
	c.cmd("STARTTLS", "502 5.5.1 ")
	c.cmd("NOOP", "250 ")
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, envOptions{})
	idle := e.dial()
	idle.cmd("EHLO client.example", "250 ")

	busy := e.dial()
	busy.cmd("EHLO client.example", "250 ")
	busy.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	busy.cmd("RCPT TO:<alice@example.org>", "250 ")
	busy.cmd("DATA", "354 ")
	msg := sampleMessage("in flight")
	busy.write(msg[:20])

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	idle.expect("421 4.3.2 ")
	idle.expectClosed()

	// The transfer in progress finishes, then that connection closes too.
	busy.write(dotStuff(msg[20:]) + ".\r\n")
	busy.expect("250 2.0.0 ")
	busy.expect("421 4.3.2 ")
	busy.expectClosed()
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-e.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	e.done <- nil // for the cleanup
	if n := e.count("alice@example.org"); n != 1 {
		t.Errorf("in-flight message not stored")
	}
	if _, err := net.Dial("tcp", e.addr); err == nil {
		t.Errorf("still accepting after Shutdown")
	}
}

func TestShutdownDeadline(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.write("Subject: never finished\r\n")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	c.expectClosed()
}

// TestInternalErrorsHidden: a failing store gives a 4xx with no internal
// text; the client may retry.
func TestInternalErrorsHidden(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	must(t, e.be.Close())
	for _, reply := range [][]string{
		c.data(sampleMessage("lost"), 1),
		func() []string {
			c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
			return c.cmd("RCPT TO:<bob@example.org>", "451 4.3.0 ")
		}(),
	} {
		if !strings.HasPrefix(reply[0], "451 4.3.0 Temporary local error") {
			t.Errorf("reply %q, want 451 4.3.0 without details", reply)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeletedBetweenRcptAndData: an account deleted after its RCPT was
// accepted gets "550 5.1.1" after DATA, over LMTP (per recipient: the
// other still gets its copy) and over SMTP; nothing is stored for it.
func TestDeletedBetweenRcptAndData(t *testing.T) {
	for _, lmtp := range []bool{true, false} {
		t.Run(fmt.Sprintf("lmtp=%v", lmtp), func(t *testing.T) {
			e := newEnv(t, envOptions{opts: Options{LMTP: lmtp}})
			c := e.dial()
			if lmtp {
				c.cmd("LHLO mta.example", "250 ")
			} else {
				c.cmd("EHLO mta.example", "250 ")
			}
			c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
			c.cmd("RCPT TO:<bob@example.org>", "250 ")
			if lmtp {
				c.cmd("RCPT TO:<alice@example.org>", "250 ")
			}
			must(t, e.be.DeleteUser(context.Background(), "bob@example.org"))
			replies := c.data(sampleMessage("for a deleted account"), map[bool]int{true: 2, false: 1}[lmtp])
			if !strings.HasPrefix(replies[0], "550 5.1.1 ") {
				t.Fatalf("reply for the deleted account: %q, want 550 5.1.1", replies[0])
			}
			if lmtp && !strings.HasPrefix(replies[1], "250 2.0.0 <alice@example.org> ") {
				t.Fatalf("reply for alice: %q", replies[1])
			}
			if _, err := e.be.LookupUser(context.Background(), "bob@example.org"); !errors.Is(err, backend.ErrNoSuchUser) {
				t.Fatalf("deleted account came back: %v", err)
			}
		})
	}
}

// TestLeadingWhiteSpace: a message whose first line starts with white
// space would continue the Received header Roost puts in front of it
// (RFC 5322 §2.2.3), letting the sender write into it; it is refused like
// a bare line ending (found by FuzzMessage).
func TestLeadingWhiteSpace(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.cmd("EHLO client.example", "250 ")
	for _, body := range []string{" by trusted.example\r\n\r\nx\r\n", "\tx\r\n"} {
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		if r := c.data(body, 1); !strings.HasPrefix(r[0], "550 5.6.0 ") {
			t.Errorf("DATA %q: %q, want 550 5.6.0", body, r)
		}
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		c.write("BDAT " + itoa(int64(len(body))) + " LAST\r\n" + body)
		c.expect("550 5.6.0 ")
	}
	c.cmd("QUIT", "221 ")
	if n := e.count("alice@example.org"); n != 0 {
		t.Errorf("%d messages stored, want 0", n)
	}
}
