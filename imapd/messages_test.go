package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// fill delivers n messages "m1".."mn".
func (e *env) fill(n int) {
	for i := 1; i <= n; i++ {
		e.deliver(msgText(fmt.Sprintf("m%d", i), fmt.Sprintf("body %d", i)))
	}
}

func uidsOf(t *testing.T, e *env, mailbox string) []uint32 {
	t.Helper()
	mb, err := e.user().Mailbox(mailbox)
	if err != nil {
		t.Fatal(err)
	}
	uids, err := e.user().UIDs(mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	return uids
}

func TestStore(t *testing.T) {
	e := newEnv(t)
	e.fill(3)
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := func(set imap.NumSet, op imap.StoreFlagsOp, silent bool, flags ...imap.Flag) []*imapclient.FetchMessageBuffer {
		t.Helper()
		msgs, err := c.Store(set, &imap.StoreFlags{Op: op, Silent: silent, Flags: flags}, nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	got := store(imap.SeqSetNum(1, 2), imap.StoreFlagsAdd, false, imap.FlagFlagged, "$Important")
	if len(got) != 2 || !hasFlag(got[0].Flags, imap.FlagFlagged) || !hasFlag(got[1].Flags, "$Important") || got[0].UID != 1 {
		t.Errorf("+FLAGS: %+v", got)
	}
	if got := store(imap.SeqSetNum(1), imap.StoreFlagsDel, true, "$important"); len(got) != 0 {
		t.Errorf("-FLAGS.SILENT answered: %+v", got)
	}
	got = store(imap.UIDSetNum(3), imap.StoreFlagsSet, false, imap.FlagAnswered, imap.FlagDraft)
	if len(got) != 1 || got[0].SeqNum != 3 || len(flagsOf(got[0])) != 2 {
		t.Errorf("UID STORE FLAGS: %+v", got)
	}
	// A STORE that changes nothing still reports the flags.
	if got := store(imap.SeqSetNum(3), imap.StoreFlagsAdd, false, imap.FlagAnswered); len(got) != 1 {
		t.Errorf("idempotent STORE: %+v", got)
	}
	msgs, _ := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Flags: true}).Collect()
	want := [][]string{{`\Flagged`}, {`\Flagged`, "$Important"}, {`\Answered`, `\Draft`}}
	for i, m := range msgs {
		if !slices.Equal(flagsOf(m), want[i]) {
			t.Errorf("message %d flags %v, want %v", i+1, flagsOf(m), want[i])
		}
	}
	// \Recent cannot be stored; unknown system flags are refused.
	if got := store(imap.SeqSetNum(1), imap.StoreFlagsAdd, false, `\Recent`); len(got) != 1 {
		t.Errorf("STORE \\Recent: %+v", got)
	}
	if m, _ := e.user().MessagesByUID(1, []uint32{1}); len(m) == 1 && m[0].Has(`\Recent`) {
		t.Errorf("\\Recent was stored: %v", m[0].Flags)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{`\Bogus`}}, nil).Collect(); err == nil {
		t.Errorf("STORE \\Bogus succeeded")
	}
}

