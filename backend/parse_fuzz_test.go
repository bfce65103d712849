package backend

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseMessage checks ParseMessage (ENVELOPE and BODYSTRUCTURE, the
// header and address-list readers under them) on arbitrary input. The
// property, for every input:
//   - no panic, and the call returns (the parser is linear, see
//     ParseMessage);
//   - every part's offsets lie within the message and in order
//     (0 <= HeaderStart <= BodyStart <= End <= len), each child within its
//     parent's body, an encapsulated message exactly its part's body;
//   - nesting is at most maxDepth, parts at most maxParts + 1, entries of
//     an address list at most maxAddresses;
//   - the output is bounded: the stored form is at most 64 bytes per
//     input byte plus 4 KiB, and decodes back to what was encoded, byte
//     for byte (raw 8-bit header text included), the envelope alone too;
//   - decoding a damaged stored form fails cleanly.
//
// Its seed corpus (below, and testdata/fuzz/FuzzParseMessage) runs as a
// normal test. Run it with
// `nice -n 19 go test -run '^$' -fuzz FuzzParseMessage -parallel 1 ./backend`.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		"",
		"\r\n",
		"Subject: a\r\n\r\nhello\r\n",
		"Subject: a\n\nhello",
		" leading space\r\nSubject: x\r\n\r\n",
		"From: RealFrom <user-from@domain.org>\r\nTo: groupname: a@b.c, d@e.f;, g2: x@y;\r\nCc: group:;, group2: (foo) ;\r\n\r\nbody\r\n",
		"From: <@route:user@domain>\r\nSender: \r\nReply-To: (c) u@d (Real Name)\r\nBcc: \"unterminated <u@x>\r\n\r\n",
		"Message-ID: <a@b>\r\nReferences: <a@b> <c@d>\r\nIn-Reply-To: <x@y> junk\r\nDate: Thu, 15 Feb 2007 01:02:03 +0200 (EET)\r\n\r\n",
		"Subject: =?iso-8859-1?q?RE:_C?= =?utf-8?b?w7xiZXI=?= [fwd: x] (fwd)\r\n\r\n",
		"Content-Type: multipart/mixed; boundary=\"foo\r\n bar\"\r\n\r\n--foo bar\r\nContent-Type: text/x-myown; charset=us-ascii\r\n\r\nhello\r\n\r\n--foo bar--\r\n",
		"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nA\r\n--i--\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nin\r\n--o--\r\n",
		"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: m1\r\n\r\nx\r\n--d\r\n--d--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n--b\r\n--b",
		"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n",
		"Content-Type: text/plain; charset=a; charset=b (c)\r\nContent-Disposition: attachment; filename*=utf-8''%C3%A4.txt\r\nContent-Language: en, ,fr\r\n\r\n",
		"Content-Type: ???\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!",
		"no colon line\r\n\tcontinued\r\nX: y\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p := ParseMessage(raw)
		n := int64(len(raw))
		parts := 0
		var check func(q *Part, lo, hi int64, depth int)
		check = func(q *Part, lo, hi int64, depth int) {
			parts++
			if depth > maxDepth+1 {
				t.Fatalf("depth %d > %d", depth, maxDepth+1)
			}
			if !(lo <= q.HeaderStart && q.HeaderStart <= q.BodyStart && q.BodyStart <= q.End && q.End <= hi && hi <= n) {
				t.Fatalf("part %s/%s offsets %d %d %d outside [%d, %d] of %d", q.Type, q.Subtype, q.HeaderStart, q.BodyStart, q.End, lo, hi, n)
			}
			if q.Lines < 0 || q.Lines > q.Size()+1 {
				t.Fatalf("part has %d lines in %d bytes", q.Lines, q.Size())
			}
			if q.IsMessage() && len(q.Parts) == 1 {
				if c := q.Parts[0]; c.HeaderStart != q.BodyStart || c.End != q.End {
					t.Fatalf("encapsulated message [%d,%d] is not its part's body [%d,%d]", c.HeaderStart, c.End, q.BodyStart, q.End)
				}
			}
			for i := range q.Parts {
				check(&q.Parts[i], q.BodyStart, q.End, depth+1)
			}
			if q.Envelope != nil {
				checkEnvelope(t, q.Envelope)
			}
		}
		check(&p.Root, 0, n, 0)
		if parts > maxParts+1 {
			t.Fatalf("%d parts > %d", parts, maxParts+1)
		}
		checkEnvelope(t, &p.Envelope)
		b := p.marshal()
		if limit := 64*len(raw) + 4096; len(b) > limit {
			t.Fatalf("stored form %d bytes for %d input bytes (limit %d)", len(b), len(raw), limit)
		}
		back, err := unmarshalParsed(b)
		if err != nil {
			t.Fatalf("stored form does not decode: %v", err)
		}
		if !bytes.Equal(back.marshal(), b) {
			t.Fatal("stored form does not survive a round trip")
		}
		if !reflect.DeepEqual(back.Envelope.From, p.Envelope.From) || back.Envelope.RawSubject != p.Envelope.RawSubject {
			t.Fatalf("envelope changed in the stored form: %+v", back.Envelope)
		}
		env, err := unmarshalEnvelope(b)
		if err != nil || !reflect.DeepEqual(env.Envelope.To, p.Envelope.To) || env.Envelope.Subject != p.Envelope.Subject {
			t.Fatalf("envelope-only decode: %+v, %v", env, err)
		}
		// A damaged stored form is an error, never a panic.
		unmarshalParsed(raw)
		unmarshalEnvelope(raw)
		if len(b) > 2 {
			unmarshalParsed(b[:len(b)/2])
			unmarshalEnvelope(b[:len(b)/2])
		}
	})
}

