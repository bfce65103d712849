package migrate

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestParseUIDList(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		uv, next   uint32
		entries    []UIDEntry
		problems   int
		wantErr    bool
	}{
		{"version 3", "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n" +
			"25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n" +
			"25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n" +
			"25018 P0001abcd W12 :name with space:2,S\n",
			1275660208, 25022, []UIDEntry{
				{UID: 25006, Unique: "1276528487.M364837P9451.kurkku,S=1355,W=1394"},
				{UID: 25017, Unique: "1276533073.M242911P3632.kurkku"},
				{UID: 25018, Unique: "name with space", POP3UIDL: "0001abcd"},
			}, 0, false},
		{"version 1", "1 1234 7\n3 111.222.host:2,S\n5 333.444.host\n", 1234, 7,
			[]UIDEntry{{UID: 3, Unique: "111.222.host"}, {UID: 5, Unique: "333.444.host"}}, 0, false},
		{"next UID below a listed UID", "3 V9 N2\n5 :a\n", 9, 6, []UIDEntry{{UID: 5, Unique: "a"}}, 0, false},
		{"bad lines skipped", "3 V9 N20\nx :a\n7\n7 :b\n7 :c\n8 W1 c\n0 :d\n", 9, 20, []UIDEntry{{UID: 7, Unique: "b"}}, 5, false},
		{"no UIDVALIDITY", "3 N5\n", 0, 0, nil, 0, true},
		{"unknown version", "9 V1 N1\n", 0, 0, nil, 0, true},
		{"empty", "", 0, 0, nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, probs, err := ParseUIDList([]byte(tc.data))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error for %q", tc.data)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.UIDValidity != tc.uv || l.NextUID != tc.next || !slices.Equal(l.Entries, tc.entries) || len(probs) != tc.problems {
				t.Errorf("got V%d N%d %+v problems %q; want V%d N%d %+v and %d problems", l.UIDValidity, l.NextUID, l.Entries, probs, tc.uv, tc.next, tc.entries, tc.problems)
			}
		})
	}
}

func TestKeywordsAndFileFlags(t *testing.T) {
	kw, probs := ParseKeywords([]byte("0 $Junk\n1 $NonJunk\n3 Work\n30 Big\nx y\n2 bad(kw\n"))
	if len(probs) != 3 || kw[0] != "$Junk" || kw[1] != "$NonJunk" || kw[3] != "Work" || kw[2] != "" {
		t.Fatalf("keywords %q, problems %q", kw, probs)
	}
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"1234.M1P2.host,S=4542,W=4642:2,Sb", []string{FlagSeen, "$NonJunk"}},
		{"1234.M1P2.host:2,DFPRSTad", []string{FlagDraft, FlagFlagged, FlagAnswered, FlagSeen, FlagDeleted, "$Junk", "Work"}},
		{"1234.M1P2.host:2,Sc", []string{FlagSeen}}, // c has no keyword
		{"1234.M1P2.host:2,S,extra=F", []string{FlagSeen}},
		{"1234.M1P2.host", nil},
		{"1234.M1P2.host:1,S", nil},
	} {
		if got := FileFlags(tc.name, &kw); !slices.Equal(got, tc.flags) {
			t.Errorf("FileFlags(%q) = %q, want %q", tc.name, got, tc.flags)
		}
	}
	var out Keywords
	name, kept := FileName("1.M2P3.roost", 10, 12, []string{FlagSeen, "$Label1", FlagAnswered, "$Label1", `\Recent`}, &out)
	if name != "1.M2P3.roost,S=10,W=12:2,RSa" || !kept || out[0] != "$Label1" {
		t.Errorf("FileName = %q (kept %v), keywords %q", name, kept, out)
	}
	if ft, ok := FileTime("1276528487.M364837P9451.kurkku"); !ok || ft.Unix() != 1276528487 {
		t.Errorf("FileTime: %v %v", ft, ok)
	}
}

