package main

// Issue 16: `alias add "*@domain"` is a catch-all. It takes the domain's
// mail that no account and no exact alias takes (with or without a +tag),
// over SMTP and LMTP alike.

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/roostmail/roost/backend"
)

// sendMail delivers one message to rcpt over SMTP or LMTP with go-smtp's
// client and returns the RCPT error (nil: accepted and delivered).
func sendMail(t *testing.T, addr string, lmtp bool, rcpt, subject string) error {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(cmdTimeout))
	var c *smtp.Client
	if lmtp {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("From: sender@example.net\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\n\r\nHello.\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("DATA to %s: %v", rcpt, err)
	}
	c.Quit()
	return nil
}

func TestCatchAllAlias(t *testing.T) {
	in := newInstance(t)
	srv := in.startServer()
	in.mustRun("pw\n", "user", "add", "alice@example.org")
	in.mustRun("pw\n", "user", "add", "bob@example.org")
	in.mustRun("", "alias", "add", "sales@example.org", "bob@example.org")
	if out := in.mustRun("", "alias", "add", "*@Example.org", "alice@example.org"); !strings.Contains(out, "added alias *@example.org for alice@example.org") {
		t.Errorf("alias add catch-all: %q", out)
	}
	if res := in.run("pw\n", "user", "add", "*@example.com"); res.code != 1 || !strings.Contains(res.stderr, "catch-all") {
		t.Errorf("user add *@example.com: exit %d, %q", res.code, res.stderr)
	}
	if out := in.mustRun("", "alias", "list"); !strings.Contains(out, "*@example.org\talice@example.org\n") {
		t.Errorf("alias list: %q", out)
	}
	st := in.status()

	tests := []struct {
		rcpt    string
		lmtp    bool
		account string // "" refused
	}{
		{"bob@example.org", false, "bob@example.org"},
		{"bob+lists@example.org", true, "bob@example.org"},
		{"sales@example.org", false, "bob@example.org"},
		{"sales+q3@example.org", true, "bob@example.org"},
		{"nobody@example.org", false, "alice@example.org"},
		{"nobody+tag@example.org", true, "alice@example.org"},
		{"Someone.Else@EXAMPLE.ORG", false, "alice@example.org"},
		{"nobody@example.net", false, ""}, // not a served domain: no catch-all
	}
	want := map[string][]string{}
	for _, tt := range tests {
		addr := st["smtp"]
		if tt.lmtp {
			addr = st["lmtp"]
		}
		err := sendMail(t, addr, tt.lmtp, tt.rcpt, "to "+tt.rcpt)
		var se *smtp.SMTPError
		switch {
		case tt.account == "" && (!errors.As(err, &se) || se.Code/100 != 5):
			t.Errorf("RCPT %s: %v, want a 5xx refusal", tt.rcpt, err)
		case tt.account != "" && err != nil:
			t.Errorf("RCPT %s: %v, want it delivered to %s", tt.rcpt, err, tt.account)
		case tt.account != "":
			want[tt.account] = append(want[tt.account], "to "+tt.rcpt)
		}
	}
	srv.stop(syscall.SIGTERM)

	// Each message is in the INBOX of the account it was meant for.
	b := openBackend(t, in.dataDir)
	defer b.Close()
	for _, acct := range []string{"alice@example.org", "bob@example.org"} {
		var got []string
		u, err := b.LookupUser(context.Background(), acct)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := u.Mailbox(backend.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		uids, err := u.UIDs(mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := u.MessagesByUID(mb.ID, uids)
		if err != nil {
			t.Fatal(err)
		}
		for i := range msgs {
			body, err := u.ReadBody(&msgs[i])
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(body), "\r\n") {
				if s, ok := strings.CutPrefix(line, "Subject: "); ok {
					got = append(got, s)
				}
			}
		}
		if strings.Join(got, "|") != strings.Join(want[acct], "|") {
			t.Errorf("%s received %q, want %q", acct, got, want[acct])
		}
	}
}
