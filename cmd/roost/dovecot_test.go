package main

// A private Dovecot for the migration tests: Debian's dovecot-imapd and
// dovecot-pop3d, with its own config, base_dir and ports on loopback,
// running unprivileged (as the current user, or as "mail" when the tests
// run as root, since Dovecot gives no mail access to root).

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/roostmail/roost/internal/testutil"
)

const dovecotConf = `base_dir = {{.Dir}}/run
state_dir = {{.Dir}}/state
instance_name = roost-migration-{{.Name}}
listen = 127.0.0.1
protocols = imap pop3
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {{.Dir}}/dovecot.log
default_internal_user = {{.User}}
default_internal_group = {{.Group}}
default_login_user = {{.User}}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{{.Dir}}/home/Maildir
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
  }
  mailbox Trash {
    special_use = \Trash
  }
}
passdb {
  driver = passwd-file
  args = username_format=%u {{.Dir}}/passwd
}
userdb {
  driver = static
  args = uid={{.UID}} gid={{.GID}} home={{.Dir}}/home
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = {{.IMAPPort}}
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  chroot =
  inet_listener pop3 {
    address = 127.0.0.1
    port = {{.POP3Port}}
  }
  inet_listener pop3s {
    port = 0
  }
}
service anvil {
  chroot =
}
`

// dovecot is a running private Dovecot.
type dovecot struct {
	t          *testing.T
	dir        string
	cmd        *exec.Cmd
	exited     chan error
	stopOnce   sync.Once
	imap, pop3 string
	maildir    string
}

// freePort asks the kernel for a free loopback port (Dovecot's config
// needs a number; the port is closed again at once).
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDovecot starts Dovecot with one account, user, and its password.
func startDovecot(t *testing.T, account, password string) *dovecot {
	bin := testutil.RequireBinary(t, "dovecot")
	uid, gid := os.Getuid(), os.Getgid()
	uname := ""
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		uname = u.Username
	}
	gname := ""
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		gname = g.Name
	}
	asRoot := uid == 0
	if asRoot {
		u, err := user.Lookup("mail")
		if err != nil {
			t.Skip("running as root and there is no user \"mail\" to run Dovecot as")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		uname = u.Username
		g, _ := user.LookupGroupId(u.Gid)
		gname = g.Name
	}
	// Not t.TempDir: its parents are private to the test's user, and the
	// Dovecot user must reach this directory.
	dir, err := os.MkdirTemp("", "roost-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	d := &dovecot{t: t, dir: dir, imap: fmt.Sprintf("127.0.0.1:%d", freePort(t)), pop3: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		maildir: filepath.Join(dir, "home", "Maildir"), exited: make(chan error, 1)}
	_, imapPort, _ := net.SplitHostPort(d.imap)
	_, pop3Port, _ := net.SplitHostPort(d.pop3)
	var conf []byte
	{
		var b strings.Builder
		tmpl := template.Must(template.New("conf").Parse(dovecotConf))
		if err := tmpl.Execute(&b, map[string]any{"Dir": dir, "Name": filepath.Base(dir), "User": uname, "Group": gname,
			"UID": uid, "GID": gid, "IMAPPort": imapPort, "POP3Port": pop3Port}); err != nil {
			t.Fatal(err)
		}
		conf = []byte(b.String())
	}
	for path, data := range map[string][]byte{
		"dovecot.conf": conf,
		"passwd":       []byte(account + ":{PLAIN}" + password + "::::::\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, path), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o755); err != nil {
		t.Fatal(err)
	}
	if asRoot {
		filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, uid, gid) })
	}
	d.cmd = exec.Command(bin, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	d.cmd.Stdout, d.cmd.Stderr = os.Stderr, os.Stderr
	if asRoot {
		d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(d.stop)
	for _, addr := range []string{d.imap, d.pop3} {
		deadline := time.Now().Add(readyTimeout)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-d.exited:
				log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
				t.Fatalf("dovecot exited: %v\n%s", err, log)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("dovecot does not listen on %s", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return d
}

// stop ends Dovecot (SIGTERM to the master, which ends its children) and
// waits for it.
func (d *dovecot) stop() {
	d.stopOnce.Do(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(stopTimeout):
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
}
