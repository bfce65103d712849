package main

// End-to-end tests of the account tools of issue 13 over the protocols:
// export and import round trips, quotas (SMTP/LMTP at RCPT, IMAP APPEND),
// retention (an IDLE session sees the expunge), disabling, app passwords.

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// fullState is every message of every mailbox as IMAP shows it: UIDs,
// flags, INTERNALDATE and the raw bytes.
func fullState(t *testing.T, addr, user, pass string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, st := range imapState(t, addr, user, pass, true) {
		var b strings.Builder
		fmt.Fprintf(&b, "V%d N%d\n", st.UIDValidity, st.UIDNext)
		for _, uid := range slices.Sorted(maps.Keys(st.Flags)) {
			fmt.Fprintf(&b, "%d [%s] %d %q\n", uid, st.Flags[uid], st.Dates[uid], st.Bodies[uid])
		}
		out[name] = b.String()
	}
	return out
}

// smtpSession sends one message and checks each reply's start.
func smtpSession(t *testing.T, addr string, lmtp bool, rcpts map[string]string, wantData ...string) {
	t.Helper()
	c := dialText(t, "tcp", addr)
	c.reply("220 ")
	if lmtp {
		c.send("LHLO client.test\r\n")
	} else {
		c.send("EHLO client.test\r\n")
	}
	c.reply("250")
	c.send("MAIL FROM:<sender@example.net>\r\n")
	c.reply("250 ")
	names := slices.Sorted(maps.Keys(rcpts))
	accepted := 0
	for _, r := range names {
		c.send("RCPT TO:<" + r + ">\r\n")
		c.reply(rcpts[r])
		if strings.HasPrefix(rcpts[r], "250") {
			accepted++
		}
	}
	if accepted > 0 {
		c.send("DATA\r\n")
		c.reply("354 ")
		c.send("From: sender@example.net\r\nSubject: test\r\n\r\n" + strings.Repeat("some text\r\n", 50) + ".\r\n")
		for _, w := range wantData {
			c.reply(w)
		}
	}
	c.send("QUIT\r\n")
}

func statusField(t *testing.T, in *instance, addr, key string) string {
	t.Helper()
	for _, line := range strings.Split(in.mustRun("", "status", addr), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok && k == key {
			return v
		}
	}
	t.Fatalf("status %s has no %s", addr, key)
	return ""
}

// TestExportImportRoundTrip: what roost export writes, roost import reads
// back byte for byte, with UIDVALIDITY, UIDs, UIDNEXT, flags, keywords and
// dates, for Maildir (both layouts) and mbox; with the server running.
func TestExportImportRoundTrip(t *testing.T) {
	in := newInstance(t)
	in.env = []string{"ROOST_IMAP_AUTH_FAILURE_DELAY=0s"}
	srv := in.startServer()
	in.mustRun("pw\n", "user", "add", "alice@example.org")
	st := in.status()
	deliverOverSMTP(t, st["smtp"], "alice@example.org", "Subject: one\r\n\r\nFrom the start\r\n>From quoted\r\n")
	deliverOverSMTP(t, st["smtp"], "alice@example.org", "Subject: two\r\n\r\nsecond\r\n")
	c := mustIMAPLogin(t, st["imap"], "alice@example.org", "pw")
	imapAppend(t, c, "Sent", "Subject: sent\r\n\r\nno final line end", imap.FlagSeen, imap.FlagAnswered, "$Label1")
	if err := c.Create("Lists/Foo", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	imapAppend(t, c, "Lists/Foo", "Subject: list\r\n\r\nÉté\r\n", "Work", imap.FlagFlagged)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, "$Label2"}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout()
	want := fullState(t, st["imap"], "alice@example.org", "pw")

	for i, tc := range []struct {
		format string
		flags  []string
	}{{"maildir", nil}, {"maildir", []string{"--layout", "fs"}}, {"mbox", nil}} {
		t.Run(fmt.Sprintf("%s %v", tc.format, tc.flags), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "export")
			out := in.mustRun("", append([]string{"export", tc.format, "alice@example.org", dir}, tc.flags...)...)
			if !strings.HasPrefix(out, "exported 4 messages in 8 mailboxes") {
				t.Errorf("export summary %q", out)
			}
			user := fmt.Sprintf("copy%d@example.org", i)
			in.mustRun("pw\n", "user", "add", user)
			if tc.format == "maildir" {
				in.mustRun("", "import", "maildir", dir, user)
			} else {
				for _, name := range []string{"INBOX", "Sent", "Lists/Foo"} {
					in.mustRun("", "import", "mbox", filepath.Join(dir, filepath.FromSlash(name)), user, "--mailbox", name)
				}
			}
			got := fullState(t, st["imap"], user, "pw")
			for name, w := range want {
				if tc.format == "mbox" && !slices.Contains([]string{"INBOX", "Sent", "Lists/Foo"}, name) {
					continue // empty mailboxes: no mbox file worth importing
				}
				if got[name] != w {
					t.Errorf("%s after the round trip:\n%s\nwant:\n%s", name, got[name], w)
				}
			}
		})
	}
	// Exports never overwrite.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o600)
	if r := in.run("", "export", "maildir", "alice@example.org", dir); r.code != 1 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("export into a non-empty directory: %+v", r)
	}
	srv.stop(syscall.SIGTERM)
}

