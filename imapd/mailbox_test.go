package imapd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/roostmail/roost/backend"
)

func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func TestLogin(t *testing.T) {
	const delay = 50 * time.Millisecond
	limiter := backend.NewAuthLimiter(backend.AuthLimiterOptions{MaxFailures: 3, Delay: time.Millisecond})
	e := &env{t: t, dir: t.TempDir()}
	b, err := backend.New(backend.Options{DataDir: e.dir, NoSync: true, LoginCacheTTL: -1, Limiter: limiter})
	if err != nil {
		t.Fatal(err)
	}
	e.b = b
	if err := b.CreateUser(context.Background(), testUser, testPass); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateUser(context.Background(), "bob@example.org", "bobpw"); err != nil {
		t.Fatal(err)
	}
	e.start(func(o *Options) { o.AuthFailureDelay = delay })

	// AUTHENTICATE PLAIN (with SASL-IR), for another account. Bob logs in
	// first, so this address is known-good for him and the lockout it
	// earns below does not apply to him.
	c2, err := imapclient.DialInsecure(e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Authenticate(sasl.NewPlainClient("", "bob@example.org", "bobpw")); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	c, err := imapclient.DialInsecure(e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	err = c.Login(testUser, "wrong").Wait()
	if code := imapCode(err); code != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("wrong password: %v", err)
	}
	// A lower bound only: the delay was waited.
	if time.Since(start) < delay {
		t.Errorf("failed login answered before AuthFailureDelay")
	}
	if err := c.Login("nobody@example.org", testPass).Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
		t.Errorf("unknown user: %v", err)
	}
	if err := c.Login(testUser, "wrong again").Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
		t.Errorf("wrong password: %v", err)
	}
	// The third failure from this address engaged the lockout.
	if err := c.Login(testUser, testPass).Wait(); imapCode(err) != imap.ResponseCodeUnavailable {
		t.Errorf("locked account: %v", err)
	}

	c3, err := imapclient.DialInsecure(e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := c3.Authenticate(sasl.NewPlainClient("", "bob@example.org", "nope")); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
		t.Errorf("AUTHENTICATE PLAIN, bad password: %v", err)
	}

	// Commands of the authenticated state need a login.
	r := e.dialRaw()
	r.line()
	if got := r.cmd("a", "SELECT INBOX"); !strings.HasPrefix(got[0], "a BAD") {
		t.Errorf("SELECT before login: %q", got)
	}
}

func TestCapabilities(t *testing.T) {
	tlsConf := selfSigned(t)
	for _, tc := range []struct {
		policy     backend.PlaintextPolicy
		wantBefore []string
		wantNot    []string
	}{
		{backend.PlaintextTLSOrLoopback, []string{"IMAP4rev2", "IMAP4rev1", "STARTTLS", "AUTH=PLAIN", "SASL-IR"}, []string{"LOGINDISABLED"}},
		{backend.PlaintextTLS, []string{"STARTTLS", "LOGINDISABLED"}, []string{"AUTH=PLAIN"}},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.TLSConfig = tlsConf; o.Plaintext = tc.policy })
			r := e.dialRaw()
			greeting := r.line()
			words := " " + strings.NewReplacer("[", " ", "]", " ").Replace(greeting) + " "
			for _, c := range tc.wantBefore {
				if !strings.Contains(words, " "+c+" ") {
					t.Errorf("greeting lacks %s: %s", c, greeting)
				}
			}
			for _, c := range tc.wantNot {
				if strings.Contains(words, " "+c+" ") {
					t.Errorf("greeting has %s: %s", c, greeting)
				}
			}
			t.Logf("plaintext capabilities (%s): %s", tc.policy, greeting)
			if tc.policy == backend.PlaintextTLS {
				if got := r.cmd("a", fmt.Sprintf("LOGIN %s %q", testUser, testPass)); !strings.HasPrefix(got[len(got)-1], "a NO") {
					t.Errorf("LOGIN without TLS: %q", got)
				}
			}
			// STARTTLS: afterwards no STARTTLS, no LOGINDISABLED, and LOGIN works.
			c, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: clientTLS()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			caps, err := c.Capability().Wait()
			if err != nil {
				t.Fatal(err)
			}
			if caps.Has(imap.CapStartTLS) || caps.Has(imap.CapLoginDisabled) || !caps.Has("AUTH=PLAIN") {
				t.Errorf("capabilities after STARTTLS: %v", caps)
			}
			if err := c.Login(testUser, testPass).Wait(); err != nil {
				t.Fatalf("LOGIN after STARTTLS: %v", err)
			}
			caps, _ = c.Capability().Wait()
			t.Logf("after STARTTLS and login: %v", capList(caps))
		})
	}
}

