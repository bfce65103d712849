package pop3d

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// textMessage is a CRLF message of about size octets with 76-column lines,
// some of which begin with a dot.
func textMessage(seq, size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 200)
	fmt.Fprintf(&b, "From: bob@example.net\r\nTo: %s\r\nSubject: message %d\r\nMessage-ID: <%d@example.net>\r\n\r\n", testUser, seq, seq)
	line := strings.Repeat("abcdefghij", 8)[:74]
	for i := 0; b.Len() < size; i++ {
		if i%17 == 0 {
			b.WriteString(".")
			b.WriteString(line[1:])
		} else {
			b.WriteString(line)
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// drain reads a multi-line response and returns the octets of the message
// (unstuffed) and, with hash, their SHA-256, without holding the message.
func (c *client) drain(hash bool) (int64, [32]byte) {
	c.t.Helper()
	h := sha256.New()
	var n int64
	for {
		l, err := c.br.ReadSlice('\n')
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if len(l) == 3 && l[0] == '.' && l[1] == '\r' {
			var sum [32]byte
			h.Sum(sum[:0])
			return n, sum
		}
		if l[0] == '.' {
			l = l[1:]
		}
		if hash {
			h.Write(l)
		}
		n += int64(len(l))
	}
}

// RETR of a 50 MiB message streams from the store: the server allocates a
// small fraction of the message, not the message.
func TestRetrLargeMessageStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MiB message")
	}
	e := newEnv(t, envConfig{})
	big := textMessage(1, 50<<20-4096)
	e.deliver(big)
	wantSum := sha256.Sum256(big)
	wantLen := int64(len(big))
	big = nil
	c := dial(t, e.addr)
	c.conn.SetDeadline(time.Now().Add(5 * ioTimeout))
	c.login()

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if r := c.expectOK("RETR 1"); r != fmt.Sprintf("+OK %d octets", wantLen) {
		t.Errorf("RETR status %q", r)
	}
	n, sum := c.drain(true)
	runtime.ReadMemStats(&after)
	if n != wantLen || sum != wantSum {
		t.Errorf("RETR sent %d octets (sha256 %x), want %d (%x)", n, sum[:8], wantLen, wantSum[:8])
	}
	// The store's 256 KiB chunk, the 64 KiB copy buffer, small change.
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("heap allocated during a %d MiB RETR: %d KiB", wantLen>>20, allocated>>10)
	if allocated > 4<<20 {
		t.Errorf("RETR of %d MiB allocated %d MiB: not streaming", wantLen>>20, allocated>>20)
	}
	c.expectOK("QUIT")
}

// BenchmarkRETR downloads a maildrop of 1,000 messages of about 50 kB over
// loopback with RETR, one command at a time as fetchmail does, and reports
// the throughput in MB/s (message octets) and the time of a login, which
// includes building the message list.
func BenchmarkRETR(b *testing.B) {
	const count, size = 1000, 50_000
	e := newEnv(b, envConfig{})
	var total int64
	msgs := make([][]byte, count)
	for i := range msgs {
		msgs[i] = textMessage(i, size)
		total += int64(len(msgs[i]))
	}
	e.deliver(msgs...)
	msgs = nil
	cmds := make([]string, count)
	for i := range cmds {
		cmds[i] = fmt.Sprintf("RETR %d", i+1)
	}

	var login time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c := dial(b, e.addr)
		c.br = bufio.NewReaderSize(c.conn, 64<<10)
		c.conn.SetDeadline(time.Now().Add(5 * time.Minute))
		c.expectOK("USER " + testUser)
		t0 := time.Now()
		c.expectOK("PASS " + testPass)
		login += time.Since(t0)
		b.StartTimer()
		var got int64
		for _, cmd := range cmds {
			c.expectOK(cmd)
			n, _ := c.drain(false)
			got += n
		}
		b.StopTimer()
		if got != total {
			b.Fatalf("downloaded %d octets, want %d", got, total)
		}
		c.expectOK("QUIT")
		c.conn.Close()
		b.StartTimer()
	}
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(total)*float64(b.N)/1e6/secs, "MB/s")
	b.ReportMetric(float64(count)*float64(b.N)/secs, "msgs/s")
	b.ReportMetric(float64(login.Milliseconds())/float64(b.N), "login-ms")
}
