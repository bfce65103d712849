package imapd

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// The parts of a message with nested multiparts, a non-UTF-8
// quoted-printable text, a base64 attachment and an encapsulated message.
// Each body is given without the line break that precedes the next
// boundary (RFC 2046 §5.1.1: it belongs to the delimiter).
var (
	mimeHeader = "From: \"Bob Sender\" <bob@example.net>\r\n" +
		"To: Alice <alice@example.org>, carol@example.com\r\n" +
		"Cc: dave@example.com\r\n" +
		"Subject: =?ISO-8859-1?Q?R=E9sum=E9?= attached\r\n" +
		"Date: Tue, 03 Jan 2006 10:00:00 +0100\r\n" +
		"Message-ID: <multi@example.net>\r\n" +
		"In-Reply-To: <parent@example.net>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
	plainHeader = "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
	plainBody   = "Caf=E9 au lait =E0 la cr=E8me.\r\nSecond line=\r\n continues."
	plainText   = "Caf\xe9 au lait \xe0 la cr\xe8me.\r\nSecond line continues."
	htmlHeader  = "Content-Type: text/html; charset=utf-8\r\n\r\n"
	htmlBody    = "<p>Café</p>"
	pdfData     = "%PDF-1.4\n%\xe4\xfc\xf6\xdf\nbinary\x00stuff\n"
	pdfHeader   = "Content-Type: application/pdf; name=\"r.pdf\"\r\n" +
		"Content-Disposition: attachment; filename=\"r.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-ID: <att1@example.net>\r\n" +
		"Content-Description: The CV\r\n\r\n"
	pdfBody     = base64.StdEncoding.EncodeToString([]byte(pdfData))
	innerHeader = "From: eve@example.com\r\nSubject: inner message\r\nDate: Wed, 04 Jan 2006 11:00:00 +0000\r\n\r\n"
	innerBody   = "Inner body."
	innerMsg    = innerHeader + innerBody
	rfc822Head  = "Content-Type: message/rfc822\r\n\r\n"
	altHeader   = "Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
	altBody     = "--inner\r\n" + plainHeader + plainBody + "\r\n--inner\r\n" + htmlHeader + htmlBody + "\r\n--inner--"
	mimeText    = "This is a multi-part message in MIME format.\r\n" +
		"--outer\r\n" + altHeader + altBody + "\r\n" +
		"--outer\r\n" + pdfHeader + pdfBody + "\r\n" +
		"--outer\r\n" + rfc822Head + innerMsg + "\r\n" +
		"--outer--\r\n"
	mimeMsg = mimeHeader + mimeText
)

func lines(s string) int {
	n := strings.Count(s, "\n")
	if !strings.HasSuffix(s, "\n") {
		n++
	}
	return n
}

