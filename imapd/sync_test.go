package imapd

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/roostmail/roost/backend"
)

// waitLimit bounds every wait for a pushed update; it only turns a hang
// into a failure, it is not a timing assertion.
const waitLimit = 10 * time.Second

// event is one unilateral response a client received.
type event struct {
	kind  string // "fetch", "expunge", "exists"
	seq   uint32
	uid   uint32
	flags []imap.Flag
	at    time.Time
}

func (ev event) String() string {
	switch ev.kind {
	case "fetch":
		return fmt.Sprintf("FETCH %d (UID %d FLAGS %v)", ev.seq, ev.uid, ev.flags)
	case "expunge":
		return fmt.Sprintf("EXPUNGE %d", ev.seq)
	}
	return fmt.Sprintf("EXISTS %d", ev.seq)
}

// device is an imapclient connection that records unilateral responses.
type device struct {
	*imapclient.Client
	events chan event
}

func (e *env) device() *device {
	d := &device{events: make(chan event, 1000)}
	opts := &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { d.events <- event{kind: "expunge", seq: seq, at: time.Now()} },
		Mailbox: func(m *imapclient.UnilateralDataMailbox) {
			if m.NumMessages != nil {
				d.events <- event{kind: "exists", seq: *m.NumMessages, at: time.Now()}
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			ev := event{kind: "fetch", seq: msg.SeqNum, at: time.Now()}
			buf, err := msg.Collect()
			if err == nil {
				ev.uid, ev.flags = uint32(buf.UID), buf.Flags
			}
			d.events <- ev
		},
	}}
	d.Client = e.client(opts)
	return d
}

// next waits for the next event.
func (d *device) next(t *testing.T) event {
	t.Helper()
	select {
	case ev := <-d.events:
		return ev
	case <-time.After(waitLimit):
		t.Fatalf("no update within %v", waitLimit)
	}
	return event{}
}

