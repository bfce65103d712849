package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestCondStoreImapclient: CONDSTORE (RFC 7162 §3.1) through imapclient:
// SELECT (CONDSTORE) gives HIGHESTMODSEQ, FETCH CHANGEDSINCE returns what
// changed after a modseq, STORE UNCHANGEDSINCE refuses a message changed
// since with [MODIFIED], STATUS HIGHESTMODSEQ follows.
func TestCondStoreImapclient(t *testing.T) {
	e := newEnv(t)
	e.fill(4)
	c := e.client()
	sel, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.HighestModSeq == 0 {
		t.Fatalf("SELECT (CONDSTORE): no HIGHESTMODSEQ: %+v", sel)
	}
	base := sel.HighestModSeq
	other := e.client()
	other.Select("INBOX", nil).Wait()
	if _, err := other.Store(imap.SeqSetNum(2, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3, 4), &imap.FetchOptions{UID: true, Flags: true, ModSeq: true, ChangedSince: base}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for _, m := range msgs {
		if m.ModSeq > base && hasFlag(m.Flags, imap.FlagFlagged) {
			uids = append(uids, uint32(m.UID))
		}
	}
	if !slices.Equal(uids, []uint32{2, 4}) {
		t.Errorf("FETCH (CHANGEDSINCE %d): %v (%d messages)", base, uids, len(msgs))
	}
	// Message 2 changed after base: a conditional STORE on it fails (and
	// message 1 changes by it).
	_, err = c.Store(imap.SeqSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, &imap.StoreOptions{UnchangedSince: base}).Collect()
	r := e.dialRaw()
	r.login()
	r.cmd("s", "SELECT INBOX (CONDSTORE)")
	got := r.cmd("t", fmt.Sprintf(`STORE 1:4 (UNCHANGEDSINCE %d) +FLAGS (\Answered)`, base))
	if last := got[len(got)-1]; !strings.HasPrefix(last, "t OK [MODIFIED 1:2,4]") {
		t.Errorf("STORE UNCHANGEDSINCE: %q (imapclient: %v)", got, err)
	}
	st, err := c.Status("Trash", &imap.StatusOptions{HighestModSeq: true}).Wait()
	if err != nil || st.HighestModSeq == 0 {
		t.Errorf("STATUS HIGHESTMODSEQ: %+v %v", st, err)
	}
	if got := r.cmd("z", "FETCH 1 (FLAGS) (CHANGEDSINCE 0)"); !strings.HasPrefix(got[len(got)-1], "z OK") || !strings.Contains(got[0], "MODSEQ") {
		t.Errorf("CHANGEDSINCE 0: %q", got)
	}
}

// TestQResyncReconnect: a client that knew the mailbox at a modseq
// reconnects after another changed flags and expunged (RFC 7162 §3.2.5):
// it gets exactly those changes, VANISHED (EARLIER) for the expunged and
// FETCH for the changed, and VANISHED instead of EXPUNGE afterwards.
func TestQResyncReconnect(t *testing.T) {
	e := newEnv(t)
	e.fill(6)
	r := e.dialRaw()
	r.login()
	if got := r.cmd("e", "ENABLE QRESYNC"); !strings.Contains(got[0], "QRESYNC") {
		t.Fatalf("ENABLE QRESYNC: %q", got)
	}
	got := r.cmd("s", "SELECT INBOX")
	var validity, modseq uint64
	for _, l := range got {
		fmt.Sscanf(l, "* OK [UIDVALIDITY %d]", &validity)
		fmt.Sscanf(l, "* OK [HIGHESTMODSEQ %d]", &modseq)
	}
	if validity == 0 || modseq == 0 {
		t.Fatalf("SELECT: %q", got)
	}
	r.cmd("l", "LOGOUT")

	// Meanwhile, another device.
	c := e.client()
	c.Select("INBOX", nil).Wait()
	c.Store(imap.UIDSetNum(2, 5), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
	c.Store(imap.UIDSetNum(3, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}

	r = e.dialRaw()
	r.login()
	r.cmd("e", "ENABLE QRESYNC")
	got = r.cmd("s", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:6))", validity, modseq))
	var vanished []string
	var fetched []string
	for _, l := range got {
		switch {
		case strings.HasPrefix(l, "* VANISHED (EARLIER) "):
			vanished = append(vanished, strings.TrimPrefix(l, "* VANISHED (EARLIER) "))
		case strings.Contains(l, " FETCH "):
			fetched = append(fetched, l)
		}
	}
	if !slices.Equal(vanished, []string{"3:4"}) {
		t.Errorf("VANISHED (EARLIER): %q in %q", vanished, got)
	}
	if len(fetched) != 2 || !strings.Contains(fetched[0], "UID 2 ") || !strings.Contains(fetched[1], "UID 5 ") ||
		!strings.Contains(fetched[0], `\Seen`) || !strings.Contains(fetched[0], "MODSEQ (") {
		t.Errorf("FETCH of the changed: %q", fetched)
	}
	// From now on expunges come as VANISHED.
	c.Store(imap.UIDSetNum(6), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	c.Expunge().Collect()
	if got := r.cmd("n", "NOOP"); !slices.Contains(got, "* VANISHED 6") {
		t.Errorf("NOOP after an expunge: %q", got)
	}
	// UID FETCH ... (CHANGEDSINCE m VANISHED) reports both.
	got = r.cmd("f", fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", modseq))
	if !slices.Contains(got, "* VANISHED (EARLIER) 3:4,6") {
		t.Errorf("UID FETCH (CHANGEDSINCE VANISHED): %q", got)
	}
	// A wrong UIDVALIDITY is a full resync: no VANISHED.
	got = r.cmd("s", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", validity+1, modseq))
	if strings.Contains(strings.Join(got, "\n"), "VANISHED") {
		t.Errorf("QRESYNC with another UIDVALIDITY: %q", got)
	}
}

// TestMultiAppendAllOrNothing: MULTIAPPEND (RFC 3502) stores every message
// or none; CATENATE (RFC 4469) builds one from a literal and a URL.
func TestMultiAppendAllOrNothing(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AppendLimit = 100 })
	r := e.dialRaw()
	r.login()
	m1, m2 := "Subject: one\r\n\r\nbody one\r\n", "Subject: two\r\n\r\nbody two\r\n"
	got := r.cmd("a", fmt.Sprintf("APPEND INBOX {%d+}\r\n%s (\\Seen) {%d+}\r\n%s", len(m1), m1, len(m2), m2))
	if last := got[len(got)-1]; !strings.HasPrefix(last, "a OK [APPENDUID ") || !strings.Contains(last, " 1:2]") {
		t.Fatalf("MULTIAPPEND: %q", got)
	}
	// The second message is over the limit: neither is stored.
	big := strings.Repeat("x", 200)
	got = r.cmd("b", fmt.Sprintf("APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s", len(m1), m1, len(big), big))
	if last := got[len(got)-1]; !strings.HasPrefix(last, "b NO [TOOBIG]") {
		t.Errorf("MULTIAPPEND with a message too big: %q", got)
	}
	if uids := uidsOf(t, e, "INBOX"); !slices.Equal(uids, []uint32{1, 2}) {
		t.Errorf("after a failed MULTIAPPEND: %v", uids)
	}
	// CATENATE: the header of message 1 and a new body.
	got = r.cmd("c", "APPEND INBOX CATENATE (URL \"/INBOX/;uid=1/;section=HEADER\" TEXT {5+}\r\nnew\r\n)")
	if last := got[len(got)-1]; !strings.HasPrefix(last, "c OK [APPENDUID ") {
		t.Fatalf("CATENATE: %q", got)
	}
	r.cmd("s", "SELECT INBOX")
	got = r.cmd("f", "FETCH 3 BODY.PEEK[]")
	if want := "Subject: one\r\n\r\nnew\r\n"; !strings.Contains(strings.Join(got, "\r\n"), want) {
		t.Errorf("CATENATE result: %q", got)
	}
	if got := r.cmd("d", "APPEND INBOX CATENATE (URL \"/INBOX/;uid=99\")"); !strings.HasPrefix(got[len(got)-1], "d NO [BADURL") {
		t.Errorf("CATENATE of a missing message: %q", got)
	}
}
