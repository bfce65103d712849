package imapd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// expect reads len(want) lines and checks each.
func (r *raw) expect(step string, want ...string) {
	r.t.Helper()
	for i, w := range want {
		if got := r.line(); got != w {
			r.t.Fatalf("%s: line %d:\n got %q\nwant %q", step, i+1, got, w)
		}
	}
}

// expectCmd runs a command and checks all its responses, the tagged one
// last.
func (r *raw) expectCmd(tag, command string, want ...string) {
	r.t.Helper()
	got := r.cmd(tag, command)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		r.t.Fatalf("%s %s:\n got %q\nwant %q", tag, command, got, want)
	}
}

// statusLine is the STATUS response the backend's counters of name give
// for items.
func statusLine(t *testing.T, e *env, name string, items ...string) string {
	t.Helper()
	mb, err := e.user().Mailbox(name)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, it := range items {
		var v uint64
		switch it {
		case "MESSAGES":
			v = uint64(mb.Messages)
		case "UIDNEXT":
			v = uint64(mb.UIDNext)
		case "UIDVALIDITY":
			v = uint64(mb.UIDValidity)
		case "UNSEEN":
			v = uint64(mb.Unseen)
		case "HIGHESTMODSEQ":
			v = mb.HighestModSeq
		default:
			t.Fatalf("statusLine: item %s", it)
		}
		parts = append(parts, fmt.Sprintf("%s %d", it, v))
	}
	return fmt.Sprintf("* STATUS %s (%s)", appendMailbox(nil, name, false), strings.Join(parts, " "))
}

