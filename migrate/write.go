package migrate

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/roostmail/roost/internal/mutf7"
)

// MaildirWriter writes a Maildir that Dovecot reads as it is: message files
// in cur/ named with their flags and sizes, and in each folder a
// dovecot-uidlist (so Dovecot keeps UIDVALIDITY and UIDs) and a
// dovecot-keywords; at the root a subscriptions file.
type MaildirWriter struct {
	dir      string
	layoutFS bool
	subs     []string
	written  map[string]bool
}

// NewMaildirWriter starts a Maildir in dir, which must not exist or be
// empty. layoutFS selects Dovecot's LAYOUT=fs (folders as plain nested
// directories) instead of Maildir++ (".Lists.Foo").
func NewMaildirWriter(dir string, layoutFS bool) (*MaildirWriter, error) {
	if err := ensureEmptyDir(dir); err != nil {
		return nil, err
	}
	return &MaildirWriter{dir: dir, layoutFS: layoutFS, written: map[string]bool{}}, nil
}

func ensureEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.MkdirAll(dir, 0o700)
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty", dir)
	}
	return nil
}

// folderDir is where a folder's cur/new/tmp go.
func (w *MaildirWriter) folderDir(name string) (string, error) {
	if name == Inbox {
		return w.dir, nil
	}
	parts := strings.Split(name, Separator)
	for i, p := range parts {
		if p == "" || p == "." || p == ".." {
			return "", fmt.Errorf("mailbox %q: cannot be a directory name", name)
		}
		parts[i] = mutf7.Encode(p)
		if !w.layoutFS && strings.Contains(parts[i], ".") {
			return "", fmt.Errorf("mailbox %q has a '.' in its name, which Maildir++ uses between levels: export with --layout fs", name)
		}
	}
	if w.layoutFS {
		if strings.EqualFold(parts[0], Inbox) || parts[0] == "cur" || parts[0] == "new" || parts[0] == "tmp" {
			return "", fmt.Errorf("mailbox %q: its first level is reserved in LAYOUT=fs", name)
		}
		return filepath.Join(append([]string{w.dir}, parts...)...), nil
	}
	return filepath.Join(w.dir, "."+strings.Join(parts, ".")), nil
}

// FolderWriter writes the messages of one folder.
type FolderWriter struct {
	w        *MaildirWriter
	dir      string
	list     UIDList
	names    map[uint32]string
	kw       Keywords
	Problems []string
}

// Folder starts the folder called name, with the UIDVALIDITY and next UID
// that its uidlist records.
func (w *MaildirWriter) Folder(name string, uidValidity, uidNext uint32, subscribed bool) (*FolderWriter, error) {
	dir, err := w.folderDir(name)
	if err != nil {
		return nil, err
	}
	if w.written[dir] {
		return nil, fmt.Errorf("mailbox %q: written already", name)
	}
	w.written[dir] = true
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if name != Inbox && !w.layoutFS {
		// Maildir++ marks folders with an empty "maildirfolder" file.
		if err := os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600); err != nil {
			return nil, err
		}
	}
	if subscribed {
		w.subs = append(w.subs, name)
	}
	guid := make([]byte, 16)
	rand.Read(guid)
	return &FolderWriter{w: w, dir: dir, names: map[uint32]string{},
		list: UIDList{Version: 3, UIDValidity: uidValidity, NextUID: uidNext, GUID: hex.EncodeToString(guid)}}, nil
}

// Add writes one message (in Roost's form: CRLF lines) with its UID, flags
// and INTERNALDATE (the file's modification time, as Dovecot reads it).
func (fw *FolderWriter) Add(uid uint32, flags []string, date time.Time, body []byte) error {
	data := FromCRLF(body)
	unique := fmt.Sprintf("%d.M%dP0V%08XU%d.roost", date.Unix(), date.Nanosecond()/1000, fw.list.UIDValidity, uid)
	name, kept := FileName(unique, int64(len(data)), int64(len(ToCRLF(data))), flags, &fw.kw)
	if !kept {
		fw.Problems = append(fw.Problems, fmt.Sprintf("UID %d: keywords beyond the 26 a Maildir folder can name were left out", uid))
	}
	tmp := filepath.Join(fw.dir, "tmp", unique)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if !date.IsZero() {
		if err := os.Chtimes(tmp, date, date); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, filepath.Join(fw.dir, "cur", name)); err != nil {
		return err
	}
	fw.list.Entries = append(fw.list.Entries, UIDEntry{UID: uid, Unique: unique})
	fw.names[uid] = name
	if uid >= fw.list.NextUID {
		fw.list.NextUID = uid + 1
	}
	return nil
}

// Close writes the folder's dovecot-uidlist and dovecot-keywords.
func (fw *FolderWriter) Close() error {
	slices.SortFunc(fw.list.Entries, func(a, b UIDEntry) int { return int(int64(a.UID) - int64(b.UID)) })
	if err := writeFileAtomic(filepath.Join(fw.dir, "dovecot-uidlist"), fw.list.Bytes(fw.names)); err != nil {
		return err
	}
	if kw := fw.kw.Bytes(); len(kw) > 0 {
		return writeFileAtomic(filepath.Join(fw.dir, "dovecot-keywords"), kw)
	}
	return nil
}

// Close writes the subscriptions file and makes everything durable.
func (w *MaildirWriter) Close() error {
	sep := "."
	if w.layoutFS {
		sep = Separator
	}
	var b strings.Builder
	for _, n := range w.subs {
		parts := strings.Split(n, Separator)
		for i, p := range parts {
			parts[i] = mutf7.Encode(p)
		}
		b.WriteString(strings.Join(parts, sep))
		b.WriteByte('\n')
	}
	if err := writeFileAtomic(filepath.Join(w.dir, "subscriptions"), []byte(b.String())); err != nil {
		return err
	}
	// One sync for the thousands of files written, instead of one fsync
	// per message.
	syscall.Sync()
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	return WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteAtomic writes a file whole or not at all: write fills a temporary
// file beside path (buffered), which is fsynced and renamed over path.
func WriteAtomic(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
