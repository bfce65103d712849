package migrate

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roostmail/roost/internal/mutf7"
)

// Maildir file names (https://cr.yp.to/proto/maildir.html, with Dovecot's
// extensions): "UNIQUE:2,FLAGS" in cur/, just "UNIQUE" in new/. UNIQUE
// starts with the delivery time in seconds and may carry ",S=size" (file
// size) and ",W=size" (size with CRLF line ends). FLAGS are letters in
// ASCII order: D draft, F flagged, P passed, R replied, S seen, T trashed,
// and Dovecot's keyword letters a-z (see Keywords).

// UniqueName returns a Maildir file name without its ":2,..." info part.
func UniqueName(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i]
	}
	return name
}

// FileFlags returns the flags of a Maildir file name: system flags from the
// standard letters and keywords from Dovecot's letters a-z through kw.
// Letters with no keyword in kw, and P (passed), are left out, as Dovecot
// leaves them out of what it shows.
func FileFlags(name string, kw *Keywords) []string {
	i := strings.LastIndex(name, ":2,")
	if i < 0 {
		return nil
	}
	letters := name[i+3:]
	if j := strings.IndexByte(letters, ','); j >= 0 {
		letters = letters[:j] // Dovecot: fields after a comma are not flags
	}
	var flags []string
	add := func(f string) {
		if !hasFlag(flags, f) {
			flags = append(flags, f)
		}
	}
	for k := 0; k < len(letters); k++ {
		switch c := letters[k]; {
		case c == 'D':
			add(FlagDraft)
		case c == 'F':
			add(FlagFlagged)
		case c == 'R':
			add(FlagAnswered)
		case c == 'S':
			add(FlagSeen)
		case c == 'T':
			add(FlagDeleted)
		case c >= 'a' && c <= 'z' && kw != nil && kw[c-'a'] != "":
			add(kw[c-'a'])
		}
	}
	return flags
}

