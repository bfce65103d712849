package main

// End-to-end tests of moving in from Dovecot and out again (issue 13):
// roost import and export with real clients (mbsync, fetchmail, imapclient,
// POP3) against a real Dovecot and against Roost.

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/roostmail/roost/internal/testutil"
)

func mustIMAPLogin(t *testing.T, addr, user, pass string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("IMAP login at %s: %v", addr, err)
	}
	return c
}

func imapAppend(t *testing.T, c *imapclient.Client, mailbox, body string, flags ...imap.Flag) {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(body)), &imap.AppendOptions{Flags: flags, Time: time.Date(2023, 3, 4, 5, 6, 7, 0, time.UTC)})
	if _, err := cmd.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("APPEND to %s: %v", mailbox, err)
	}
}

// boxState is what a client knows of a mailbox.
type boxState struct {
	UIDValidity, UIDNext uint32
	Flags                map[imap.UID]string // sorted flags, \Recent left out
	Dates                map[imap.UID]int64
	Bodies               map[imap.UID]string // with bodies: true
}

func (b boxState) String() string {
	return fmt.Sprintf("V%d N%d %v", b.UIDValidity, b.UIDNext, b.Flags)
}

// imapState reads every selectable mailbox's UIDVALIDITY, UIDNEXT and the
// flags and INTERNALDATE of each UID (and its raw bytes, with bodies).
func imapState(t *testing.T, addr, user, pass string, bodies ...bool) map[string]boxState {
	t.Helper()
	c := mustIMAPLogin(t, addr, user, pass)
	defer c.Logout()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]boxState{}
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) {
			continue
		}
		sel, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("SELECT %s: %v", l.Mailbox, err)
		}
		st := boxState{UIDValidity: sel.UIDValidity, UIDNext: uint32(sel.UIDNext), Flags: map[imap.UID]string{},
			Dates: map[imap.UID]int64{}, Bodies: map[imap.UID]string{}}
		if sel.NumMessages > 0 {
			var all imap.SeqSet
			all.AddRange(1, 0) // 1:*
			opts := &imap.FetchOptions{UID: true, Flags: true, InternalDate: true}
			section := &imap.FetchItemBodySection{Peek: true}
			if len(bodies) > 0 && bodies[0] {
				opts.BodySection = []*imap.FetchItemBodySection{section}
			}
			msgs, err := c.Fetch(all, opts).Collect()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				var fl []string
				for _, f := range m.Flags {
					if f != `\Recent` {
						fl = append(fl, string(f))
					}
				}
				slices.Sort(fl)
				st.Flags[m.UID] = strings.Join(fl, " ")
				st.Dates[m.UID] = m.InternalDate.Unix()
				if opts.BodySection != nil {
					st.Bodies[m.UID] = string(m.FindBodySection(section))
				}
			}
		}
		out[l.Mailbox] = st
	}
	return out
}

// pop3UIDL returns the UIDL listing of an account.
func pop3UIDL(t *testing.T, addr, user, pass string) []string {
	t.Helper()
	c := dialText(t, "tcp", addr)
	c.reply("+OK")
	c.send("USER " + user + "\r\n")
	c.reply("+OK")
	c.send("PASS " + pass + "\r\n")
	c.reply("+OK")
	c.send("UIDL\r\n")
	c.reply("+OK")
	var out []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "." {
			break
		}
		out = append(out, line)
	}
	c.send("QUIT\r\n")
	c.reply("+OK")
	return out
}

// mbsyncClient is one laptop syncing with mbsync into a local Maildir.
type mbsyncClient struct {
	t        *testing.T
	bin, dir string
}

