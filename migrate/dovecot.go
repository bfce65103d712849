package migrate

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/roostmail/roost/internal/mutf7"
)

// UIDList is a parsed dovecot-uidlist file: the mailbox's UIDVALIDITY, the
// UID its next message gets, and the UID of each message, by the message
// file's unique name (its name up to the ":2," info part).
//
// Version 3 (Dovecot 1.1 and later):
//
//	3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//	25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,
//	25017 W2481 :1276533073.M242911P3632.kurkku:2,F
//
// Version 1 (Courier's courierimapuiddb, also read by Dovecot):
//
//	1 1275660208 25022
//	25006 1276528487.M364837P9451.kurkku:2,S
type UIDList struct {
	Version     int
	UIDValidity uint32
	NextUID     uint32
	GUID        string // the mailbox GUID (G), hex; may be empty
	Entries     []UIDEntry
}

// UIDEntry is one message line of a uidlist.
type UIDEntry struct {
	UID uint32
	// Unique is the file's unique name: the last known file name without
	// its ":2,flags" part (flags change the name, the unique part never).
	Unique string
	// POP3UIDL is the P extension field: a POP3 UIDL that Dovecot gives
	// instead of its default (set by migrations into Dovecot); "" if none.
	POP3UIDL string
}

// maxUIDListLine bounds one line; Dovecot's file names are far shorter.
const maxUIDListLine = 64 << 10

// ParseUIDList parses a dovecot-uidlist file. Lines it cannot read are
// skipped and reported in problems (the messages they named get new UIDs);
// a header it cannot read is an error, since without it no UID can be kept.
func ParseUIDList(data []byte) (l *UIDList, problems []string, err error) {
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) == 0 || len(bytes.TrimSpace(lines[0])) == 0 {
		return nil, nil, fmt.Errorf("dovecot-uidlist: empty")
	}
	l = &UIDList{}
	head := strings.Fields(string(lines[0]))
	switch head[0] {
	case "1":
		if len(head) < 3 {
			return nil, nil, fmt.Errorf("dovecot-uidlist: version 1 header %q lacks fields", lines[0])
		}
		uv, err1 := parseUID(head[1])
		next, err2 := parseUID(head[2])
		if err1 != nil || err2 != nil {
			return nil, nil, fmt.Errorf("dovecot-uidlist: bad version 1 header %q", lines[0])
		}
		l.Version, l.UIDValidity, l.NextUID = 1, uv, next
	case "2", "3":
		l.Version = int(head[0][0] - '0')
		for _, f := range head[1:] {
			switch f[0] {
			case 'V':
				v, err := parseUID(f[1:])
				if err != nil {
					return nil, nil, fmt.Errorf("dovecot-uidlist: bad UIDVALIDITY %q", f)
				}
				l.UIDValidity = v
			case 'N':
				v, err := strconv.ParseUint(f[1:], 10, 32)
				if err != nil {
					return nil, nil, fmt.Errorf("dovecot-uidlist: bad next UID %q", f)
				}
				l.NextUID = uint32(v)
			case 'G':
				l.GUID = f[1:]
			}
		}
		if l.UIDValidity == 0 {
			return nil, nil, fmt.Errorf("dovecot-uidlist: header %q has no UIDVALIDITY", lines[0])
		}
	default:
		return nil, nil, fmt.Errorf("dovecot-uidlist: unknown version %q", head[0])
	}
	seen := make(map[uint32]bool)
	for n, line := range lines[1:] {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, err := parseUIDLine(string(line), l.Version)
		if err == nil && seen[e.UID] {
			err = fmt.Errorf("UID %d listed twice", e.UID)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("dovecot-uidlist line %d: %v", n+2, err))
			continue
		}
		seen[e.UID] = true
		l.Entries = append(l.Entries, e)
		if e.UID >= l.NextUID {
			l.NextUID = e.UID + 1
			if e.UID == math.MaxUint32 {
				l.NextUID = e.UID // exhausted: no UID can follow
			}
		}
	}
	return l, problems, nil
}