// FileTime returns the delivery time at the start of a Maildir unique name
// ("1276528487.M364837P9451.host"), or false.
func FileTime(unique string) (time.Time, bool) {
	end := strings.IndexByte(unique, '.')
	if end <= 0 {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(unique[:end], 10, 64)
	if err != nil || sec <= 0 || sec > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// FileName builds a Maildir file name for cur/ with size fields and flags,
// assigning keyword letters through kw (which grows; a keyword that finds
// no free letter is left out and reported by the false return).
func FileName(unique string, size, vsize int64, flags []string, kw *Keywords) (string, bool) {
	var letters []byte
	allKept := true
	for _, f := range flags {
		switch strings.ToLower(f) {
		case `\draft`:
			letters = append(letters, 'D')
		case `\flagged`:
			letters = append(letters, 'F')
		case `\answered`:
			letters = append(letters, 'R')
		case `\seen`:
			letters = append(letters, 'S')
		case `\deleted`:
			letters = append(letters, 'T')
		default:
			if isSystemFlag(f) || !ValidKeyword(f) {
				continue
			}
			idx := slices.IndexFunc(kw[:], func(k string) bool { return strings.EqualFold(k, f) })
			if idx < 0 {
				idx = slices.Index(kw[:], "")
				if idx < 0 {
					allKept = false
					continue
				}
				kw[idx] = f
			}
			letters = append(letters, byte('a'+idx))
		}
	}
	slices.Sort(letters)
	letters = slices.Compact(letters)
	return fmt.Sprintf("%s,S=%d,W=%d:2,%s", unique, size, vsize, letters), allKept
}

// Folder is one mailbox of a Maildir.
type Folder struct {
	// Name is the mailbox name, "/"-separated, in UTF-8 (INBOX for the
	// Maildir's root).
	Name string
	// Dir is the folder's directory in the scanned fs.FS ("." for INBOX).
	Dir string
	// SpecialUse is the RFC 6154 attribute its name suggests, or "".
	SpecialUse string
	// UIDValidity and UIDNext come from dovecot-uidlist (0: no uidlist).
	UIDValidity, UIDNext uint32
	// Subscribed is true when the subscriptions file lists the folder, or
	// when there is no subscriptions file at all.
	Subscribed bool
	// Messages are in UID order, those without a UID last (by file name).
	Messages []Message
	// Problems are what could not be read of the folder's Dovecot files.
	Problems []string
}

// Message is one message file of a Maildir folder.
type Message struct {
	// Path is the file's path in the fs.FS (cur/ or new/).
	Path string
	// Unique is the file's unique name (see UniqueName).
	Unique string
	// UID is from dovecot-uidlist, 0 if it lists none for the file.
	UID uint32
	// POP3UIDL is Dovecot's stored UIDL for the message, usually "".
	POP3UIDL string
	// Flags are the system flags and keywords of the file name.
	Flags []string
	// Date is the INTERNALDATE: the file's modification time, which is what
	// Dovecot serves, unless that is more than a day after the delivery time
	// in the name (the Maildir was copied without keeping times); then the
	// delivery time.
	Date time.Time
	// Size is the file's size.
	Size int64
}

// ScanMaildir lists the folders of a Maildir and the messages in each: the
// root (cur/, new/) is INBOX; folders are Maildir++ directories (".Sent",
// ".Lists.Foo", names in modified UTF-7) and, for Dovecot's LAYOUT=fs,
// plain subdirectories ("Lists/Foo") that have a cur/ directory. tmp/
// (messages still being written) is never read.
func ScanMaildir(fsys fs.FS) ([]Folder, error) {
	if _, err := fs.Stat(fsys, "cur"); err != nil {
		if _, err2 := fs.Stat(fsys, "new"); err2 != nil {
			return nil, fmt.Errorf("not a Maildir (no cur/ or new/ directory): %w", err)
		}
	}
	var subs map[string]bool
	if data, err := fs.ReadFile(fsys, "subscriptions"); err == nil {
		subs = make(map[string]bool)
		for _, n := range ParseSubscriptions(data, ".") {
			subs[n] = true
		}
	}
	folders := []Folder{{Name: Inbox, Dir: "."}}
	top, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	for _, e := range top {
		n := e.Name()
		if !isDir(fsys, n, e) || !strings.HasPrefix(n, ".") || n == "." || n == ".." {
			continue
		}
		if !isDir(fsys, path.Join(n, "cur"), nil) && !isDir(fsys, path.Join(n, "new"), nil) {
			continue
		}
		name, err := maildirPlusPlusName(n[1:])
		if err != nil {
			return nil, fmt.Errorf("folder %q: %w", n, err)
		}
		folders = append(folders, Folder{Name: name, Dir: n})
	}
	if err := scanFS(fsys, ".", "", &folders); err != nil {
		return nil, err
	}
	for i := range folders {
		f := &folders[i]
		if subs == nil {
			f.Subscribed = true
		} else {
			f.Subscribed = subs[f.Name] || f.Name == Inbox
		}
		f.SpecialUse = SpecialUse(f.Name)
		if err := scanFolder(fsys, f); err != nil {
			return nil, fmt.Errorf("folder %s: %w", f.Name, err)
		}
	}
	return folders, nil
}

// scanFS finds LAYOUT=fs folders below dir (name is dir's mailbox name).
func scanFS(fsys fs.FS, dir, name string, out *[]Folder) error {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		p := path.Join(dir, n)
		if strings.HasPrefix(n, ".") || n == "cur" || n == "new" || n == "tmp" || !isDir(fsys, p, e) {
			continue
		}
		mbox, err := mutf7.Decode(n)
		if err != nil {
			mbox = n // Dovecot with UTF-8 names on disk
		}
		if name != "" {
			mbox = name + Separator + mbox
		} else if strings.EqualFold(mbox, Inbox) {
			mbox = Inbox
		}
		if isDir(fsys, path.Join(p, "cur"), nil) || isDir(fsys, path.Join(p, "new"), nil) {
			*out = append(*out, Folder{Name: mbox, Dir: p})
		}
		if err := scanFS(fsys, p, mbox, out); err != nil {
			return err
		}
	}
	return nil
}

func isDir(fsys fs.FS, p string, e fs.DirEntry) bool {
	if e != nil && e.IsDir() {
		return true
	}
	fi, err := fs.Stat(fsys, p) // follows a symlink
	return err == nil && fi.IsDir()
}

// maildirPlusPlusName turns a Maildir++ folder directory name (without its
// leading dot) into a mailbox name: "." separates levels, each in modified
// UTF-7.
func maildirPlusPlusName(dir string) (string, error) {
	parts := strings.Split(dir, ".")
	for i, p := range parts {
		if p == "" {
			return "", errors.New("empty level in folder name")
		}
		d, err := mutf7.Decode(p)
		if err != nil {
			d = p // a UTF-8 name on disk
		}
		parts[i] = d
	}
	if strings.EqualFold(parts[0], Inbox) {
		parts[0] = Inbox
	}
	return strings.Join(parts, Separator), nil
}

func scanFolder(fsys fs.FS, f *Folder) error {
	var kw Keywords
	if data, err := fs.ReadFile(fsys, path.Join(f.Dir, "dovecot-keywords")); err == nil {
		var probs []string
		kw, probs = ParseKeywords(data)
		f.Problems = append(f.Problems, probs...)
	}
	uids := map[string]UIDEntry{}
	if data, err := fs.ReadFile(fsys, path.Join(f.Dir, "dovecot-uidlist")); err == nil {
		l, probs, err := ParseUIDList(data)
		f.Problems = append(f.Problems, probs...)
		if err != nil {
			f.Problems = append(f.Problems, err.Error()+" (messages get new UIDs)")
		} else {
			f.UIDValidity, f.UIDNext = l.UIDValidity, l.NextUID
			for _, e := range l.Entries {
				uids[e.Unique] = e
			}
		}
	}
	taken := map[uint32]bool{}
	seen := map[string]bool{}
	for _, sub := range []string{"cur", "new"} {
		dir := path.Join(f.Dir, sub)
		entries, err := fs.ReadDir(fsys, dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			n := e.Name()
			if strings.HasPrefix(n, ".") || e.IsDir() {
				continue
			}
			m := Message{Path: path.Join(dir, n), Unique: UniqueName(n)}
			if seen[m.Unique] {
				// The same message under two names (a flag change seen
				// half-way): one copy is enough.
				continue
			}
			seen[m.Unique] = true
			if sub == "cur" {
				m.Flags = FileFlags(n, &kw)
			}
			if u, ok := uids[m.Unique]; ok && !taken[u.UID] {
				m.UID, m.POP3UIDL = u.UID, u.POP3UIDL
				taken[u.UID] = true
			}
			if info, err := e.Info(); err == nil {
				m.Size = info.Size()
				m.Date = info.ModTime()
			}
			if ft, ok := FileTime(m.Unique); ok && (m.Date.IsZero() || m.Date.After(ft.Add(24*time.Hour))) {
				m.Date = ft
			}
			f.Messages = append(f.Messages, m)
		}
	}
	slices.SortFunc(f.Messages, func(a, b Message) int {
		switch {
		case a.UID != 0 && b.UID != 0:
			return int(int64(a.UID) - int64(b.UID))
		case a.UID != 0:
			return -1
		case b.UID != 0:
			return 1
		}
		return strings.Compare(a.Unique, b.Unique)
	})
	return nil
}