func capList(caps imap.CapSet) string {
	var l []string
	for c := range caps {
		l = append(l, string(c))
	}
	slices.Sort(l)
	return strings.Join(l, " ")
}

func TestMailboxes(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	names := func(pattern string, opts *imap.ListOptions) map[string][]imap.MailboxAttr {
		t.Helper()
		l, err := c.List("", pattern, opts).Collect()
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[string][]imap.MailboxAttr)
		for _, d := range l {
			m[d.Mailbox] = d.Attrs
		}
		return m
	}
	// CREATE makes the superior names too (RFC 9051 §6.3.4).
	if err := c.Create("Projects/2024/Q1", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := names("*", nil)
	for _, n := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Projects", "Projects/2024", "Projects/2024/Q1"} {
		if _, ok := got[n]; !ok {
			t.Errorf("LIST * lacks %s: %v", n, got)
		}
	}
	if !slices.Contains(got["Sent"], imap.MailboxAttrSent) || !slices.Contains(got["Projects"], imap.MailboxAttrHasChildren) ||
		!slices.Contains(got["Projects/2024/Q1"], imap.MailboxAttrHasNoChildren) {
		t.Errorf("attributes: %v", got)
	}
	if got := names("%", nil); len(got) != 7 {
		t.Errorf("LIST %%: %v", got)
	}
	if got := names("Projects/%", nil); len(got) != 1 || got["Projects/2024"] == nil {
		t.Errorf("LIST Projects/%%: %v", got)
	}
	if got := names("inbox", nil); got["INBOX"] == nil {
		t.Errorf("LIST inbox (any case): %v", got)
	}
	// LIST-EXTENDED, SPECIAL-USE, LIST-STATUS.
	su := names("*", &imap.ListOptions{SelectSpecialUse: true})
	if len(su) != 5 || su["Trash"] == nil {
		t.Errorf("LIST (SPECIAL-USE): %v", su)
	}
	e.deliver(msgText("s", "b"))
	st, err := c.List("", "INBOX", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, NumUnseen: true, Size: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Status == nil || *st[0].Status.NumMessages != 1 || *st[0].Status.NumUnseen != 1 || *st[0].Status.Size == 0 {
		t.Errorf("LIST RETURN (STATUS): %+v", st)
	}
	// CREATE-SPECIAL-USE.
	if err := c.Create("Everything", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrAll}}).Wait(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names("Everything", nil)["Everything"], imap.MailboxAttrAll) {
		t.Errorf("special use of a created mailbox")
	}
	if err := c.Create("X", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{"\\Bogus"}}).Wait(); imapCode(err) != "USEATTR" {
		t.Errorf("CREATE (USE (\\Bogus)): %v", err)
	}
	// Errors.
	if err := c.Create("inbox", nil).Wait(); imapCode(err) != imap.ResponseCodeAlreadyExists {
		t.Errorf("CREATE inbox: %v", err)
	}
	if err := c.Create("Bad*Name", nil).Wait(); imapCode(err) != imap.ResponseCodeCannot {
		t.Errorf("CREATE Bad*Name: %v", err)
	}
	if err := c.Delete("INBOX").Wait(); imapCode(err) != imap.ResponseCodeCannot {
		t.Errorf("DELETE INBOX: %v", err)
	}
	if err := c.Delete("Nope").Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("DELETE Nope: %v", err)
	}
	if _, err := c.Select("Nope", nil).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("SELECT Nope: %v", err)
	}
	// RENAME moves children along.
	if err := c.Rename("Projects", "Work/Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got = names("*", nil)
	if got["Work/Old/2024/Q1"] == nil || got["Work"] == nil || got["Projects"] != nil {
		t.Errorf("after RENAME: %v", got)
	}
	if err := c.Rename("Work", "Sent", nil).Wait(); imapCode(err) != imap.ResponseCodeAlreadyExists {
		t.Errorf("RENAME onto an existing name: %v", err)
	}
	// DELETE leaves children; the parent becomes \Noselect.
	if err := c.Delete("Work/Old").Wait(); err != nil {
		t.Fatal(err)
	}
	got = names("Work/*", nil)
	if !slices.Contains(got["Work/Old"], imap.MailboxAttrNoSelect) || got["Work/Old/2024"] == nil {
		t.Errorf("after DELETE of a parent: %v", got)
	}
	// RENAME INBOX moves its messages and leaves INBOX empty.
	if err := c.Rename("INBOX", "Old Inbox", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{"INBOX": 0, "Old Inbox": 1} {
		s, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *s.NumMessages != want {
			t.Errorf("STATUS %s after RENAME INBOX: %v %v", name, s, err)
		}
	}
	// SUBSCRIBE, LSUB, LIST (SUBSCRIBED).
	if err := c.Subscribe("Work/Old/2024").Wait(); err != nil {
		t.Fatal(err)
	}
	sub := names("*", &imap.ListOptions{SelectSubscribed: true})
	if sub["Work/Old/2024"] == nil || !slices.Contains(sub["Work/Old/2024"], imap.MailboxAttrSubscribed) || sub["Sent"] == nil || sub["Work"] != nil {
		t.Errorf("LIST (SUBSCRIBED): %v", sub)
	}
	r := e.dialRaw()
	r.login()
	lsub := strings.Join(r.cmd("a", `LSUB "" "*"`), "\n")
	if !strings.Contains(lsub, `* LSUB (\HasChildren) "/" "Work/Old/2024"`) || !strings.Contains(lsub, `"Sent"`) {
		t.Errorf("LSUB: %s", lsub)
	}
	if err := c.Unsubscribe("Work/Old/2024").Wait(); err != nil {
		t.Fatal(err)
	}
	if names("*", &imap.ListOptions{SelectSubscribed: true})["Work/Old/2024"] != nil {
		t.Errorf("UNSUBSCRIBE had no effect")
	}
	if err := c.Subscribe("Nope").Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("SUBSCRIBE Nope: %v", err)
	}
	// LIST "" "" and NAMESPACE.
	root := strings.Join(r.cmd("b", `LIST "" ""`), "\n")
	if !strings.Contains(root, `* LIST (\Noselect) "/" ""`) {
		t.Errorf(`LIST "" "": %s`, root)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' || ns.Other != nil {
		t.Errorf("NAMESPACE: %+v %v", ns, err)
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	e.deliver(msgText("a", "1"))
	e.deliver(msgText("b", "22"))
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, imap.FlagDeleted}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	mb, _ := e.user().Mailbox("INBOX")
	s, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, NumDeleted: true, Size: true, AppendLimit: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(msgText("a", "1")) + len(msgText("b", "22")))
	t.Logf("%+v", s)
	if *s.NumMessages != 2 || s.UIDNext != 3 || s.UIDValidity != mb.UIDValidity || *s.NumUnseen != 1 || *s.NumDeleted != 1 || *s.Size != size ||
		s.AppendLimit == nil || int64(*s.AppendLimit) != e.b.MaxMessageBytes() {
		t.Errorf("STATUS: %+v", s)
	}
}

