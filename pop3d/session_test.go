package pop3d

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// A connection that drops after DELE never enters the UPDATE state.
func TestDroppedConnectionDeletesNothing(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.deliver(msg("one", "1"), msg("two", "2"))
	c := dial(t, e.addr)
	c.login()
	c.expectOK("RETR 1")
	c.multi()
	c.expectOK("DELE 1")
	c.expectOK("DELE 2")
	c.conn.Close()
	e.waitEnded(1)
	_, msgs := e.inbox()
	if len(msgs) != 2 {
		t.Fatalf("%d messages after a dropped connection, want 2", len(msgs))
	}
	// The lock went with the connection.
	c = dial(t, e.addr)
	c.login()
	if r := c.expectOK("STAT"); r[:6] != "+OK 2 " {
		t.Errorf("STAT %q", r)
	}
}

// RFC 1939 §8: one session per maildrop; the second gets [IN-USE] and the
// first is unaffected.
func TestSecondSessionInUse(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.deliver(msg("one", "1"), msg("two", "2"))
	first := dial(t, e.addr)
	first.login()
	first.expectOK("DELE 1")

	second := dial(t, e.addr)
	second.expectOK("USER " + testUser)
	second.expectErr("PASS "+testPass, "[IN-USE] ")
	second.expectErr("STAT", "log in first")

	first.expectOK("RETR 2")
	first.multi()
	if r := first.expectOK("STAT"); r[:6] != "+OK 1 " {
		t.Errorf("first session STAT %q", r)
	}
	first.expectOK("QUIT")

	// Once the first has quit (the reply comes after the lock is
	// released), the second can log in and sees the result of its UPDATE.
	second.expectOK("USER " + testUser)
	second.expectOK("PASS " + testPass)
	if r := second.expectOK("STAT"); r[:6] != "+OK 1 " {
		t.Errorf("second session STAT %q", r)
	}
}

// An IMAP session on INBOX learns of POP3 deletions through the change
// bus (what imapd turns into EXPUNGE responses).
func TestIMAPWatcherSeesExpunge(t *testing.T) {
	e := newEnv(t, envConfig{})
	uids := e.deliver(msg("one", "1"), msg("two", "2"), msg("three", "3"))
	u := e.user()
	mb, _ := e.inbox()
	w := u.Watch(mb.ID)
	defer w.Close()

	c := dial(t, e.addr)
	c.login()
	c.expectOK("DELE 1")
	c.expectOK("DELE 3")
	select {
	case <-w.C():
		t.Fatal("watcher woken before QUIT")
	default:
	}
	c.expectOK("QUIT")
	select {
	case <-w.C():
	case <-time.After(ioTimeout):
		t.Fatal("watcher not woken by the POP3 UPDATE")
	}
	changes, err := u.ChangesSince(mb.ID, mb.HighestModSeq)
	if err != nil {
		t.Fatal(err)
	}
	var expunged []uint32
	var modseqs []uint64
	for _, ch := range changes {
		if ch.Expunged {
			expunged = append(expunged, ch.UID)
			modseqs = append(modseqs, ch.ModSeq)
		}
	}
	slices.Sort(expunged)
	if !slices.Equal(expunged, []uint32{uids[0], uids[2]}) {
		t.Errorf("expunged %v, want %v", expunged, []uint32{uids[0], uids[2]})
	}
	// One store transaction: one modseq for all of them.
	if len(modseqs) == 2 && modseqs[0] != modseqs[1] {
		t.Errorf("deletions in separate transactions: modseqs %v", modseqs)
	}
}

// UIDL is Dovecot's default form and survives a restart.
func TestUIDLStableAcrossRestart(t *testing.T) {
	e := newEnv(t, envConfig{})
	uids := e.deliver(msg("one", "1"), msg("two", "2"))
	mb, _ := e.inbox()
	c := dial(t, e.addr)
	c.login()
	before := c.multiLines("UIDL")
	want := []string{
		fmt.Sprintf("1 %08x%08x", uids[0], mb.UIDValidity),
		fmt.Sprintf("2 %08x%08x", uids[1], mb.UIDValidity),
	}
	if !slices.Equal(before, want) {
		t.Fatalf("UIDL %q, want %q", before, want)
	}
	c.expectOK("QUIT")
	e.close()

	// Restart: a new backend and server on the same data directory.
	e2 := newEnv(t, envConfig{dir: e.dir})
	c = dial(t, e2.addr)
	c.login()
	if after := c.multiLines("UIDL"); !slices.Equal(after, want) {
		t.Errorf("UIDL after restart %q, want %q", after, want)
	}
}

// TestAccountDeletedDuringSession: when the account is deleted while a
// POP3 session is in the TRANSACTION state, the session ends at once with
// -ERR (it is not left answering errors to every command), nothing is
// expunged, and the maildrop lock and the account's file are let go.
func TestAccountDeletedDuringSession(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.deliver([]byte("Subject: one\r\n\r\nbody\r\n"))
	c := dial(t, e.addr)
	c.login()
	c.expectOK("STAT")
	if err := e.b.DeleteUser(context.Background(), testUser); err != nil {
		t.Fatal(err)
	}
	// The session is waiting for a command: the deletion wakes it.
	c.expectClosed([]string{"-ERR [SYS/PERM] this account has been deleted"})
	e.waitEnded(1)
}

// A client that closes its side of the connection right after PASS still
// gets an answer before the session ends (found by FuzzSession once
// watchPeer stopped logins of clients that hang up): either the login's
// result or, when the close was seen first, a -ERR saying it was not
// checked.
func TestHalfClosedClientGetsAnswer(t *testing.T) {
	e := newEnv(t, envConfig{})
	for _, pass := range []string{"wrong", testPass} {
		c := dial(t, e.addr)
		c.send("USER " + testUser)
		c.send("PASS " + pass)
		c.conn.(*net.TCPConn).CloseWrite()
		c.expectOK("")
		if r := c.line(); !strings.HasPrefix(r, "-ERR [AUTH] ") && !strings.HasPrefix(r, "-ERR [SYS/TEMP] connection closed by the client") && !strings.HasPrefix(r, "+OK maildrop") {
			t.Errorf("PASS %s from a half-closed client: %q", pass, r)
		}
		e.waitEnded(1)
	}
}
