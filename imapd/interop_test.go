package imapd

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/internal/testutil"
)

// TestPythonImaplib drives the server with Python's imaplib and checks the
// answers against the message that was delivered.
func TestPythonImaplib(t *testing.T) {
	python := testutil.RequireBinary(t, "python3")
	e := newEnv(t)
	e.deliver(mimeMsg)
	e.deliver(msgText("second", "2"))
	e.deliver(msgText("third", "3"))
	host, port, _ := net.SplitHostPort(e.addr)
	cmd := exec.Command(python, "testdata/imaplib_client.py")
	cmd.Env = append(os.Environ(), "IMAP_HOST="+host, "IMAP_PORT="+port, "IMAP_USER="+testUser, "IMAP_PASS="+testPass)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, stderr.String())
	}
	var out map[string]any
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	var flat func(v any) string
	flat = func(v any) string {
		switch v := v.(type) {
		case string:
			return v
		case []any:
			var parts []string
			for _, x := range v {
				parts = append(parts, flat(x))
			}
			return strings.Join(parts, "\n")
		}
		return fmt.Sprint(v)
	}
	str := func(k string) string { return flat(out[k]) }
	bytesOf := func(k string) string {
		s, _ := out[k].(string)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Errorf("%s: %v", k, err)
		}
		return string(b)
	}
	// Byte for byte.
	for k, want := range map[string]string{
		"body":        mimeMsg,
		"header":      mimeHeader,
		"part_1_1":    plainBody,
		"part_2_mime": pdfHeader,
		"part_3_text": innerBody,
		"partial":     mimeMsg[5:17],
		"binary_2":    pdfData,
	} {
		if got := bytesOf(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
	contains := map[string][]string{
		"login":             {"OK"},
		"caps":              {"IMAP4rev1", "IMAP4rev2", "IDLE", "MOVE", "UIDPLUS"},
		"namespace":         {`(("" "/")) NIL NIL`},
		"list":              {`(\HasNoChildren \Sent) "/" "Sent"`},
		"create_utf7":       {"OK"},
		"list_py":           {`"Py/Sub"`, `(\HasChildren) "/" "Py"`},
		"lsub":              {`"Py/Sub"`},
		"list_after_rename": {`"Python/Sub"`},
		"status":            {"MESSAGES 3", "UNSEEN 3", "UIDNEXT 4"},
		"select":            {"OK", "3"},
		"bodystructure":     {`("text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable"`, `"mixed" ("boundary" "outer")`},
		"envelope":          {`UID 1`, `RFC822.SIZE ` + strconv.Itoa(len(mimeMsg)), `"<multi@example.net>"`},
		"store":             {`FLAGS (\Flagged $Py`},
		"append":            {"OK", "APPENDUID"},
		"copy":              {"OK", "COPYUID"},
		"move":              {"OK", " 2 1"},
		"expunge":           {"OK", "1"},
		"left":              {"1 (UID 3)"},
		"close":             {"OK"},
		"examine":           {"OK"},
		"store_readonly":    {"NO"},
		"logout":            {"BYE"},
	}
	for k, wants := range contains {
		got := str(k)
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("%s = %s; lacks %s", k, got, w)
			}
		}
	}
	for k, want := range map[string]string{
		"search_flagged": "1",
		"search_from":    "1",
		"search_or":      "1 2",
		"search_body":    "1",
		"search_not":     "2 3",
	} {
		if got := str(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := str("store_silent"); got != "" {
		t.Errorf("STORE .SILENT answered %s", got)
	}
	// And the store agrees.
	u := e.user()
	if _, err := u.Mailbox("Café"); err != nil {
		t.Errorf("the UTF-7 name was not decoded: %v", err)
	}
	if got := uidsOf(t, e, "INBOX"); !slices.Equal(got, []uint32{3}) {
		t.Errorf("INBOX: %v", got)
	}
	for name, n := range map[string]int{"Archive": 1, "Trash": 1, "Sent": 1} {
		if got := uidsOf(t, e, name); len(got) != n {
			t.Errorf("%s: %v", name, got)
		}
	}
}

// TestCurl: curl lists and fetches over imap://.
func TestCurl(t *testing.T) {
	curl := testutil.RequireBinary(t, "curl")
	e := newEnv(t)
	e.deliver(mimeMsg)
	run := func(url string) string {
		t.Helper()
		out, err := exec.Command(curl, "-sS", "--max-time", "20", "-u", testUser+":"+testPass, url).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, out)
		}
		return string(out)
	}
	if out := run("imap://" + e.addr + "/"); !strings.Contains(out, `* LIST (\HasNoChildren) "/" INBOX`) ||
		!strings.Contains(out, `\Trash) "/" "Trash"`) {
		t.Errorf("curl imap://host/: %s", out)
	}
	if out := run("imap://" + e.addr + "/INBOX"); !strings.Contains(out, `* LIST (\HasNoChildren) "/" INBOX`) {
		t.Errorf("curl imap://host/INBOX: %s", out)
	}
	if out := run("imap://" + e.addr + "/INBOX;UID=1"); out != mimeMsg {
		t.Errorf("curl imap://host/INBOX;UID=1: %q", out)
	}
	if out := run("imap://" + e.addr + "/INBOX;UID=1/;SECTION=1.1"); out != plainBody {
		t.Errorf("curl ;SECTION=1.1: %q", out)
	}
}

