package migrate

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Modified UTF-7 (RFC 3501 §5.1.3) is how Dovecot spells non-ASCII folder
// names on disk in a Maildir: "&AMk-t&AOk-" is "Été". go-imap has a codec,
// but it is internal to that module.

var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

var errMUTF7 = errors.New("malformed modified UTF-7")

// DecodeMUTF7 decodes a modified UTF-7 name into UTF-8.
func DecodeMUTF7(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errMUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", errMUTF7
		}
		chunk := s[i+1 : i+1+end]
		i += end + 2
		if chunk == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.DecodeString(chunk)
		if err != nil || len(raw)%2 != 0 {
			return "", errMUTF7
		}
		units := make([]uint16, len(raw)/2)
		for j := range units {
			units[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		runes := utf16.Decode(units)
		for _, r := range runes {
			if r == utf8.RuneError || r < 0x80 && r >= 0x20 && r <= 0x7e {
				// Printable ASCII must not be encoded; a lone surrogate
				// decodes to RuneError.
				return "", errMUTF7
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}

// EncodeMUTF7 encodes a UTF-8 name in modified UTF-7.
func EncodeMUTF7(s string) string {
	var b strings.Builder
	var pending []rune
	flush := func() {
		if len(pending) == 0 {
			return
		}
		units := utf16.Encode(pending)
		raw := make([]byte, 2*len(units))
		for i, u := range units {
			raw[2*i], raw[2*i+1] = byte(u>>8), byte(u)
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(raw))
		b.WriteByte('-')
		pending = pending[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		pending = append(pending, r)
	}
	flush()
	return b.String()
}