func TestCopyMoveExpunge(t *testing.T) {
	e := newEnv(t)
	e.fill(5)
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	archive, _ := e.user().Mailbox("Archive")
	// COPY with COPYUID (RFC 4315).
	cd, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if cd.UIDValidity != archive.UIDValidity || cd.SourceUIDs.String() != "1:2" || cd.DestUIDs.String() != "1:2" {
		t.Errorf("COPYUID: %+v", cd)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nope").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("COPY to a missing mailbox: %v", err)
	}
	// MOVE (RFC 6851): COPYUID, then EXPUNGE for each.
	md, err := c.Move(imap.UIDSetNum(2, 4), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if md.SourceUIDs.String() != "2,4" || md.DestUIDs.String() != "1:2" {
		t.Errorf("MOVE: %+v", md)
	}
	if mbox := c.Mailbox(); mbox.NumMessages != 3 {
		t.Errorf("client counts %d messages after MOVE", mbox.NumMessages)
	}
	if got := uidsOf(t, e, "INBOX"); !slices.Equal(got, []uint32{1, 3, 5}) {
		t.Errorf("INBOX after MOVE: %v", got)
	}

	// EXPUNGE: only \Deleted, with renumbering sequence numbers.
	if _, err := c.Store(imap.SeqSetNum(1, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	seqs, err := c.Expunge().Collect()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs, []uint32{1, 2}) {
		t.Errorf("EXPUNGE sent %v, want [1 2]", seqs)
	}
	if got := uidsOf(t, e, "INBOX"); !slices.Equal(got, []uint32{3}) {
		t.Errorf("INBOX after EXPUNGE: %v", got)
	}
	// UID EXPUNGE (RFC 4315) removes only the named \Deleted messages.
	e.fill(2) // UIDs 6, 7
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(imap.SeqSetNum(1, 2, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	seqs, err = c.UIDExpunge(imap.UIDSetNum(6)).Collect()
	if err != nil || !slices.Equal(seqs, []uint32{2}) {
		t.Errorf("UID EXPUNGE 6: %v %v", seqs, err)
	}
	// CLOSE expunges silently; UNSELECT does not.
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if got := uidsOf(t, e, "INBOX"); !slices.Equal(got, []uint32{3, 7}) {
		t.Errorf("INBOX after UNSELECT: %v", got)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	if got := uidsOf(t, e, "INBOX"); len(got) != 0 {
		t.Errorf("INBOX after CLOSE: %v", got)
	}
}

// TestExamineReadOnly: imapserver does not enforce EXAMINE; the session
// refuses every change with NO [READ-ONLY].
// TestMoveWithinMailbox: MOVE to the selected mailbox itself gives the
// messages new UIDs (RFC 6851 §3.3 allows it), atomically.
func TestMoveWithinMailbox(t *testing.T) {
	e := newEnv(t)
	e.fill(3)
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	md, err := c.Move(imap.SeqSetNum(1, 2), "INBOX").Wait()
	if err != nil || md.SourceUIDs.String() != "1:2" || md.DestUIDs.String() != "4:5" {
		t.Fatalf("MOVE to the same mailbox: %+v, %v", md, err)
	}
	if got := uidsOf(t, e, "INBOX"); !slices.Equal(got, []uint32{3, 4, 5}) {
		t.Errorf("INBOX after MOVE to itself: %v", got)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 3 {
		t.Errorf("client counts %d messages", n)
	}
	mb, _ := e.user().Mailbox("INBOX")
	if mb.Messages != 3 {
		t.Errorf("counter says %d messages", mb.Messages)
	}
}

func TestExamineReadOnly(t *testing.T) {
	e := newEnv(t)
	e.fill(2)
	u := e.user()
	inbox, _ := u.Mailbox("INBOX")
	u.StoreFlags(inbox.ID, []uint32{1}, 1, []string{`\Deleted`}, 0)
	r := e.dialRaw()
	r.login()
	got := r.cmd("a", "EXAMINE INBOX")
	if last := got[len(got)-1]; last != "a OK [READ-ONLY] EXAMINE completed" || !slices.Contains(got, "* OK [PERMANENTFLAGS ()] Permanent flags") {
		t.Errorf("EXAMINE: %q", got)
	}
	for _, cmd := range []string{`STORE 1 +FLAGS (\Seen)`, `UID STORE 1 FLAGS ()`, "EXPUNGE", "UID EXPUNGE 1", "MOVE 1 Trash", "UID MOVE 1 Trash"} {
		got := r.cmd("b", cmd)
		if last := got[len(got)-1]; !strings.HasPrefix(last, "b NO [READ-ONLY]") {
			t.Errorf("%s in EXAMINE: %q", cmd, got)
		}
	}
	// COPY out of a read-only mailbox is allowed.
	if got := r.cmd("c", "COPY 2 Archive"); !strings.HasPrefix(got[len(got)-1], "c OK [COPYUID") {
		t.Errorf("COPY in EXAMINE: %q", got)
	}
	// CLOSE expunges nothing.
	if got := r.cmd("d", "CLOSE"); got[len(got)-1] != "d OK CLOSE completed" {
		t.Errorf("CLOSE in EXAMINE: %q", got)
	}
	msgs, _ := u.MessagesByUID(inbox.ID, []uint32{1, 2})
	if len(msgs) != 2 || !msgs[0].Has(`\Deleted`) || msgs[1].Has(`\Seen`) {
		t.Errorf("EXAMINE changed the mailbox: %+v", msgs)
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t)
	day := func(d int) string { return fmt.Sprintf("%02d Jan 2006 12:00:00 +0000", d) }
	msgs := []string{
		"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nCc: carol@example.com\r\nSubject: Lunch plans\r\nDate: Mon, " + day(2) + "\r\nX-Priority: 1\r\n\r\nShall we meet at noon?\r\n",
		"From: Carol <carol@example.com>\r\nTo: alice@example.org\r\nBcc: secret@example.com\r\nSubject: =?UTF-8?Q?R=C3=A9union?=\r\nDate: Tue, " + day(3) + "\r\n\r\nThe agenda is attached.\r\n",
		"From: Dave <dave@example.com>\r\nTo: bob@example.net\r\nSubject: Invoice\r\nDate: Wed, " + day(4) + "\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nMontant d=FB: 10 =80, d=E9j=E0 pay=E9.\r\n" + strings.Repeat("padding line\r\n", 50),
	}
	for _, m := range msgs {
		e.deliver(m)
	}
	c := e.client()
	c.Select("INBOX", nil).Wait()
	c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}}, nil).Collect()
	c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered, "$Work"}}, nil).Collect()
	c.Store(imap.SeqSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted, imap.FlagDraft}}, nil).Collect()
	today := time.Now()
	cases := []struct {
		name     string
		criteria imap.SearchCriteria
		want     []uint32
	}{
		{"ALL", imap.SearchCriteria{}, []uint32{1, 2, 3}},
		{"SEEN", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, []uint32{1}},
		{"UNSEEN", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{2, 3}},
		{"ANSWERED", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagAnswered}}, []uint32{2}},
		{"DELETED DRAFT", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted, imap.FlagDraft}}, []uint32{3}},
		{"UNDELETED", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}, []uint32{1, 2}},
		{"FLAGGED", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, []uint32{1}},
		{"KEYWORD $Work", imap.SearchCriteria{Flag: []imap.Flag{"$Work"}}, []uint32{2}},
		{"UNKEYWORD $Work", imap.SearchCriteria{NotFlag: []imap.Flag{"$Work"}}, []uint32{1, 3}},
		{"FROM carol", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "carol"}}}, []uint32{2}},
		{"TO bob", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "To", Value: "BOB"}}}, []uint32{3}},
		{"CC carol", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Cc", Value: "carol"}}}, []uint32{1}},
		{"BCC secret", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Bcc", Value: "secret"}}}, []uint32{2}},
		{"SUBJECT réunion (encoded word)", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "réunion"}}}, []uint32{2}},
		{"HEADER X-Priority 1", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "X-Priority", Value: "1"}}}, []uint32{1}},
		{"HEADER X-Priority \"\"", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "X-Priority", Value: ""}}}, []uint32{1}},
		{"BODY noon", imap.SearchCriteria{Body: []string{"NOON"}}, []uint32{1}},
		{"BODY déjà (iso-8859-1, QP)", imap.SearchCriteria{Body: []string{"déjà payé"}}, []uint32{3}},
		{"BODY lunch (header only)", imap.SearchCriteria{Body: []string{"lunch"}}, nil},
		{"TEXT lunch", imap.SearchCriteria{Text: []string{"lunch"}}, []uint32{1}},
		{"TEXT agenda", imap.SearchCriteria{Text: []string{"agenda"}}, []uint32{2}},
		{"SENTSINCE 3-Jan", imap.SearchCriteria{SentSince: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC)}, []uint32{2, 3}},
		{"SENTBEFORE 3-Jan", imap.SearchCriteria{SentBefore: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC)}, []uint32{1}},
		{"SENTON 3-Jan", imap.SearchCriteria{SentSince: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC), SentBefore: time.Date(2006, 1, 4, 0, 0, 0, 0, time.UTC)}, []uint32{2}},
		{"SINCE today", imap.SearchCriteria{Since: today.AddDate(0, 0, -1)}, []uint32{1, 2, 3}},
		{"BEFORE 2006", imap.SearchCriteria{Before: time.Date(2006, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
		{"LARGER 400", imap.SearchCriteria{Larger: 400}, []uint32{3}},
		{"SMALLER 400", imap.SearchCriteria{Smaller: 400}, []uint32{1, 2}},
		{"UID 2:*", imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: 2, Stop: 0}}}}, []uint32{2, 3}},
		{"2:3 (seq)", imap.SearchCriteria{SeqNum: []imap.SeqSet{imap.SeqSetNum(2, 3)}}, []uint32{2, 3}},
		{"NOT SEEN", imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagSeen}}}}, []uint32{2, 3}},
		{"OR FLAGGED DRAFT", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagFlagged}}, {Flag: []imap.Flag{imap.FlagDraft}}}}}, []uint32{1, 3}},
		{"NEW (no \\Recent)", imap.SearchCriteria{Flag: []imap.Flag{`\Recent`}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := c.UIDSearch(&tc.criteria, nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			var got []uint32
			for _, u := range data.AllUIDs() {
				got = append(got, uint32(u))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("UID SEARCH %s = %v, want %v", tc.name, got, tc.want)
			}
		})
	}

	// Plain SEARCH answers sequence numbers; after an EXPUNGE they differ
	// from UIDs.
	c.Expunge().Collect()
	r := e.dialRaw()
	r.login()
	r.cmd("s", "SELECT INBOX")
	if got := r.cmd("a", "SEARCH UNSEEN"); got[0] != "* SEARCH 2" {
		t.Errorf("SEARCH UNSEEN: %q", got)
	}
	if got := r.cmd("a", "UID SEARCH UNSEEN"); got[0] != "* SEARCH 2" {
		t.Errorf("UID SEARCH UNSEEN: %q", got)
	}
	if got := r.cmd("a", "SEARCH CHARSET UTF-8 SUBJECT réunion"); got[0] != "* SEARCH 2" {
		t.Errorf("SEARCH CHARSET UTF-8: %q", got)
	}
	if got := r.cmd("a", "SEARCH CHARSET KOI8-R ALL"); !strings.HasPrefix(got[len(got)-1], "a NO [BADCHARSET") {
		t.Errorf("SEARCH CHARSET KOI8-R: %q", got)
	}
	// ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).
	if got := r.cmd("b", "SEARCH RETURN (MIN MAX COUNT) ALL"); got[0] != `* ESEARCH (TAG "b") MIN 1 MAX 2 COUNT 2` {
		t.Errorf("ESEARCH: %q", got)
	}
	if got := r.cmd("c", "UID SEARCH RETURN (ALL) ALL"); got[0] != `* ESEARCH (TAG "c") UID ALL 1:2` {
		t.Errorf("UID ESEARCH: %q", got)
	}
	r.cmd("d", "SEARCH RETURN (SAVE) FLAGGED")
	if got := r.cmd("e", "FETCH $ (UID)"); got[0] != "* 1 FETCH (UID 1)" || len(got) != 2 {
		t.Errorf("FETCH $: %q", got)
	}
	if got := r.cmd("f", "UID SEARCH NOT UID $"); got[0] != "* SEARCH 2" {
		t.Errorf("SEARCH with $: %q", got)
	}
	// A number beyond the mailbox is no error: it matches nothing.
	if got := r.cmd("g", "SEARCH 9"); !slices.Equal(got, []string{"* SEARCH", "g OK SEARCH completed"}) {
		t.Errorf("SEARCH beyond the last message: %q", got)
	}
}
