package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ManifestName is the file in a backup that lists its files. It is written
// last, so a backup without it is one that did not finish.
const ManifestName = "manifest.json"

// manifestFormat names the manifest's schema.
const manifestFormat = "roost-backup-1"

// Manifest describes a complete backup: every store file with its size
// and SHA-256.
type Manifest struct {
	Format  string         `json:"format"`
	Created time.Time      `json:"created"`
	Shards  int            `json:"shards"`
	Files   []ManifestFile `json:"files"`
}

// ManifestFile is one file of a backup; Path is relative to the backup
// directory, with "/" separators.
type ManifestFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Backup writes a consistent copy of every store file, and of the given
// outbound queue (nil: none), into dir while the store is in use: each
// file is copied inside one read transaction (bbolt Tx.WriteTo), so
// writers are not blocked.
//
// The copy is made in a temporary directory beside dir and renamed to dir
// only once every file and the manifest are written and fsynced, so dir
// is either a complete backup or absent: a failed backup leaves nothing
// that could be restored by mistake. dir may be missing, an empty
// directory, or a previous backup (which is replaced); any other existing
// directory is refused.
func (s *Store) Backup(dir string, queue *Queue) error {
	dir = filepath.Clean(dir)
	if err := checkBackupTarget(dir); err != nil {
		return err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	staging, err := tempSibling(dir, "partial")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := s.backupInto(staging, queue); err != nil {
		os.RemoveAll(staging)
		return err
	}
	if err := replaceDir(staging, dir); err != nil {
		os.RemoveAll(staging)
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// backupInto writes the files and the manifest into the empty dir staging.
func (s *Store) backupInto(staging string, queue *Queue) error {
	m := Manifest{Format: manifestFormat, Created: time.Now().UTC().Truncate(time.Second), Shards: s.opts.Shards}
	for _, sub := range []string{"accounts", "mail"} {
		if err := os.Mkdir(filepath.Join(staging, sub), 0o700); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	add := func(view func(func(*bolt.Tx) error) error, rel string) error {
		if s.backupHook != nil {
			if err := s.backupHook(rel); err != nil {
				return fmt.Errorf("backup %s: %w", rel, err)
			}
		}
		f, err := backupDB(view, filepath.Join(staging, rel))
		if err != nil {
			return err
		}
		f.Path = filepath.ToSlash(rel)
		m.Files = append(m.Files, f)
		return nil
	}
	if err := add(s.global.View, globalFileName); err != nil {
		return err
	}
	accts, err := s.Accounts()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	done := make(map[string]bool)
	for _, a := range accts {
		path := s.mailPath(a.ID)
		if done[path] {
			continue
		}
		done[path] = true
		f, err := s.acquire(path, 0, false)
		if err != nil {
			return fmt.Errorf("backup %s: %w", a.Address, err)
		}
		err = add(f.viewDB, f.rel)
		s.release(f)
		if err != nil {
			return err
		}
	}
	if queue != nil {
		if err := add(queue.f.viewDB, QueueFileName); err != nil {
			return err
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(staging, ManifestName), append(data, '\n')); err != nil {
		return fmt.Errorf("backup: manifest: %w", err)
	}
	for _, d := range []string{filepath.Join(staging, "accounts"), filepath.Join(staging, "mail"), staging} {
		if err := fsyncFile(d); err != nil {
			return fmt.Errorf("backup: sync %s: %w", d, err)
		}
	}
	return nil
}

// backupDB copies db into path in one read transaction, fsynced, and
// returns its size and checksum.
func backupDB(view func(func(*bolt.Tx) error) error, path string) (ManifestFile, error) {
	var mf ManifestFile
	err := view(func(tx *bolt.Tx) error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := tx.WriteTo(io.MultiWriter(f, h))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		mf.Size, mf.SHA256 = n, hex.EncodeToString(h.Sum(nil))
		return err
	})
	if err != nil {
		return mf, fmt.Errorf("backup %s: %w", filepath.Base(path), err)
	}
	return mf, nil
}

// checkBackupTarget refuses an existing directory that is neither empty
// nor a previous backup, so a mistyped path never overwrites other files.
func checkBackupTarget(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestName)); err == nil {
		return nil
	}
	return fmt.Errorf("backup: %s exists and is neither empty nor a Roost backup (no %s); choose another directory", dir, ManifestName)
}

// tempSibling creates an empty directory beside dir (same file system, so
// it can be renamed to dir) with a name that says what it is.
func tempSibling(dir, what string) (string, error) {
	var rnd [6]byte
	rand.Read(rnd[:])
	p := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+"."+what+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(p, 0o700); err != nil {
		return "", err
	}
	return p, nil
}

// replaceDir renames the finished directory src to dst. An empty dst is
// removed first; a previous backup at dst is moved aside and removed
// after (a crash in between leaves it beside dst under a ".old-" name).
func replaceDir(src, dst string) error {
	var old string
	if entries, err := os.ReadDir(dst); err == nil {
		if len(entries) == 0 {
			if err := os.Remove(dst); err != nil {
				return err
			}
		} else {
			aside, err := tempSibling(dst, "old")
			if err != nil {
				return err
			}
			os.Remove(aside)
			if err := os.Rename(dst, aside); err != nil {
				return err
			}
			old = aside
		}
	}
	if err := os.Rename(src, dst); err != nil {
		if old != "" {
			os.Rename(old, dst)
		}
		return err
	}
	if err := fsyncFile(filepath.Dir(dst)); err != nil {
		return err
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

// ReadManifest reads a backup's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a complete Roost backup: it has no %s (a backup that did not finish, or not a backup)", dir, ManifestName)
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %s is damaged: %w", dir, ManifestName, err)
	}
	if m.Format != manifestFormat {
		return nil, fmt.Errorf("%s: %s has format %q, this binary reads %q", dir, ManifestName, m.Format, manifestFormat)
	}
	return &m, nil
}

// VerifyBackup checks a backup against its manifest: every file present
// with its size and SHA-256, a roost.db among them, and no store file that
// the manifest does not list. It returns the manifest.
func VerifyBackup(dir string) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	listed := make(map[string]bool)
	for _, f := range m.Files {
		if !validBackupPath(f.Path) {
			return nil, fmt.Errorf("%s: %s lists a file outside the backup: %q", dir, ManifestName, f.Path)
		}
		listed[f.Path] = true
		if err := verifyFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f, nil); err != nil {
			return nil, fmt.Errorf("backup %s is incomplete or altered: %w", dir, err)
		}
	}
	if !listed[globalFileName] {
		return nil, fmt.Errorf("backup %s: %s does not list %s", dir, ManifestName, globalFileName)
	}
	for _, sub := range []string{"", "accounts", "mail"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			if rel := path.Join(sub, e.Name()); strings.HasSuffix(rel, ".db") && !listed[rel] {
				return nil, fmt.Errorf("backup %s is altered: %s is not in its %s", dir, rel, ManifestName)
			}
		}
	}
	return m, nil
}