func TestSpecialUse(t *testing.T) {
	for name, want := range map[string]string{"Sent": `\Sent`, "sent items": `\Sent`, "Gesendet": `\Sent`, "Papierkorb": `\Trash`,
		"Spam": `\Junk`, "Entwürfe": `\Drafts`, "Archive": `\Archive`, "Work": "", "Lists/Sent": ""} {
		if got := SpecialUse(name); got != want {
			t.Errorf("SpecialUse(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestCRLF(t *testing.T) {
	for _, tc := range []struct{ in, lf string }{
		{"a\r\nb\r\n", "a\nb\n"},
		{"a\r\nb", "a\nb"},
		{"a\nb\r\n", "a\nb\r\n"},         // a bare LF: kept as it is
		{"a\r\r\nb\r\n", "a\r\r\nb\r\n"}, // CR CR LF: kept
		{"no newline", "no newline"},
	} {
		if got := string(FromCRLF([]byte(tc.in))); got != tc.lf {
			t.Errorf("FromCRLF(%q) = %q, want %q", tc.in, got, tc.lf)
		}
		if tc.in != tc.lf || !strings.Contains(tc.in, "\n") {
			if got := string(ToCRLF([]byte(tc.lf))); got != tc.in {
				t.Errorf("ToCRLF(%q) = %q, want %q", tc.lf, got, tc.in)
			}
		}
	}
	if got := string(ToCRLF([]byte("a\nb\n"))); got != "a\r\nb\r\n" {
		t.Errorf("ToCRLF = %q", got)
	}
}

func TestScanMaildir(t *testing.T) {
	old := time.Date(2020, 5, 1, 10, 0, 0, 0, time.UTC)
	fsys := fstest.MapFS{
		"cur/1600000000.M1P1.host,S=5:2,S":    {Data: []byte("one\n"), ModTime: old},
		"new/1600000001.M2P1.host":            {Data: []byte("two\n"), ModTime: old.Add(1000 * 24 * time.Hour)},
		"tmp/1600000002.M3P1.host":            {Data: []byte("writing")},
		"dovecot-uidlist":                     {Data: []byte("3 V1500 N10\n4 :1600000000.M1P1.host,S=5:2,\n9 :1600000001.M2P1.host\n")},
		".Sent/cur/1600000003.M4P1.host:2,Sa": {Data: []byte("sent\n"), ModTime: old},
		".Sent/dovecot-keywords":              {Data: []byte("0 $Forwarded\n")},
		".Sent/dovecot-uidlist":               {Data: []byte("3 V1501 N3\n2 :1600000003.M4P1.host\n")},
		".Lists.Foo/new/1600000004.M5P1.host": {Data: []byte("list\n"), ModTime: old},
		".&AMk-t&AOk-/cur/x:2,":               {Data: []byte("ete\n"), ModTime: old},
		".empty/tmp/x":                        {Data: []byte("not a folder")},
		"Work/cur/1600000005.M6P1.host:2,F":   {Data: []byte("work\n"), ModTime: old}, // LAYOUT=fs
		"Work/Sub/new/1600000006.M7P1.host":   {Data: []byte("sub\n"), ModTime: old},
		"subscriptions":                       {Data: []byte("Sent\nLists.Foo\nWork\n")},
	}
	folders, err := ScanMaildir(fsys)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Folder{}
	for _, f := range folders {
		got[f.Name] = f
	}
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"INBOX", "Lists/Foo", "Sent", "Work", "Work/Sub", "Été"}; !slices.Equal(names, want) {
		t.Fatalf("folders %q, want %q", names, want)
	}
	inbox := got["INBOX"]
	if inbox.UIDValidity != 1500 || inbox.UIDNext != 10 || len(inbox.Messages) != 2 || !inbox.Subscribed {
		t.Fatalf("INBOX %+v", inbox)
	}
	m0, m1 := inbox.Messages[0], inbox.Messages[1]
	if m0.UID != 4 || !slices.Equal(m0.Flags, []string{FlagSeen}) || !m0.Date.Equal(old) || m0.Size != 4 {
		t.Errorf("first INBOX message %+v", m0)
	}
	// Its mtime is far after the name's time: the copy lost the times.
	if m1.UID != 9 || m1.Flags != nil || m1.Date.Unix() != 1600000001 {
		t.Errorf("second INBOX message %+v", m1)
	}
	sent := got["Sent"]
	if sent.SpecialUse != `\Sent` || sent.UIDValidity != 1501 || len(sent.Messages) != 1 ||
		!slices.Equal(sent.Messages[0].Flags, []string{FlagSeen, "$Forwarded"}) || sent.Messages[0].UID != 2 {
		t.Errorf("Sent %+v", sent)
	}
	if got["Été"].Subscribed || !got["Work"].Subscribed || got["Work/Sub"].Subscribed {
		t.Errorf("subscriptions wrong: %+v", got)
	}
	if f := got["Work"]; len(f.Messages) != 1 || !slices.Equal(f.Messages[0].Flags, []string{FlagFlagged}) || f.UIDValidity != 0 {
		t.Errorf("Work %+v", f)
	}
	if _, err := ScanMaildir(fstest.MapFS{"x": {Data: []byte("x")}}); err == nil {
		t.Error("a directory without cur/ and new/ scanned as a Maildir")
	}
}

// A Maildir written by MaildirWriter scans back to the same folders,
// UIDs, flags, dates and bytes.
func TestMaildirWriteScan(t *testing.T) {
	for _, layoutFS := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "Maildir")
		w, err := NewMaildirWriter(dir, layoutFS)
		if err != nil {
			t.Fatal(err)
		}
		date := time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)
		type msg struct {
			uid   uint32
			flags []string
			body  string
		}
		want := map[string][]msg{
			"INBOX":     {{3, []string{FlagSeen, "$Label1"}, "Subject: a\r\n\r\nA\r\n"}, {7, nil, "Subject: b\n\nbare LF\n"}},
			"Lists/Foo": {{1, []string{FlagFlagged, FlagAnswered}, "Subject: c\r\n\r\nC\r\n"}},
			"Été":       {{2, []string{FlagDraft, FlagDeleted}, "x"}},
		}
		for _, name := range []string{"INBOX", "Lists/Foo", "Été"} {
			fw, err := w.Folder(name, 1000+uint32(len(name)), 50, name != "Été")
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range want[name] {
				if err := fw.Add(m.uid, m.flags, date, []byte(m.body)); err != nil {
					t.Fatal(err)
				}
			}
			if err := fw.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := NewMaildirWriter(dir, layoutFS); err == nil {
			t.Error("a second export into a non-empty directory was allowed")
		}
		folders, err := ScanMaildir(os.DirFS(dir))
		if err != nil {
			t.Fatal(err)
		}
		if len(folders) != 3 {
			t.Fatalf("layoutFS=%v: %d folders: %+v", layoutFS, len(folders), folders)
		}
		for _, f := range folders {
			wm := want[f.Name]
			if f.UIDValidity != 1000+uint32(len(f.Name)) || f.UIDNext != 50 || len(f.Messages) != len(wm) || f.Subscribed != (f.Name != "Été") {
				t.Fatalf("layoutFS=%v: folder %+v", layoutFS, f)
			}
			for i, m := range f.Messages {
				data, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(m.Path)))
				sortedFlags := slices.Clone(wm[i].flags)
				slices.Sort(sortedFlags)
				gotFlags := slices.Clone(m.Flags)
				slices.Sort(gotFlags)
				if m.UID != wm[i].uid || !slices.Equal(gotFlags, sortedFlags) || !m.Date.Equal(date) || string(ToCRLF(data)) != string(ToCRLF([]byte(wm[i].body))) {
					t.Errorf("layoutFS=%v %s message %d: %+v %q, want %+v", layoutFS, f.Name, i, m, data, wm[i])
				}
			}
		}
	}
}

