package imapd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNewMailInUIDOrder: two messages arrive and the first is flagged
// before a session syncs; the change log then lists the second first. The
// session must still add them in UID order (issue 16: it appended them in
// log order, and FETCH 1:* after "* 4 EXISTS" returned two messages).
func TestNewMailInUIDOrder(t *testing.T) {
	e := newEnv(t)
	e.fill(2)
	r := e.dialRaw()
	r.login()
	r.cmd("s", "SELECT INBOX")
	e.fill(2) // UIDs 3, 4
	u := e.user()
	inbox, _ := u.Mailbox("INBOX")
	if _, _, err := u.StoreFlags(inbox.ID, []uint32{3}, 1, []string{`\Flagged`}, 0); err != nil {
		t.Fatal(err)
	}
	got := r.cmd("n", "NOOP")
	if !slices.Contains(got, "* 4 EXISTS") {
		t.Fatalf("NOOP: %q", got)
	}
	got = r.cmd("f", "FETCH 1:* (UID)")
	want := []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)", "* 4 FETCH (UID 4)", "f OK FETCH completed"}
	if !slices.Equal(got, want) {
		t.Errorf("FETCH 1:* after new mail:\ngot  %q\nwant %q", got, want)
	}
}

// TestIdleEndedByOtherLine: a line other than DONE ends IDLE with BAD and
// is not run as a command; the session goes on (issue 16: the next
// command ran beside the idle goroutine, a race on the session's map).
func TestIdleEndedByOtherLine(t *testing.T) {
	e := newEnv(t)
	e.fill(1)
	r := e.dialRaw()
	r.login()
	r.cmd("s", "SELECT INBOX")
	r.send("i IDLE\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	r.send("x CREATE Injected\r\n")
	if l := r.line(); !strings.HasPrefix(l, "i BAD") {
		t.Errorf("IDLE ended by another line: %q", l)
	}
	if _, err := e.user().Mailbox("Injected"); err == nil {
		t.Error("the line that ended IDLE ran as a command")
	}
	e.fill(1)
	if got := r.cmd("n", "NOOP"); !slices.Contains(got, "* 2 EXISTS") {
		t.Errorf("NOOP after IDLE: %q", got)
	}
	r.send("j IDLE\r\n")
	r.line()
	e.fill(1)
	if l := r.line(); l != "* 3 EXISTS" {
		t.Errorf("IDLE push: %q", l)
	}
	r.send("DONE\r\n")
	if l := r.until("j "); !strings.HasPrefix(l[len(l)-1], "j OK") {
		t.Errorf("DONE: %q", l)
	}
	// The IDLE's work has stopped when the next command runs: IDLE pushes
	// a change (its sync has run), a stray line ends it, a STORE follows
	// at once. On the engine of 0815479 the idle goroutine outlived the
	// IDLE and the STORE wrote the session's map beside it: go test -race
	// reported it in 2 of 5 runs of these 30 rounds (.ci/run runs this
	// test under -race).
	u := e.user()
	inbox, _ := u.Mailbox("INBOX")
	for i := range 30 {
		r.send("k IDLE\r\n")
		if l := r.line(); !strings.HasPrefix(l, "+") {
			t.Fatalf("IDLE: %q", l)
		}
		if _, _, err := u.StoreFlags(inbox.ID, []uint32{2}, 1, []string{fmt.Sprintf("k%d", i)}, 0); err != nil {
			t.Fatal(err)
		}
		for l := r.line(); !strings.Contains(l, "FETCH"); l = r.line() {
		}
		r.send("x NOOP\r\ny STORE 1 +FLAGS (\\Seen)\r\n")
		if got := r.until("y "); !strings.HasPrefix(got[len(got)-1], "y OK") || !strings.HasPrefix(got[0], "k BAD") {
			t.Fatalf("round %d: %q", i, got)
		}
	}
}

// TestAccountDeletedEndsSessions: "roost user del" ends the account's
// sessions with BYE, waiting or idling (issue 16: they answered
// SERVERBUG), and releases them.
func TestAccountDeletedEndsSessions(t *testing.T) {
	e := newEnv(t)
	quiet := e.dialRaw()
	quiet.login()
	quiet.cmd("s", "SELECT INBOX")
	idler := e.dialRaw()
	idler.login()
	idler.cmd("s", "SELECT INBOX")
	idler.send("i IDLE\r\n")
	idler.line()
	if err := e.b.DeleteUser(context.Background(), testUser); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*raw{"waiting": quiet, "idling": idler} {
		if out := r.readEOF(); out != "* BYE Account deleted\r\n" {
			t.Errorf("%s session: %q", name, out)
		}
	}
}

// modelMsg is a message of the model mailbox.
type modelMsg struct {
	uid   uint32
	flags map[string]bool
}

// modelView is what one session's client knows: seq n is uids[n-1].
type modelView struct {
	r     *raw
	uids  []uint32
	flags map[uint32]string
}

// TestSessionModel interleaves random operations of two sessions and
// deliveries (deliver, flag, expunge, move, IDLE, NOOP) against a simple
// model of the mailbox; after every step each session's view (sequence
// numbers, UIDs, flags), built only from what the server told it, must
// match the model. ROOST_MODEL_STEPS sets the number of steps (CI runs
// 10,000 under -race).
func TestSessionModel(t *testing.T) {
	steps := 300
	if v, err := strconv.Atoi(os.Getenv("ROOST_MODEL_STEPS")); err == nil {
		steps = v
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	e := newEnv(t)
	var model []modelMsg
	nextUID := uint32(1)
	views := make([]*modelView, 2)
	for i := range views {
		r := e.dialRaw()
		r.login()
		r.cmd("e", "ENABLE IMAP4rev2") // no \Recent to model
		r.cmd("s", "SELECT INBOX")
		views[i] = &modelView{r: r, flags: map[uint32]string{}}
	}
	flagNames := []string{`\Seen`, `\Flagged`, `\Answered`, "$Work"}
	flagString := func(m modelMsg) string {
		var l []string
		for _, f := range flagNames {
			if m.flags[f] {
				l = append(l, f)
			}
		}
		slices.Sort(l)
		return strings.Join(l, " ")
	}
	// apply reads a command's responses into v.
	apply := func(v *modelView, lines []string) {
		t.Helper()
		grew := false
		for _, l := range lines {
			var n, uid uint32
			switch {
			case strings.HasSuffix(l, " EXISTS"):
				fmt.Sscanf(l, "* %d EXISTS", &n)
				if int(n) < len(v.uids) {
					t.Fatalf("step: %s shrinks the view of %d", l, len(v.uids))
				}
				for len(v.uids) < int(n) {
					v.uids = append(v.uids, 0)
					grew = true
				}
			case strings.HasSuffix(l, " EXPUNGE"):
				fmt.Sscanf(l, "* %d EXPUNGE", &n)
				if n == 0 || int(n) > len(v.uids) {
					t.Fatalf("%s with %d messages", l, len(v.uids))
				}
				delete(v.flags, v.uids[n-1])
				v.uids = slices.Delete(v.uids, int(n-1), int(n))
			case strings.Contains(l, " FETCH ("):
				fmt.Sscanf(l, "* %d FETCH (UID %d", &n, &uid)
				if n == 0 || int(n) > len(v.uids) {
					t.Fatalf("%s with %d messages", l, len(v.uids))
				}
				if v.uids[n-1] != 0 && v.uids[n-1] != uid {
					t.Fatalf("%s, but the client has UID %d there", l, v.uids[n-1])
				}
				v.uids[n-1] = uid
				if i := strings.Index(l, "FLAGS ("); i >= 0 {
					f := l[i+7:]
					f = f[:strings.IndexByte(f, ')')]
					fl := strings.Fields(f)
					slices.Sort(fl)
					v.flags[uid] = strings.Join(fl, " ")
				}
			}
		}
		if grew {
			// Learn the new messages' UIDs and flags, as a client does.
			start := slices.Index(v.uids, 0) + 1
			lines := v.r.cmd("f", fmt.Sprintf("FETCH %d:* (UID FLAGS)", start))
			for _, l := range lines[:len(lines)-1] {
				var n, uid uint32
				fmt.Sscanf(l, "* %d FETCH (UID %d", &n, &uid)
				if n >= 1 && int(n) <= len(v.uids) {
					v.uids[n-1] = uid
					if i := strings.Index(l, "FLAGS ("); i >= 0 {
						f := l[i+7:]
						f = f[:strings.IndexByte(f, ')')]
						fl := strings.Fields(f)
						slices.Sort(fl)
						v.flags[uid] = strings.Join(fl, " ")
					}
				}
			}
		}
	}
	check := func(step int, op string) {
		t.Helper()
		for i, v := range views {
			apply(v, v.r.cmd("n", "NOOP"))
			if len(v.uids) != len(model) {
				t.Fatalf("step %d (%s): session %d sees %d messages, the model %d (%v)", step, op, i, len(v.uids), len(model), v.uids)
			}
			for k, m := range model {
				if v.uids[k] != m.uid {
					t.Fatalf("step %d (%s): session %d has UID %d at %d, the model %d", step, op, i, v.uids[k], k+1, m.uid)
				}
				if got, want := v.flags[m.uid], flagString(m); got != want {
					t.Fatalf("step %d (%s): session %d: UID %d flags %q, the model %q", step, op, i, m.uid, got, want)
				}
			}
		}
	}
	pick := func() int { return rng.IntN(len(model)) }
	for step := 0; step < steps; step++ {
		for _, v := range views {
			v.r.c.SetDeadline(time.Now().Add(waitLimit))
		}
		v := views[rng.IntN(len(views))]
		op := "noop"
		switch k := rng.IntN(10); {
		case k < 3 || len(model) == 0:
			op = "deliver"
			e.deliver(msgText(fmt.Sprintf("s%d", step), "x"))
			model = append(model, modelMsg{uid: nextUID, flags: map[string]bool{}})
			nextUID++
		case k < 6:
			op = "flag"
			m := &model[pick()]
			f := flagNames[rng.IntN(len(flagNames))]
			sign := "+"
			if m.flags[f] {
				sign = "-"
			}
			apply(v, v.r.cmd("t", fmt.Sprintf("UID STORE %d %sFLAGS (%s)", m.uid, sign, f)))
			m.flags[f] = sign == "+"
		case k < 7:
			op = "expunge"
			i := pick()
			uid := model[i].uid
			apply(v, v.r.cmd("t", fmt.Sprintf("UID STORE %d +FLAGS.SILENT (\\Deleted)", uid)))
			apply(v, v.r.cmd("x", fmt.Sprintf("UID EXPUNGE %d", uid)))
			model = slices.Delete(model, i, i+1)
		case k < 8:
			op = "move"
			i := pick()
			apply(v, v.r.cmd("m", fmt.Sprintf("UID MOVE %d Trash", model[i].uid)))
			model = slices.Delete(model, i, i+1)
		case k < 9:
			op = "idle"
			v.r.send("i IDLE\r\n")
			if l := v.r.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("IDLE: %q", l)
			}
			v.r.send("DONE\r\n")
			apply(v, v.r.until("i "))
		}
		check(step, op)
	}
}