// mbsyncReplica is one mbsync (isync) replica of the test account: a
// Maildir in a temporary directory and its configuration.
type mbsyncReplica struct {
	t      *testing.T
	bin    string
	dir    string
	config string
}

func newReplica(t *testing.T, bin, addr, name string) *mbsyncReplica {
	host, port, _ := net.SplitHostPort(addr)
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(filepath.Join(dir, "INBOX"), 0o700); err != nil {
		t.Fatal(err)
	}
	// isync 1.5 renamed SSLType to TLSType.
	tlsKey := "SSLType"
	if out, _ := exec.Command(bin, "--version").Output(); mbsyncAtLeast(string(out), 1, 5) {
		tlsKey = "TLSType"
	}
	conf := fmt.Sprintf(`IMAPAccount roost
Host %s
Port %s
User %s
Pass "%s"
%s None
AuthMechs LOGIN

IMAPStore remote
Account roost

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Create Both
Expunge Both
SyncState *
`, host, port, testUser, testPass, tlsKey, dir, dir)
	config := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return &mbsyncReplica{t: t, bin: bin, dir: dir, config: config}
}

func mbsyncAtLeast(version string, major, minor int) bool {
	m := regexp.MustCompile(`(\d+)\.(\d+)`).FindStringSubmatch(version)
	if m == nil {
		return false
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	return a > major || a == major && b >= minor
}

func (r *mbsyncReplica) sync() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.bin, "-c", r.config, "-a").CombinedOutput()
	if err != nil {
		r.t.Fatalf("mbsync (%s): %v\n%s", filepath.Base(r.dir), err, out)
	}
}

// messages maps the Subject of each message in the replica's INBOX to its
// Maildir flags (RFC-less but universal: ":2,FRST" suffixes).
func (r *mbsyncReplica) messages() map[string]string {
	r.t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		files, _ := filepath.Glob(filepath.Join(r.dir, "INBOX", sub, "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				r.t.Fatal(err)
			}
			m := regexp.MustCompile(`(?m)^Subject: (.*?)\r?$`).FindSubmatch(b)
			if m == nil {
				r.t.Fatalf("no Subject in %s", f)
			}
			flags := ""
			if _, info, ok := strings.Cut(filepath.Base(f), ":2,"); ok {
				flags = info
			}
			out[string(m[1])] = flags
		}
	}
	return out
}