// TestMailboxNames: UTF-8 (IMAP4rev2, UTF8=ACCEPT) and modified UTF-7
// (IMAP4rev1) name the same mailbox; "&" is written "&-" in both.
func TestMailboxNames(t *testing.T) {
	e := newEnv(t)
	r := e.dialRaw()
	r.login()
	// IMAP4rev1 client: modified UTF-7 (RFC 3501 §5.1.3).
	if got := r.cmd("a", `CREATE "Entw&APw-rfe"`); !strings.HasPrefix(got[len(got)-1], "a OK") {
		t.Fatalf("CREATE in UTF-7: %q", got)
	}
	if got := r.cmd("a", `CREATE "R&-D"`); !strings.HasPrefix(got[len(got)-1], "a OK") {
		t.Fatalf("CREATE R&-D: %q", got)
	}
	got := strings.Join(r.cmd("b", `LIST "" "*"`), "\n")
	if !strings.Contains(got, `"Entw&APw-rfe"`) || !strings.Contains(got, `"R&-D"`) {
		t.Errorf("LIST for IMAP4rev1: %s", got)
	}
	names := map[string]bool{}
	all, _ := e.user().Mailboxes()
	for _, mb := range all {
		names[mb.Name] = true
	}
	if !names["Entwürfe"] || !names["R&D"] {
		t.Errorf("stored names: %v", names)
	}
	// A client that enables IMAP4rev2 sees and may send UTF-8.
	r2 := e.dialRaw()
	r2.login()
	r2.cmd("e", "ENABLE IMAP4rev2")
	got = strings.Join(r2.cmd("b", `LIST "" "*"`), "\n")
	// RFC 9051 §5.1: UTF-8, where "&" is an ordinary character.
	if !strings.Contains(got, `"Entwürfe"`) || !strings.Contains(got, `"R&D"`) {
		t.Errorf("LIST for IMAP4rev2: %s", got)
	}
	if got := r2.cmd("c", `SELECT "Entwürfe"`); !strings.HasPrefix(got[len(got)-1], "c OK") {
		t.Errorf("SELECT in UTF-8: %q", got)
	}
	if got := r2.cmd("c", `CREATE "Données/Été"`); !strings.HasPrefix(got[len(got)-1], "c OK") {
		t.Errorf("CREATE in UTF-8: %q", got)
	}
	if got := r.cmd("d", `STATUS "Donn&AOk-es/&AMk-t&AOk-" (MESSAGES)`); !strings.HasPrefix(got[len(got)-1], "d OK") {
		t.Errorf("UTF-8 name in UTF-7: %q", got)
	}
	// INBOX in any case, also as a hierarchy's first level.
	if got := r.cmd("f", `SELECT iNbOx`); !strings.HasPrefix(got[len(got)-1], "f OK") {
		t.Errorf("SELECT iNbOx: %q", got)
	}
	if got := r.cmd("g", `CREATE inbox/sub`); !strings.HasPrefix(got[len(got)-1], "g OK") {
		t.Errorf("CREATE inbox/sub: %q", got)
	}
	if _, err := e.user().Mailbox("INBOX/sub"); err != nil {
		t.Errorf("inbox/sub is not INBOX/sub: %v", err)
	}
	// Bad names get a clear NO.
	for _, name := range []string{`"a//b"`, `"/lead"`, `"wild%"`, `"x*"`} {
		got := r.cmd("h", "CREATE "+name)
		if last := got[len(got)-1]; !strings.HasPrefix(last, "h NO [CANNOT] Invalid mailbox name") {
			t.Errorf("CREATE %s: %q", name, last)
		}
	}
}

