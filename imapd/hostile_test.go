package imapd

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/testutil"
)

// The hostile-request test (issue 12: a per-command work bound). Its
// server takes commands of up to 1 MiB (the most max_line_length allows)
// and APPENDs of up to 2 MiB; the account holds many mailboxes, a mailbox
// of many messages to search, sort and thread, and one of large messages
// to fetch.
const (
	hostileAppendLimit = 2 << 20
	hostileMailboxes   = 2000 // besides INBOX and the special-use ones
	hostileBigCount    = 2000 // messages of about 8 KiB in "Big"
	hostileLargeCount  = 24   // messages of about 1 MiB in "Large"
	hostileTextCount   = 16   // text messages of 1 MiB in "Text"
	hostileWriteLimit  = time.Second
	hostileCmdTimeout  = 2 * time.Second
)

// stepFigures is what one hostile request cost.
type stepFigures struct {
	name string
	// cpu is the process's CPU time from the request to the end of its
	// sessions (client and server: both run in the test process).
	cpu time.Duration
	// idle is the CPU time used in testutil.IdleWindow afterwards.
	idle time.Duration
	// peakHeap is the highest heap (live objects and garbage not yet
	// collected) sampled during the request, above what it was before;
	// liveAfter the live heap after the request and a collection, above
	// what it was before.
	peakHeap, liveAfter int64
	note                string
}

func (f *stepFigures) notef(format string, args ...any) {
	if f.note != "" {
		f.note += "; "
	}
	f.note += fmt.Sprintf(format, args...)
}

// heapObjectBytes reads the heap's object bytes (runtime/metrics: no
// stop of the world, unlike runtime.ReadMemStats).
func heapObjectBytes() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// heapSampler records the peak of heapObjectBytes while a request runs.
type heapSampler struct {
	stop, done chan struct{}
	peak       int64
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			h.peak = max(h.peak, heapObjectBytes())
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) finish() int64 {
	if h.stop != nil {
		close(h.stop)
		<-h.done
		h.stop = nil
	}
	return max(h.peak, heapObjectBytes())
}

// waitNoSessions waits until the server has no connection left.
func (e *env) waitNoSessions(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for e.srv.openConns() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open", e.srv.openConns())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectTagged reads up to the tagged response of tag and checks it starts
// with want; it returns the untagged responses before it.
func (r *raw) expectTagged(tag, want string) []string {
	r.t.Helper()
	got := r.until(tag + " ")
	if l := got[len(got)-1]; !strings.HasPrefix(l, tag+" "+want) {
		r.t.Errorf("%s: got %q, want %q…", tag, truncate(l, 200), tag+" "+want)
	}
	return got[:len(got)-1]
}

// expectAlive checks that the connection still serves commands.
func (r *raw) expectAlive() {
	r.t.Helper()
	if got := r.cmd("alive", "NOOP"); got[len(got)-1] != "alive OK NOOP completed" {
		r.t.Errorf("after the hostile request: %q", got)
	}
}

// expectBye reads to the end of the connection and checks the server said
// BYE with want, and nothing after it.
func (r *raw) expectBye(want string) {
	r.t.Helper()
	rest := r.readEOF()
	i := strings.Index(rest, "* BYE "+want)
	if i < 0 {
		r.t.Errorf("no \"* BYE %s\" before the end: %q", want, truncate(rest, 300))
		return
	}
	if tail := rest[i:]; strings.Count(tail, "\n") != 1 {
		r.t.Errorf("more after BYE: %q", truncate(tail, 300))
	}
}

// hostilePattern is a LIST pattern of n wildcards, alternately * and %,
// each followed by "a" (so that no run of wildcards collapses), ending in
// tail: over names of many a's it nearly matches at every position.
func hostilePattern(n int, tail string) string {
	var b strings.Builder
	for i := range n {
		if i%2 == 0 {
			b.WriteByte('*')
		} else {
			b.WriteByte('%')
		}
		b.WriteByte('a')
	}
	b.WriteString(tail)
	return b.String()
}

// listPatterns is n distinct patterns of 10 wildcards that match none of
// the account's names, as a LIST-EXTENDED pattern list.
func listPatterns(n int) string {
	var b strings.Builder
	b.WriteByte('(')
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(hostilePattern(10, strconv.Itoa(i)+"x"))
	}
	b.WriteByte(')')
	return b.String()
}