// TestImportBadFilesAndResume: a file that cannot be read is reported and
// skipped (exit 1), the rest is imported; once fixed, a second run imports
// just it. Without a server running, with --json.
func TestImportBadFilesAndResume(t *testing.T) {
	in := newInstance(t)
	in.mustRun("", "init")
	in.mustRun("pw\n", "user", "add", "alice@example.org")
	md := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp", ".Junk/cur"} {
		os.MkdirAll(filepath.Join(md, d), 0o700)
	}
	os.WriteFile(filepath.Join(md, "cur", "1700000000.M1P1.host:2,S"), []byte("Subject: a\n\na\n"), 0o600)
	os.WriteFile(filepath.Join(md, "cur", "1700000001.M2P1.host:2,"), nil, 0o600) // empty: bad
	os.WriteFile(filepath.Join(md, "tmp", "1700000002.M3P1.host"), []byte("half a mess"), 0o600)
	os.WriteFile(filepath.Join(md, ".Junk", "cur", "1700000003.M4P1.host:2,S"), []byte("Subject: spam\n\nbuy\n"), 0o600)
	r := in.run("", "import", "maildir", md, "alice@example.org", "--json")
	if r.code != 1 || !strings.Contains(r.stdout, `"imported": 2`) || !strings.Contains(r.stdout, `"failed": 1`) ||
		!strings.Contains(r.stdout, "empty file") || !strings.Contains(r.stderr, "1 messages could not be imported") {
		t.Fatalf("import with a bad file: %+v", r)
	}
	os.WriteFile(filepath.Join(md, "cur", "1700000001.M2P1.host:2,"), []byte("Subject: fixed\n\nb\n"), 0o600)
	out := in.mustRun("", "import", "maildir", md, "alice@example.org")
	if !strings.HasPrefix(out, "imported 1 of 3 messages") || !strings.Contains(out, "2 imported before") {
		t.Fatalf("second run: %q", out)
	}
	if got := statusField(t, in, "alice@example.org", "messages"); got != "3 messages (no limit)" {
		t.Errorf("status messages: %q", got)
	}
	if r := in.run("", "import", "maildir", t.TempDir(), "alice@example.org"); r.code != 1 || !strings.Contains(r.stderr, "not a Maildir") {
		t.Errorf("import of an empty directory: %+v", r)
	}
	if r := in.run("", "import", "maildir", md, "nobody@example.org"); r.code != 1 || !strings.Contains(r.stderr, "no such user") {
		t.Errorf("import for an unknown user: %+v", r)
	}
}