// file returns the path of the message with subject.
func (r *mbsyncReplica) file(subject string) string {
	r.t.Helper()
	for _, sub := range []string{"new", "cur"} {
		files, _ := filepath.Glob(filepath.Join(r.dir, "INBOX", sub, "*"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if bytes.Contains(b, []byte("Subject: "+subject+"\n")) || bytes.Contains(b, []byte("Subject: "+subject+"\r\n")) {
				return f
			}
		}
	}
	r.t.Fatalf("no message %q in %s", subject, r.dir)
	return ""
}

// TestMbsync: two mbsync replicas of one account. A flag set in replica 1
// and pushed reaches replica 2 on its next sync; a message deleted in one
// is gone from the other; a message added in one reaches the other.
func TestMbsync(t *testing.T) {
	bin := testutil.RequireBinary(t, "mbsync")
	e := newEnv(t)
	e.fill(3)
	r1 := newReplica(t, bin, e.addr, "replica1")
	r2 := newReplica(t, bin, e.addr, "replica2")
	r1.sync()
	r2.sync()
	want := map[string]string{"m1": "", "m2": "", "m3": ""}
	for _, r := range []*mbsyncReplica{r1, r2} {
		if got := r.messages(); !mapsEqual(got, want) {
			t.Fatalf("%s after the first sync: %v", filepath.Base(r.dir), got)
		}
	}
	// The bodies arrived intact (Maildir keeps LF line ends; mbsync adds
	// its X-TUID header).
	if got, want := r1.body("m2"), strings.ReplaceAll(msgText("m2", "body 2"), "\r\n", "\n"); got != want {
		t.Errorf("m2 in replica 1: %q, want %q", got, want)
	}

	// Replica 1 flags m1 and reads m2; the next syncs carry that over.
	f := r1.file("m1")
	if err := os.Rename(f, filepath.Join(r1.dir, "INBOX", "cur", strings.SplitN(filepath.Base(f), ":2,", 2)[0]+":2,F")); err != nil {
		t.Fatal(err)
	}
	f = r1.file("m2")
	if err := os.Rename(f, filepath.Join(r1.dir, "INBOX", "cur", strings.SplitN(filepath.Base(f), ":2,", 2)[0]+":2,S")); err != nil {
		t.Fatal(err)
	}
	r1.sync()
	inbox, _ := e.user().Mailbox("INBOX")
	msgs, _ := e.user().MessagesByUID(inbox.ID, []uint32{1, 2, 3})
	if !msgs[0].Has(`\Flagged`) || !msgs[1].Has(`\Seen`) || len(msgs[2].Flags) != 0 {
		t.Errorf("server flags after replica 1 pushed: %v %v %v", msgs[0].Flags, msgs[1].Flags, msgs[2].Flags)
	}
	r2.sync()
	if got := r2.messages(); !mapsEqual(got, map[string]string{"m1": "F", "m2": "S", "m3": ""}) {
		t.Errorf("replica 2 after the flags: %v", got)
	}

	// Replica 2 deletes m3; replica 1 loses it on its next sync.
	if err := os.Remove(r2.file("m3")); err != nil {
		t.Fatal(err)
	}
	r2.sync()
	if got := uidsOf(t, e, "INBOX"); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("server INBOX after replica 2 deleted m3: %v", got)
	}
	r1.sync()
	if got := r1.messages(); !mapsEqual(got, map[string]string{"m1": "F", "m2": "S"}) {
		t.Errorf("replica 1 after the deletion: %v", got)
	}

	// A message written into replica 1 (APPEND) and one delivered reach
	// replica 2.
	note := "From: alice@example.org\nSubject: note to self\n\nwritten offline\n"
	if err := os.WriteFile(filepath.Join(r1.dir, "INBOX", "cur", "1700000000.offline.host:2,S"), []byte(note), 0o600); err != nil {
		t.Fatal(err)
	}
	e.deliver(msgText("m4", "late"))
	r1.sync()
	r2.sync()
	want = map[string]string{"m1": "F", "m2": "S", "note to self": "S", "m4": ""}
	for _, r := range []*mbsyncReplica{r1, r2} {
		if got := r.messages(); !mapsEqual(got, want) {
			t.Errorf("%s at the end: %v", filepath.Base(r.dir), got)
		}
	}
	if got := r2.body("note to self"); got != note {
		t.Errorf("the note in replica 2: %q", got)
	}
}

// body returns a message of the replica without mbsync's X-TUID header.
func (r *mbsyncReplica) body(subject string) string {
	b, err := os.ReadFile(r.file(subject))
	if err != nil {
		r.t.Fatal(err)
	}
	return regexp.MustCompile(`(?m)^X-TUID: .*\n`).ReplaceAllString(string(b), "")
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestRestart: after the server and the backend stop and start again on
// the same data directory, UIDVALIDITY, UIDs and flags are the same.
func TestRestart(t *testing.T) {
	e := newEnv(t)
	e.fill(4)
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, "$Label"}}, nil).Collect()
	c.Store(imap.SeqSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	c.Expunge().Collect()
	c.Create("Folder", nil).Wait()
	type state struct {
		validity, next uint32
		uids           []imap.UID
		flags          [][]imap.Flag
	}
	snapshot := func() state {
		t.Helper()
		cl := e.client()
		sel, err := cl.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := cl.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		s := state{validity: sel.UIDValidity, next: uint32(sel.UIDNext)}
		for _, m := range msgs {
			s.uids = append(s.uids, m.UID)
			s.flags = append(s.flags, m.Flags)
		}
		cl.Logout().Wait()
		return s
	}
	before := snapshot()
	c.Logout().Wait()
	e.stop()
	e.openBackend()
	e.start()
	after := snapshot()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("before restart %+v\nafter restart  %+v", before, after)
	}
	if !slices.Equal(before.uids, []imap.UID{1, 2, 4}) || before.next != 5 {
		t.Errorf("state: %+v", before)
	}
	if _, err := e.user().Mailbox("Folder"); err != nil {
		t.Error(err)
	}
	// A recreated mailbox gets a new UIDVALIDITY (RFC 9051 §2.3.1.1).
	c2 := e.client()
	s1, _ := c2.Status("Folder", &imap.StatusOptions{UIDValidity: true}).Wait()
	c2.Delete("Folder").Wait()
	c2.Create("Folder", nil).Wait()
	s2, _ := c2.Status("Folder", &imap.StatusOptions{UIDValidity: true}).Wait()
	if s1.UIDValidity == s2.UIDValidity {
		t.Errorf("recreated mailbox kept UIDVALIDITY %d", s1.UIDValidity)
	}
	_ = backend.Inbox
}