// TestTwoDeviceSync is the scenario: device B idles on INBOX while
// device A marks a message \Seen and moves another away; B receives the
// FETCH and the EXPUNGE; a delivery (as LMTP makes it) wakes B with EXISTS.
func TestTwoDeviceSync(t *testing.T) {
	e := newEnv(t)
	e.fill(3)
	a := e.client()
	b := e.device()
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := b.Idle()
	if err != nil {
		t.Fatal(err)
	}
	var latencies []time.Duration

	start := time.Now()
	if _, err := a.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	ev := b.next(t)
	latencies = append(latencies, ev.at.Sub(start))
	if ev.kind != "fetch" || ev.seq != 2 || ev.uid != 2 || !hasFlag(ev.flags, imap.FlagSeen) {
		t.Errorf("after A's STORE, B got %v", ev)
	}

	start = time.Now()
	if _, err := a.Move(imap.SeqSetNum(1), "Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	ev = b.next(t)
	latencies = append(latencies, ev.at.Sub(start))
	if ev.kind != "expunge" || ev.seq != 1 {
		t.Errorf("after A's MOVE, B got %v", ev)
	}

	start = time.Now()
	e.deliver(msgText("new", "mail"))
	ev = b.next(t)
	latencies = append(latencies, ev.at.Sub(start))
	if ev.kind != "exists" || ev.seq != 3 {
		t.Errorf("after a delivery, B got %v", ev)
	}

	// A POP3 session deleting (backend.Expunge without \Deleted, as DELE
	// at QUIT does) reaches B too.
	u := e.user()
	inbox, _ := u.Mailbox("INBOX")
	start = time.Now()
	if _, err := u.Expunge(inbox.ID, []uint32{3}, false); err != nil {
		t.Fatal(err)
	}
	ev = b.next(t)
	latencies = append(latencies, ev.at.Sub(start))
	if ev.kind != "expunge" || ev.seq != 2 {
		t.Errorf("after a POP3 deletion, B got %v", ev)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("IDLE push latencies: %v", latencies)

	// B's view now matches the mailbox.
	msgs, err := b.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].UID != 2 || !hasFlag(msgs[0].Flags, imap.FlagSeen) || msgs[1].UID != 4 {
		t.Errorf("B's view after IDLE: %+v", msgs)
	}
	// A session's own changes are not echoed back to it: the STORE
	// answered them, the next NOOP has nothing to say of them.
	r := e.dialRaw()
	r.login()
	r.cmd("s", "SELECT INBOX")
	if got := r.cmd("t", `STORE 1 +FLAGS (\Flagged)`); len(got) != 2 || !strings.Contains(got[0], `\Flagged`) {
		t.Fatalf("STORE: %q", got)
	}
	if got := r.cmd("n", "NOOP"); !slices.Equal(got, []string{"n OK NOOP completed"}) {
		t.Errorf("the session's own STORE was echoed back: %q", got)
	}
	// Another's change to the same message is not mistaken for an echo.
	if _, err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if got := r.cmd("n", "NOOP"); len(got) != 2 || !strings.Contains(got[0], `\Answered`) {
		t.Errorf("another session's STORE did not reach this one: %q", got)
	}
}

// TestSyncOrder: many changes at once reach a polling session in a form
// that, replayed in order, gives exactly the mailbox's UIDs and flags.
func TestSyncOrder(t *testing.T) {
	e := newEnv(t)
	e.fill(10)
	a := e.client()
	a.Select("INBOX", nil).Wait()
	b := e.dialRaw()
	b.login()
	b.cmd("s", "SELECT INBOX")
	model := []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	flags := map[uint32]string{}

	a.Store(imap.SeqSetNum(3, 7), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect()
	a.Store(imap.SeqSetNum(2, 4, 9), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	a.Expunge().Collect()
	e.deliver(msgText("late1", "x"))
	a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Collect()
	a.Move(imap.UIDSetNum(10), "Trash").Wait()
	e.deliver(msgText("late2", "y"))

	got := b.cmd("n", "NOOP")
	t.Logf("B received: %q", got)
	for _, l := range got[:len(got)-1] {
		var seq, uid uint32
		var rest string
		switch {
		case strings.HasSuffix(l, " EXPUNGE"):
			fmt.Sscanf(l, "* %d EXPUNGE", &seq)
			if seq == 0 || int(seq) > len(model) {
				t.Fatalf("%s with %d messages", l, len(model))
			}
			model = slices.Delete(model, int(seq-1), int(seq))
		case strings.HasSuffix(l, " EXISTS"):
			fmt.Sscanf(l, "* %d EXISTS", &seq)
			if int(seq) < len(model) {
				t.Fatalf("%s shrinks %d", l, len(model))
			}
			for len(model) < int(seq) {
				model = append(model, 0) // UID learnt below
			}
		case strings.HasSuffix(l, " RECENT"):
			// IMAP4rev1's companion of EXISTS.
		case strings.Contains(l, " FETCH "):
			if _, err := fmt.Sscanf(l, "* %d FETCH (UID %d FLAGS %s", &seq, &uid, &rest); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			if int(seq) > len(model) || model[seq-1] != uid {
				t.Fatalf("%s, but the client has %v", l, model)
			}
			flags[uid] = l
		default:
			t.Fatalf("unexpected %q", l)
		}
	}
	for _, l := range b.cmd("f", "FETCH 1:* (UID)")[1:] {
		var seq, uid uint32
		if _, err := fmt.Sscanf(l, "* %d FETCH (UID %d)", &seq, &uid); err == nil {
			model[seq-1] = uid
		}
	}
	if want := uidsOf(t, e, "INBOX"); !slices.Equal(model, want) {
		t.Errorf("B's replayed view %v, mailbox %v", model, want)
	}
	if !strings.Contains(flags[3], `\Flagged`) || !strings.Contains(flags[7], `\Flagged`) || !strings.Contains(flags[1], `\Answered`) || len(flags) != 3 {
		t.Errorf("flag updates: %v", flags)
	}
}

// TestDeferredExpunge: no EXPUNGE during FETCH, STORE or SEARCH (RFC 9051
// §7.5.1); it comes with the next command that allows it.
func TestDeferredExpunge(t *testing.T) {
	e := newEnv(t)
	e.fill(3)
	r := e.dialRaw()
	r.login()
	r.cmd("s", "SELECT INBOX")
	u := e.user()
	inbox, _ := u.Mailbox("INBOX")
	if _, err := u.Expunge(inbox.ID, []uint32{2}, false); err != nil {
		t.Fatal(err)
	}
	got := r.cmd("a", "FETCH 1:3 (UID)")
	// RFC 2180 §4.1.2: the rest is answered, the gone message with NO.
	want := []string{"* 1 FETCH (UID 1)", "* 3 FETCH (UID 3)", "a NO [EXPUNGEISSUED] Some of the requested messages no longer exist"}
	if !slices.Equal(got, want) {
		t.Errorf("FETCH after a foreign expunge:\ngot  %q\nwant %q", got, want)
	}
	got = r.cmd("b", "SEARCH ALL")
	if !slices.Equal(got, []string{"* SEARCH 1 3", "b OK SEARCH completed"}) {
		t.Errorf("SEARCH: %q", got)
	}
	got = r.cmd("c", "NOOP")
	if !slices.Equal(got, []string{"* 2 EXPUNGE", "c OK NOOP completed"}) {
		t.Errorf("NOOP: %q", got)
	}
	got = r.cmd("d", "FETCH 2 (UID)")
	if !slices.Equal(got, []string{"* 2 FETCH (UID 3)", "d OK FETCH completed"}) {
		t.Errorf("FETCH after the EXPUNGE: %q", got)
	}
}

// TestMaxPendingUpdates: a session that falls too far behind is closed
// with BYE rather than queueing without bound.
func TestMaxPendingUpdates(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPendingUpdates = 3 })
	e.fill(5)
	r := e.dialRaw()
	r.login()
	r.cmd("s", "SELECT INBOX")
	u := e.user()
	inbox, _ := u.Mailbox("INBOX")
	// Three flag changes are within the limit.
	u.StoreFlags(inbox.ID, []uint32{1, 2, 3}, backend.FlagsAdd, []string{`\Flagged`}, 0)
	if got := r.cmd("a", "NOOP"); len(got) != 4 {
		t.Errorf("three updates: %q", got)
	}
	// Four are not.
	u.StoreFlags(inbox.ID, []uint32{1, 2, 3, 4}, backend.FlagsAdd, []string{`\Seen`}, 0)
	r.send("b NOOP\r\n")
	out := r.readEOF()
	if !strings.HasPrefix(out, "* BYE ") || strings.Contains(out, "FETCH") {
		t.Errorf("over MaxPendingUpdates: %q", out)
	}
}

// TestSelectedMailboxDeleted: another session deletes the selected mailbox.
func TestSelectedMailboxDeleted(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	if err := c.Create("Temp", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	r := e.dialRaw()
	r.login()
	r.cmd("s", "SELECT Temp")
	if err := c.Delete("Temp").Wait(); err != nil {
		t.Fatal(err)
	}
	r.send("a NOOP\r\n")
	if out := r.readEOF(); !strings.HasPrefix(out, "* BYE Selected mailbox was deleted") {
		t.Errorf("NOOP in a deleted mailbox: %q", out)
	}
}

// TestIdleManySessions: several idling sessions all receive a delivery.
func TestIdleManySessions(t *testing.T) {
	e := newEnv(t)
	const n = 8
	devs := make([]*device, n)
	idles := make([]*imapclient.IdleCommand, n)
	for i := range devs {
		devs[i] = e.device()
		if _, err := devs[i].Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		var err error
		if idles[i], err = devs[i].Idle(); err != nil {
			t.Fatal(err)
		}
	}
	e.deliver(msgText("broadcast", "x"))
	var wg sync.WaitGroup
	for i := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case ev := <-devs[i].events:
				if ev.kind != "exists" || ev.seq != 1 {
					t.Errorf("session %d got %v", i, ev)
				}
			case <-time.After(waitLimit):
				t.Errorf("session %d got nothing", i)
			}
		}()
	}
	wg.Wait()
	for _, idle := range idles {
		idle.Close()
		idle.Wait()
	}
}