func (m *mbsyncClient) sync(addr, user, pass string) string {
	m.t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	tlsKey := "SSLType"
	if out, _ := exec.Command(m.bin, "--version").Output(); regexp.MustCompile(`isync 1\.([5-9]|\d\d)`).Match(out) {
		tlsKey = "TLSType"
	}
	conf := fmt.Sprintf(`IMAPAccount server
Host %s
Port %s
User %s
Pass "%s"
%s None
AuthMechs LOGIN

IMAPStore remote
Account server

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel laptop
Far :remote:
Near :local:
Patterns *
Create Near
Expunge None
Remove None
Sync All
SyncState *
`, host, port, user, pass, tlsKey, m.dir, m.dir)
	rc := filepath.Join(m.dir, "..", "mbsyncrc")
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		m.t.Fatal(err)
	}
	out, err := exec.Command(m.bin, "-V", "-c", rc, "-a").CombinedOutput()
	if err != nil {
		m.t.Fatalf("mbsync against %s: %v\n%s", addr, err, out)
	}
	return string(out)
}

// messages counts the message files in the local Maildir, by folder.
func (m *mbsyncClient) messages() map[string]int {
	out := map[string]int{}
	filepath.Walk(m.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && (filepath.Base(filepath.Dir(p)) == "cur" || filepath.Base(filepath.Dir(p)) == "new") {
			rel, _ := filepath.Rel(m.dir, filepath.Dir(filepath.Dir(p)))
			out[rel]++
		}
		return nil
	})
	return out
}

// fetchmailKeep runs `fetchmail --keep --uidl` once and returns its exit
// code (0: mail fetched, 1: none) and the messages delivered so far.
func fetchmailKeep(t *testing.T, bin, home, addr, user, pass string) (int, int) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	// The poll name, not the address, keys fetchmail's UIDL memory: the
	// same "server" after the move.
	rc := fmt.Sprintf("set no bouncemail\npoll mail.example.org via %s protocol pop3 port %s auth password\n"+
		"  user %q there with password %q is %q here\n  no sslcertck\n", host, port, user, pass, "root")
	rcfile := filepath.Join(home, "fetchmailrc")
	if err := os.WriteFile(rcfile, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	mbox := filepath.Join(home, "mbox")
	cmd := exec.Command(bin, "-f", rcfile, "--nodetach", "--nosyslog", "--keep", "--uidl",
		"--idfile", filepath.Join(home, "fetchids"), "--pidfile", filepath.Join(home, "fetchmail.pid"),
		"--mda", "cat >> "+mbox)
	cmd.Env = append(os.Environ(), "HOME="+home, "FETCHMAILHOME="+home, "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("fetchmail: %v", err)
	}
	if code > 1 {
		t.Fatalf("fetchmail against %s: exit %d\n%s", addr, code, out)
	}
	data, _ := os.ReadFile(mbox)
	return code, bytes.Count(data, []byte("\nSubject: "))
}

