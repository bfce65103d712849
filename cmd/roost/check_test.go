package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/roostmail/roost/backend"
)

// corruptInboxCounter raises the stored message count of an account's
// INBOX, writing the file with bbolt directly (no server may run).
func corruptInboxCounter(t *testing.T, dataDir string, id uint64) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dataDir, "accounts", strconv.FormatUint(id, 10)+".db"), 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		key := make([]byte, 9)
		key[0] = 'a'
		binary.BigEndian.PutUint64(key[1:], id)
		root := tx.Bucket(key)
		mid := root.Bucket([]byte("names")).Get([]byte("INBOX"))
		mb := root.Bucket([]byte("mboxes")).Bucket(mid)
		var info map[string]any
		if err := json.Unmarshal(mb.Get([]byte("i")), &info); err != nil {
			return err
		}
		info["messages"] = 5
		data, _ := json.Marshal(info)
		return mb.Put([]byte("i"), data)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCheckCommand: roost check without a server (read-only, creating
// nothing), finding and repairing a corrupted counter, and through a
// running server's control socket.
func TestCheckCommand(t *testing.T) {
	in := newInstance(t)
	if res := in.run("", "check"); res.code != 1 || !strings.Contains(res.stderr, "no Roost store in") {
		t.Errorf("check without a store: exit %d, stderr %q; want 1 and \"no Roost store in\"", res.code, res.stderr)
	}
	if _, err := os.Stat(in.dataDir); !os.IsNotExist(err) {
		t.Errorf("check without a store created %s (%v)", in.dataDir, err)
	}

	ctx := context.Background()
	b := openBackend(t, in.dataDir)
	if err := b.CreateUser(ctx, "alice@example.org", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	rcpt, err := b.ResolveRecipient(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if errs := b.Deliver(ctx, []byte("Subject: hi\r\n\r\nHello.\r\n"), []backend.Recipient{rcpt}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	b.Close()

	const clean = "checked 1 accounts, 6 mailboxes, 1 messages, 1 blobs: no problems found\n"
	if out := in.mustRun("", "check"); out != clean {
		t.Errorf("check of a sound store printed %q, want %q", out, clean)
	}

	corruptInboxCounter(t, in.dataDir, 1)
	res := in.run("", "check")
	if res.code != 1 || !strings.Contains(res.stdout, "alice@example.org\tmailbox \"INBOX\" (id ") ||
		!strings.Contains(res.stdout, "\tcounter: counters say 5 messages") || !strings.Contains(res.stderr, "1 problems found") {
		t.Errorf("check of a wrong counter: exit %d\nstdout %q\nstderr %q", res.code, res.stdout, res.stderr)
	}
	res = in.run("", "check", "--repair")
	if res.code != 0 || !strings.Contains(res.stdout, "(repaired)") || !strings.Contains(res.stdout, "1 problems found, 1 repaired, 0 remain") {
		t.Errorf("check --repair: exit %d\nstdout %q\nstderr %q", res.code, res.stdout, res.stderr)
	}
	if out := in.mustRun("", "check", "alice@example.org"); out != clean {
		t.Errorf("check after repair printed %q", out)
	}
	if res := in.run("", "check", "nobody@example.org"); res.code != 1 || !strings.Contains(res.stderr, "not found") {
		t.Errorf("check of an unknown account: exit %d, stderr %q", res.code, res.stderr)
	}
	if res := in.run("", "user", "list", "--repair"); res.code != exitUsage {
		t.Errorf("--repair outside check: exit %d, want %d", res.code, exitUsage)
	}

	srv := in.startServer()
	in.mustRun("bob-pw\n", "user", "add", "bob@example.org")
	if out := in.mustRun("", "check"); !strings.HasPrefix(out, "checked 2 accounts, 12 mailboxes, 1 messages, 1 blobs: no problems found") {
		t.Errorf("check with the server running printed %q", out)
	}
	if out := in.mustRun("", "check", "--repair", "bob@example.org"); !strings.HasPrefix(out, "checked 1 accounts, 6 mailboxes, 0 messages") {
		t.Errorf("check --repair with the server running printed %q", out)
	}
	if !srv.logContains(`"msg":"control request"`, `"op":"check"`) || !srv.logContains(`"op":"check.repair"`) {
		t.Errorf("the checks did not go through the server's control socket:\n%s", srv.log())
	}
	srv.stop(syscall.SIGTERM)
}

// TestRestoreRunsTheChecker: a backup whose files match their manifest but
// whose store is inconsistent is refused by roost restore (the store
// checker runs on the copy), and nothing is restored.
func TestRestoreRunsTheChecker(t *testing.T) {
	in := newInstance(t)
	ctx := context.Background()
	b := openBackend(t, in.dataDir)
	if err := b.CreateUser(ctx, "alice@example.org", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	b.Close()
	corruptInboxCounter(t, in.dataDir, 1)
	backupDir := filepath.Join(in.dir, "bk")
	in.mustRun("", "backup", backupDir)

	restored := newInstance(t)
	res := restored.run("", "restore", backupDir)
	if res.code != 1 || !strings.Contains(res.stderr, "store check: 1 problems") || !strings.Contains(res.stderr, "counters say 5 messages") {
		t.Errorf("restore of an inconsistent store: exit %d, stderr %q", res.code, res.stderr)
	}
	if _, err := os.Stat(restored.dataDir); !os.IsNotExist(err) {
		t.Errorf("a refused restore left %s (%v)", restored.dataDir, err)
	}
	// Repaired, the same store backs up and restores.
	in.mustRun("", "check", "--repair")
	backup2 := filepath.Join(in.dir, "bk2")
	in.mustRun("", "backup", backup2)
	restored.mustRun("", "restore", backup2)
	if out := restored.mustRun("", "check"); !strings.Contains(out, "no problems found") {
		t.Errorf("check of the restored store: %q", out)
	}
}
