package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBaseSubject(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		reply    bool
	}{
		{"", "", false},
		{"hello", "hello", false},
		{"Re: hello", "hello", true},
		{"RE:  hello  ", "hello", true},
		{"Re : hello", "hello", true},
		{"Fwd: hello", "hello", true},
		{"FW: hello", "hello", true},
		{"Re[2]: hello", "hello", true},
		{"[list] Re: hello", "hello", true},
		{"[list] hello", "hello", false},
		{"[only a blob]", "[only a blob]", false},
		{"hello (fwd)", "hello", true},
		{"hello (FWD) (fwd)  ", "hello", true},
		{"[Fwd: hello]", "hello", true},
		{"Re: [FWD: c]", "c", true},
		{"re: [fwd: [fwd: re: [fwd: babylon]]]", "babylon", true},
		{"[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b", true},
		{"Ad: Re: Ad: x", "Ad: Re: Ad: x", false},
		{"really: no", "really: no", false},
		{"tab\tand\r\n fold", "tab and fold", false},
		{"=?iso-8859-1?q?RE:_C?=", "C", true},
		{"=?us-ascii?b?UmU6IGM=?=", "c", true},
		{"=?iso-8859-1?q?_?=", "", false},
		{"=?utf-8?q?Re=3A_caf=C3=A9?=", "café", true},
		{"[a][b] Re: x", "x", true},
		{"[unclosed Re: x", "[unclosed Re: x", false},
	} {
		got, reply := baseSubject(tc.in)
		if got != tc.want || reply != tc.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", tc.in, got, reply, tc.want, tc.reply)
		}
		if BaseSubject(tc.in) != tc.want {
			t.Errorf("BaseSubject(%q) = %q", tc.in, BaseSubject(tc.in))
		}
	}
}

