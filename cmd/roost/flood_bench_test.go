package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkFloodMemory measures what a held connection that never logs in
// costs a real `roost serve` process: its PSS (/proc/PID/smaps_rollup)
// before and after 2,000 idle POP3, SMTP and IMAP connections, each having
// had its greeting, divided by the count. The budget is 64 KiB per
// connection. It listens on ports 27110, 27025 and 27143 (the hardening
// port range).
//
//	go test -run '^$' -bench FloodMemory -benchtime 1x ./cmd/roost/
func BenchmarkFloodMemory(b *testing.B) {
	for _, svc := range []struct{ name, addr, greeting string }{
		{"pop3", "127.0.0.1:27110", "+OK"},
		{"smtp", "127.0.0.1:27025", "220 "},
		{"imap", "127.0.0.1:27143", "* OK"},
	} {
		// A server of its own per protocol: memory freed by one protocol's
		// connections would otherwise be reused by the next and hide it.
		per := floodPSS(b, svc.addr, svc.greeting)
		b.ReportMetric(per, "KiB/"+svc.name+"-conn")
		if per > 64 {
			b.Errorf("%s: %.1f KiB per held connection, budget 64 KiB", svc.name, per)
		}
	}
}

// floodPSS starts roost serve, holds 2,000 connections to addr that each
// get their greeting and returns the server's PSS growth per connection.
func floodPSS(b *testing.B, addr, greeting string) float64 {
	const n = 2000
	dir := b.TempDir()
	config := filepath.Join(dir, "roost.toml")
	cfg := fmt.Sprintf(`data_dir = %q
hostname = "mail.test"
[smtp]
listen = "127.0.0.1:27025"
max_connections = 3000
max_connections_per_ip = 5000
max_unauthenticated = 2500
[lmtp]
listen = ""
[submission]
listen = ""
tls_listen = ""
[imap]
listen = "127.0.0.1:27143"
tls_listen = ""
max_connections = 3000
max_connections_per_ip = 5000
max_unauthenticated = 2500
[pop3]
listen = "127.0.0.1:27110"
tls_listen = ""
max_connections = 3000
max_connections_per_ip = 5000
max_unauthenticated = 2500
[http]
listen = ""
`, filepath.Join(dir, "data"))
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(roostBin, "serve", "--config", config)
	cmd.Env = environ()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	deadline := time.Now().Add(readyTimeout)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("roost serve does not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hold := func(count int) []net.Conn {
		conns := make([]net.Conn, 0, count)
		for i := 0; i < count; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatalf("connection %d to %s: %v", i, addr, err)
			}
			c.SetDeadline(time.Now().Add(time.Minute))
			l, err := bufio.NewReaderSize(c, 64).ReadString('\n')
			if err != nil || !strings.HasPrefix(l, greeting) {
				b.Fatalf("connection %d to %s: greeting %q, %v", i, addr, l, err)
			}
			conns = append(conns, c)
		}
		return conns
	}
	// Warm up: the first connections pay for one-time allocations.
	for _, c := range hold(50) {
		c.Close()
	}
	time.Sleep(time.Second)
	before := pss(b, cmd.Process.Pid)
	conns := hold(n)
	time.Sleep(time.Second) // let the sessions settle into their reads
	after := pss(b, cmd.Process.Pid)
	for _, c := range conns {
		c.Close()
	}
	per := float64(after-before) / n
	b.Logf("%s: PSS %d KiB before, %d KiB with %d idle connections: %.1f KiB each", addr, before, after, n, per)
	return per
}

// pss returns a process's proportional set size in KiB.
func pss(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		b.Skipf("no smaps_rollup: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(rest)
			if kib, err := strconv.ParseInt(f[0], 10, 64); err == nil && len(f) == 2 && f[1] == "kB" {
				return kib
			}
		}
	}
	b.Fatalf("no Pss line in smaps_rollup of %d", pid)
	return 0
}