func appendTo(t *testing.T, e *env, mailbox, subject string) {
	t.Helper()
	if _, err := e.user().Append(context.Background(), mailbox, strings.NewReader(msgText(subject, "x")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// TestNotifyTwoSessions: a session with NOTIFY over INBOXES, a mailbox
// excluded with NONE and PERSONAL, with a mailbox selected, is told,
// between commands and without IDLE, of exactly what another session and
// deliveries do: STATUS for other mailboxes' messages (RFC 5465 §5.1-5.3),
// LIST for created, renamed and deleted mailboxes and for subscription
// changes (§5.4, §5.5), EXISTS with MessageNew's fetch attributes, FETCH
// FLAGS and VANISHED for the selected one. Each step's lines are read
// before the next step starts, so their order is the server's.
func TestNotifyTwoSessions(t *testing.T) {
	e := newEnv(t)
	e.fill(2)
	a := e.dialRaw()
	a.login()
	a.cmd("a", "ENABLE QRESYNC")
	a.cmd("b", "CREATE Work")
	a.cmd("c", "SELECT Work")
	cmd := "NOTIFY SET STATUS (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) " +
		"(INBOXES (MessageNew MessageExpunge FlagChange)) (MAILBOXES Junk NONE) " +
		"(PERSONAL (MessageNew MessageExpunge MailboxName SubscriptionChange))"
	// Every mailbox but the selected one and Junk, with what its events
	// need (RFC 5465 §3), HIGHESTMODSEQ as CONDSTORE is on.
	initial := []string{
		statusLine(t, e, "Archive", "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"),
		statusLine(t, e, "Drafts", "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"),
		statusLine(t, e, "INBOX", "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"),
		statusLine(t, e, "Sent", "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"),
		statusLine(t, e, "Trash", "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"),
		"d OK NOTIFY completed",
	}
	a.expectCmd("d", cmd, initial...)

	b := e.dialRaw()
	b.login()
	ok := func(tag, command string) {
		t.Helper()
		if got := b.cmd(tag, command); !strings.HasPrefix(got[len(got)-1], tag+" OK") {
			t.Fatalf("other session: %s: %q", command, got)
		}
	}
	newMail := []string{"MESSAGES", "UIDNEXT", "UNSEEN", "HIGHESTMODSEQ"}
	flags := []string{"UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"}
	steps := []struct {
		name string
		do   func()
		want func() []string
	}{
		{"delivery to INBOX", func() { e.deliver(msgText("m3", "x")) },
			func() []string { return []string{statusLine(t, e, "INBOX", newMail...)} }},
		{"APPEND to Archive", func() { ok("b1", "APPEND Archive {5+}\r\nhello") },
			func() []string { return []string{statusLine(t, e, "Archive", newMail...)} }},
		// Junk is excluded (NONE), and PERSONAL has no FlagChange: only
		// the flag change in INBOX is told.
		{"flags in Junk, Archive and INBOX", func() {
			appendTo(t, e, "Junk", "spam")
			ok("b2", "SELECT Archive")
			ok("b3", `STORE 1 +FLAGS (\Seen)`)
			ok("b4", "SELECT INBOX")
			ok("b5", `STORE 1 +FLAGS (\Flagged \Seen)`)
		}, func() []string { return []string{statusLine(t, e, "INBOX", flags...)} }},
		{"CREATE", func() { ok("b6", "CREATE Projects") },
			func() []string { return []string{`* LIST () "/" "Projects"`} }},
		{"RENAME", func() { ok("b7", "RENAME Projects Plans") },
			func() []string { return []string{`* LIST () "/" "Plans" ("OLDNAME" ("Projects"))`} }},
		{"SUBSCRIBE", func() { ok("b8", "SUBSCRIBE Plans") },
			func() []string { return []string{`* LIST (\Subscribed) "/" "Plans"`} }},
		{"DELETE", func() { ok("b9", "DELETE Plans") },
			func() []string { return []string{`* LIST (\NonExistent) "/" "Plans"`} }},
		{"UNSUBSCRIBE a deleted mailbox", func() { ok("b10", "UNSUBSCRIBE Plans") },
			func() []string { return []string{`* LIST (\NonExistent) "/" "Plans"`} }},
		// Drafts is subscribed already: the second SUBSCRIBE changes
		// nothing and tells nothing.
		{"UNSUBSCRIBE and SUBSCRIBE twice", func() {
			ok("b11", "UNSUBSCRIBE Drafts")
			ok("b11", "SUBSCRIBE Drafts")
			ok("b11", "SUBSCRIBE Drafts")
		}, func() []string { return []string{`* LIST () "/" "Drafts"`, `* LIST (\Subscribed) "/" "Drafts"`} }},
		{"delivery into the selected mailbox", func() { appendTo(t, e, "Work", "w1") },
			func() []string {
				return []string{"* 1 EXISTS", "* 1 RECENT", `* 1 FETCH (UID 1 FLAGS (\Recent))`}
			}},
		{"flags in the selected mailbox", func() {
			ok("b12", "SELECT Work")
			ok("b13", `STORE 1 +FLAGS.SILENT (\Flagged)`)
		}, func() []string {
			mb, _ := e.user().Mailbox("Work")
			return []string{fmt.Sprintf(`* 1 FETCH (UID 1 FLAGS (\Flagged \Recent) MODSEQ (%d))`, mb.HighestModSeq)}
		}},
		{"\\Deleted in the selected mailbox", func() { ok("b14", `STORE 1 +FLAGS.SILENT (\Deleted)`) },
			func() []string {
				mb, _ := e.user().Mailbox("Work")
				m, _ := e.user().MessagesByUID(mb.ID, []uint32{1})
				return []string{fmt.Sprintf(`* 1 FETCH (UID 1 FLAGS (%s \Recent) MODSEQ (%d))`, strings.Join(m[0].Flags, " "), mb.HighestModSeq)}
			}},
		{"expunge in the selected mailbox", func() { ok("b15", "EXPUNGE") },
			func() []string { return []string{"* VANISHED 1"} }},
		{"MOVE from INBOX to Archive", func() {
			ok("b16", "SELECT INBOX")
			ok("b17", "MOVE 1 Archive")
		}, func() []string {
			// One commit, one wake-up: both STATUS, by name.
			return []string{statusLine(t, e, "Archive", newMail...), statusLine(t, e, "INBOX", newMail...)}
		}},
	}
	for _, st := range steps {
		st.do()
		a.expect(st.name, st.want()...)
	}
	// Nothing else was sent: the next command's response is its own.
	a.expectCmd("e", "NOOP", "e OK NOOP completed")
}

// TestNotifySelectedDelayed: SELECTED-DELAYED pushes new messages and flag
// changes between commands but holds expunges until a command that allows
// them, never during FETCH (RFC 5465 §6, RFC 9051 §7.5.1).
func TestNotifySelectedDelayed(t *testing.T) {
	e := newEnv(t)
	e.fill(2)
	a := e.dialRaw()
	a.login()
	a.cmd("a", "SELECT INBOX")
	a.expectCmd("b", "NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge FlagChange))", "b OK NOTIFY completed")
	b := e.dialRaw()
	b.login()
	b.cmd("s", "SELECT INBOX")
	b.cmd("t", `STORE 1 +FLAGS.SILENT (\Deleted)`)
	a.expect("flag change", `* 1 FETCH (UID 1 FLAGS (\Deleted \Recent))`)
	b.cmd("u", "EXPUNGE")
	e.deliver(msgText("m3", "x"))
	// The expunge is held; the new message is told (as the third: message
	// 1 still counts).
	a.expect("new message after a held expunge", "* 3 EXISTS", "* 3 RECENT")
	a.expectCmd("c", "FETCH 3 (UID)", "* 3 FETCH (UID 3)", "c OK FETCH completed")
	a.expectCmd("d", "NOOP", "* 1 EXPUNGE", "d OK NOOP completed")
}

// TestNotifySelectedWithoutFlagChange: a SELECTED group without
// FlagChange: other sessions' flag changes are not told; new messages are.
func TestNotifySelectedWithoutFlagChange(t *testing.T) {
	e := newEnv(t)
	e.fill(1)
	a := e.dialRaw()
	a.login()
	a.cmd("a", "ENABLE IMAP4rev2")
	a.cmd("b", "SELECT INBOX")
	a.expectCmd("c", "NOTIFY SET (SELECTED (MessageNew MessageExpunge))", "c OK NOTIFY completed")
	b := e.dialRaw()
	b.login()
	b.cmd("s", "SELECT INBOX")
	b.cmd("t", `STORE 1 +FLAGS (\Flagged)`)
	e.deliver(msgText("m2", "x"))
	a.expect("new message, no flag change", "* 2 EXISTS")
	a.expectCmd("d", "NOOP", "d OK NOOP completed")
}

// TestNotifyWithoutSelectedGroup: without a SELECTED group the selected
// mailbox is reported as without NOTIFY, when a command ends, not between
// commands; NOTIFY NONE ends the other notifications.
func TestNotifyWithoutSelectedGroup(t *testing.T) {
	e := newEnv(t)
	a := e.dialRaw()
	a.login()
	a.cmd("a", "ENABLE IMAP4rev2")
	a.cmd("b", "SELECT INBOX")
	a.expectCmd("c", "NOTIFY SET (PERSONAL (MailboxName MessageNew))", "c OK NOTIFY completed")
	e.deliver(msgText("m1", "x"))
	b := e.dialRaw()
	b.login()
	b.cmd("s", "CREATE Later")
	// The delivery to the selected mailbox came first but is not pushed.
	a.expect("mailbox event only", `* LIST () "/" "Later"`)
	a.expectCmd("d", "NOOP", "* 1 EXISTS", "d OK NOOP completed")
	// The session's own change is told as another's.
	a.expectCmd("d2", "CREATE Mine", `* LIST () "/" "Mine"`, "d2 OK CREATE completed")
	a.expectCmd("e", "NOTIFY NONE", "e OK NOTIFY completed")
	b.cmd("t", "CREATE Unseen")
	e.deliver(msgText("m2", "x"))
	a.expectCmd("f", "NOOP", "* 2 EXISTS", "f OK NOOP completed")
}

// TestNotifyMessageNewFetch: MessageNew's fetch attributes come after the
// EXISTS; a body fetch that sets \Seen is reported in it and not again.
func TestNotifyMessageNewFetch(t *testing.T) {
	e := newEnv(t)
	a := e.dialRaw()
	a.login()
	a.cmd("a", "ENABLE IMAP4rev2")
	a.cmd("b", "SELECT INBOX")
	a.expectCmd("c", "NOTIFY SET (SELECTED (MessageNew (UID BODY[HEADER.FIELDS (Subject)]) MessageExpunge FlagChange))", "c OK NOTIFY completed")
	e.deliver(msgText("hello", "x"))
	a.expect("new message with its header", "* 1 EXISTS",
		`* 1 FETCH (UID 1 FLAGS (\Seen) BODY[HEADER.FIELDS (SUBJECT)] {18}`, "Subject: hello", "", ")")
	a.expectCmd("d", "NOOP", "d OK NOOP completed")
	if got := e.user(); got != nil {
		mb, _ := got.Mailbox("INBOX")
		if mb.Unseen != 0 {
			t.Errorf("the body fetch did not set \\Seen: %d unseen", mb.Unseen)
		}
	}
}

// TestNotifyFilters: SUBSCRIBED, SUBTREE and INBOXES cover what RFC 5465
// §6 says; a mailbox outside every group is never told.
func TestNotifyFilters(t *testing.T) {
	e := newEnv(t)
	u := e.user()
	for _, n := range []string{"Lists", "Lists/go", "Other"} {
		if err := u.CreateMailbox(n, ""); err != nil {
			t.Fatal(err)
		}
	}
	// INBOX is to be covered by INBOXES alone.
	if err := u.Subscribe("INBOX", false); err != nil {
		t.Fatal(err)
	}
	a := e.dialRaw()
	a.login()
	a.expectCmd("a", "NOTIFY SET (SUBSCRIBED (MessageNew)) (SUBTREE Lists (MessageNew)) (INBOXES (MessageExpunge))",
		"a OK NOTIFY completed")
	newMail := []string{"MESSAGES", "UIDNEXT", "UNSEEN"}
	// Sent is subscribed (a default mailbox); Other is in no group and
	// comes first, so that a STATUS of it would come before the one of
	// Sent; INBOX asks for expunges only.
	appendTo(t, e, "Other", "o")
	e.deliver(msgText("m1", "x"))
	appendTo(t, e, "Sent", "s")
	a.expect("subscribed", statusLine(t, e, "Sent", newMail...))
	appendTo(t, e, "Lists/go", "l")
	a.expect("subtree", statusLine(t, e, "Lists/go", newMail...))
	b := e.dialRaw()
	b.login()
	b.cmd("s", "SELECT INBOX")
	b.cmd("t", `STORE 1 +FLAGS.SILENT (\Deleted)`)
	b.cmd("u", "EXPUNGE")
	a.expect("inboxes", statusLine(t, e, "INBOX", "MESSAGES", "UIDNEXT", "UNSEEN"))
	a.expectCmd("b", "NOOP", "b OK NOOP completed")
}

// TestNotifyCoalesces: changes made while the session is busy come as one
// STATUS per mailbox, whatever their number (here during an APPEND that
// waits for its literal); the session's own APPEND is told too.
func TestNotifyCoalesces(t *testing.T) {
	e := newEnv(t)
	a := e.dialRaw()
	a.login()
	a.expectCmd("a", "NOTIFY SET (PERSONAL (MessageNew MessageExpunge FlagChange))", "a OK NOTIFY completed")
	a.send("b APPEND Trash {5}\r\n")
	if l := a.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND: %q", l)
	}
	for i := 0; i < 3; i++ {
		appendTo(t, e, "Archive", fmt.Sprint("a", i))
		e.deliver(msgText(fmt.Sprint("m", i), "x"))
	}
	a.send("hello\r\n")
	got := a.until("b ")
	newMail := []string{"MESSAGES", "UIDNEXT", "UNSEEN"}
	mb, _ := e.user().Mailbox("Trash")
	want := []string{statusLine(t, e, "Archive", newMail...), statusLine(t, e, "INBOX", newMail...),
		statusLine(t, e, "Trash", newMail...), fmt.Sprintf("b OK [APPENDUID %d 1] APPEND completed", mb.UIDValidity)}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("one STATUS per mailbox:\n got %q\nwant %q", got, want)
	}
}

// TestNotifyOverflow: a session that falls further behind than
// MaxPendingNotifications gets NOTIFICATIONOVERFLOW once and nothing more
// (RFC 5465 §5.8), and goes on working.
func TestNotifyOverflow(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPendingNotifications = 3 })
	a := e.dialRaw()
	a.login()
	a.cmd("s", "SELECT INBOX")
	a.expectCmd("a", "NOTIFY SET (PERSONAL (MailboxName))", "a OK NOTIFY completed")
	// While the session waits for a literal, four mailboxes are made.
	a.send("b APPEND Trash {5}\r\n")
	if l := a.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND: %q", l)
	}
	u := e.user()
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		if err := u.CreateMailbox(n, ""); err != nil {
			t.Fatal(err)
		}
	}
	a.send("hello\r\n")
	mb, _ := e.user().Mailbox("Trash")
	a.expect("overflow", "* OK [NOTIFICATIONOVERFLOW] Too many changes to report; NOTIFY is off",
		fmt.Sprintf("b OK [APPENDUID %d 1] APPEND completed", mb.UIDValidity))
	if err := u.CreateMailbox("n5", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver(msgText("m1", "x"))
	// Off: no LIST; the selected mailbox is still kept in sync.
	a.expectCmd("c", "NOOP", "* 1 EXISTS", "* 1 RECENT", "c OK NOOP completed")
	// Within the limit, the same session is notified again after NOTIFY.
	a.expectCmd("d", "NOTIFY SET (PERSONAL (MailboxName))", "d OK NOTIFY completed")
	if err := u.CreateMailbox("n6", ""); err != nil {
		t.Fatal(err)
	}
	a.expect("after a new NOTIFY", `* LIST () "/" "n6"`)
}