func parseUIDLine(line string, version int) (UIDEntry, error) {
	if len(line) > maxUIDListLine {
		return UIDEntry{}, fmt.Errorf("line longer than %d bytes", maxUIDListLine)
	}
	uidText, rest, ok := strings.Cut(line, " ")
	if !ok {
		return UIDEntry{}, fmt.Errorf("no file name")
	}
	uid, err := parseUID(uidText)
	if err != nil {
		return UIDEntry{}, err
	}
	e := UIDEntry{UID: uid}
	name := rest
	if version >= 2 {
		// Extension fields, then " :" and the file name (which may hold
		// spaces: everything after the first ':' that starts a field).
		var fields string
		if strings.HasPrefix(rest, ":") {
			name = rest[1:]
		} else {
			i := strings.Index(rest, " :")
			if i < 0 {
				return UIDEntry{}, fmt.Errorf("no ':' before the file name")
			}
			fields, name = rest[:i], rest[i+2:]
		}
		for _, f := range strings.Fields(fields) {
			if f[0] == 'P' {
				e.POP3UIDL = f[1:]
			}
		}
	}
	e.Unique = UniqueName(name)
	if e.Unique == "" || strings.ContainsAny(e.Unique, "/\x00") {
		return UIDEntry{}, fmt.Errorf("bad file name %q", name)
	}
	return e, nil
}

func parseUID(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("bad UID %q", s)
	}
	return uint32(v), nil
}

// Bytes writes the uidlist in version 3 form.
func (l *UIDList) Bytes(fileNames map[uint32]string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "3 V%d N%d", l.UIDValidity, l.NextUID)
	if l.GUID != "" {
		fmt.Fprintf(&b, " G%s", l.GUID)
	}
	b.WriteByte('\n')
	for _, e := range l.Entries {
		name := fileNames[e.UID]
		if name == "" {
			name = e.Unique
		}
		fmt.Fprintf(&b, "%d :%s\n", e.UID, name)
	}
	return b.Bytes()
}

// Keywords is a parsed dovecot-keywords file: keyword names by index, the
// index being the letter in file names ('a' is 0 ... 'z' is 25).
//
//	0 $Junk
//	1 $NonJunk
type Keywords [26]string

// ParseKeywords parses a dovecot-keywords file. Lines it cannot read are
// reported in problems and skipped.
func ParseKeywords(data []byte) (kw Keywords, problems []string) {
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		idxText, name, ok := strings.Cut(line, " ")
		idx, err := strconv.Atoi(idxText)
		switch {
		case !ok || err != nil:
			problems = append(problems, fmt.Sprintf("dovecot-keywords line %d: %q is not \"INDEX NAME\"", n+1, line))
			continue
		case idx < 0 || idx >= len(kw):
			problems = append(problems, fmt.Sprintf("dovecot-keywords line %d: index %d is not a letter a-z", n+1, idx))
			continue
		case !ValidKeyword(name):
			problems = append(problems, fmt.Sprintf("dovecot-keywords line %d: %q is not an IMAP keyword", n+1, name))
			continue
		}
		kw[idx] = name
	}
	return kw, problems
}

// Bytes writes the keywords file.
func (kw *Keywords) Bytes() []byte {
	var b bytes.Buffer
	for i, k := range kw {
		if k != "" {
			fmt.Fprintf(&b, "%d %s\n", i, k)
		}
	}
	return b.Bytes()
}

// ValidKeyword reports whether k can be an IMAP keyword: an atom without
// the characters flag syntax forbids (RFC 9051 §9, flag-keyword), at most
// 255 bytes, not starting with `\`.
func ValidKeyword(k string) bool {
	if k == "" || len(k) > 255 || k[0] == '\\' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// ParseSubscriptions reads Dovecot's subscriptions file: either the old
// form (one name per line) or version 2 ("V\t2" then a blank line, then one
// name per line with the hierarchy separated by tabs). Names in the old
// form use the Maildir's own separator, sep. It returns Roost names.
func ParseSubscriptions(data []byte, sep string) []string {
	lines := strings.Split(string(data), "\n")
	v2 := len(lines) > 0 && strings.TrimRight(lines[0], "\r") == "V\t2"
	var out []string
	for i, line := range lines {
		line = strings.TrimRight(line, "\r")
		if line == "" || v2 && i == 0 {
			continue
		}
		var parts []string
		if v2 {
			parts = strings.Split(line, "\t")
		} else {
			parts = strings.Split(line, sep)
		}
		for j, p := range parts {
			if d, err := mutf7.Decode(p); err == nil {
				parts[j] = d
			}
		}
		name := strings.Join(parts, Separator)
		if strings.EqualFold(parts[0], Inbox) && len(parts) == 1 {
			name = Inbox
		}
		out = append(out, name)
	}
	return out
}
