package pop3d

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/roostmail/roost/backend"
)

// dovecotUIDL reads the fixture made by a real Dovecot pop3d.
//
// How it was made: testdata/dovecot-uidl/generate.sh (run as root) starts a
// private Dovecot 2.3.19.1 (own base_dir, loopback port) with a Maildir
// whose dovecot-uidlist is testdata/dovecot-uidl/dovecot-uidlist:
// UIDVALIDITY 3735928559 (0xdeadbeef) and UIDs 1, 10, 171, 4096, 65535
// (values whose hex has letters and several digits, so case and padding
// show), with pop3_uidl_format at Dovecot's default; it logs in with
// Python's poplib and writes the UIDL answer, one "N UIDL" line per
// message, to testdata/dovecot-uidl/uidl.txt.
func dovecotUIDL(t *testing.T) (uidValidity uint32, uids []uint32, lines []string) {
	t.Helper()
	list, err := os.ReadFile("testdata/dovecot-uidl/dovecot-uidlist")
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		f := strings.Fields(l)
		if i == 0 { // "3 V<uidvalidity> N<next> G<guid>"
			v, err := strconv.ParseUint(strings.TrimPrefix(f[1], "V"), 10, 32)
			if err != nil {
				t.Fatalf("uidlist header %q: %v", l, err)
			}
			uidValidity = uint32(v)
			continue
		}
		u, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			t.Fatalf("uidlist line %q: %v", l, err)
		}
		uids = append(uids, uint32(u))
	}
	f, err := os.Open("testdata/dovecot-uidl/uidl.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != len(uids) || len(uids) == 0 {
		t.Fatalf("fixture: %d UIDL lines for %d UIDs", len(lines), len(uids))
	}
	return uidValidity, uids, lines
}

// TestUIDLMatchesDovecot: for the same UIDVALIDITY and UIDs, Roost's
// unique-ids are exactly those Dovecot's pop3d gave (so a POP3 client that
// leaves mail on the server does not fetch it all again after a migration
// that keeps UIDs). The UIDL command writes session.uidl on the wire
// (TestTransactionCommands checks that over a socket).
func TestUIDLMatchesDovecot(t *testing.T) {
	uv, uids, want := dovecotUIDL(t)
	s := &session{mbox: backend.Mailbox{UIDValidity: uv}}
	for i, uid := range uids {
		m := &message{Message: backend.Message{UID: uid}}
		if got := strconv.Itoa(i+1) + " " + s.uidl(m); got != want[i] {
			t.Errorf("UID %d: Roost %q, Dovecot %q", uid, got, want[i])
		}
	}
}