// TestNotifyInIdle: in IDLE the notifications NOTIFY asked for come too
// (RFC 5465 §4).
func TestNotifyInIdle(t *testing.T) {
	e := newEnv(t)
	a := e.dialRaw()
	a.login()
	a.cmd("s", "SELECT INBOX")
	a.expectCmd("a", "NOTIFY SET (PERSONAL (MailboxName))", "a OK NOTIFY completed")
	a.send("i IDLE\r\n")
	if l := a.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	if err := e.user().CreateMailbox("Fresh", ""); err != nil {
		t.Fatal(err)
	}
	a.expect("NOTIFY in IDLE", `* LIST () "/" "Fresh"`)
	e.deliver(msgText("m1", "x"))
	a.expect("the selected mailbox in IDLE", "* 1 EXISTS", "* 1 RECENT")
	a.send("DONE\r\n")
	a.expect("DONE", "i OK IDLE terminated")
}

// TestNotifyCommand: NOTIFY's syntax (RFC 5465 §8) and its refusals: BAD
// for what is malformed or invalid, NO [BADEVENT] with the supported
// events for an event Roost does not offer (§5: AnnotationChange without
// ANNOTATE, the metadata events without METADATA).
func TestNotifyCommand(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBadCommands = 100 })
	r := e.dialRaw()
	r.line()
	if got := r.cmd("p", "NOTIFY NONE"); !strings.HasPrefix(got[len(got)-1], "p BAD") {
		t.Errorf("NOTIFY before login: %q", got)
	}
	r.cmd("L", fmt.Sprintf("LOGIN %s %q", testUser, testPass))
	if got := r.cmd("c", "CAPABILITY"); !strings.Contains(got[0], " NOTIFY ") {
		t.Errorf("CAPABILITY lacks NOTIFY: %q", got[0])
	}
	const badEvent = "NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"
	for _, c := range []struct{ args, want string }{
		{"", "BAD"},
		{"BOGUS", "BAD"},
		{"NONE extra", "BAD"},
		{"SET", "BAD"},
		{"SET ()", "BAD"},
		{"SET STATUS", "BAD"},
		{"SET STATUS ()", "BAD"},
		{"SET (UNKNOWN (MessageNew))", "BAD"},
		{"SET (PERSONAL MessageNew)", "BAD"},
		{"SET (PERSONAL ())", "BAD"},
		{"SET (PERSONAL (MessageNew) )", "BAD"},
		{"SET (PERSONAL (MessageNew)) ", "BAD"},
		{"SET (SUBTREE (MessageNew))", "BAD"},
		{"SET (MAILBOXES () (MessageNew))", "BAD"},
		{"SET (SELECTED (MailboxName))", "BAD"},
		{"SET (SELECTED (MessageNew))", "BAD"},
		{"SET (SELECTED (MessageExpunge FlagChange))", "BAD"},
		{"SET (SELECTED (MessageNew (BOGUS) MessageExpunge))", "BAD"},
		{"SET (SELECTED (MessageNew () MessageExpunge))", "BAD"},
		{"SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED (MessageNew MessageExpunge))", "BAD"},
		{"SET (PERSONAL (AnnotationChange))", badEvent},
		{"SET (PERSONAL (MailboxMetadataChange))", badEvent},
		{"SET (PERSONAL (ServerMetadataChange))", badEvent},
		{"SET (PERSONAL (XSomething MessageNew))", badEvent},
		{"SET (SELECTED (AnnotationChange))", badEvent},
		{"SET (SELECTED NONE) (PERSONAL NONE)", "OK"},
		{"SET STATUS (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge)) (SUBTREE (Lists \"A b\") (MessageNew)) (MAILBOXES INBOX NONE)", "OK"},
		{"set (personal (messagenew messageexpunge flagchange mailboxname subscriptionchange))", "OK"},
		{"NONE", "OK"},
	} {
		got := r.cmd("t", "NOTIFY "+c.args)
		if last := got[len(got)-1]; !strings.HasPrefix(last, "t "+c.want) {
			t.Errorf("NOTIFY %s: %q, want %s", c.args, got, c.want)
		}
	}
	if got := r.cmd("z", "NOOP"); len(got) != 1 {
		t.Errorf("session after the refusals: %q", got)
	}
}

