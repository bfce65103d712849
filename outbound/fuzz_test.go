package outbound

import (
	"strings"
	"testing"
)

// FuzzSign: any message body, however broken, is signed or refused with
// an error, never a panic; a signature, when made, is one header field
// per key.
func FuzzSign(f *testing.F) {
	f.Add([]byte(testMessage))
	f.Add([]byte("From: =?utf-8?q?=C3=A9?= <a@example.org>\r\n\r\n"))
	f.Add([]byte("From: a@example.org, b@other.test\r\nFrom: c@example.org\r\n\r\nx"))
	f.Add([]byte("no header at all"))
	f.Add([]byte("From: \"unterminated <a@example.org>\r\n\r\n"))
	ed, _, err := GenerateDKIMKeys()
	if err != nil {
		f.Fatal(err)
	}
	e := &Engine{opts: Options{DKIM: func(string) []DKIMKey { return []DKIMKey{{Selector: "s", Signer: ed}} }}}
	f.Fuzz(func(t *testing.T, body []byte) {
		sig, err := e.sign(body)
		if err == nil && len(sig) > 0 && strings.Count(string(sig), "DKIM-Signature:") != 1 {
			t.Fatalf("signature %q", sig)
		}
		headerBlock(body)
	})
}

// FuzzEHLOKeywords: the EHLO reply parser used to decide on STARTTLS.
func FuzzEHLOKeywords(f *testing.F) {
	f.Add("mx.remote.test\nPIPELINING\nSTARTTLS\nSIZE 100")
	f.Add("starttls")
	f.Add("")
	f.Fuzz(func(t *testing.T, ehlo string) {
		got := hasKeyword(ehlo, "STARTTLS")
		if got && !strings.Contains(strings.ToUpper(ehlo), "STARTTLS") {
			t.Fatalf("STARTTLS found in %q", ehlo)
		}
	})
}
