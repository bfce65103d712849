package imapd

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBadCommandsKeepConnection: unknown and malformed commands get BAD and
// the connection stays; after max_bad_commands BADs in a row it closes.
func TestBadCommandsKeepConnection(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBadCommands = 3 })
	r := e.dialRaw()
	r.line()
	for _, c := range []struct{ send, want string }{
		{"a FROB", "a BAD Unknown command"},
		{"b SELECT", "b BAD"},
		{"c NOOP", "c OK"}, // resets the run
		{"d LOGIN a b c", "d BAD"},
		{"e FETCH 1 FLAGS", "e BAD Log in first"},
	} {
		if got := r.cmd(c.send[:1], c.send[2:]); !strings.HasPrefix(got[len(got)-1], c.want) {
			t.Errorf("%s: %q, want %s", c.send, got, c.want)
		}
	}
	r.send("f ((\r\n")
	if out := r.readEOF(); !strings.Contains(out, "f BAD") || !strings.HasSuffix(out, "* BYE Too many invalid commands\r\n") {
		t.Errorf("third BAD in a row: %q", out)
	}
}

// TestIDCommand: ID (RFC 2971) before and after login; over its limits BAD
// and the connection kept.
func TestIDCommand(t *testing.T) {
	e := newEnv(t)
	r := e.dialRaw()
	r.line()
	got := r.cmd("a", `ID ("name" "Microsoft Office 365" "version" "16.0")`)
	if len(got) != 2 || !strings.HasPrefix(got[0], `* ID ("name" "Roost"`) || got[1] != "a OK ID completed" {
		t.Errorf("ID before login: %q", got)
	}
	var pairs []string
	for i := 0; i < 31; i++ {
		pairs = append(pairs, fmt.Sprintf(`"k%d" "v"`, i))
	}
	if got := r.cmd("b", "ID ("+strings.Join(pairs, " ")+")"); !strings.HasPrefix(got[len(got)-1], "b BAD Too many ID fields") {
		t.Errorf("31 ID pairs: %q", got)
	}
	if got := r.cmd("c", `ID ("name" "`+strings.Repeat("x", 1025)+`")`); !strings.HasPrefix(got[len(got)-1], "c BAD") {
		t.Errorf("ID value over 1024: %q", got)
	}
	if got := r.cmd("d", fmt.Sprintf("LOGIN %s %q", testUser, testPass)); !strings.HasPrefix(got[len(got)-1], "d OK") {
		t.Errorf("LOGIN after ID: %q", got)
	}
	if got := r.cmd("e", "ID NIL"); got[len(got)-1] != "e OK ID completed" {
		t.Errorf("ID NIL after login: %q", got)
	}
}

// TestCommandTimeout: a command whose line never ends gets BAD and the
// connection closes after command_timeout.
func TestCommandTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CommandTimeout = 200 * time.Millisecond })
	r := e.dialRaw()
	r.login()
	r.send(`a SELECT "INBOX`)
	if out := r.readEOF(); out != "a BAD Timeout waiting for the rest of the command\r\n* BYE Command timeout\r\n" {
		t.Errorf("unterminated command: %q", out)
	}
}

// TestAuthMechanisms: AUTHENTICATE PLAIN (with and without SASL-IR) and
// LOGIN; a response over max_line_length gets BAD, not a server error.
func TestAuthMechanisms(t *testing.T) {
	e := newEnv(t)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPass))
	r := e.dialRaw()
	r.line()
	if got := r.cmd("a", "AUTHENTICATE PLAIN "+plain); !strings.HasPrefix(got[len(got)-1], "a OK") {
		t.Errorf("AUTHENTICATE PLAIN with SASL-IR: %q", got)
	}
	r = e.dialRaw()
	r.line()
	r.send("a AUTHENTICATE LOGIN\r\n")
	if l := r.line(); l != "+ VXNlcm5hbWU6" {
		t.Fatalf("LOGIN username challenge: %q", l)
	}
	r.send(base64.StdEncoding.EncodeToString([]byte(testUser)) + "\r\n")
	if l := r.line(); l != "+ UGFzc3dvcmQ6" {
		t.Fatalf("LOGIN password challenge: %q", l)
	}
	r.send(base64.StdEncoding.EncodeToString([]byte(testPass)) + "\r\n")
	if got := r.until("a "); !strings.HasPrefix(got[len(got)-1], "a OK") {
		t.Errorf("AUTHENTICATE LOGIN: %q", got)
	}
	r = e.dialRaw()
	r.line()
	r.send("b AUTHENTICATE PLAIN\r\n")
	r.line()
	r.send(strings.Repeat("A", 300000) + "\r\n")
	if got := r.until("b "); !strings.HasPrefix(got[len(got)-1], "b BAD") {
		t.Errorf("300 KB PLAIN response: %q", got)
	}
	if got := r.cmd("c", "NOOP"); got[0] != "c OK NOOP completed" {
		t.Errorf("after a long PLAIN response: %q", got)
	}
}

// TestUTF8AcceptNames: after ENABLE UTF8=ACCEPT names are raw UTF-8, "&"
// an ordinary character (issue 10: CREATE "Q&A" got SERVERBUG).
func TestUTF8AcceptNames(t *testing.T) {
	e := newEnv(t)
	r := e.dialRaw()
	r.login()
	r.cmd("e", "ENABLE UTF8=ACCEPT")
	for _, name := range []string{"Q&A", "Café"} {
		if got := r.cmd("c", fmt.Sprintf("CREATE %q", name)); !strings.HasPrefix(got[len(got)-1], "c OK") {
			t.Errorf("CREATE %s: %q", name, got)
		}
		if _, err := e.user().Mailbox(name); err != nil {
			t.Errorf("%s not stored as such: %v", name, err)
		}
	}
	if got := strings.Join(r.cmd("l", `LIST "" "*"`), "\n"); !strings.Contains(got, `"Q&A"`) || !strings.Contains(got, `"Café"`) {
		t.Errorf("LIST after UTF8=ACCEPT: %s", got)
	}
}

// TestHostileListPattern: a pattern of many wildcards is answered (issue
// 10: 40 wildcards never were).
func TestHostileListPattern(t *testing.T) {
	e := newEnv(t)
	r := e.dialRaw()
	r.login()
	got := r.cmd("l", `LIST "" "`+strings.Repeat("*%", 2000)+`x"`)
	if got[len(got)-1] != "l OK LIST completed" || len(got) != 1 {
		t.Errorf("LIST with 4000 wildcards: %q", got)
	}
}

// TestQuota: GETQUOTAROOT and GETQUOTA report STORAGE and MESSAGE (RFC
// 9208); an APPEND over the quota gets NO [OVERQUOTA].
func TestQuota(t *testing.T) {
	e := newEnv(t)
	if err := e.b.UpdateAccount(context.Background(), testUser, 2048, false); err != nil {
		t.Fatal(err)
	}
	e.fill(1)
	r := e.dialRaw()
	r.login()
	got := r.cmd("q", "GETQUOTAROOT INBOX")
	if len(got) != 3 || got[0] != `* QUOTAROOT INBOX ""` || !strings.HasPrefix(got[1], `* QUOTA "" (STORAGE 1 2)`) {
		t.Errorf("GETQUOTAROOT: %q", got)
	}
	big := strings.Repeat("x", 3000)
	got = r.cmd("a", fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(big), big))
	if !strings.HasPrefix(got[len(got)-1], "a NO [OVERQUOTA]") {
		t.Errorf("APPEND over quota: %q", got)
	}
}