// TestFetchSections checks every BODY[section]<partial> and BINARY item
// byte for byte against the message that was delivered.
func TestFetchSections(t *testing.T) {
	e := newEnv(t)
	e.deliver(mimeMsg)
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sec := func(part []int, spec imap.PartSpecifier, fields ...string) *imap.FetchItemBodySection {
		return &imap.FetchItemBodySection{Part: part, Specifier: spec, HeaderFields: fields, Peek: true}
	}
	cases := []struct {
		name string
		item *imap.FetchItemBodySection
		want string
	}{
		{"BODY[]", sec(nil, ""), mimeMsg},
		{"BODY[HEADER]", sec(nil, imap.PartSpecifierHeader), mimeHeader},
		{"BODY[TEXT]", sec(nil, imap.PartSpecifierText), mimeText},
		{"BODY[1]", sec([]int{1}, ""), altBody},
		{"BODY[1.MIME]", sec([]int{1}, imap.PartSpecifierMIME), altHeader},
		{"BODY[1.1]", sec([]int{1, 1}, ""), plainBody},
		{"BODY[1.1.MIME]", sec([]int{1, 1}, imap.PartSpecifierMIME), plainHeader},
		{"BODY[1.2]", sec([]int{1, 2}, ""), htmlBody},
		{"BODY[2]", sec([]int{2}, ""), pdfBody},
		{"BODY[2.MIME]", sec([]int{2}, imap.PartSpecifierMIME), pdfHeader},
		{"BODY[3]", sec([]int{3}, ""), innerMsg},
		{"BODY[3.HEADER]", sec([]int{3}, imap.PartSpecifierHeader), innerHeader},
		{"BODY[3.TEXT]", sec([]int{3}, imap.PartSpecifierText), innerBody},
		{"BODY[3.1]", sec([]int{3, 1}, ""), innerBody},
		{"BODY[4] (no such part)", sec([]int{4}, ""), ""},
		{"BODY[HEADER.FIELDS (Subject TO)]", sec(nil, imap.PartSpecifierHeader, "Subject", "TO"),
			"To: Alice <alice@example.org>, carol@example.com\r\nSubject: =?ISO-8859-1?Q?R=E9sum=E9?= attached\r\n\r\n"},
		{"BODY[3.HEADER.FIELDS (subject)]", sec([]int{3}, imap.PartSpecifierHeader, "subject"), "Subject: inner message\r\n\r\n"},
		{"BODY[HEADER.FIELDS.NOT (...)]", &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true,
			HeaderFieldsNot: []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version"}},
			"In-Reply-To: <parent@example.net>\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"},
		{"BODY[]<10.20>", &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 10, Size: 20}}, mimeMsg[10:30]},
		{"BODY[1.1]<4.1000>", &imap.FetchItemBodySection{Part: []int{1, 1}, Peek: true, Partial: &imap.SectionPartial{Offset: 4, Size: 1000}}, plainBody[4:]},
		{"BODY[]<100000.5>", &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 100000, Size: 5}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{tc.item}}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 {
				t.Fatalf("got %d messages", len(msgs))
			}
			if got := msgs[0].FindBodySection(tc.item); string(got) != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}

	// BINARY undoes the Content-Transfer-Encoding (RFC 3516).
	bins := []struct {
		part []int
		want string
	}{
		{[]int{1, 1}, plainText},
		{[]int{1, 2}, htmlBody},
		{[]int{2}, pdfData},
	}
	for _, b := range bins {
		item := &imap.FetchItemBinarySection{Part: b.part, Peek: true}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
			BinarySection:     []*imap.FetchItemBinarySection{item},
			BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: b.part}},
		}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if got := msgs[0].FindBinarySection(item); !bytes.Equal(got, []byte(b.want)) {
			t.Errorf("BINARY%v = %q, want %q", b.part, got, b.want)
		}
		if size, ok := msgs[0].FindBinarySectionSize(b.part); !ok || size != uint32(len(b.want)) {
			t.Errorf("BINARY.SIZE%v = %d, %v; want %d", b.part, size, ok, len(b.want))
		}
	}

	// PEEK left \Seen alone.
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if hasFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("BODY.PEEK set \\Seen: %v", msgs[0].Flags)
	}
}

// TestBodyStructure checks BODYSTRUCTURE and ENVELOPE on the wire.
func TestBodyStructure(t *testing.T) {
	e := newEnv(t)
	e.deliver(mimeMsg)
	r := e.dialRaw()
	r.login()
	r.cmd("S", "EXAMINE INBOX")
	got := r.cmd("F", "FETCH 1 (BODYSTRUCTURE)")
	innerEnv := `("Wed, 04 Jan 2006 11:00:00 +0000" "inner message" ((NIL NIL "eve" "example.com")) ((NIL NIL "eve" "example.com")) ((NIL NIL "eve" "example.com")) NIL NIL NIL NIL NIL)`
	want := fmt.Sprintf(`* 1 FETCH (BODYSTRUCTURE (((`+
		`"text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable" %d %d NIL NIL NIL NIL)(`+
		`"text" "html" ("charset" "utf-8") NIL NIL "7bit" %d %d NIL NIL NIL NIL) "alternative" ("boundary" "inner") NIL NIL NIL)(`+
		`"application" "pdf" ("name" "r.pdf") "<att1@example.net>" "The CV" "base64" %d NIL ("attachment" ("filename" "r.pdf")) NIL NIL)(`+
		`"message" "rfc822" NIL NIL NIL "7bit" %d %s ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" %d %d NIL NIL NIL NIL) %d NIL NIL NIL NIL)`+
		` "mixed" ("boundary" "outer") NIL NIL NIL))`,
		len(plainBody), lines(plainBody), len(htmlBody), lines(htmlBody), len(pdfBody),
		len(innerMsg), innerEnv, len(innerBody), lines(innerBody), lines(innerMsg))
	if got[0] != want {
		t.Errorf("BODYSTRUCTURE:\ngot  %s\nwant %s", got[0], want)
	}
	// BODY: the same without extension data.
	got = r.cmd("F", "FETCH 1 (BODY)")
	if !strings.HasPrefix(got[0], `* 1 FETCH (BODY ((("text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable" `) ||
		strings.Contains(got[0], "attachment") {
		t.Errorf("BODY: %s", got[0])
	}
	got = r.cmd("F", "FETCH 1 (ENVELOPE)")
	wantEnv := `* 1 FETCH (ENVELOPE ("Tue, 03 Jan 2006 10:00:00 +0100" "=?ISO-8859-1?Q?R=E9sum=E9?= attached" ` +
		`(("Bob Sender" NIL "bob" "example.net")) (("Bob Sender" NIL "bob" "example.net")) (("Bob Sender" NIL "bob" "example.net")) ` +
		`(("Alice" NIL "alice" "example.org")(NIL NIL "carol" "example.com")) ((NIL NIL "dave" "example.com")) NIL ` +
		`"<parent@example.net>" "<multi@example.net>"))`
	if got[0] != wantEnv {
		t.Errorf("ENVELOPE:\ngot  %s\nwant %s", got[0], wantEnv)
	}
	got = r.cmd("F", "FETCH 1 (RFC822.SIZE FLAGS)")
	if want := fmt.Sprintf("* 1 FETCH (FLAGS () RFC822.SIZE %d)", len(mimeMsg)); got[0] != want {
		t.Errorf("got %s, want %s", got[0], want)
	}
}

