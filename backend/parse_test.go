package backend

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/roostmail/roost/store"
)

// describe renders a part tree as "type/subtype[body]" with children in
// parentheses, using the offsets, so a test sees exactly which bytes each
// part covers.
func describe(raw string, p *Part) string {
	s := fmt.Sprintf("%s/%s", p.Type, p.Subtype)
	if p.IsMultipart() || p.IsMessage() {
		var kids []string
		for i := range p.Parts {
			kids = append(kids, describe(raw, &p.Parts[i]))
		}
		return s + "(" + strings.Join(kids, " ") + ")"
	}
	return s + fmt.Sprintf("[%s]", raw[p.BodyStart:p.End])
}

func TestParseStructure(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"plain", "Subject: a\r\n\r\nhello\r\n", "text/plain[hello\r\n]"},
		{"header only", "Subject: a\r\n", "text/plain[]"},
		{"empty header", "\r\nbody", "text/plain[body]"},
		{"lf only", "Subject: a\n\nhello\n", "text/plain[hello\n]"},
		{"multipart",
			"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: image/png\r\n\r\ntwo\r\n--b--\r\nepilogue\r\n",
			"multipart/mixed(text/plain[one] image/png[two])"},
		{"nested",
			"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nA\r\n--i\r\nContent-Type: text/html\r\n\r\n<b>A</b>\r\n--i--\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nin\r\n--o--\r\n",
			"multipart/mixed(multipart/alternative(text/plain[A] text/html[<b>A</b>]) message/rfc822(text/plain[in]))"},
		{"digest defaults to message/rfc822",
			"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: m1\r\n\r\nx\r\n--d--\r\n",
			"multipart/digest(message/rfc822(text/plain[x]))"},
		{"missing closing delimiter",
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nrest\r\n",
			"multipart/mixed(text/plain[rest\r\n])"},
		{"boundary-like line is not a delimiter",
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--bx\r\n--b--\r\n",
			"multipart/mixed(text/plain[--bx])"},
		{"bad content type", "Content-Type: ???\r\n\r\nx", "text/plain[x]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ParseMessage([]byte(tc.raw))
			if got := describe(tc.raw, &p.Root); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestParseEnvelopeAndFields(t *testing.T) {
	raw := "Date: Tue, 10 Mar 2026 10:00:00 +0100\r\n" +
		"From: =?utf-8?q?Ren=C3=A9?= <rene@example.org>\r\n" +
		"To: a@x.org, \"B, Jr\" <b@x.org>\r\n" +
		"Subject: =?iso-8859-1?q?caf=E9?=\r\n" +
		"Message-ID: <m1@x.org>\r\nIn-Reply-To: <m0@x.org>\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\nline2\r\n" +
		"--b\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Language: fr, en\r\n\r\nQUJD\r\n--b--\r\n"
	p := ParseMessage([]byte(raw))
	env := p.Envelope
	if env.Subject != "café" || env.MessageID != "m1@x.org" || fmt.Sprint(env.InReplyTo) != "[m0@x.org]" {
		t.Errorf("envelope = %+v", env)
	}
	if len(env.From) != 1 || env.From[0] != (Address{Name: "=?utf-8?q?Ren=C3=A9?=", Mailbox: "rene", Host: "example.org"}) || env.From[0].DisplayName() != "René" {
		t.Errorf("from = %+v", env.From)
	}
	if len(env.To) != 2 || env.To[1].Name != "B, Jr" {
		t.Errorf("to = %+v", env.To)
	}
	if env.Date.UTC().Hour() != 9 {
		t.Errorf("date = %v", env.Date)
	}
	text, att := p.Root.Parts[0], p.Root.Parts[1]
	if text.Params["charset"] != "iso-8859-1" || text.Encoding != "quoted-printable" || text.Lines != 2 || text.Size() != 13 {
		t.Errorf("text part = %+v", text)
	}
	if att.Disposition != "attachment" || att.DispositionParams["filename"] != "r.pdf" || fmt.Sprint(att.Language) != "[fr en]" || att.Params["name"] != "r.pdf" {
		t.Errorf("attachment = %+v", att)
	}
}

func TestParseHostileNesting(t *testing.T) {
	var sb strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&sb, "Content-Type: message/rfc822\r\n\r\n")
	}
	sb.WriteString("x")
	p := ParseMessage([]byte(sb.String()))
	depth := 0
	for q := &p.Root; len(q.Parts) > 0; q = &q.Parts[0] {
		depth++
	}
	if depth > maxDepth {
		t.Fatalf("depth %d exceeds maxDepth %d", depth, maxDepth)
	}
}