// TestMigrateFromDovecot is issue 13's done-when: mail in a real Dovecot,
// in three folders with flags and a keyword, synced by mbsync and fetched
// by fetchmail --keep --uidl; imported into a running Roost; then the same
// mbsync and fetchmail against Roost download nothing again, and flags,
// keywords, UIDVALIDITY, UIDs and UIDLs are what Dovecot had.
func TestMigrateFromDovecot(t *testing.T) {
	mbsyncBin := testutil.RequireBinary(t, "mbsync")
	fetchmailBin := testutil.RequireBinary(t, "fetchmail")
	const user, pass = "alice@example.org", "alice-pw"
	dv := startDovecot(t, user, pass)

	c := mustIMAPLogin(t, dv.imap, user, pass)
	for _, mb := range []string{"Sent", "Lists/Foo"} {
		if err := c.Create(mb, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", mb, err)
		}
	}
	msg := func(subject string) string {
		return "From: bob@example.net\r\nTo: alice@example.org\r\nSubject: " + subject + "\r\nMessage-ID: <" +
			strings.ReplaceAll(subject, " ", ".") + "@example.net>\r\n\r\nBody of " + subject + ".\r\n"
	}
	for i := 1; i <= 4; i++ {
		imapAppend(t, c, "INBOX", msg(fmt.Sprintf("inbox %d", i)))
	}
	imapAppend(t, c, "Sent", msg("sent 1"), imap.FlagSeen)
	imapAppend(t, c, "Sent", msg("sent 2"), imap.FlagSeen, imap.FlagAnswered)
	imapAppend(t, c, "Lists/Foo", msg("list 1"))
	imapAppend(t, c, "Lists/Foo", msg("list 2"), "$Label1")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := func(uid imap.UID, flags ...imap.Flag) {
		if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: flags, Silent: true}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}
	store(1, imap.FlagSeen)
	store(3, imap.FlagSeen, imap.FlagFlagged, "$Label1")
	store(2, imap.FlagDeleted)
	if err := c.Expunge().Close(); err != nil { // a gap in the UIDs: 1, 3, 4
		t.Fatal(err)
	}
	c.Logout()

	laptop := &mbsyncClient{t: t, bin: mbsyncBin, dir: filepath.Join(t.TempDir(), "laptop")}
	os.MkdirAll(laptop.dir, 0o700)
	laptop.sync(dv.imap, user, pass)
	synced := laptop.messages()
	if synced["INBOX"] != 3 || synced["Sent"] != 2 || synced["Lists/Foo"] != 2 {
		t.Fatalf("mbsync from Dovecot: %v", synced)
	}
	phone := t.TempDir()
	if code, n := fetchmailKeep(t, fetchmailBin, phone, dv.pop3, user, pass); code != 0 || n != 3 {
		t.Fatalf("fetchmail from Dovecot: exit %d, %d messages", code, n)
	}
	before := imapState(t, dv.imap, user, pass)
	uidlBefore := pop3UIDL(t, dv.pop3, user, pass)
	if len(before) != 3 || before["Lists/Foo"].Flags[2] != "$Label1" || len(uidlBefore) != 3 {
		t.Fatalf("Dovecot's state: %v, UIDL %q", before, uidlBefore)
	}
	dv.stop()

	in := newInstance(t)
	in.env = []string{"ROOST_IMAP_AUTH_FAILURE_DELAY=0s", "ROOST_POP3_AUTH_FAILURE_DELAY=0s"}
	srv := in.startServer()
	in.mustRun(pass+"\n", "user", "add", user)
	out := in.mustRun("", "import", "maildir", dv.maildir, user)
	if !strings.HasPrefix(out, "imported 7 of 7 messages into 3 mailboxes") {
		t.Errorf("import summary: %q", out)
	}
	st := in.status()
	after := imapState(t, st["imap"], user, pass)
	for name, want := range before {
		got := after[name]
		if got.UIDValidity != want.UIDValidity || got.UIDNext != want.UIDNext || !maps.Equal(got.Flags, want.Flags) || !maps.Equal(got.Dates, want.Dates) {
			t.Errorf("%s: Roost has %v %v, Dovecot had %v %v", name, got, got.Dates, want, want.Dates)
		}
	}
	if got := pop3UIDL(t, st["pop3"], user, pass); !slices.Equal(got, uidlBefore) {
		t.Errorf("UIDL: Roost %q, Dovecot %q", got, uidlBefore)
	}

	// The laptop and the phone go on where they were: nothing new.
	syncOut := laptop.sync(st["imap"], user, pass)
	if got := laptop.messages(); got["INBOX"] != 3 || got["Sent"] != 2 || got["Lists/Foo"] != 2 {
		t.Errorf("mbsync against Roost downloaded again: %v (was %v)\n%s", got, synced, syncOut)
	}
	if code, n := fetchmailKeep(t, fetchmailBin, phone, st["pop3"], user, pass); code != 1 || n != 3 {
		t.Errorf("fetchmail against Roost: exit %d, %d messages (want exit 1: no new mail, and still 3)", code, n)
	}
	// mbsync found nothing to change either.
	again := imapState(t, st["imap"], user, pass)
	for name, want := range before {
		if got := again[name]; !maps.Equal(got.Flags, want.Flags) {
			t.Errorf("%s after mbsync: flags %v, want %v", name, got.Flags, want.Flags)
		}
	}
	// Idempotent: a second import adds nothing.
	out = in.mustRun("", "import", "maildir", dv.maildir, user)
	if !strings.HasPrefix(out, "imported 0 of 7 messages") || !strings.Contains(out, "7 imported before") {
		t.Errorf("second import: %q", out)
	}
	srv.stop(syscall.SIGTERM)
}
