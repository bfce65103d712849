#!/usr/bin/env bash
# Regenerates uidl.txt: the UIDL answer of a real Dovecot pop3d for a Maildir
# whose dovecot-uidlist (this directory's dovecot-uidlist) fixes UIDVALIDITY
# and the UIDs. TestUIDLMatchesDovecot compares Roost's UIDL with it.
#
# Needs dovecot-core and dovecot-pop3d (Debian), run as root (Dovecot starts
# as root and drops to the `mail` user). Starts a private instance (own
# base_dir, loopback port PORT, default 26110), asks UIDL with Python's
# poplib, stops it and removes its directory.
#
#   sudo pop3d/testdata/dovecot-uidl/generate.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${PORT:-26110}
work=$(mktemp -d /tmp/dovecot-uidl.XXXXXX)
chmod 0755 "$work" # the auth and mail processes run as other users
trap 'status=$?; [ $status -eq 0 ] || tail -n 20 "$work/dovecot.log" >&2; kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT

home=$work/home/alice
mkdir -p "$home/Maildir/cur" "$home/Maildir/new" "$home/Maildir/tmp"
cp "$here/dovecot-uidlist" "$home/Maildir/dovecot-uidlist"
# One message per uidlist line, under the file name the line gives.
n=0
grep -v '^3 ' "$here/dovecot-uidlist" | while read -r uid name; do
	n=$((n + 1))
	printf 'From: a@example.org\r\nSubject: message %s\r\n\r\nbody %s\r\n' "$uid" "$uid" >"$home/Maildir/cur/${name#:}:2,"
done
chown -R mail:mail "$work/home"
printf 'alice@example.org:{PLAIN}secret::::::\n' >"$work/passwd"
chgrp dovecot "$work/passwd"; chmod 0640 "$work/passwd"

cat >"$work/dovecot.conf" <<CONF
base_dir = $work/run
state_dir = $work/state
instance_name = roost-uidl-fixture
listen = 127.0.0.1
protocols = pop3
ssl = no
disable_plaintext_auth = no
log_path = $work/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
first_valid_gid = 1
mail_uid = mail
mail_gid = mail
mail_location = maildir:~/Maildir
# pop3_uidl_format stays at its default, %08Xu%08Xv.
passdb {
  driver = passwd-file
  args = username_format=%u $work/passwd
}
userdb {
  driver = static
  args = home=$work/home/%n
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $port
  }
  inet_listener pop3s {
    port = 0
  }
}
service anvil {
  chroot =
}
service stats {
  chroot =
}
CONF
dovecot -F -c "$work/dovecot.conf" &
echo $! >"$work/pid"
python3 - "$port" "$here/uidl.txt" <<'PY'
import poplib, subprocess, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
for _ in range(100):
    try:
        p = poplib.POP3("127.0.0.1", port, timeout=10)
        break
    except OSError:
        time.sleep(0.1)
p.user("alice@example.org")
p.pass_("secret")
resp, lines, _ = p.uidl()
p.quit()
version = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.strip()
with open(out, "w") as f:
    f.write("# UIDL of Dovecot %s pop3d for dovecot-uidlist (see generate.sh)\n" % version)
    for l in lines:
        f.write(l.decode() + "\n")
PY
cat "$here/uidl.txt"
