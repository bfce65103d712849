package imapd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/roostmail/roost/backend"
)

// benchServer serves be on a loopback port until stop.
func benchServer(b *testing.B, be *backend.Backend) (addr string, stop func()) {
	srv, err := New(Options{Backend: be, AuthFailureDelay: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	return l.Addr().String(), func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			b.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			b.Errorf("serve: %v", err)
		}
	}
}

// BenchmarkBigMailbox mirrors roost-bench's bigbox scenario
// (cmd/roost-bench/bigbox.go) in process: one INBOX of N tiny messages
// (ROOST_BIGBOX_N, default 100000), then, over a loopback socket with
// imapclient, SELECT, FETCH 1:* (FLAGS) and UID SEARCH UNSEEN. The fill
// appends concurrently (NoSync) instead of delivering one by one.
func BenchmarkBigMailbox(b *testing.B) {
	n := 100000
	if v := os.Getenv("ROOST_BIGBOX_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("ROOST_BIGBOX_N=%q: want a positive number", v)
		}
	}
	be, err := backend.New(backend.Options{DataDir: b.TempDir(), NoSync: true, LoginCacheTTL: -1, Hostname: "mx.example.org"})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	ctx := context.Background()
	if err := be.CreateUser(ctx, testUser, testPass); err != nil {
		b.Fatal(err)
	}
	u, err := be.LookupUser(ctx, testUser)
	if err != nil {
		b.Fatal(err)
	}

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				msg := fmt.Sprintf("From: a@example.com\r\nTo: %s\r\nSubject: m%d\r\nMessage-ID: <%d@example.com>\r\n\r\nhello %d\r\n", testUser, i, i, i)
				if _, err := u.Append(ctx, "INBOX", strings.NewReader(msg), nil, time.Time{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.Logf("fill: %d messages in %v", n, time.Since(start).Round(time.Millisecond))

	addr, stop := benchServer(b, be)
	defer stop()

	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		b.Fatal(err)
	}
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*

	b.Run("Select", func(b *testing.B) {
		for b.Loop() {
			data, err := c.Select("INBOX", nil).Wait()
			if err != nil {
				b.Fatal(err)
			}
			if int(data.NumMessages) != n {
				b.Fatalf("SELECT: %d messages, want %d", data.NumMessages, n)
			}
		}
	})
	b.Run("FetchFlags", func(b *testing.B) {
		for b.Loop() {
			cmd := c.Fetch(all, &imap.FetchOptions{Flags: true})
			got := 0
			for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
				got++
				for item := msg.Next(); item != nil; item = msg.Next() {
				}
			}
			if err := cmd.Close(); err != nil {
				b.Fatal(err)
			}
			if got != n {
				b.Fatalf("FETCH: %d messages, want %d", got, n)
			}
		}
	})
	// The same FETCH read by a client that only finds the tagged line: the
	// server's share of the cost (imapclient's parsing dominates above).
	b.Run("FetchFlagsRaw", func(b *testing.B) {
		rc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer rc.Close()
		br := bufio.NewReaderSize(rc, 64<<10)
		readTo := func(tag string) int {
			lines := 0
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					b.Fatal(err)
				}
				lines++
				if bytes.HasPrefix(line, []byte(tag+" ")) {
					return lines
				}
			}
		}
		br.ReadSlice('\n')
		fmt.Fprintf(rc, "l LOGIN %s %q\r\ns SELECT INBOX\r\n", testUser, testPass)
		readTo("l")
		readTo("s")
		for b.Loop() {
			io.WriteString(rc, "f FETCH 1:* (FLAGS)\r\n")
			if got := readTo("f"); got != n+1 {
				b.Fatalf("FETCH: %d lines, want %d", got, n+1)
			}
		}
	})
	b.Run("UIDSearchUnseen", func(b *testing.B) {
		for b.Loop() {
			data, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
			if err != nil {
				b.Fatal(err)
			}
			if uids := data.AllUIDs(); len(uids) != n {
				b.Fatalf("UID SEARCH UNSEEN: %d found, want %d", len(uids), n)
			}
		}
	})
	b.Run("FetchOne", func(b *testing.B) {
		for b.Loop() {
			cmd := c.Fetch(imap.SeqSetNum(uint32((n+1)/2)), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
			if _, err := cmd.Collect(); err != nil {
				b.Fatal(err)
			}
		}
	})
	if err := c.Logout().Wait(); err != nil {
		b.Fatal(err)
	}
}