func TestCompareASCIICasemap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"a", "A", 0}, {"a", "b", -1}, {"B", "a", 1}, {"", "a", -1}, {"ab", "a", 1},
		{"[", "_", -1}, {"z", "[", -1}, {"Z", "[", -1}, // 'Z' < '[' < '_', and z maps to Z
		{"é", "e", 1}, // octets above 127 as they are
	} {
		if got := CompareASCIICasemap(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareASCIICasemap(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// fillMailbox appends messages (header lines, one string each) with
// internal dates a minute apart and returns the user and mailbox.
func fillMailbox(t *testing.T, headers ...string) (*User, Mailbox) {
	t.Helper()
	b := newTestBackend(t, Options{})
	u := mustUser(t, b, "t@example.org")
	mb, _ := u.Mailbox(Inbox)
	base := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	for i, h := range headers {
		body := strings.ReplaceAll(h, "\n", "\r\n") + "\r\n\r\n" + fmt.Sprintf("body %d %s\r\n", i+1, strings.Repeat("x", i))
		if _, err := u.Append(context.Background(), Inbox, strings.NewReader(body), nil, base.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	return u, mb
}

func TestSortKeys(t *testing.T) {
	u, mb := fillMailbox(t,
		"Subject: b\nFrom: Zed <a@x.org>\nDate: Mon, 1 Jan 2024 10:00:00 +0000",
		"Subject: Re: a\nFrom: y@x.org\nDate: Mon, 1 Jan 2024 09:00:00 +0000",
		"Subject: A\nFrom: Alice <z@x.org>",
		"Subject: [list] b\nFrom: =?utf-8?q?=C3=84rger?= <m@x.org>\nDate: garbage",
	)
	for _, tc := range []struct {
		name     string
		keys     []SortKey
		criteria *SearchCriteria
		want     []uint32
	}{
		{"subject, ties in mailbox order", []SortKey{{SortSubject, false}}, nil, []uint32{2, 3, 1, 4}},
		{"reverse subject, ties still in mailbox order", []SortKey{{SortSubject, true}}, nil, []uint32{1, 4, 2, 3}},
		{"subject then reverse arrival", []SortKey{{SortSubject, false}, {SortArrival, true}}, nil, []uint32{3, 2, 4, 1}},
		// DATE: messages 3 and 4 have no usable Date: their INTERNALDATE
		// (12:02, 12:03) counts.
		{"date", []SortKey{{SortDate, false}}, nil, []uint32{2, 1, 3, 4}},
		{"from (addr-mailbox)", []SortKey{{SortFrom, false}}, nil, []uint32{1, 4, 2, 3}},
		{"displayfrom", []SortKey{{SortDisplayFrom, false}}, nil, []uint32{3, 2, 1, 4}},
		// Sizes: 4 (88) > 1 (82) > 2 (81) > 3 (48).
		{"reverse size", []SortKey{{SortSize, true}}, nil, []uint32{4, 1, 2, 3}},
		{"with criteria", []SortKey{{SortSubject, false}}, &SearchCriteria{Header: []HeaderMatch{{"Subject", "b"}}}, []uint32{1, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, hms, err := u.Sort(context.Background(), mb.ID, tc.keys, tc.criteria)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if hms == 0 {
				t.Errorf("highest modseq 0 for %d messages", len(got))
			}
		})
	}
	if _, _, err := u.Sort(context.Background(), mb.ID, nil, nil); err == nil {
		t.Error("sort without keys accepted")
	}
}

// threadString writes threads as RFC 5256 §4 does, with UIDs.
func threadString(nodes []ThreadNode) string {
	return formatThreads(nodes, func(uid uint32) uint32 { return uid })
}

// formatThreads writes threads as RFC 5256 §4 does, each message as
// num(UID): "(1 2 (3)(4))((5)(6))".
func formatThreads(nodes []ThreadNode, num func(uint32) uint32) string {
	var sb strings.Builder
	var write func(n ThreadNode)
	write = func(n ThreadNode) {
		if n.UID != 0 {
			fmt.Fprintf(&sb, "%d", num(n.UID))
		}
		switch {
		case len(n.Children) == 1 && n.UID != 0:
			sb.WriteString(" ")
			write(n.Children[0])
		case len(n.Children) > 0:
			if n.UID != 0 {
				sb.WriteString(" ")
			}
			for _, c := range n.Children {
				sb.WriteString("(")
				write(c)
				sb.WriteString(")")
			}
		}
	}
	for _, n := range nodes {
		sb.WriteString("(")
		write(n)
		sb.WriteString(")")
	}
	return sb.String()
}

func TestThreadReferences(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		want    string
	}{
		{"chain by References",
			[]string{"Message-ID: <1@x>", "Message-ID: <2@x>\nReferences: <1@x>", "Message-ID: <3@x>\nReferences: <1@x> <2@x>"},
			"(1 2 3)"},
		{"In-Reply-To when there is no References",
			[]string{"Message-ID: <1@x>", "Message-ID: <2@x>\nIn-Reply-To: <1@x> <junk@x>"},
			"(1 2)"},
		{"siblings sorted by date",
			[]string{"Message-ID: <1@x>",
				"Message-ID: <2@x>\nReferences: <1@x>\nDate: Mon, 1 Jan 2024 13:00:00 +0000",
				"Message-ID: <3@x>\nReferences: <1@x>\nDate: Mon, 1 Jan 2024 12:30:00 +0000"},
			"(1 (3)(2))"},
		{"missing parent with two children stays a dummy at the root",
			[]string{"Message-ID: <2@x>\nReferences: <gone@x>", "Message-ID: <3@x>\nReferences: <gone@x>"},
			"((1)(2))"},
		{"missing parent with one child is dropped",
			[]string{"Message-ID: <2@x>\nReferences: <gone@x>"},
			"(1)"},
		{"dummy in the middle is spliced out",
			[]string{"Message-ID: <1@x>", "Message-ID: <3@x>\nReferences: <1@x> <gone@x>", "Message-ID: <4@x>\nReferences: <1@x> <gone@x>"},
			"(1 (2)(3))"},
		{"a loop is not created",
			[]string{"Message-ID: <a@x>\nReferences: <b@x>", "Message-ID: <b@x>\nReferences: <a@x>"},
			"(2 1)"},
		{"a message referencing itself",
			[]string{"Message-ID: <a@x>\nReferences: <a@x>"},
			"(1)"},
		{"duplicate Message-ID: the second is another message",
			[]string{"Message-ID: <a@x>", "Message-ID: <a@x>", "Message-ID: <c@x>\nReferences: <a@x>"},
			"(1 3)(2)"},
		{"subject grouping: a reply joins the original",
			[]string{"Message-ID: <1@x>\nSubject: plan", "Message-ID: <2@x>\nSubject: Re: plan"},
			"(1 2)"},
		{"subject grouping: two originals get a dummy parent",
			[]string{"Message-ID: <1@x>\nSubject: plan", "Message-ID: <2@x>\nSubject: plan"},
			"((1)(2))"},
		{"subject grouping skips empty subjects",
			[]string{"Message-ID: <1@x>", "Message-ID: <2@x>\nSubject: Re:"},
			"(1)(2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, mb := fillMailbox(t, tc.headers...)
			got, err := u.Thread(context.Background(), mb.ID, ThreadReferences, nil)
			if err != nil {
				t.Fatal(err)
			}
			if s := threadString(got); s != tc.want {
				t.Errorf("got %s, want %s", s, tc.want)
			}
		})
	}
}

func TestThreadOrderedSubjectAndCriteria(t *testing.T) {
	u, mb := fillMailbox(t,
		"Subject: b\nDate: Mon, 1 Jan 2024 10:00:00 +0000",
		"Subject: a\nDate: Mon, 1 Jan 2024 11:00:00 +0000",
		"Subject: Re: b\nDate: Mon, 1 Jan 2024 09:00:00 +0000",
		"Subject: re: B\nDate: Mon, 1 Jan 2024 12:00:00 +0000",
		"Subject: a\nDate: Mon, 1 Jan 2024 08:00:00 +0000",
	)
	ctx := context.Background()
	got, err := u.Thread(ctx, mb.ID, ThreadOrderedSubject, nil)
	if err != nil {
		t.Fatal(err)
	}
	// "a": 5 (08:00) then 2; "b": 3 (09:00), 1, 4; threads by first date.
	if s := threadString(got); s != "(5 2)(3 (1)(4))" {
		t.Errorf("ORDEREDSUBJECT = %s", s)
	}
	got, err = u.Thread(ctx, mb.ID, ThreadOrderedSubject, &SearchCriteria{UIDs: [][]UIDRange{{{1, 3}}}})
	if err != nil {
		t.Fatal(err)
	}
	if s := threadString(got); s != "(3 1)(2)" {
		t.Errorf("ORDEREDSUBJECT of 1:3 = %s", s)
	}
	if _, err := u.Thread(ctx, mb.ID, ThreadAlgorithm(99), nil); err == nil {
		t.Error("unknown algorithm accepted")
	}
}

// TestThreadDeepChainIsBounded threads a chain far deeper than the loop
// check walks: it must finish (no quadratic walk) and keep every message.
func TestThreadDeepChainIsBounded(t *testing.T) {
	const n = 3000
	msgs := make([]threadMsg, n)
	for i := range msgs {
		msgs[i] = threadMsg{uid: uint32(i + 1), id: fmt.Sprintf("%d@x", i)}
		if i > 0 {
			msgs[i].refs = []string{fmt.Sprintf("%d@x", i-1)}
		}
	}
	threads := threadReferences(msgs)
	count := 0
	var walk func([]ThreadNode)
	walk = func(ns []ThreadNode) {
		for _, nd := range ns {
			if nd.UID != 0 {
				count++
			}
			walk(nd.Children)
		}
	}
	walk(threads)
	if count != n {
		t.Fatalf("%d messages in the threads, want %d", count, n)
	}
}

func TestSearchAddressesAndText(t *testing.T) {
	u, mb := fillMailbox(t,
		"From: =?utf-8?q?Ren=C3=A9_Dupont?= <rene@example.org>\nTo: team: a@x.org, b@y.org;",
		"From: plain@example.org (Comment Name)\nCc: Someone <s@z.org>\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable",
		"From: x@example.org\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
	)
	// Bodies with encodings: replace message 2 and 3's bodies.
	ctx := context.Background()
	b2 := "From: plain@example.org (Comment Name)\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=E8me\r\n"
	b3 := "From: x@example.org\r\nSubject: =?utf-8?b?w7xiZXI=?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMgS8O2bG4=\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\nsecretword\r\n--b--\r\n"
	for _, b := range []string{b2, b3} {
		if _, err := u.Append(ctx, Inbox, strings.NewReader(b), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		c    SearchCriteria
		want []uint32
	}{
		{"FROM decoded display name", SearchCriteria{From: []string{"rené"}}, []uint32{1}},
		{"FROM display name across words", SearchCriteria{From: []string{"RENÉ DUP"}}, []uint32{1}},
		{"FROM address", SearchCriteria{From: []string{"rene@example"}}, []uint32{1}},
		{"FROM comment as name", SearchCriteria{From: []string{"comment name"}}, []uint32{2, 4}},
		{"FROM encoded word not matched raw", SearchCriteria{From: []string{"=?utf-8"}}, nil},
		{"TO group name", SearchCriteria{To: []string{"team"}}, []uint32{1}},
		{"TO group member", SearchCriteria{To: []string{"b@y.org"}}, []uint32{1}},
		{"CC", SearchCriteria{Cc: []string{"someone"}}, []uint32{2}},
		{"BCC absent", SearchCriteria{Bcc: []string{"a"}}, nil},
		{"BODY quoted-printable latin-1", SearchCriteria{Body: []string{"café crème"}}, []uint32{4}},
		{"BODY base64 utf-8 in a multipart", SearchCriteria{Body: []string{"grüße aus köln"}}, []uint32{5}},
		{"BODY skips non-text parts", SearchCriteria{Body: []string{"secretword"}}, nil},
		{"BODY does not match the header", SearchCriteria{Body: []string{"plain@example"}}, nil},
		{"TEXT matches a decoded header", SearchCriteria{Text: []string{"über"}}, []uint32{5}},
		{"TEXT matches a MIME part header", SearchCriteria{Text: []string{"octet-stream"}}, []uint32{5}},
		{"HEADER existence", SearchCriteria{Header: []HeaderMatch{{"Content-Transfer-Encoding", ""}}}, []uint32{2, 3, 4}},
		{"NOT FROM", SearchCriteria{Not: []SearchCriteria{{From: []string{"example.org"}}}}, nil},
		{"OR FROM/CC", SearchCriteria{Or: [][2]SearchCriteria{{{From: []string{"rené"}}, {Cc: []string{"s@z"}}}}}, []uint32{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := u.Search(ctx, mb.ID, &tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSearchModSeq(t *testing.T) {
	u, mb := fillMailbox(t, "Subject: a", "Subject: b", "Subject: c")
	ctx := context.Background()
	upd, _, err := u.StoreFlags(mb.ID, []uint32{2}, FlagsAdd, []string{FlagFlagged}, 0)
	if err != nil {
		t.Fatal(err)
	}
	flaggedAt := upd[0].ModSeq
	recs, _ := u.Records(mb.ID, []uint32{1, 3})
	for _, tc := range []struct {
		name    string
		c       SearchCriteria
		want    []uint32
		highest uint64
	}{
		{"MODSEQ at the flag change", SearchCriteria{ModSeq: flaggedAt}, []uint32{2}, flaggedAt},
		{"MODSEQ 1: everything", SearchCriteria{ModSeq: 1}, []uint32{1, 2, 3}, flaggedAt},
		{"MODSEQ above all", SearchCriteria{ModSeq: flaggedAt + 1}, nil, 0},
		{"highest of the matches only", SearchCriteria{UIDs: [][]UIDRange{{{1, 1}, {3, 3}}}}, []uint32{1, 3}, recs[1].ModSeq},
		{"with a header criterion", SearchCriteria{Header: []HeaderMatch{{"Subject", "a"}}}, []uint32{1}, recs[0].ModSeq},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, hms, err := u.SearchModSeq(ctx, mb.ID, &tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) || hms != tc.highest {
				t.Errorf("got %v (modseq %d), want %v (modseq %d)", got, hms, tc.want, tc.highest)
			}
		})
	}
}

func TestSearchSortThreadStopWithContext(t *testing.T) {
	u, mb := fillMailbox(t, "Subject: a", "Subject: b")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	body := &SearchCriteria{Body: []string{"x"}}
	if _, err := u.Search(ctx, mb.ID, body); !errors.Is(err, context.Canceled) {
		t.Errorf("Search: %v", err)
	}
	if _, _, err := u.Sort(ctx, mb.ID, []SortKey{{SortSubject, false}}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Sort: %v", err)
	}
	if _, err := u.Thread(ctx, mb.ID, ThreadReferences, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Thread: %v", err)
	}
}
