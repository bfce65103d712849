package backend

import (
	"fmt"
	"strings"
	"testing"
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
