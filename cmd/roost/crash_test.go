package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roostmail/roost/backend"
)

// TestCrashSafety runs a real `roost serve`, delivers to it over LMTP and
// SMTP from several connections at once, and SIGKILLs it at a random point
// (after a random number of acknowledged messages), round after round
// (ROOST_CRASH_ROUNDS, default 10). Each time, `roost serve` is started
// again (it recovers from its journal), stopped cleanly, and the store is
// checked: every message acknowledged with 250 for a recipient is in that
// recipient's INBOX exactly once and byte for byte as sent (behind the
// trace headers); nothing else is there but messages whose transfer was
// complete and whose reply the kill cut off (each at most once); counters
// agree with the messages; and what was there after one round is still
// there after the next.
func TestCrashSafety(t *testing.T) {
	rounds := 10
	if v := os.Getenv("ROOST_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ROOST_CRASH_ROUNDS=%q", v)
		}
		rounds = n
	}
	in := newInstance(t)
	in.mustRun("", "init")
	rcpts := []string{"u1@example.org", "u2@example.org", "u3@example.org", "u4@example.org", "u5@example.org"}
	for _, r := range rcpts {
		in.mustRun("pw\n", "user", "add", r)
	}
	ledger := newCrashLedger()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	recovered := 0
	for round := 0; round < rounds; round++ {
		srv := in.startServer()
		st := in.status()
		target := 3 + rng.IntN(40)
		killAt := ledger.armKill(target)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		workers := []struct {
			addr string
			lmtp bool
		}{{st["lmtp"], true}, {st["lmtp"], true}, {st["lmtp"], true}, {st["smtp"], false}, {st["smtp"], false}}
		for w, wk := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				crashWorker(ctx, wk.addr, wk.lmtp, fmt.Sprintf("r%d-w%d", round, w), rcpts, rand.New(rand.NewPCG(seed, uint64(round*100+w+2))), ledger)
			}()
		}
		select {
		case <-killAt:
		case <-srv.exited:
			t.Fatalf("round %d: roost serve exited by itself:\n%s", round, srv.log())
		case <-time.After(2 * time.Minute):
			t.Fatalf("round %d: %d messages not acknowledged within 2 minutes", round, target)
		}
		srv.cmd.Process.Signal(syscall.SIGKILL)
		<-srv.exited
		cancel()
		wg.Wait()

		// Restart: roost serve recovers; then a clean stop, and the check.
		again := in.startServer()
		if again.logContains("journal: mail file recovered") {
			recovered++
		}
		again.stop(syscall.SIGTERM)
		verifyStoreAfterCrash(t, in, rcpts, ledger, round)
	}
	acked, inflight := ledger.counts()
	t.Logf("%d rounds: %d acknowledged deliveries, %d cut off by a kill; recovery from the journal in %d restarts", rounds, acked, inflight, recovered)
	if recovered == 0 {
		t.Fatal("no restart recovered anything from the journal: the kills never caught a pinned file")
	}
}

