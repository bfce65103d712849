package backend

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseAddressList(t *testing.T) {
	type A = Address
	start := func(name string) A { return A{GroupStart: true, Mailbox: name} }
	end := A{GroupEnd: true}
	for _, tc := range []struct {
		in   string
		want []A
	}{
		{"", nil},
		{"   ", nil},
		{"user@example.org", []A{{Mailbox: "user", Host: "example.org"}}},
		{"Real Name <user@example.org>", []A{{Name: "Real Name", Mailbox: "user", Host: "example.org"}}},
		{`"Doe, John" <j@x.org>, b@y.org`, []A{{Name: "Doe, John", Mailbox: "j", Host: "x.org"}, {Mailbox: "b", Host: "y.org"}}},
		{`"quoted \"pair\"" <q@x.org>`, []A{{Name: `quoted "pair"`, Mailbox: "q", Host: "x.org"}}},
		{"user@domain (Real Name)", []A{{Name: "Real Name", Mailbox: "user", Host: "domain"}}},
		{"<user-from (comment)@ (comment) domain.org>", []A{{Mailbox: "user-from", Host: "domain.org"}}},
		{"<@route:user@domain>", []A{{Route: "@route", Mailbox: "user", Host: "domain"}}},
		{"<@a.org,@b.org:u@c.org>", []A{{Route: "@a.org,@b.org", Mailbox: "u", Host: "c.org"}}},
		{"=?utf-8?q?Ren=C3=A9?= <r@x.org>", []A{{Name: "=?utf-8?q?Ren=C3=A9?=", Mailbox: "r", Host: "x.org"}}},
		{`"john doe"@x.org`, []A{{Mailbox: "john doe", Host: "x.org"}}},
		{"a . b @ x . org", []A{{Mailbox: "a.b", Host: "x.org"}}},
		{"u@[192.0.2.1]", []A{{Mailbox: "u", Host: "[192.0.2.1]"}}},
		// Groups (RFC 5322 §3.4), kept as RFC 3501 §7.4.2 markers.
		{"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;", []A{
			start("group"), {Mailbox: "g1", Host: "d1.org"}, {Mailbox: "g2", Host: "d2.org"}, end,
			start("group2"), {Mailbox: "g3", Host: "d3.org"}, end}},
		{"group:;, group2: (foo) ;", []A{start("group"), end, start("group2"), end}},
		{"undisclosed-recipients:;", []A{start("undisclosed-recipients"), end}},
		{"list: A <a@x.org>, b@y.org", []A{start("list"), {Name: "A", Mailbox: "a", Host: "x.org"}, {Mailbox: "b", Host: "y.org"}, end}},
		// Malformed: never a NIL host outside a group marker.
		{"user", []A{{Mailbox: "user", Host: MissingDomain}}},
		{"@example.org", []A{{Mailbox: MissingMailbox, Host: "example.org"}}},
		{"Name <>", []A{{Name: "Name", Mailbox: MissingMailbox, Host: MissingDomain}}},
		{"a@x.org,,, ,b@y.org", []A{{Mailbox: "a", Host: "x.org"}, {Mailbox: "b", Host: "y.org"}}},
		{"a@x.org > junk, b@y.org", []A{{Mailbox: "a", Host: "x.org"}, {Mailbox: "b", Host: "y.org"}}},
		{"Unclosed <u@x.org", []A{{Name: "Unclosed", Mailbox: "u", Host: "x.org"}}},
		{`"unterminated <u@x.org>`, []A{{Mailbox: "unterminated <u@x.org>", Host: MissingDomain}}},
	} {
		got := ParseAddressList(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseAddressList(%q)\n got  %+v\n want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseAddressListBounded(t *testing.T) {
	// A header of a million commas and addresses costs one pass and
	// yields at most maxAddresses entries.
	got := ParseAddressList(strings.Repeat("a@b,", 200000))
	if len(got) != maxAddresses {
		t.Fatalf("%d entries, want the cap %d", len(got), maxAddresses)
	}
	if got := ParseAddressList(strings.Repeat("((((", 100000)); got != nil {
		t.Fatalf("comments only: %+v", got)
	}
}

func TestAddressText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"RealFrom <user-from@domain.org>", "RealFrom <user-from@domain.org>"},
		{"user@domain.org (Real)", "Real <user@domain.org>"},
		{"=?iso-8859-1?q?Caf=E9?= <c@x.org>, d@y.org", "Café <c@x.org>, d@y.org"},
		{"groupname: a@x.org, b@y.org;, other: c@z.org;", "groupname: a@x.org, b@y.org;, other: c@z.org;"},
	} {
		if got := AddressText(ParseAddressList(tc.in)); got != tc.want {
			t.Errorf("AddressText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReadHeader(t *testing.T) {
	raw := "Subject: one\r\n two\r\n" +
		"bad line without colon\r\n" +
		"X-Empty:\r\n" +
		"From : a@b\r\n" +
		"\tstray continuation is part of From\r\n" +
		"\r\nBody: not a header\r\n"
	h := readHeader([]byte(raw))
	for _, tc := range []struct{ name, want string }{
		{"subject", "one two"},
		{"X-EMPTY", ""},
		{"From", "a@b\tstray continuation is part of From"},
		{"Body", ""},
	} {
		if got := h.get(tc.name); got != tc.want {
			t.Errorf("get(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if !h.has("x-empty") || h.has("Body") {
		t.Errorf("has: X-Empty %v, Body %v", h.has("x-empty"), h.has("Body"))
	}
	if len(h) != 3 {
		t.Errorf("%d fields, want 3: %+v", len(h), h)
	}
}

func TestParseDate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // RFC 3339, "" for unparsable
	}{
		{"Thu, 15 Feb 2007 01:02:03 +0200", "2007-02-15T01:02:03+02:00"},
		{"15 Feb 2007 01:02:03 +0200", "2007-02-15T01:02:03+02:00"},
		{"Thu, 15 Feb 2007 01:02:03 +0200 (EET)", "2007-02-15T01:02:03+02:00"},
		{"Thu, 15 Feb 2007 01:02 +0200", "2007-02-15T01:02:00+02:00"},
		{"Thu, 15 Feb 07 01:02:03 +0200", "2007-02-15T01:02:03+02:00"},
		{"Thu Feb 15 01:02:03 2007", "2007-02-15T01:02:03Z"},
		{"not a date", ""},
		{"", ""},
	} {
		got := parseDate(tc.in)
		s := ""
		if !got.IsZero() {
			s = got.Format(time.RFC3339)
		}
		if s != tc.want {
			t.Errorf("parseDate(%q) = %q, want %q", tc.in, s, tc.want)
		}
	}
}

func TestMessageIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"<a@b>", []string{"a@b"}},
		{"<a@b> <c@d>\r\n <e@f>", []string{"a@b", "c@d", "e@f"}},
		{"<a@b> (comment) <c@d>", []string{"a@b", "c@d"}},
		{"<broken", nil},
		{"bare@id.example", []string{"bare@id.example"}},
		{"no id here", nil},
		{"<  spaced @ id >", []string{"spaced@id"}},
	} {
		if got := messageIDs(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("messageIDs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseContentTypeLenient(t *testing.T) {
	for _, tc := range []struct {
		in     string
		typ    string
		params map[string]string
		ok     bool
	}{
		{"text/plain; charset=utf-8", "text/plain", map[string]string{"charset": "utf-8"}, true},
		{`Multipart/Mixed; boundary="foo bar"`, "multipart/mixed", map[string]string{"boundary": "foo bar"}, true},
		// mime.ParseMediaType refuses these; readers do not.
		{"text/plain; charset=us-ascii (comment)", "text/plain", map[string]string{"charset": "us-ascii"}, true},
		{"text/plain; charset=a; charset=b", "text/plain", map[string]string{"charset": "a"}, true},
		{"multipart/mixed; boundary=a b", "multipart/mixed", map[string]string{"boundary": "a b"}, true},
		{"???", "", nil, false},
		{"text/", "", nil, false},
		{"", "", nil, false},
	} {
		typ, params, ok := parseContentType(tc.in)
		if typ != tc.typ || ok != tc.ok || len(params) != len(tc.params) {
			t.Errorf("parseContentType(%q) = %q %v %v", tc.in, typ, params, ok)
			continue
		}
		for k, v := range tc.params {
			if params[k] != v {
				t.Errorf("parseContentType(%q): %s = %q, want %q", tc.in, k, params[k], v)
			}
		}
	}
}