// TestQuotaOverProtocols: at its quota an account's mail is refused at
// RCPT with 452 4.2.2 while the other recipients get the message; APPEND
// gets NO [OVERQUOTA]; with [accounts] over_quota = "reject", 552 5.2.2.
func TestQuotaOverProtocols(t *testing.T) {
	in := newInstance(t)
	in.env = []string{"ROOST_IMAP_AUTH_FAILURE_DELAY=0s"}
	srv := in.startServer()
	in.mustRun("pw\n", "user", "add", "alice@example.org")
	in.mustRun("pw\n", "user", "add", "bob@example.org")
	in.mustRun("", "user", "quota", "alice@example.org", "1M", "--messages", "2")
	st := in.status()
	smtpSession(t, st["smtp"], false, map[string]string{"alice@example.org": "250 ", "bob@example.org": "250 "}, "250 ")
	// One more message fits; then she is at her limit of two.
	smtpSession(t, st["smtp"], false, map[string]string{"alice@example.org": "250 "}, "250 ")
	smtpSession(t, st["smtp"], false, map[string]string{"alice@example.org": "452 4.2.2 ", "bob@example.org": "250 "}, "250 ")
	smtpSession(t, st["lmtp"], true, map[string]string{"alice@example.org": "452 4.2.2 ", "bob@example.org": "250 "}, "250 ")
	if got := statusField(t, in, "bob@example.org", "messages"); got != "3 messages (no limit)" {
		t.Errorf("bob: %q, want 3 messages", got)
	}
	storage := statusField(t, in, "alice@example.org", "storage")
	if !strings.Contains(storage, " of 1048576 bytes (0%)") {
		t.Errorf("alice's storage: %q", storage)
	}
	list := in.mustRun("", "user", "list")
	if !strings.Contains(list, "alice@example.org\tcreated=") || !strings.Contains(list, "\tquota=1048576\tquota_messages=2") || !strings.Contains(list, "\tmessages=2") {
		t.Errorf("user list:\n%s", list)
	}
	c := mustIMAPLogin(t, st["imap"], "alice@example.org", "pw")
	cmd := c.Append("Drafts", 10, nil)
	cmd.Write([]byte("Subject: x"))
	cmd.Close()
	_, err := cmd.Wait()
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeOverQuota {
		t.Errorf("APPEND over quota: %v, want NO [OVERQUOTA]", err)
	}
	c.Logout()
	// Without limits mail comes in again: 0 means none (a limit left out
	// means the [accounts] default).
	in.mustRun("", "user", "quota", "alice@example.org", "0", "--messages", "0")
	smtpSession(t, st["smtp"], false, map[string]string{"alice@example.org": "250 "}, "250 ")
	if r := in.run("", "user", "quota", "alice@example.org", "lots"); r.code != 2 {
		t.Errorf("bad size: %+v", r)
	}
	srv.stop(syscall.SIGTERM)

	in.env = append(in.env, "ROOST_ACCOUNTS_OVER_QUOTA=reject", "ROOST_ACCOUNTS_DEFAULT_QUOTA_MESSAGES=1")
	srv = in.startServer()
	st = in.status()
	// bob has the default now (1 message) and is over it: refused for good.
	in.mustRun("", "user", "quota", "bob@example.org", "default")
	smtpSession(t, st["lmtp"], true, map[string]string{"bob@example.org": "552 5.2.2 ", "alice@example.org": "250 "}, "250 ")
	srv.stop(syscall.SIGTERM)
}

// TestRetentionExpungesTrash: with [retention] trash = "1s", a message
// moved to Trash is expunged in the background, and a session idling on
// Trash is told (EXPUNGE).
func TestRetentionExpungesTrash(t *testing.T) {
	in := newInstance(t)
	in.env = []string{"ROOST_IMAP_AUTH_FAILURE_DELAY=0s", "ROOST_RETENTION_TRASH=1s", "ROOST_RETENTION_INTERVAL=1s", "ROOST_RETENTION_JUNK=0s"}
	srv := in.startServer()
	in.mustRun("pw\n", "user", "add", "alice@example.org")
	st := in.status()
	deliverOverSMTP(t, st["smtp"], "alice@example.org", "Subject: keep\r\n\r\nstays in INBOX\r\n")
	deliverOverSMTP(t, st["smtp"], "alice@example.org", "Subject: bin\r\n\r\ngoes to Trash\r\n")
	deliverOverSMTP(t, st["smtp"], "alice@example.org", "Subject: junk\r\n\r\nJunk keeps it\r\n")

	expunged := make(chan uint32, 10)
	watcher, err := imapclient.DialInsecure(st["imap"], &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { expunged <- seq },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	if err := watcher.Login("alice@example.org", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	c := mustIMAPLogin(t, st["imap"], "alice@example.org", "pw")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(imap.UIDSetNum(2), "Trash").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(imap.UIDSetNum(3), "Junk").Wait(); err != nil {
		t.Fatal(err)
	}
	if sel, err := watcher.Select("Trash", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("Trash: %+v %v", sel, err)
	}
	idle, err := watcher.Idle()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Errorf("EXPUNGE %d, want 1", seq)
		}
	case <-time.After(time.Minute):
		t.Fatal("no EXPUNGE from retention within a minute")
	}
	idle.Close()
	for name, want := range map[string]uint32{"INBOX": 1, "Trash": 0, "Junk": 1} {
		s, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *s.NumMessages != want {
			t.Errorf("%s: %v messages (%v), want %d", name, s, err, want)
		}
	}
	if !srv.logContains("retention expunged old messages") {
		t.Errorf("no log line for the expunge:\n%s", srv.log())
	}
	srv.stop(syscall.SIGTERM)
}