// TestFetchSetsSeen: BODY[] sets \Seen in SELECT (with an unsolicited
// FLAGS item), never in EXAMINE; BODY.PEEK never.
func TestFetchSetsSeen(t *testing.T) {
	e := newEnv(t)
	e.deliver(msgText("one", "1"))
	e.deliver(msgText("two", "2"))
	r := e.dialRaw()
	r.login()
	r.cmd("S", "EXAMINE INBOX")
	got := r.cmd("F", "FETCH 1 (BODY[])")
	if strings.Contains(strings.Join(got, "\n"), "Seen") {
		t.Errorf("EXAMINE: FETCH BODY[] set \\Seen: %q", got)
	}
	r.cmd("S", "SELECT INBOX")
	got = r.cmd("F", "FETCH 1 (BODY.PEEK[] FLAGS)")
	if strings.Contains(strings.Join(got, "\n"), "Seen") {
		t.Errorf("BODY.PEEK set \\Seen: %q", got)
	}
	got = r.cmd("F", "FETCH 1 (BODY[TEXT])")
	if !strings.Contains(got[0], `FLAGS (\Seen`) {
		t.Errorf("FETCH BODY[] in SELECT did not report \\Seen: %q", got)
	}
	got = r.cmd("F", "UID FETCH 2 (RFC822)")
	if !strings.Contains(got[0], `FLAGS (\Seen`) || !strings.Contains(got[0], "UID 2") || !strings.Contains(got[0], "RFC822 {") {
		t.Errorf("UID FETCH RFC822: %q", got)
	}
	got = r.cmd("F", "FETCH 1:* (FLAGS INTERNALDATE UID)")
	for _, l := range got[:2] {
		if !strings.Contains(l, `FLAGS (\Seen`) || !strings.Contains(l, "INTERNALDATE") {
			t.Errorf("got %q", l)
		}
	}
	mb, _ := e.user().Mailbox("INBOX")
	if mb.Unseen != 0 {
		t.Errorf("unseen counter %d after reading both", mb.Unseen)
	}
	if got := r.cmd("F", "FETCH 5 FLAGS"); !strings.HasPrefix(got[len(got)-1], "F BAD") {
		t.Errorf("FETCH beyond the last message: %q", got)
	}
}

// TestFetchMacros covers ALL, FAST and FULL and INTERNALDATE of APPEND.
func TestFetchMacros(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	date := time.Date(2020, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	body := msgText("dated", "x")
	cmd := c.Append("INBOX", int64(len(body)), &imap.AppendOptions{Time: date, Flags: []imap.Flag{imap.FlagDraft, "$Label1"}})
	cmd.Write([]byte(body))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	r := e.dialRaw()
	r.login()
	r.cmd("S", "SELECT INBOX")
	for _, m := range []string{"ALL", "FAST", "FULL"} {
		got := r.cmd("F", "FETCH 1 "+m)
		// The store keeps the instant (in UTC).
		if !strings.Contains(got[0], `INTERNALDATE " 6-May-2020 05:08:09 +0000"`) || !strings.Contains(got[0], `FLAGS (\Draft $Label1`) ||
			!strings.Contains(got[0], fmt.Sprintf("RFC822.SIZE %d", len(body))) {
			t.Errorf("FETCH %s: %q", m, got)
		}
		if m != "FAST" && !strings.Contains(got[0], "ENVELOPE") || m == "FULL" && !strings.Contains(got[0], "BODY (") {
			t.Errorf("FETCH %s: %q", m, got)
		}
	}
}
