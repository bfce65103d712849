package mutf7

import (
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct{ utf8, mutf7 string }{
		{"INBOX", "INBOX"},
		{"Q&A", "Q&-A"},
		{"Été", "&AMk-t&AOk-"},
		{"日本語", "&ZeVnLIqe-"},
		{"Lists/Foo bar", "Lists/Foo bar"},
		{"Entwürfe", "Entw&APw-rfe"},
		{"😀", "&2D3eAA-"}, // a surrogate pair
	} {
		if got := Encode(tc.utf8); got != tc.mutf7 {
			t.Errorf("Encode(%q) = %q, want %q", tc.utf8, got, tc.mutf7)
		}
		if got, err := Decode(tc.mutf7); err != nil || got != tc.utf8 {
			t.Errorf("Decode(%q) = %q, %v; want %q", tc.mutf7, got, err, tc.utf8)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, bad := range []string{
		"&AMk",        // unterminated shift
		"&AGE-",       // shifted printable ASCII ("a")
		"&2D0-",       // lone surrogate
		"&AM-",        // odd number of octets
		"caf\xc3\xa9", // raw 8-bit
		"&A=-",        // not the modified base64 alphabet
	} {
		if got, err := Decode(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Decode(%q) = %q, %v; want ErrInvalid", bad, got, err)
		}
	}
}
