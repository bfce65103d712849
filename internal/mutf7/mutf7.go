// Package mutf7 is modified UTF-7 (RFC 3501 §5.1.3): the mailbox name
// encoding of IMAP4rev1 sessions that have not enabled UTF8=ACCEPT, and how
// Dovecot spells non-ASCII folder names in a Maildir on disk ("&AMk-t&AOk-"
// is "Été"). go-imap has a codec, but in an internal package of its module;
// this one is small, and shared by imapd and migrate.
package mutf7

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

var mutf7Encoding = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// ErrInvalid is returned by Decode for a name that is not modified UTF-7.
var ErrInvalid = errors.New("invalid modified UTF-7")

// Decode decodes a modified UTF-7 mailbox name into UTF-8. It refuses
// what RFC 3501 forbids: raw octets outside 0x20-0x7e (§5.1.3: those
// are always shifted), an unterminated or empty shift,
// a shift of plain ASCII, bad padding and lone surrogates.
func Decode(s string) (string, error) {
	if strings.IndexByte(s, '&') < 0 {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				return "", ErrInvalid
			}
		}
		return s, nil
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", ErrInvalid
		}
		if c != '&' {
			sb.WriteByte(c)
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return "", ErrInvalid
		}
		enc := s[i+1 : i+1+j]
		i += j + 1
		if enc == "" {
			sb.WriteByte('&')
			continue
		}
		raw, err := mutf7Encoding.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", ErrInvalid
		}
		units := make([]uint16, len(raw)/2)
		for k := range units {
			units[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		for k := 0; k < len(units); k++ {
			u := units[k]
			switch {
			case utf16.IsSurrogate(rune(u)):
				if k+1 >= len(units) {
					return "", ErrInvalid
				}
				r := utf16.DecodeRune(rune(u), rune(units[k+1]))
				if r == utf8.RuneError {
					return "", ErrInvalid
				}
				sb.WriteRune(r)
				k++
			case u >= 0x20 && u <= 0x7e:
				// Printable ASCII must not be shifted.
				return "", ErrInvalid
			default:
				sb.WriteRune(rune(u))
			}
		}
	}
	return sb.String(), nil
}

// Encode encodes a UTF-8 mailbox name in modified UTF-7.
func Encode(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '&' || c < 0x20 || c > 0x7e {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var sb strings.Builder
	var units []uint16
	flush := func() {
		if len(units) == 0 {
			return
		}
		raw := make([]byte, 2*len(units))
		for k, u := range units {
			raw[2*k], raw[2*k+1] = byte(u>>8), byte(u)
		}
		sb.WriteByte('&')
		sb.WriteString(mutf7Encoding.EncodeToString(raw))
		sb.WriteByte('-')
		units = units[:0]
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			sb.WriteString("&-")
		case r >= 0x20 && r <= 0x7e:
			flush()
			sb.WriteRune(r)
		default:
			units = utf16.AppendRune(units, r)
		}
	}
	flush()
	return sb.String()
}