// TestNotifySessionEnds: a NOTIFY session waiting between commands ends
// cleanly on Shutdown (BYE) and its account watcher is let go.
func TestNotifySessionEnds(t *testing.T) {
	e := newEnv(t)
	a := e.dialRaw()
	a.login()
	a.expectCmd("a", "NOTIFY SET (PERSONAL (MailboxName))", "a OK NOTIFY completed")
	e.stop()
	if got := a.readEOF(); !strings.Contains(got, "* BYE") {
		t.Errorf("Shutdown of a NOTIFY session: %q", got)
	}
}

// TestNotifyCompressed: notifications pushed between commands go through
// COMPRESS=DEFLATE, each flushed, while the wait for the next command
// reads beneath the decompressor.
func TestNotifyCompressed(t *testing.T) {
	e := newEnv(t)
	r := e.dialRaw()
	r.login()
	d := startDeflate(t, r)
	if got := d.cmd(t, "a", "NOTIFY SET (PERSONAL (MailboxName))"); len(got) != 1 || got[0] != "a OK NOTIFY completed" {
		t.Fatalf("NOTIFY over deflate: %q", got)
	}
	for _, name := range []string{"One", "Two"} {
		if err := e.user().CreateMailbox(name, ""); err != nil {
			t.Fatal(err)
		}
		l, err := d.r.ReadString('\n')
		if want := `* LIST () "/" "` + name + "\"\r\n"; err != nil || l != want {
			t.Fatalf("pushed over deflate: %q %v, want %q", l, err, want)
		}
	}
	if got := d.cmd(t, "b", "NOOP"); len(got) != 1 || got[0] != "b OK NOOP completed" {
		t.Errorf("NOOP after pushes over deflate: %q", got)
	}
}