// notTextKeys is n search keys NOT TEXT needle, with needles found in no
// message: each key makes the search read every message's whole text.
func notTextKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "NOT TEXT zq%06d", i)
	}
	return b.String()
}

// singleNumbers is a sequence set of the odd numbers from 1, single
// numbers only, of at least size octets.
func singleNumbers(size int) string {
	var b strings.Builder
	for i := 1; b.Len() < size; i += 2 {
		if i > 1 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

// deflateBomb is a raw deflate stream (what a client sends after COMPRESS
// DEFLATE) of prefix and then n octets "a", with no line end: about a
// thousandth of n on the wire.
func deflateBomb(t *testing.T, prefix string, n int64) []byte {
	const chunk = 4 << 20
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	as := bytes.Repeat([]byte("a"), chunk)
	w.Write([]byte(prefix))
	w.Write(as)
	w.Flush()
	head := len(buf.Bytes())
	// A chunk compressed after a window of a's decodes to the same after
	// any window of a's: repeat it.
	w.Write(as)
	w.Flush()
	block := bytes.Clone(buf.Bytes()[head:])
	out := bytes.Clone(buf.Bytes()[:head])
	for k := int64(chunk); k < n; k += chunk {
		out = append(out, block...)
	}
	return out
}

// bigText is a message of about size octets with no letter z in it (the
// needles of notTextKeys start with z), from, subject and references set
// for SORT and THREAD.
func bigText(i, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender %d <s%d@example.net>\r\nTo: alice@example.org\r\nSubject: Re: topic %d\r\n", i%37, i%37, i%50)
	fmt.Fprintf(&b, "Date: Mon, 02 Jan 2006 15:%02d:05 +0000\r\nMessage-ID: <m%d@example.net>\r\n", i%60, i)
	if i > 0 {
		fmt.Fprintf(&b, "References: <m%d@example.net>\r\n", i/2)
	}
	b.WriteString("\r\n")
	for b.Len() < size {
		b.WriteString("a line of the text of a long message, with nothing to find in it\r\n")
	}
	return b.Bytes()
}

// largeMessage is a message of about 1 MiB: a short text and 768 KiB of
// binary data in base64.
func largeMessage(i int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: bob@example.net\r\nSubject: large %d\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n", i)
	b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	data := make([]byte, 768<<10)
	for j := range data {
		data[j] = byte(j*7 + i)
	}
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 0 {
		n := min(76, len(enc))
		b.WriteString(enc[:n])
		b.WriteString("\r\n")
		enc = enc[n:]
	}
	b.WriteString("--b--\r\n")
	return b.Bytes()
}

// sendLong writes prefix, n octets "x" and suffix, in pieces: the client
// holds no line of n octets (the heap measured is the server's).
func sendLong(w io.Writer, prefix string, n int, suffix string) error {
	if _, err := io.WriteString(w, prefix); err != nil {
		return err
	}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for n > 0 {
		k := min(n, len(chunk))
		if _, err := w.Write(chunk[:k]); err != nil {
			return err
		}
		n -= k
	}
	_, err := io.WriteString(w, suffix)
	return err
}

// appendAll stores msgs in mailbox in batches.
func appendAll(t *testing.T, u *backend.User, mailbox string, msgs [][]byte) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(len(msgs), 200)
		batch := make([]backend.AppendMessage, n)
		for i := range batch {
			batch[i] = backend.AppendMessage{Body: bytes.NewReader(msgs[i])}
		}
		if _, err := u.AppendMany(context.Background(), mailbox, batch); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// newHostileEnv builds the account the hostile requests are made to.
func newHostileEnv(t *testing.T) *env {
	// Logins are remembered (LoginCacheTTL): each step logs in, and the
	// 19 MiB of a password hash would hide the heap figures.
	e := &env{t: t, dir: t.TempDir()}
	b, err := backend.New(backend.Options{DataDir: e.dir, NoSync: true, LoginCacheTTL: time.Hour, Hostname: "mx.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	e.b = b
	if err := b.CreateUser(context.Background(), testUser, testPass); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Login(context.Background(), testUser, testPass, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	e.start(func(o *Options) {
		o.MaxLineLength = MaxMaxLineLength
		o.AppendLimit = hostileAppendLimit
		o.CommandTimeout = hostileCmdTimeout
		o.WriteTimeout = hostileWriteLimit
	})
	u := e.user()
	defer u.Release()
	as := strings.Repeat("a", 30)
	for i := range hostileMailboxes {
		name := fmt.Sprintf("Lists/%s/%s%d", as, as, i)
		if err := u.CreateMailbox(name, ""); err != nil && i > 0 {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := u.Subscribe(name, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, name := range []string{"Lists", "Lists/" + as, "Big", "Large", "Text", "Box", "Multi"} {
		if err := u.CreateMailbox(name, ""); err != nil {
			t.Fatal(err)
		}
	}
	e.deliver(msgText("small", "a small message"))
	big := make([][]byte, hostileBigCount)
	for i := range big {
		big[i] = bigText(i, 8<<10)
	}
	appendAll(t, u, "Big", big)
	large := make([][]byte, hostileLargeCount)
	for i := range large {
		large[i] = largeMessage(i)
	}
	appendAll(t, u, "Large", large)
	text := make([][]byte, hostileTextCount)
	for i := range text {
		text[i] = bigText(i, 1<<20)
	}
	appendAll(t, u, "Text", text)
	return e
}

// TestHostileRequests sends IMAP requests meant to make the server work
// hard or hold memory, and checks that each is answered or refused, that
// the work it causes is bounded (the CPU time of the process from the
// request to the end of its sessions, and the heap growth, are logged in a
// table; requests whose client leaves are checked to stop rather than run
// to their end), and that the process is idle afterwards
// (testutil.RequireIdle: CPU time, not wall time).
func TestHostileRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a large account")
	}
	// Collect garbage early, so that the heap's peak is close to what is
	// live (by default it may grow to twice that before a collection).
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	e := newHostileEnv(t)
	parentT := e.t
	defer func() { e.t = parentT }()

	// The connections a step opened, closed at its end.
	var open []*raw
	dial := func(t *testing.T) *raw {
		t.Helper()
		r := e.dialRaw()
		r.t = t
		r.c.SetDeadline(time.Now().Add(2 * time.Minute))
		open = append(open, r)
		return r
	}
	// session dials, logs in and selects mailbox ("" for none).
	session := func(t *testing.T, mailbox string) *raw {
		t.Helper()
		r := dial(t)
		r.login()
		if mailbox != "" {
			if got := r.cmd("S", "SELECT "+mailbox); !strings.HasPrefix(got[len(got)-1], "S OK") {
				t.Fatalf("SELECT %s: %q", mailbox, got)
			}
		}
		return r
	}

	// The cost of a command of n units, projected from those of two
	// smaller ones that are answered: fixed part plus n units.
	project := func(costA time.Duration, nA int, costB time.Duration, nB, n int) time.Duration {
		unit := float64(costB-costA) / float64(nB-nA)
		return costA + time.Duration(unit*float64(n-nA))
	}
	answered := func(t *testing.T, mailbox, tag, command, want string) time.Duration {
		t.Helper()
		r := session(t, mailbox)
		start := testutil.ProcessCPU()
		r.send(tag + " " + command + "\r\n")
		r.expectTagged(tag, want)
		used := testutil.ProcessCPU() - start
		r.c.Close()
		return used
	}
	// abandoned sends command and hangs up at once; it returns the CPU
	// time until the server is done with the session.
	abandoned := func(t *testing.T, mailbox, command string) time.Duration {
		t.Helper()
		r := session(t, mailbox)
		start := testutil.ProcessCPU()
		r.send("gone " + command + "\r\n")
		r.c.Close()
		e.waitNoSessions(t)
		return testutil.ProcessCPU() - start
	}
	// requireStopped checks that an abandoned command cost less than an
	// answered one a fiftieth of its size (its work stopped when its client
	// went, it did not run to the end).
	requireStopped := func(t *testing.T, f *stepFigures, what string, used, small, projected time.Duration) {
		t.Helper()
		f.notef("%s: abandoned %v, answered 1/50 size %v, projected whole %v", what, used.Round(time.Millisecond), small.Round(time.Millisecond), projected.Round(time.Millisecond))
		if used > small {
			t.Errorf("%s: the abandoned command cost %v of CPU, more than one a fiftieth of its size answered (%v; the whole would cost about %v): its work went on after the client left", what, used, small, projected)
		}
	}

	steps := []struct {
		name string
		// maxHeap bounds peakHeap; 0: not checked.
		maxHeap int64
		run     func(t *testing.T, f *stepFigures)
	}{
		{"LIST *%*%…x, 2,000 wildcards, 2,000 mailboxes", 32 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			r.send(`l LIST "" "` + strings.Repeat("*%", 1000) + `x"` + "\r\n")
			if got := r.expectTagged("l", "OK"); len(got) != 1 || got[0] != `* LIST (\HasNoChildren) "/" "Box"` {
				t.Errorf("LIST *…x matched %q, want Box", got)
			}
			r.send(`l LIST "" "` + strings.Repeat("%*", 1000) + `9"` + "\r\n")
			if got := r.expectTagged("l", "OK"); len(got) != hostileMailboxes/10 {
				t.Errorf("LIST *…9 matched %d names, want %d", len(got), hostileMailboxes/10)
			}
		}},
		{"LIST and LSUB *a%a…x, 1,000 wildcards, names of a's", 32 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			pat := hostilePattern(1000, "x")
			for _, cmd := range []string{"LIST", "LSUB"} {
				r.send(`l ` + cmd + ` "" "` + pat + `"` + "\r\n")
				if got := r.expectTagged("l", "OK"); len(got) != 0 {
					t.Errorf("%s matched %q", cmd, got)
				}
			}
			// A pattern of 60 wildcards that does match: 2,000 names.
			r.send(`l LIST "" "Lists/` + hostilePattern(30, "/") + hostilePattern(30, "%") + `"` + "\r\n")
			if got := r.expectTagged("l", "OK"); len(got) != hostileMailboxes {
				t.Errorf("LIST matched %d names, want %d", len(got), hostileMailboxes)
			}
		}},
		{"LIST of 5,000 patterns, client gone", 64 << 20, func(t *testing.T, f *stepFigures) {
			const n = 5000
			a := answered(t, "", "l", `LIST "" `+listPatterns(n/100), "OK")
			b := answered(t, "", "l", `LIST "" `+listPatterns(n/50), "OK")
			used := abandoned(t, "", `LIST "" `+listPatterns(n))
			requireStopped(t, f, "LIST", used, b, project(a, n/100, b, n/50, n))
		}},
		{"a command line of 1 MiB (the limit)", 32 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "Big")
			cmd := `SEARCH TEXT "`
			r.send("s " + cmd + strings.Repeat("y", MaxMaxLineLength-len(cmd)-5) + "\"\r\n")
			if got := r.expectTagged("s", "OK"); len(got) != 1 || got[0] != "* SEARCH" {
				t.Errorf("SEARCH: %q", got)
			}
			r.send("n NOOP " + strings.Repeat("x", MaxMaxLineLength-9) + "\r\n")
			r.expectTagged("n", "BAD")
			r.expectAlive()
		}},
		{"command lines of 1 MiB + 1, 3 MiB, 6 MiB (over what is read and dropped)", 16 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			for _, n := range []int{MaxMaxLineLength + 1, 3 << 20} {
				go sendLong(r.c, "n NOOP ", n-7, "\r\n") // n octets before CRLF
				r.expectTagged("n", "BAD Command line too long")
				r.expectAlive()
			}
			// A line that goes on past the limit and past what a refused
			// literal may hold (2 × append_limit) ends the connection.
			go sendLong(r.c, "n NOOP ", 6<<20, "\r\n")
			r.expectTagged("n", "BAD Command line too long")
			r.expectBye("Command line too long")
		}},
		{"literals of 4294967295, 20 digits, literal8, before login", 16 << 20, func(t *testing.T, f *stepFigures) {
			r := dial(t)
			r.line()
			r.send("a LOGIN {4294967295}\r\n")
			if got := r.expectTagged("a", "BAD"); len(got) != 1 || !strings.HasPrefix(got[0], "* NO [TOOBIG]") {
				t.Errorf("LOGIN {4294967295}: %q", got)
			}
			r.send("b LOGIN ~{4294967295}\r\n")
			r.expectTagged("b", "BAD")
			r.send("c LOGIN {99999999999999999999}\r\n")
			if got := r.expectTagged("c", "BAD"); len(got) != 1 || !strings.HasPrefix(got[0], "* NO [TOOBIG]") {
				t.Errorf("LOGIN {99999999999999999999}: %q", got)
			}
			r.expectAlive()
			r.send("d LOGIN {4294967295+}\r\n" + strings.Repeat("x", 1000))
			r.expectBye("Literal too large")
		}},
		{"APPEND literals over append_limit, huge, literal8", 32 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			for _, lit := range []string{"~{4294967295}", fmt.Sprintf("{%d}", hostileAppendLimit+1), "{99999999999999999999}", "~{99999999999999999999}"} {
				r.send("a APPEND Box " + lit + "\r\n")
				r.expectTagged("a", "NO [TOOBIG]")
			}
			// Sent anyway (LITERAL+): read and dropped, the session goes on.
			r.send(fmt.Sprintf("b APPEND Box {%d+}\r\n", hostileAppendLimit+1) + injected(hostileAppendLimit+1) + "\r\n")
			r.expectTagged("b", "NO [TOOBIG]")
			r.expectAlive()
			if mb, err := e.user().Mailbox("Box"); err != nil || mb.Messages != 0 {
				t.Errorf("Box after refused APPENDs: %+v %v", mb, err)
			}
			r.send("c APPEND Box {4294967295+}\r\n" + injected(1000))
			r.expectBye("Literal too large")
		}},
		{"SEARCH nested 10,000 deep, NOT and OR chains of 100,000", 32 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "Big")
			for _, crit := range []string{
				strings.Repeat("(", 10000) + "ALL" + strings.Repeat(")", 10000),
				strings.Repeat("NOT ", 100000) + "ALL",
				strings.Repeat("OR ALL ", 100000) + "ALL",
				strings.Repeat("OR ", 100000) + strings.Repeat("ALL ", 100000) + "ALL",
			} {
				r.send("s SEARCH " + crit + "\r\n")
				r.expectTagged("s", "BAD")
			}
			// Wide is fine: 3,000 keys side by side.
			r.send("s SEARCH " + strings.Repeat("(OR SEEN UNSEEN) ", 3000) + "ALL\r\n")
			if got := r.expectTagged("s", "OK"); len(got) != 1 || strings.Count(got[0], " ") != hostileBigCount+1 {
				t.Errorf("wide SEARCH: %d responses", len(got))
			}
			r.expectAlive()
		}},
		{"sequence sets of 1 MiB of single numbers: SEARCH, FETCH, STORE, QRESYNC", 64 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			set := singleNumbers(MaxMaxLineLength - 200)
			r.cmd("e", "ENABLE QRESYNC")
			mb, _ := e.user().Mailbox("Big")
			start := testutil.ProcessCPU()
			r.send(fmt.Sprintf("q SELECT Big (QRESYNC (%d 1 %s))\r\n", mb.UIDValidity, set))
			got := r.expectTagged("q", "OK")
			if n := strings.Count(strings.Join(got, "\n"), "FETCH ("); n != hostileBigCount/2 {
				t.Errorf("SELECT (QRESYNC) with known UIDs: %d FETCH responses, want %d", n, hostileBigCount/2)
			}
			f.notef("SELECT QRESYNC %v", (testutil.ProcessCPU() - start).Round(time.Millisecond))
			start = testutil.ProcessCPU()
			r.send("s UID SEARCH UID " + set + "\r\n")
			if got := r.expectTagged("s", "OK"); len(got) != 1 || strings.Count(got[0], " ") != hostileBigCount/2+1 {
				t.Errorf("UID SEARCH: %q", truncate(strings.Join(got, "\n"), 200))
			}
			f.notef("UID SEARCH %v", (testutil.ProcessCPU() - start).Round(time.Millisecond))
			start = testutil.ProcessCPU()
			r.send("s SEARCH " + set + "\r\n")
			r.expectTagged("s", "OK")
			f.notef("SEARCH %v", (testutil.ProcessCPU() - start).Round(time.Millisecond))
			start = testutil.ProcessCPU()
			r.send("f UID FETCH " + set + " (UID)\r\n")
			if got := r.expectTagged("f", "OK"); len(got) != hostileBigCount/2 {
				t.Errorf("UID FETCH: %d responses", len(got))
			}
			f.notef("UID FETCH %v", (testutil.ProcessCPU() - start).Round(time.Millisecond))
			start = testutil.ProcessCPU()
			r.send("t UID STORE " + set + " +FLAGS.SILENT (hostile)\r\n")
			r.expectTagged("t", "OK")
			f.notef("UID STORE %v", (testutil.ProcessCPU() - start).Round(time.Millisecond))
		}},
		{"SEARCH with 20,000 TEXT keys, client gone: 2,000 messages of 8 KiB, 16 of 1 MiB", 64 << 20, func(t *testing.T, f *stepFigures) {
			const n = 20000
			for _, mb := range []string{"Big", "Text"} {
				a := answered(t, mb, "s", "SEARCH "+notTextKeys(n/100), "OK")
				b := answered(t, mb, "s", "SEARCH "+notTextKeys(n/50), "OK")
				used := abandoned(t, mb, "SEARCH "+notTextKeys(n))
				requireStopped(t, f, mb, used, b, project(a, n/100, b, n/50, n))
			}
		}},
		{"SORT and THREAD of 2,000 messages; with 20,000 TEXT keys, client gone", 64 << 20, func(t *testing.T, f *stepFigures) {
			for _, cmd := range []string{"SORT (SUBJECT REVERSE DATE FROM) UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL"} {
				f.notef("%s: %v", strings.Fields(cmd)[0]+" "+strings.Fields(cmd)[1], answered(t, "Big", "s", cmd, "OK").Round(time.Millisecond))
			}
			const n = 20000
			for _, cmd := range []string{"SORT (SUBJECT) UTF-8 ", "THREAD REFERENCES UTF-8 "} {
				a := answered(t, "Big", "s", cmd+notTextKeys(n/100), "OK")
				b := answered(t, "Big", "s", cmd+notTextKeys(n/50), "OK")
				used := abandoned(t, "Big", cmd+notTextKeys(n))
				requireStopped(t, f, strings.Fields(cmd)[0], used, b, project(a, n/100, b, n/50, n))
			}
		}},
		{"FETCH 1:* BODY[] of 24 MiB, a client that never reads", 24 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "Large")
			r.send("f FETCH 1:* BODY[]\r\n")
			// The server's writes block; the write timeout drops the
			// connection. Nothing is read meanwhile.
			e.waitNoSessions(t)
			n, _ := io.Copy(io.Discard, r.r)
			f.notef("the client got %d of %d octets", n, hostileLargeCount<<20)
			if n >= hostileLargeCount<<20 {
				t.Errorf("the whole FETCH went out (%d octets): nothing blocked", n)
			}
		}},
		{"FETCH 1:* of 1,000 BINARY.SIZE items, client gone", 64 << 20, func(t *testing.T, f *stepFigures) {
			const n = 1000
			items := func(k int) string { return "1:* (" + strings.TrimSpace(strings.Repeat("BINARY.SIZE[2] ", k)) + ")" }
			a := answered(t, "Large", "f", "FETCH "+items(n/100), "OK")
			b := answered(t, "Large", "f", "FETCH "+items(n/50), "OK")
			used := abandoned(t, "Large", "FETCH "+items(n))
			requireStopped(t, f, "FETCH", used, b, project(a, n/100, b, n/50, n))
		}},
		{"100,000 pipelined NOOPs", 64 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			const n = 100000
			go io.WriteString(r.c, strings.Repeat("n NOOP\r\n", n))
			for i := range n {
				// Read directly: the test client's own checks would cost
				// more than the server's answers.
				l, err := r.r.ReadSlice('\n')
				if err != nil || string(l) != "n OK NOOP completed\r\n" {
					t.Fatalf("response %d: %q %v", i, l, err)
				}
			}
			r.expectAlive()
		}},
		{"100,000 pipelined bad commands", 16 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			go io.WriteString(r.c, strings.Repeat("x FROB\r\n", 100000))
			for i := range DefaultMaxBadCommands {
				if l := r.line(); l != "x BAD Unknown command FROB" {
					t.Fatalf("response %d: %q", i, l)
				}
			}
			r.expectBye("Too many invalid commands")
		}},
		{"AUTHENTICATE PLAIN with responses of 300 KB and 2 MiB", 64 << 20, func(t *testing.T, f *stepFigures) {
			r := dial(t)
			r.line()
			long := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + strings.Repeat("p", 225000)))
			r.send("a AUTHENTICATE PLAIN\r\n")
			if l := r.line(); l != "+ " {
				t.Fatalf("AUTHENTICATE: %q", l)
			}
			r.send(long + "\r\n")
			r.expectTagged("a", "NO [AUTHENTICATIONFAILED]")
			r.send("b AUTHENTICATE PLAIN " + strings.Repeat("A", 300000) + "\r\n")
			r.expectTagged("b", "BAD")
			r.send("c AUTHENTICATE PLAIN\r\n")
			r.line()
			go io.WriteString(r.c, strings.Repeat("A", 2<<20)+"\r\n")
			r.expectTagged("c", "BAD Authentication response too long")
			r.expectAlive()
		}},
		{"ID with 1,000 pairs and a value of 1 MiB", 32 << 20, func(t *testing.T, f *stepFigures) {
			r := dial(t)
			r.line()
			var b strings.Builder
			for i := range 1000 {
				fmt.Fprintf(&b, ` "k%d" "v%d"`, i, i)
			}
			r.send("i ID (" + b.String()[1:] + ")\r\n")
			r.expectTagged("i", "BAD Too many ID fields")
			r.send(`j ID ("name" "` + strings.Repeat("v", MaxMaxLineLength-30) + `")` + "\r\n")
			r.expectTagged("j", "BAD ID field or value too long")
			r.expectAlive()
		}},
		{"an unterminated quoted string, with and without a line end", 16 << 20, func(t *testing.T, f *stepFigures) {
			r := dial(t)
			r.line()
			r.send("a LOGIN \"alice\r\n")
			r.expectTagged("a", "BAD")
			r.expectAlive()
			r.send("b LOGIN \"alice")
			if got := r.expectTagged("b", "BAD Timeout waiting for the rest of the command"); len(got) != 0 {
				t.Errorf("before the timeout: %q", got)
			}
			r.expectBye("Command timeout")
		}},
		{"COMPRESS with a line of 1 GiB in 1 MiB of deflate", 32 << 20, func(t *testing.T, f *stepFigures) {
			const n = 1 << 30
			bomb := deflateBomb(t, "a NOOP ", n)
			// What inflating it all would cost (the test's own decoder).
			start := testutil.ProcessCPU()
			k, _ := io.Copy(io.Discard, io.LimitReader(newInflater(newInbuf(bytes.NewReader(bomb))), 64<<20))
			whole := time.Duration(float64(testutil.ProcessCPU()-start) * float64(n) / float64(k))
			r := session(t, "")
			if got := r.cmd("z", "COMPRESS DEFLATE"); got[len(got)-1] != "z OK DEFLATE active" {
				t.Fatalf("COMPRESS: %q", got)
			}
			go r.c.Write(bomb)
			start = testutil.ProcessCPU()
			fr := bufio.NewReader(flate.NewReader(io.MultiReader(r.r, r.c)))
			out, _ := io.ReadAll(fr)
			used := testutil.ProcessCPU() - start
			f.notef("%d octets compressed; inflating it all would cost %v, the server used %v", len(bomb), whole.Round(time.Millisecond), used.Round(time.Millisecond))
			if !strings.HasPrefix(string(out), "a BAD Command line too long") || !strings.Contains(string(out), "* BYE ") {
				t.Errorf("after the bomb: %q", truncate(string(out), 300))
			}
			if used > whole/4 {
				t.Errorf("the bomb cost %v of CPU, inflating all of it %v: not bounded by the line limit", used, whole)
			}
		}},
		{"CATENATE of 40,000 URLs, of a small and of a 1 MiB message", 32 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			for _, url := range []string{`"/INBOX/;UID=1"`, `"/Large/;UID=1"`} {
				start := testutil.ProcessCPU()
				r.send("c APPEND Box CATENATE (" + strings.TrimSpace(strings.Repeat("URL "+url+" ", 40000)) + ")\r\n")
				r.expectTagged("c", "NO [TOOBIG]")
				f.notef("%s %v", url, (testutil.ProcessCPU() - start).Round(time.Millisecond))
			}
			r.expectAlive()
		}},
		{"APPEND of 100,000 MIME parts and of nesting 10,000 deep", 128 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			msgs := []string{
				"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + strings.Repeat("--b\r\n\r\n", 100000) + "--b--\r\n",
			}
			var nest strings.Builder
			for i := range 10000 {
				fmt.Fprintf(&nest, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
			}
			msgs = append(msgs, nest.String(), strings.Repeat("Content-Type: message/rfc822\r\n\r\n", 10000)+"x\r\n")
			for i, m := range msgs {
				r.send(fmt.Sprintf("a APPEND Box {%d+}\r\n%s\r\n", len(m), m))
				r.expectTagged("a", "OK [APPENDUID")
				r.cmd("s", "SELECT Box")
				r.send(fmt.Sprintf("f FETCH %d (BODYSTRUCTURE BODY[1.1.1] BINARY.SIZE[1])\r\n", i+1))
				got := r.expectTagged("f", "OK")
				size := len(strings.Join(got, "\n"))
				f.notef("message %d: %d octets, BODYSTRUCTURE %d", i+1, len(m), size)
				if size > 4<<20 {
					t.Errorf("FETCH BODYSTRUCTURE of message %d: %d octets", i+1, size)
				}
			}
		}},
		{"MULTIAPPEND of 40 messages of 1 MiB", 48 << 20, func(t *testing.T, f *stepFigures) {
			r := session(t, "")
			const n = 1<<20 - 100
			go func() {
				io.WriteString(r.c, "m APPEND Multi")
				for range 40 {
					sendLong(r.c, fmt.Sprintf(" {%d+}\r\n", n+2), n, "\r\n")
				}
				io.WriteString(r.c, "\r\n")
			}()
			r.expectTagged("m", "OK [APPENDUID")
			if mb, err := e.user().Mailbox("Multi"); err != nil || mb.Messages != 40 {
				t.Errorf("Multi after MULTIAPPEND: %+v %v", mb, err)
			}
		}},
	}

	var all []stepFigures
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			e.t = t
			defer func() { e.t = parentT }()
			f := stepFigures{name: step.name}
			runtime.GC()
			before := heapObjectBytes()
			h := startHeapSampler()
			defer h.finish()
			start := testutil.ProcessCPU()
			func() {
				defer func() {
					for _, r := range open {
						r.c.Close()
					}
					open = nil
				}()
				step.run(t, &f)
			}()
			e.waitNoSessions(t)
			f.cpu = testutil.ProcessCPU() - start
			f.peakHeap = h.finish() - before
			f.idle = testutil.RequireIdle(t, step.name) // it collects garbage first
			f.liveAfter = heapObjectBytes() - before
			t.Logf("CPU %v, %v in the %v after it; heap %.1f MiB before, peak +%.1f MiB, after +%.1f MiB; %s",
				f.cpu.Round(time.Millisecond), f.idle.Round(time.Millisecond), testutil.IdleWindow, mib(before), mib(f.peakHeap), mib(f.liveAfter), f.note)
			if step.maxHeap > 0 && f.peakHeap > step.maxHeap {
				t.Errorf("the heap grew by %.1f MiB, more than %.0f MiB", mib(f.peakHeap), mib(step.maxHeap))
			}
			if f.liveAfter > 8<<20 {
				t.Errorf("the live heap is %.1f MiB larger after the request than before", mib(f.liveAfter))
			}
			all = append(all, f)
		})
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-72s %10s %8s %10s %10s\n", "hostile request", "CPU", "idle", "heap peak", "heap after")
	for _, f := range all {
		fmt.Fprintf(&table, "%-72s %10v %8v %+9.1fM %+9.1fM  %s\n", f.name, f.cpu.Round(time.Millisecond), f.idle.Round(time.Millisecond), mib(f.peakHeap), mib(f.liveAfter), f.note)
	}
	t.Log(table.String())
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
