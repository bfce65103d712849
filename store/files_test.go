package store

import (
	"fmt"
	"testing"
	"time"
)

// TestOpenFilesBounded: with MaxOpenFiles, at most that many mail files
// stay open while accounts are used one after the other; files are opened
// again on demand with their mail intact; a file a session holds is never
// closed (it is the same open file throughout), and the bound may only be
// passed while more files than it are held.
func TestOpenFilesBounded(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), NoSync: true, MaxOpenFiles: 3, IdleClose: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 10
	stores := make([]*Mailstore, n)
	for i := range stores {
		stores[i], _ = newAccount(t, s, fmt.Sprintf("u%d@x.org", i))
	}
	if got := s.OpenFiles(); got > 3 {
		t.Fatalf("%d files open, bound 3", got)
	}
	release, err := stores[0].Hold()
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	held := s.files[stores[0].path]
	s.mu.Unlock()
	for round := 0; round < 3; round++ {
		for i, ms := range stores {
			if _, err := ms.Append("INBOX", msg(round*n+i), Limits{}); err != nil {
				t.Fatal(err)
			}
			if got := s.OpenFiles(); got > 3 {
				t.Fatalf("%d files open, bound 3", got)
			}
		}
	}
	s.mu.Lock()
	same := s.files[stores[0].path] == held
	s.mu.Unlock()
	if !same {
		t.Fatal("the held file was closed and opened again")
	}
	release()
	for i, ms := range stores {
		if got := checkCounters(t, ms, 1).Messages; got != 3 {
			t.Fatalf("account %d: %d messages, want 3", i, got)
		}
	}

	// Five held: all five stay open, past the bound.
	var releases []func()
	for _, ms := range stores[:5] {
		r, err := ms.Hold()
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	if got := s.OpenFiles(); got < 5 {
		t.Fatalf("%d files open while five are held", got)
	}
	for _, r := range releases {
		r()
	}
	stores[9].Mailboxes() // an open evicts down to the bound again
	if got := s.OpenFiles(); got > 3 {
		t.Fatalf("%d files open after the holds ended, bound 3", got)
	}
}

// TestIdleFilesClosed: files nobody uses are closed after IdleClose, held
// ones are not, and a closed file opens again when it is needed.
func TestIdleFilesClosed(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), NoSync: true, IdleClose: 20 * time.Millisecond, checkpointAge: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, _ := newAccount(t, s, "a@x.org")
	b, _ := newAccount(t, s, "b@x.org")
	release, err := b.Hold()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append("INBOX", msg(1), Limits{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle file to close", func() bool { return s.OpenFiles() == 1 })
	s.mu.Lock()
	_, bOpen := s.files[b.path]
	s.mu.Unlock()
	if !bOpen {
		t.Fatal("the held file was closed")
	}
	if got := checkCounters(t, a, 1).Messages; got != 1 {
		t.Fatalf("after reopening: %d messages, want 1", got)
	}
	release()
	waitFor(t, "both files to close", func() bool { return s.OpenFiles() == 0 })
}