func TestAppend(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AppendLimit = 1000 })
	c := e.client()
	body := msgText("appended", "text")
	cmd := c.Append("Sent", int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen, "$Forwarded"}})
	cmd.Write([]byte(body))
	cmd.Close()
	data, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := e.user().Mailbox("Sent")
	if data.UID != 1 || data.UIDValidity != mb.UIDValidity {
		t.Errorf("APPENDUID: %+v", data)
	}
	msgs, _ := e.user().MessagesByUID(mb.ID, []uint32{1})
	got, _ := e.user().ReadBody(&msgs[0])
	if string(got) != body || !msgs[0].Has(`\Seen`) || !msgs[0].Has("$Forwarded") {
		t.Errorf("stored: %q %v", got, msgs[0].Flags)
	}
	cmd = c.Append("Nope", int64(len(body)), nil)
	cmd.Write([]byte(body))
	cmd.Close()
	if _, err := cmd.Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("APPEND to a missing mailbox: %v", err)
	}
	// Over the limit: NO [TOOBIG] before the literal is sent.
	r := e.dialRaw()
	r.login()
	r.send("a APPEND INBOX {1001}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "a NO [TOOBIG]") {
		t.Errorf("APPEND over the limit: %q", l)
	}
	if got := r.cmd("b", "NOOP"); got[0] != "b OK NOOP completed" {
		t.Errorf("after TOOBIG: %q", got)
	}
	// An unknown system flag is refused before the literal is asked for.
	r.send("c APPEND INBOX (\\Bogus) {3}\r\n")
	if got := r.until("c "); !strings.HasPrefix(got[len(got)-1], "c BAD") {
		t.Errorf("APPEND with an unknown system flag: %q", got)
	}
	if got := r.cmd("d", "NOOP"); got[0] != "d OK NOOP completed" {
		t.Errorf("after a refused APPEND: %q", got)
	}
}