// verifyStoreAfterCrash checks the stopped instance's store: `roost check`
// (the store checker) finds nothing wrong, and its mail agrees with the
// ledger.
func verifyStoreAfterCrash(t *testing.T, in *instance, rcpts []string, l *crashLedger, round int) {
	t.Helper()
	if res := in.run("", "check"); res.code != 0 {
		t.Fatalf("round %d: roost check after the restart: exit %d\n%s%s", round, res.code, res.stdout, res.stderr)
	}
	b := openBackend(t, in.dataDir)
	defer b.Close()
	ctx := context.Background()
	for _, rcpt := range rcpts {
		u, err := b.LookupUser(ctx, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := u.Mailbox(backend.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []backend.Message
		if err := u.Messages(mb.ID, 1, ^uint32(0), func(m backend.Message) error {
			msgs = append(msgs, m)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var size int64
		var last uint32
		seen := make(map[string]bool)
		for _, m := range msgs {
			if m.UID <= last || m.UID >= mb.UIDNext {
				t.Fatalf("round %d, %s: UID %d after %d, UIDNEXT %d", round, rcpt, m.UID, last, mb.UIDNext)
			}
			last = m.UID
			size += m.Size
			body, err := u.ReadBody(&m)
			if err != nil {
				t.Fatalf("round %d, %s UID %d: %v", round, rcpt, m.UID, err)
			}
			if int64(len(body)) != m.Size {
				t.Fatalf("round %d, %s UID %d: %d bytes, recorded size %d", round, rcpt, m.UID, len(body), m.Size)
			}
			id := crashID(body)
			sent := l.sentBody(id, rcpt)
			switch {
			case sent == nil:
				t.Fatalf("round %d, %s UID %d: a message that was never completely sent to it (id %q): %.300q", round, rcpt, m.UID, id, body)
			case !bytes.HasSuffix(body, sent) || !bytes.HasPrefix(body, []byte("Return-Path: <")):
				t.Fatalf("round %d, %s UID %d (%s): stored message differs from what was sent", round, rcpt, m.UID, id)
			case seen[id]:
				t.Fatalf("round %d, %s: message %s stored twice", round, rcpt, id)
			}
			seen[id] = true
		}
		if int(mb.Messages) != len(msgs) || mb.Size != size || int(mb.Unseen) != len(msgs) {
			t.Fatalf("round %d, %s: counters %d messages / %d unseen / %d bytes, found %d / %d bytes",
				round, rcpt, mb.Messages, mb.Unseen, mb.Size, len(msgs), size)
		}
		if missing := l.check(rcpt, seen); missing != "" {
			t.Fatalf("round %d, %s: %s", round, rcpt, missing)
		}
		u.Release()
	}
}

// crashID returns the X-Crash-Id header value of a stored message.
func crashID(body []byte) string {
	_, rest, ok := bytes.Cut(body, []byte("\r\nX-Crash-Id: "))
	if !ok {
		return ""
	}
	id, _, _ := bytes.Cut(rest, []byte("\r\n"))
	return string(id)
}

// crashLedger records what the workers sent and what they were told.
type crashLedger struct {
	mu   sync.Mutex
	msgs map[string]*crashMsg
	// kill is closed when acked reaches killTarget.
	acked      int
	killTarget int
	kill       chan struct{}
}

type crashMsg struct {
	body  []byte
	sent  map[string]bool // recipients the whole message went to
	acked map[string]bool // recipients it was acknowledged for (250)
	// present: recipients whose INBOX had it at a check; from then on it
	// must stay there.
	present map[string]bool
}

func newCrashLedger() *crashLedger { return &crashLedger{msgs: make(map[string]*crashMsg)} }

func (l *crashLedger) armKill(target int) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked, l.killTarget, l.kill = 0, target, make(chan struct{})
	return l.kill
}

func (l *crashLedger) sent(id string, body []byte, rcpts []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := &crashMsg{body: body, sent: make(map[string]bool), acked: make(map[string]bool), present: make(map[string]bool)}
	for _, r := range rcpts {
		m.sent[r] = true
	}
	l.msgs[id] = m
}

func (l *crashLedger) ack(id, rcpt string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs[id].acked[rcpt] = true
	l.acked++
	if l.acked == l.killTarget {
		close(l.kill)
	}
}

func (l *crashLedger) sentBody(id, rcpt string) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m := l.msgs[id]; m != nil && m.sent[rcpt] {
		return m.body
	}
	return nil
}

// check returns what is wrong with rcpt's INBOX holding the messages seen:
// an acknowledged one missing, or one that was there before gone.
func (l *crashLedger) check(rcpt string, seen map[string]bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, m := range l.msgs {
		switch {
		case m.acked[rcpt] && !seen[id]:
			return fmt.Sprintf("message %s was acknowledged with 250 but is not there", id)
		case m.present[rcpt] && !seen[id]:
			return fmt.Sprintf("message %s was there after an earlier round and is gone", id)
		}
		if seen[id] {
			m.present[rcpt] = true
		}
	}
	return ""
}

func (l *crashLedger) counts() (acked, inflight int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		for r := range m.sent {
			if m.acked[r] {
				acked++
			} else {
				inflight++
			}
		}
	}
	return acked, inflight
}

// crashWorker delivers messages over one connection until it breaks (the
// kill) or ctx ends.
func crashWorker(ctx context.Context, addr string, lmtp bool, name string, rcpts []string, rng *rand.Rand, l *crashLedger) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer conn.Close()
	context.AfterFunc(ctx, func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return
	}
	hello := "EHLO"
	if lmtp {
		hello = "LHLO"
	}
	if _, err := tp.Cmd("%s crash.test", hello); err != nil {
		return
	}
	if _, _, err := tp.ReadResponse(250); err != nil {
		return
	}
	for seq := 0; ctx.Err() == nil; seq++ {
		id := fmt.Sprintf("%s-%d", name, seq)
		to := []string{rcpts[rng.IntN(len(rcpts))]}
		if rng.IntN(3) == 0 {
			if other := rcpts[rng.IntN(len(rcpts))]; other != to[0] {
				to = append(to, other)
			}
		}
		body := crashMessage(id, rng)
		if !crashTransaction(tp, lmtp, id, to, body, l) {
			return
		}
	}
}

