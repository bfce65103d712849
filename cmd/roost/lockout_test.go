package main

// Issue 16: the failed-login lockout protects without being a weapon. A
// distributed guessing attack on an account (wrong passwords from 50
// loopback addresses) locks it for new addresses, but its owner keeps
// logging in from the address they use, over IMAP and POP3, through the
// real listeners of `roost serve` with its default [auth] settings.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// dialFrom connects to addr from the loopback address local (127.0.0.x).
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, local, err)
	}
	c.SetDeadline(time.Now().Add(cmdTimeout))
	return c
}

// imapLogin logs in over IMAP from local and returns the client (nil and
// the error on failure).
func imapLogin(t *testing.T, local, addr, user, pass string) (*imapclient.Client, error) {
	t.Helper()
	c := imapclient.New(dialFrom(t, local, addr), nil)
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func imapResponseCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func TestLockoutAttackLeavesOwnerLoggingIn(t *testing.T) {
	in := newInstance(t)
	// Defaults for [auth], but short pair delays so the test is quick; no
	// per-answer delay in the front ends.
	in.env = []string{"ROOST_AUTH_DELAY=5ms", "ROOST_AUTH_MAX_DELAY=40ms",
		"ROOST_IMAP_AUTH_FAILURE_DELAY=0s", "ROOST_POP3_AUTH_FAILURE_DELAY=0s"}
	srv := in.startServer()
	in.mustRun("alice-pw\n", "user", "add", "alice@example.org")
	in.mustRun("bob-pw\n", "user", "add", "bob@example.org")
	st := in.status()
	const usual = "127.0.0.1"

	// Alice reads her mail from her usual address.
	c, err := imapLogin(t, usual, st["imap"], "alice@example.org", "alice-pw")
	if err != nil {
		t.Fatalf("alice's first login: %v", err)
	}
	c.Logout().Wait()
	c.Close()

	// The attack: 50 addresses, 4 wrong passwords each, all at once.
	const attackers, guesses = 50, 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]int{}
	for i := range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := "127.0.0." + strconv.Itoa(10+i)
			c := imapclient.New(dialFrom(t, local, st["imap"]), nil)
			defer c.Close()
			for g := range guesses {
				err := c.Login("alice@example.org", fmt.Sprintf("guess-%d-%d", i, g)).Wait()
				mu.Lock()
				if err == nil {
					results["ok"]++
				} else {
					results[string(imapResponseCode(err))]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("attack: %d guesses from %d addresses: %v", attackers*guesses, attackers, results)
	if results["ok"] != 0 || results[string(imap.ResponseCodeAuthenticationFailed)]+results[string(imap.ResponseCodeUnavailable)] != attackers*guesses {
		t.Fatalf("attack results %v: want every guess refused", results)
	}
	if results[string(imap.ResponseCodeUnavailable)] == 0 {
		t.Errorf("attack results %v: the account lock never engaged", results)
	}

	// The account is locked for addresses it never logged in from, even
	// with the right password ...
	if _, err := imapLogin(t, "127.0.0.200", st["imap"], "alice@example.org", "alice-pw"); imapResponseCode(err) != imap.ResponseCodeUnavailable {
		t.Errorf("alice from a new address during the attack: %v; want NO [UNAVAILABLE]", err)
	}
	// ... other accounts are not ...
	if c, err := imapLogin(t, "127.0.0.200", st["imap"], "bob@example.org", "bob-pw"); err != nil {
		t.Errorf("bob during the attack on alice: %v", err)
	} else {
		c.Close()
	}
	// ... and alice still works from her usual address, over IMAP ...
	c, err = imapLogin(t, usual, st["imap"], "alice@example.org", "alice-pw")
	if err != nil {
		t.Fatalf("alice from her usual address after the attack: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Errorf("SELECT: %v", err)
	}
	c.Logout().Wait()
	c.Close()
	// ... and POP3.
	pc := dialFrom(t, usual, st["pop3"])
	pop := &textConn{t: t, c: pc, r: bufio.NewReader(pc)}
	pop.reply("+OK")
	pop.send("USER alice@example.org\r\nPASS alice-pw\r\n")
	pop.reply("+OK")
	pop.reply("+OK")
	pop.send("QUIT\r\n")
	pop.reply("+OK")
	pc.Close()

	// The refusals were counted.
	resp, err := http.Get("http://" + st["metrics"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if v := metricValue(string(body), `roost_logins_total{result="locked"}`); v == "" || v == "0" {
		t.Errorf(`roost_logins_total{result="locked"} = %q, want > 0`, v)
	}
	if !strings.Contains(srv.log(), "login refused: too many failures") {
		t.Errorf("no refusal logged")
	}
	srv.stop(syscall.SIGTERM)
}
