package store

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

func TestQueueAddUpdateDeleteAndReopen(t *testing.T) {
	dir := t.TempDir()
	q, err := OpenQueue(Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	// A body over several chunks, and one of exactly one chunk.
	big := bytes.Repeat([]byte("0123456789abcdef"), chunkSize/16*2+7)
	exact := bytes.Repeat([]byte("x"), chunkSize)
	for _, body := range [][]byte{big, exact, []byte("small\r\n")} {
		e, err := q.Add(QueueEntry{From: "alice@example.org", NextAttempt: time.Now(),
			Recipients: []QueueRecipient{{Address: "bob@example.net", State: RecipientPending}}}, body)
		if err != nil {
			t.Fatal(err)
		}
		if e.ID == 0 || e.Size != int64(len(body)) {
			t.Fatalf("entry %+v", e)
		}
		r, err := q.Body(e.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("body of %d: %d bytes, %v; want %d", e.ID, len(got), err, len(body))
		}
	}
	if q.Len() != 3 {
		t.Fatalf("Len %d", q.Len())
	}
	e, err := q.Update(1, func(e *QueueEntry) error {
		e.Recipients[0].State = RecipientDelivered
		e.Attempts++
		return nil
	})
	if err != nil || e.Attempts != 1 || len(e.Pending()) != 0 {
		t.Fatalf("update: %+v %v", e, err)
	}
	if err := q.Delete(2); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := q.Body(2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("body of deleted: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q, err = OpenQueue(Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	list, err := q.List()
	if err != nil || len(list) != 2 || list[0].ID != 1 || list[1].ID != 3 || list[0].Recipients[0].State != RecipientDelivered {
		t.Fatalf("after reopen: %+v %v", list, err)
	}
	// IDs are never reused.
	e, err = q.Add(QueueEntry{From: "a@b.c"}, []byte("x"))
	if err != nil || e.ID != 4 {
		t.Fatalf("new id %d, %v", e.ID, err)
	}
	if _, err := q.Update(99, func(*QueueEntry) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of missing: %v", err)
	}
}