// crashMessage is a message of a random size: mostly small, some of
// hundreds of kilobytes, a few over the journal's 1 MiB limit.
func crashMessage(id string, rng *rand.Rand) []byte {
	size := 200 + rng.IntN(20000)
	switch rng.IntN(20) {
	case 0:
		size = 200<<10 + rng.IntN(300<<10)
	case 1:
		if rng.IntN(4) == 0 {
			size = 1100<<10 + rng.IntN(200<<10)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: crash@remote.test\r\nTo: someone@example.org\r\nSubject: crash test\r\nX-Crash-Id: %s\r\n\r\n", id)
	for line := 0; b.Len() < size; line++ {
		fmt.Fprintf(&b, "%s line %d %x\r\n", id, line, rng.Uint64())
		if line%50 == 7 {
			b.WriteString(".a line that starts with a dot\r\n")
		}
	}
	return b.Bytes()
}

// crashTransaction sends one message; it reports whether the connection
// is still usable.
func crashTransaction(tp *textproto.Conn, lmtp bool, id string, to []string, body []byte, l *crashLedger) bool {
	if _, err := tp.Cmd("MAIL FROM:<crash@remote.test>"); err != nil {
		return false
	}
	if _, _, err := tp.ReadResponse(250); err != nil {
		return false
	}
	var accepted []string
	for _, r := range to {
		if _, err := tp.Cmd("RCPT TO:<%s>", r); err != nil {
			return false
		}
		if _, _, err := tp.ReadResponse(250); err != nil {
			if _, ok := err.(*textproto.Error); !ok {
				return false
			}
			continue
		}
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 {
		_, err := tp.Cmd("RSET")
		return err == nil
	}
	if _, err := tp.Cmd("DATA"); err != nil {
		return false
	}
	if _, _, err := tp.ReadResponse(354); err != nil {
		return false
	}
	w := tp.DotWriter()
	if _, err := w.Write(body); err != nil {
		return false
	}
	if err := w.Close(); err != nil {
		return false
	}
	// The whole message is out: from here it may be stored, acknowledged
	// or not.
	l.sent(id, body, accepted)
	replies := 1
	if lmtp {
		replies = len(accepted)
	}
	for i := 0; i < replies; i++ {
		_, _, err := tp.ReadResponse(250)
		if err != nil {
			if _, ok := err.(*textproto.Error); !ok {
				return false
			}
			continue
		}
		if lmtp {
			l.ack(id, accepted[i])
		} else {
			for _, r := range accepted {
				l.ack(id, r)
			}
		}
	}
	return true
}