// TestDisableAndAppPasswords: a disabled account cannot log in (IMAP,
// POP3) but gets mail, or with --reject-mail is refused 550 5.2.1; app
// passwords log in over IMAP and POP3 and are revoked alone.
func TestDisableAndAppPasswords(t *testing.T) {
	in := newInstance(t)
	in.env = []string{"ROOST_IMAP_AUTH_FAILURE_DELAY=0s", "ROOST_POP3_AUTH_FAILURE_DELAY=0s", "ROOST_SUBMISSION_AUTH_FAILURE_DELAY=0s", "ROOST_AUTH_MAX_FAILURES=1000"}
	srv := in.startServer()
	in.mustRun("main-pw\n", "user", "add", "alice@example.org")
	st := in.status()
	imapOK := func(pass string) bool {
		c, err := imapclient.DialInsecure(st["imap"], nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Login("alice@example.org", pass).Wait() == nil
	}
	// SMTP submission (implicit TLS) authenticates through the same login.
	submitOK := func(pass string) bool {
		raw, err := tls.Dial("tcp", st["submissions"], &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		c := &textConn{t: t, c: raw, r: bufio.NewReader(raw)}
		t.Cleanup(func() { raw.Close() })
		raw.SetDeadline(time.Now().Add(cmdTimeout))
		c.reply("220 ")
		c.send("EHLO client.test\r\n")
		c.reply("250")
		c.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice@example.org\x00"+pass)) + "\r\n")
		line, _ := c.r.ReadString('\n')
		c.send("QUIT\r\n")
		return strings.HasPrefix(line, "235")
	}
	pop3OK := func(pass string) bool {
		c := dialText(t, "tcp", st["pop3"])
		c.reply("+OK")
		c.send("USER alice@example.org\r\nPASS " + pass + "\r\n")
		c.reply("+OK")
		line, _ := c.r.ReadString('\n')
		c.send("QUIT\r\n")
		return strings.HasPrefix(line, "+OK")
	}

	out := in.mustRun("", "user", "app-password", "add", "alice@example.org", "Phone")
	phone := strings.SplitN(out, "\n", 2)[0]
	if len(phone) < 20 || strings.Contains(phone, " ") {
		t.Fatalf("app password output %q", out)
	}
	laptop := strings.SplitN(in.mustRun("", "user", "app-password", "add", "alice@example.org", "Laptop"), "\n", 2)[0]
	for _, pw := range []string{"main-pw", phone, laptop} {
		if !imapOK(pw) || !pop3OK(pw) || !submitOK(pw) {
			t.Errorf("login with %q refused", pw)
		}
	}
	if list := in.mustRun("", "user", "app-password", "list", "alice@example.org"); !strings.HasPrefix(list, "Phone\tid=") ||
		!strings.Contains(list, "\nLaptop\tid=") || strings.Contains(list, phone) {
		t.Errorf("app-password list:\n%s", list)
	}
	in.mustRun("", "user", "app-password", "del", "alice@example.org", "Phone")
	if imapOK(phone) || pop3OK(phone) || submitOK(phone) {
		t.Error("revoked app password still logs in")
	}
	if !imapOK("main-pw") || !imapOK(laptop) {
		t.Error("revoking one app password broke the others")
	}
	if r := in.run("", "user", "app-password", "del", "alice@example.org", "Phone"); r.code != 1 || !strings.Contains(r.stderr, "no such app password") {
		t.Errorf("deleting twice: %+v", r)
	}

	in.mustRun("", "user", "disable", "alice@example.org")
	if imapOK("main-pw") || pop3OK("main-pw") || imapOK(laptop) || submitOK(laptop) {
		t.Error("a disabled account logs in")
	}
	smtpSession(t, st["smtp"], false, map[string]string{"alice@example.org": "250 "}, "250 ")
	if !strings.Contains(in.mustRun("", "user", "list"), "\tdisabled") {
		t.Error("user list does not show the account disabled")
	}
	in.mustRun("", "user", "disable", "alice@example.org", "--reject-mail")
	smtpSession(t, st["smtp"], false, map[string]string{"alice@example.org": "550 5.2.1 "})
	smtpSession(t, st["lmtp"], true, map[string]string{"alice@example.org": "550 5.2.1 "})
	in.mustRun("", "user", "enable", "alice@example.org")
	if !imapOK("main-pw") || !pop3OK(laptop) {
		t.Error("an enabled account cannot log in")
	}
	if got := statusField(t, in, "alice@example.org", "messages"); got != "1 messages (no limit)" {
		t.Errorf("messages: %q (the one sent while disabled)", got)
	}
	srv.stop(syscall.SIGTERM)
}
