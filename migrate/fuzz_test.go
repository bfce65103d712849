package migrate

import (
	"bytes"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/roostmail/roost/internal/mutf7"
)

// FuzzMaildirFiles: Dovecot's files and Maildir file names from anywhere
// parse without a panic, and what parses writes back to the same thing.
func FuzzMaildirFiles(f *testing.F) {
	f.Add([]byte("3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n"),
		[]byte("0 $Junk\n1 $NonJunk\n"), "1234567890.M20046P2137.mailserver,S=4542,W=4642:2,Sb")
	f.Add([]byte("1 1234 7\n3 111.222.host:2,S\n"), []byte("25 z\n"), "x:2,DFPRSTaz")
	f.Add([]byte("3 V1 N1\n4294967295 P00 :a b c\n"), []byte("-1 x\n26 y\n"), "no-info")
	f.Add([]byte("3 V9 N2\n5 :a\n5 :b\nx\n"), []byte("0 bad(\n"), ":2,")
	f.Add([]byte(""), []byte(""), "&AMk-t&AOk-")
	f.Fuzz(func(t *testing.T, uidlist, keywords []byte, name string) {
		if l, _, err := ParseUIDList(uidlist); err == nil {
			again, probs, err := ParseUIDList(l.Bytes(nil))
			if err != nil || len(probs) > 0 {
				t.Fatalf("rewritten uidlist does not parse: %v %q\n%q", err, probs, l.Bytes(nil))
			}
			if again.UIDValidity != l.UIDValidity || again.NextUID != l.NextUID || len(again.Entries) != len(l.Entries) {
				t.Fatalf("uidlist changed on rewrite: %+v -> %+v", l, again)
			}
			for i, e := range l.Entries {
				if again.Entries[i].UID != e.UID || again.Entries[i].Unique != e.Unique {
					t.Fatalf("entry %d changed: %+v -> %+v", i, e, again.Entries[i])
				}
			}
		}
		kw, _ := ParseKeywords(keywords)
		if again, probs := ParseKeywords(kw.Bytes()); again != kw || len(probs) > 0 {
			t.Fatalf("keywords changed on rewrite: %q -> %q (%q)", kw, again, probs)
		}
		flags := FileFlags(name, &kw)
		var out Keywords
		file, _ := FileName("1.M1P1.host", 1, 1, flags, &out)
		back := FileFlags(file, &out)
		slices.Sort(flags)
		slices.Sort(back)
		if !slices.Equal(flags, back) {
			t.Fatalf("flags %q written as %q read back as %q", flags, file, back)
		}
		if d, err := mutf7.Decode(name); err == nil {
			if e := mutf7.Encode(d); e != name {
				if d2, err := mutf7.Decode(e); err != nil || d2 != d {
					t.Fatalf("mUTF-7 %q -> %q -> %q", name, d, e)
				}
			}
		}
		FileTime(UniqueName(name))
		SpecialUse(name)
	})
}

// FuzzMbox: any bytes read as an mbox without a panic, in bounded memory;
// and any message written to an mbox reads back as it was.
func FuzzMbox(f *testing.F) {
	f.Add([]byte("From a@b Thu Jan  2 15:04:05 2025\nStatus: RO\nX-Keywords: $A\n\n>From x\n\nFrom c@d Fri Feb  3 01:02:03 2023\n\nbody\n"))
	f.Add([]byte("From \n\n\nFrom x Mon Jan 1 00:00:00 2000\r\nX-UID: 3\r\nX-IMAPbase: 1 2\r\n\r\nbody\r\n\r\n"))
	f.Add([]byte("Subject: no From line\n\nbody\n"))
	f.Add([]byte("From x\n X-Status: folded\nX-Status: AFTD\n\tmore\n\n"))
	f.Add([]byte("Subject: a\r\n\r\n>>From b\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewMboxReader(bytes.NewReader(data), MboxOptions{MaxMessageBytes: 1 << 20, MaxLineBytes: 4096})
		var total int64
		for n := 0; ; n++ {
			m, err := r.Next()
			if err != nil {
				break
			}
			total += int64(len(m.Body))
			if total > int64(len(data)) || n > len(data) {
				t.Fatalf("read %d bytes in %d messages from %d", total, n, len(data))
			}
		}
		// The input as one message body: written, it reads back the same,
		// unless it carries the mbox's own headers, starts with a folded
		// line (which would fold into the state headers written before
		// it), or ends in a form the separator swallows (CR LF CR).
		if len(data) > 0 && (data[0] == ' ' || data[0] == '\t') {
			return
		}
		written := FromCRLF(data)
		if bytes.HasSuffix(written, []byte("\r\n\r")) {
			return
		}
		if !bytes.Equal(new(MboxMessage).parseMeta(written), written) {
			return // it has headers of the mbox's own (Status, X-UID, ...)
		}
		var buf bytes.Buffer
		if err := WriteMboxMessage(&buf, "s@x", time.Unix(1e9, 0), data, 1, nil, 0, 0); err != nil {
			t.Fatal(err)
		}
		r = NewMboxReader(&buf, MboxOptions{})
		m, err := r.Next()
		if err != nil {
			t.Fatalf("written message does not read: %v\n%q", err, buf.Bytes())
		}
		if !bytes.Equal(m.Body, written) {
			t.Fatalf("message %q written as %q read back as %q", data, buf.Bytes(), m.Body)
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("one message written, a second read: %v\n%q", err, buf.Bytes())
		}
	})
}
