// Package migrate reads and writes the mail stores people move between:
// Maildir (with Maildir++ folders, `.Sent`, `.Lists.Foo`, or Dovecot's
// LAYOUT=fs, `Lists/Foo`), Dovecot's own files beside it (dovecot-uidlist
// for UIDVALIDITY, UIDs and the next UID; dovecot-keywords for the keyword
// letters in file names; subscriptions), and mbox (mboxrd and mboxo, with
// the Status, X-Status, X-Keywords, X-UID and X-IMAPbase headers that
// Dovecot, mutt and Thunderbird use for flags and UIDs).
//
// It is what `roost import` and `roost export` are built on, and knows
// nothing of Roost's store: folders and messages come out as plain values
// (names with "/" as the hierarchy separator, flags in IMAP spelling such as
// `\Seen` and `$Label1`), and go in the same way.
//
// The code is our own: Dovecot's uidlist and keywords files and its
// LAYOUT=fs have no Go library, the Go Maildir and mbox packages that
// exist (emersion/go-maildir, go-mbox) neither know Dovecot's keyword
// letters nor give the byte-exact control a round trip needs (folder names
// in modified UTF-7 go through internal/mutf7, which imapd shares, since
// go-imap's codec is internal to it). Every parser here has
// a fuzz target (fuzz_test.go).
//
// Readers take an fs.FS (the caller opens the directory), so that this
// package reads no path of its own choosing; writers take a directory and
// write each file atomically (temporary name, fsync, rename).
package migrate

import (
	"bytes"
	"strings"
)

// IMAP system flags, as Roost's store spells them.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// Separator is the hierarchy separator of the folder names this package
// returns and takes (Roost's).
const Separator = "/"

// Inbox is the name of the folder at the root of a Maildir.
const Inbox = "INBOX"

// hasFlag reports whether flags holds f (system flags case-insensitively,
// as IMAP compares them; keywords too, RFC 9051 §2.3.2).
func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// isSystemFlag reports whether f is an IMAP system flag (starts with `\`).
func isSystemFlag(f string) bool { return strings.HasPrefix(f, `\`) }

// ToCRLF returns msg with every bare LF turned into CRLF when msg has no
// CRLF at all (the way Maildir and mbox files are usually written, and the
// way Dovecot serves them: its virtual size, the W= of a file name, counts
// the CRs it adds). A message that already has a CRLF is returned as it is,
// so a message written by FromCRLF comes back byte for byte.
func ToCRLF(msg []byte) []byte {
	if bytes.Contains(msg, []byte("\r\n")) || !bytes.Contains(msg, []byte("\n")) {
		return msg
	}
	out := make([]byte, 0, len(msg)+bytes.Count(msg, []byte("\n")))
	for {
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			return append(out, msg...)
		}
		out = append(out, msg[:i]...)
		out = append(out, '\r', '\n')
		msg = msg[i+1:]
	}
}

// FromCRLF returns the LF form of a message for a Maildir or mbox file:
// every CRLF becomes LF, when that can be undone exactly by ToCRLF (every
// LF is part of a CRLF, and no CR comes right before a CRLF). Any other
// message is returned unchanged, CRs and all, which ToCRLF also leaves
// alone if it holds a CRLF.
func FromCRLF(msg []byte) []byte {
	if !invertible(msg) {
		return msg
	}
	return bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
}

func invertible(msg []byte) bool {
	if !bytes.Contains(msg, []byte("\r\n")) {
		return false // nothing to turn, or bare LFs only
	}
	for i := 0; i < len(msg); i++ {
		if msg[i] != '\n' {
			continue
		}
		if i == 0 || msg[i-1] != '\r' {
			return false // a bare LF
		}
		if i >= 2 && msg[i-2] == '\r' {
			return false // CR CR LF would come back as CR LF
		}
	}
	return true
}