func validBackupPath(p string) bool {
	if p == globalFileName || p == QueueFileName {
		return true
	}
	sub, name, ok := strings.Cut(p, "/")
	return ok && slices.Contains([]string{"accounts", "mail"}, sub) && name != "" &&
		!strings.ContainsAny(name, `/\`) && name != "." && name != ".." && strings.HasSuffix(name, ".db")
}

// verifyFile checks one file's size and checksum, copying it to w as it
// reads (w may be nil).
func verifyFile(path string, want ManifestFile, w io.Writer) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s is missing", want.Path)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	dst := io.Writer(h)
	if w != nil {
		dst = io.MultiWriter(h, w)
	}
	n, err := io.Copy(dst, f)
	if err != nil {
		return fmt.Errorf("%s: %w", want.Path, err)
	}
	if n != want.Size {
		return fmt.Errorf("%s has %d bytes, the manifest says %d", want.Path, n, want.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
		return fmt.Errorf("%s does not match its SHA-256 in the manifest", want.Path)
	}
	return nil
}

// Restore copies the backup in backupDir into dataDir, which must not hold
// a store (it may be missing or empty). It verifies the backup first,
// copies it into a temporary directory beside dataDir (checking every
// byte against the manifest again as it copies), runs check on that copy
// (the store consistency checker; nil skips it), and only then renames it
// to dataDir. On any failure dataDir is left as it was.
func Restore(backupDir, dataDir string, check func(dir string) error) (*Manifest, error) {
	m, err := VerifyBackup(backupDir)
	if err != nil {
		return nil, err
	}
	dataDir = filepath.Clean(dataDir)
	if ok, err := Exists(dataDir); err != nil {
		return nil, err
	} else if ok {
		return nil, fmt.Errorf("%s already holds a store; restore only into a missing or empty data_dir (move the old one away first)", dataDir)
	}
	if entries, err := os.ReadDir(dataDir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s is not empty; restore only into a missing or empty data_dir", dataDir)
	}
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o700); err != nil {
		return nil, err
	}
	staging, err := tempSibling(dataDir, "restore")
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	fail := func(err error) (*Manifest, error) {
		os.RemoveAll(staging)
		return nil, err
	}
	for _, sub := range []string{"accounts", "mail"} {
		if err := os.Mkdir(filepath.Join(staging, sub), 0o700); err != nil {
			return fail(fmt.Errorf("restore: %w", err))
		}
	}
	for _, f := range m.Files {
		if err := copyVerified(filepath.Join(backupDir, filepath.FromSlash(f.Path)), filepath.Join(staging, filepath.FromSlash(f.Path)), f); err != nil {
			return fail(fmt.Errorf("restore from %s: %w", backupDir, err))
		}
	}
	for _, d := range []string{filepath.Join(staging, "accounts"), filepath.Join(staging, "mail"), staging} {
		if err := fsyncFile(d); err != nil {
			return fail(fmt.Errorf("restore: sync %s: %w", d, err))
		}
	}
	if check != nil {
		if err := check(staging); err != nil {
			return fail(fmt.Errorf("restore: the backup in %s fails the store check: %w", backupDir, err))
		}
	}
	if err := replaceDir(staging, dataDir); err != nil {
		return fail(fmt.Errorf("restore: %w", err))
	}
	return m, nil
}

func copyVerified(src, dst string, want ManifestFile) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = verifyFile(src, want, out)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func fsyncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