// TestParsedFormOfOlderRoost reads a message whose parsed form was stored
// by the Roost before version 1 (decoded names, no groups, raw fields or
// References): it still decodes, and Parsed, SEARCH and THREAD see the
// message as if it had been stored today.
func TestParsedFormOfOlderRoost(t *testing.T) {
	b := newTestBackend(t, Options{})
	u := mustUser(t, b, "old@example.org")
	raw := "Date: Tue, 10 Mar 2026 10:00:00 +0100\r\nFrom: =?utf-8?q?Ren=C3=A9?= <rene@example.org>\r\n" +
		"To: team: a@x.org;\r\nSubject: =?iso-8859-1?q?caf=E9?=\r\nMessage-ID: <m2@x>\r\nReferences: <m1@x>\r\n\r\nhello\r\n"
	// Exactly what ParseMessage wrote before version 1.
	old := `{"env":{"d":"2026-03-10T10:00:00+01:00","s":"café","f":[{"n":"René","m":"rene","h":"example.org"}],` +
		`"t":[{"m":"a","h":"x.org"}],"mid":"m2@x"},"root":{"t":"text","st":"plain","p":{"charset":"us-ascii"},"hs":0,"bs":` +
		fmt.Sprint(strings.Index(raw, "\r\n\r\n")+4) + `,"en":` + fmt.Sprint(len(raw)) + `,"ln":1}}`
	if _, err := unmarshalParsed([]byte(old)); err != nil {
		t.Fatalf("old form does not decode: %v", err)
	}
	if _, err := u.ms.Append(Inbox, store.NewMessage{Body: []byte(raw), Parsed: []byte(old), InternalDate: time.Now()}, store.Limits{}); err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox(Inbox)
	recs, _ := u.Records(mb.ID, []uint32{1})
	p, err := u.Parsed(&recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != parsedVersion || p.Envelope.RawSubject != "=?iso-8859-1?q?caf=E9?=" ||
		len(p.Envelope.To) != 3 || !p.Envelope.To[0].GroupStart || fmt.Sprint(p.Envelope.References) != "[m1@x]" {
		t.Fatalf("old message parsed as %+v", p.Envelope)
	}
	ctx := context.Background()
	if got, _ := u.Search(ctx, mb.ID, &SearchCriteria{To: []string{"team"}}); len(got) != 1 {
		t.Errorf("SEARCH TO group name in an old message: %v", got)
	}
	threads, err := u.Thread(ctx, mb.ID, ThreadReferences, nil)
	if err != nil || len(threads) != 1 || threads[0].UID != 1 {
		t.Errorf("THREAD of an old message: %+v, %v", threads, err)
	}
}

func TestBodyStructureExtensionFields(t *testing.T) {
	raw := "Content-Type: multipart/mixed; boundary=b\r\nContent-Language: en\r\nContent-Location: http://example.org/m\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-ID: <part1@x>\r\nContent-Description: the text\r\n" +
		"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\nContent-Disposition: inline; filename=\"a b.txt\"; size=42\r\n" +
		"Content-Language: de-CH, fr\r\nContent-Location: a.txt\r\n\r\nhi\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment\r\n\r\nxx\r\n--b--\r\n"
	p := ParseMessage([]byte(raw))
	root, text, bin := p.Root, p.Root.Parts[0], p.Root.Parts[1]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"multipart language", root.Language, []string{"en"}},
		{"multipart location", root.Location, "http://example.org/m"},
		{"boundary param", root.Params["boundary"], "b"},
		{"id", text.ID, "<part1@x>"},
		{"description", text.Description, "the text"},
		{"md5", text.MD5, "Q2hlY2sgSW50ZWdyaXR5IQ=="},
		{"disposition", text.Disposition, "inline"},
		{"disposition params", text.DispositionParams, map[string]string{"filename": "a b.txt", "size": "42"}},
		{"language", text.Language, []string{"de-CH", "fr"}},
		{"location", text.Location, "a.txt"},
		{"size and lines (the CRLF before a delimiter is the delimiter's)", [2]int64{text.Size(), text.Lines}, [2]int64{2, 1}},
		{"attachment without params", [2]any{bin.Disposition, bin.DispositionParams == nil}, [2]any{"attachment", true}},
		{"no lines for non-text", bin.Lines, int64(0)},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}