func TestMboxRead(t *testing.T) {
	file := "From alice@example.org Thu Jan  2 15:04:05 2025\n" +
		"X-IMAPbase: 1700000000 12\n" +
		"Subject: one\n" +
		"Status: RO\n" +
		"X-Status: AF\n" +
		"X-Keywords: $Label1 Work\n" +
		"X-UID: 5\n" +
		"\n" +
		">From the start\n" +
		">>From quoted twice\n" +
		"From not a separator: no blank line before it\n" +
		"\n" +
		"From someone@example.net Fri Feb  3 01:02:03 2023\n" +
		"Subject: two\n" +
		"\n" +
		"body\n" +
		"\n"
	read := func(opts MboxOptions) []*MboxMessage {
		r := NewMboxReader(strings.NewReader(file), opts)
		var out []*MboxMessage
		for {
			m, err := r.Next()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	msgs := read(MboxOptions{})
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	wantBody := "Subject: one\n\nFrom the start\n>From quoted twice\nFrom not a separator: no blank line before it\n"
	if string(m.Body) != wantBody || m.Sender != "alice@example.org" || !m.Date.Equal(time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)) ||
		m.UID != 5 || m.UIDValidity != 1700000000 || m.UIDNext != 12 ||
		!slices.Equal(m.Flags, []string{FlagSeen, FlagAnswered, FlagFlagged, "$Label1", "Work"}) {
		t.Errorf("first message %+v\nbody %q", m, m.Body)
	}
	if string(msgs[1].Body) != "Subject: two\n\nbody\n" || msgs[1].Flags != nil || msgs[1].Date.Year() != 2023 {
		t.Errorf("second message %+v %q", msgs[1], msgs[1].Body)
	}
	mo := read(MboxOptions{MboxO: true})
	if !strings.Contains(string(mo[0].Body), "\n>From the start\n>>From quoted twice\n") {
		t.Errorf("mboxo unquoted: %q", mo[0].Body)
	}
	big := read(MboxOptions{MaxMessageBytes: 30})
	if !big[0].TooBig || big[0].Body != nil || big[1].TooBig {
		t.Errorf("too-big flags: %v %v", big[0].TooBig, big[1].TooBig)
	}
	if _, err := NewMboxReader(strings.NewReader("Subject: x\n\nnot mbox\n"), MboxOptions{}).Next(); err != ErrNotMbox {
		t.Errorf("non-mbox: %v", err)
	}
	if _, err := NewMboxReader(strings.NewReader(""), MboxOptions{}).Next(); err != io.EOF {
		t.Errorf("empty file: %v", err)
	}
}

// Messages written by WriteMboxMessage read back byte for byte (in the
// CRLF form Roost stores), with their flags, UIDs and dates.
func TestMboxRoundTrip(t *testing.T) {
	bodies := []string{
		"Subject: a\r\n\r\nFrom here\r\n>From there\r\n\r\nFrom x Thu Jan  2 15:04:05 2025\r\n",
		"Subject: b\r\n\r\nno final newline",
		"Subject: c\r\n\r\nmixed\nline ends\r\n",
		"",
		"Subject: d\r\n\r\n\r\n\r\n",
	}
	var buf bytes.Buffer
	date := time.Date(2024, 12, 24, 18, 0, 0, 0, time.UTC)
	for i, b := range bodies {
		uv := uint32(0)
		if i == 0 {
			uv = 777
		}
		if err := WriteMboxMessage(&buf, "bob@example.net", date, []byte(b), uint32(i+1), []string{FlagSeen, "$Label2"}, uv, 9); err != nil {
			t.Fatal(err)
		}
	}
	r := NewMboxReader(&buf, MboxOptions{})
	for i, want := range bodies {
		m, err := r.Next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got := string(ToCRLF(m.Body)); got != want && !(want == "" && got == "") {
			t.Errorf("message %d: %q, want %q", i, got, want)
		}
		if m.UID != uint32(i+1) || !m.Date.Equal(date) || !slices.Equal(m.Flags, []string{FlagSeen, "$Label2"}) || m.Sender != "bob@example.net" {
			t.Errorf("message %d: %+v", i, m)
		}
		if i == 0 && (m.UIDValidity != 777 || m.UIDNext != 9) {
			t.Errorf("X-IMAPbase lost: %+v", m)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last: %v", err)
	}
}
