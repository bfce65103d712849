package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entries lists the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestBackupIsCompleteOrAbsent(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	for _, a := range []string{"a@x.org", "b@x.org"} {
		ms, _ := newAccount(t, s, a)
		ms.Append("INBOX", msg(1), Limits{})
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "bk")

	// A backup that fails half-way leaves nothing behind.
	calls := 0
	s.backupHook = func(rel string) error {
		if calls++; calls == 2 {
			return errors.New("disk full (test)")
		}
		return nil
	}
	if err := s.Backup(dir, nil); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("failing backup: %v", err)
	}
	if got := entries(t, parent); len(got) != 0 {
		t.Fatalf("a failed backup left %q", got)
	}
	s.backupHook = nil

	if err := s.Backup(dir, nil); err != nil {
		t.Fatal(err)
	}
	m, err := VerifyBackup(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 3 || m.Files[0].Path != "roost.db" || !strings.HasPrefix(m.Files[1].Path, "accounts/") || m.Files[1].Size == 0 || len(m.Files[1].SHA256) != 64 {
		t.Errorf("manifest %+v", m)
	}
	// Backing up again replaces the previous backup, and leaves nothing
	// else beside it.
	if err := s.Backup(dir, nil); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, parent); len(got) != 1 || got[0] != "bk" {
		t.Errorf("after a second backup the parent holds %q", got)
	}
	// A directory that is neither empty nor a backup is not overwritten.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o600)
	if err := s.Backup(other, nil); err == nil || !strings.Contains(err.Error(), "neither empty nor a Roost backup") {
		t.Errorf("backup into a foreign directory: %v", err)
	}
}

func TestVerifyBackupRefusesPartialOrAltered(t *testing.T) {
	s := openTest(t, t.TempDir())
	ms, _ := newAccount(t, s, "a@x.org")
	ms.Append("INBOX", msg(1), Limits{})
	good := filepath.Join(t.TempDir(), "bk")
	if err := s.Backup(good, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	m, err := ReadManifest(good)
	if err != nil {
		t.Fatal(err)
	}
	mail := filepath.Join(filepath.FromSlash(m.Files[1].Path))
	for _, tc := range []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"no manifest", func(d string) { os.Remove(filepath.Join(d, ManifestName)) }, "has no manifest.json"},
		{"file missing", func(d string) { os.Remove(filepath.Join(d, mail)) }, "is missing"},
		{"file truncated", func(d string) { os.Truncate(filepath.Join(d, mail), 4096) }, "the manifest says"},
		{"byte changed", func(d string) {
			p := filepath.Join(d, mail)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o600)
		}, "does not match its SHA-256"},
		{"extra file", func(d string) { os.WriteFile(filepath.Join(d, "accounts", "99.db"), []byte("x"), 0o600) }, "99.db is not in its manifest"},
		{"manifest damaged", func(d string) { os.WriteFile(filepath.Join(d, ManifestName), []byte("{"), 0o600) }, "damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bk")
			copyTree(t, good, dir)
			tc.damage(dir)
			if _, err := VerifyBackup(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("VerifyBackup: %v; want %q", err, tc.want)
			}
			data := filepath.Join(t.TempDir(), "data")
			if _, err := Restore(dir, data, nil); err == nil {
				t.Errorf("Restore accepted it")
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("a refused restore left %s: %v", data, err)
			}
		})
	}
}

func TestRestore(t *testing.T) {
	src := t.TempDir()
	s := openTest(t, src)
	ms, mb := newAccount(t, s, "a@x.org")
	for i := 1; i <= 5; i++ {
		ms.Append("INBOX", msg(i), Limits{})
	}
	q, err := OpenQueue(Options{Dir: src, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	bk := filepath.Join(t.TempDir(), "bk")
	if err := s.Backup(bk, q); err != nil {
		t.Fatal(err)
	}
	q.Close()
	s.Close()

	if _, err := Restore(bk, src, nil); err == nil || !strings.Contains(err.Error(), "already holds a store") {
		t.Errorf("restore over a store: %v", err)
	}
	// The checker runs on the copy, and its verdict stops the restore.
	parent := t.TempDir()
	data := filepath.Join(parent, "data")
	var checked string
	_, err = Restore(bk, data, func(dir string) error { checked = dir; return errors.New("2 messages without a body") })
	if err == nil || !strings.Contains(err.Error(), "fails the store check: 2 messages without a body") {
		t.Errorf("restore with a failing check: %v", err)
	}
	if checked == "" || checked == bk {
		t.Errorf("the check ran on %q, want the copy", checked)
	}
	if got := entries(t, parent); len(got) != 0 {
		t.Errorf("a refused restore left %q", got)
	}
	if _, err := Restore(bk, data, func(dir string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, QueueFileName)); err != nil {
		t.Errorf("the outbound queue was not restored: %v", err)
	}
	r := openTest(t, data)
	defer r.Close()
	acct, err := r.Account("a@x.org")
	if err != nil {
		t.Fatal(err)
	}
	rms, _ := r.Mailstore(acct.ID)
	if got := checkCounters(t, rms, mb.ID).Messages; got != 5 {
		t.Errorf("restored %d messages, want 5", got)
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