func checkEnvelope(t *testing.T, e *Envelope) {
	for _, l := range [][]Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		if len(l) > maxAddresses+1 {
			t.Fatalf("%d addresses", len(l))
		}
		depth := 0
		for _, a := range l {
			switch {
			case a.GroupStart:
				depth++
			case a.GroupEnd:
				depth--
			case a.Mailbox == "" || a.Host == "":
				// IMAP reads a NIL host as a group marker (RFC 3501 §7.4.2).
				t.Fatalf("address with an empty part: %+v", a)
			}
			if depth < 0 || depth > 1 {
				t.Fatalf("group markers unbalanced: %+v", l)
			}
		}
		if depth != 0 && len(l) <= maxAddresses {
			t.Fatalf("group not closed: %+v", l)
		}
	}
	if len(e.References) > maxMessageIDs {
		t.Fatalf("%d references", len(e.References))
	}
}

// TestParseMessageLinear parses inputs built to be expensive (many parts,
// deep nesting, long address lists) and checks the part and address caps
// hold; the fuzz target checks offsets on the same shapes.
func TestParseMessageLinear(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
	}{
		{"many empty parts", "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + strings.Repeat("--b\r\n", 50000)},
		{"deep multiparts", strings.Repeat("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n", 500)},
		{"long group list", "To: " + strings.Repeat("g:;,", 50000) + "\r\n\r\n"},
		{"many header fields", strings.Repeat("X: y\r\n", 50000) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ParseMessage([]byte(tc.raw))
			parts := 0
			walkParts(&p.Root, func(*Part) { parts++ })
			if parts > maxParts+1 {
				t.Errorf("%d parts", parts)
			}
			if len(p.Envelope.To) > maxAddresses+1 {
				t.Errorf("%d To entries", len(p.Envelope.To))
			}
			if s := len(p.marshal()); s > 64*len(tc.raw)+4096 {
				t.Errorf("stored form %d bytes for %d", s, len(tc.raw))
			}

		})
	}
}

func TestEnvelopeBatch(t *testing.T) {
	msg := func(subject, to string) []byte {
		return ParseMessage([]byte("Subject: " + subject + "\r\nTo: " + to + "\r\nReferences: <a@x> <b@x>\r\n\r\nbody")).marshal()
	}
	oldJSON := []byte(`{"env":{"s":"old"},"root":{"t":"text","st":"plain","hs":0,"bs":0,"en":0}}`)
	var eb envelopeBatch
	for round, tc := range []struct {
		records [][]byte
		want    []string // subjects; "" for an empty form
	}{
		{[][]byte{msg("one", "a@x.org, g: b@y.org;"), nil, oldJSON, []byte{binaryParsedMarker, 1}, msg("two", "c@z.org")},
			[]string{"one", "", "old", "", "two"}},
		// The arenas are reused: the second batch must not see the first.
		{[][]byte{msg("three", "d@w.org")}, []string{"three"}},
	} {
		for _, r := range tc.records {
			eb.add(r)
		}
		got := eb.decode()
		if len(got) != len(tc.want) {
			t.Fatalf("round %d: %d forms for %d records", round, len(got), len(tc.want))
		}
		for i, p := range got {
			if p.Envelope.Subject != tc.want[i] {
				t.Errorf("round %d record %d: subject %q, want %q", round, i, p.Envelope.Subject, tc.want[i])
			}
		}
		if round == 0 {
			if to := AddressText(got[0].Envelope.To); to != "a@x.org, g: b@y.org;" {
				t.Errorf("addresses from the arena: %q", to)
			}
			if refs := got[4].Envelope.References; len(refs) != 2 || refs[1] != "b@x" {
				t.Errorf("references from the arena: %q", refs)
			}
			if got[4].Envelope.To[0].Mailbox != "c" || got[0].Envelope.To[0].Mailbox != "a" {
				t.Errorf("arena slices overlap: %+v / %+v", got[0].Envelope.To, got[4].Envelope.To)
			}
		}
	}
}
