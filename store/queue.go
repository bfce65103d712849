package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The outbound queue lives in a file of its own, queue.db beside roost.db:
// messages waiting to be sent, each with its envelope, per-recipient state
// and the time of its next attempt. The store does not know what sending
// is; it keeps opaque messages durable until the caller deletes them.
//
// Layout of queue.db:
//
//	q/<id>            -> QueueEntry JSON (envelope and state, no body)
//	b/<id><chunk>     -> up to chunkSize bytes of the message
//
// Writes share the mail files' group commit (mailFile.update), so
// concurrent submissions share an fsync.
var (
	bucketQueue     = []byte("q")
	bucketQueueBody = []byte("b")
)

// QueueFileName is the queue's file inside the store directory.
const QueueFileName = "queue.db"

// RecipientState is where one recipient of a queued message stands.
type RecipientState string

const (
	RecipientPending   RecipientState = "pending"   // still to be delivered
	RecipientDelivered RecipientState = "delivered" // accepted by the next hop or stored
	RecipientFailed    RecipientState = "failed"    // given up; the sender is told
)

// QueueRecipient is one recipient of a queued message.
type QueueRecipient struct {
	Address string         `json:"address"`
	State   RecipientState `json:"state"`
	// LastResult is what the last attempt for this recipient came to (a
	// reply or an error text), for the admin and for failure reports;
	// Status is its status code and Remote the host that gave it (both
	// opaque here).
	LastResult string    `json:"last_result,omitempty"`
	Status     string    `json:"status,omitempty"`
	Remote     string    `json:"remote,omitempty"`
	Updated    time.Time `json:"updated,omitempty"`
	// Notified is set once the sender has been told of a failure.
	Notified bool `json:"notified,omitempty"`
}

// QueueEntry is a queued message without its body.
type QueueEntry struct {
	ID      uint64    `json:"id"`
	Created time.Time `json:"created"`
	// From is the envelope sender; Account the account that submitted it.
	From    string `json:"from"`
	Account string `json:"account,omitempty"`
	Size    int64  `json:"size"`
	// Attempts counts the attempts made so far; NextAttempt is when the
	// next one is due.
	Attempts    int              `json:"attempts"`
	NextAttempt time.Time        `json:"next_attempt"`
	LastAttempt time.Time        `json:"last_attempt,omitempty"`
	Recipients  []QueueRecipient `json:"recipients"`
}

// Pending returns the recipients still to be delivered.
func (e *QueueEntry) Pending() []QueueRecipient {
	var out []QueueRecipient
	for _, r := range e.Recipients {
		if r.State == RecipientPending {
			out = append(out, r)
		}
	}
	return out
}

// Queue is the durable outbound queue. It is safe for concurrent use.
type Queue struct {
	f *mailFile
}

// OpenQueue opens (creating if needed) the queue file in opts.Dir. It is
// separate from Open so the queue's life does not depend on the mail files'.
func OpenQueue(opts Options) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: no directory given")
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 500 * time.Millisecond
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", opts.Dir, err)
	}
	f, err := openMailFile(filepath.Join(opts.Dir, QueueFileName), opts)
	if err != nil {
		return nil, err
	}
	err = f.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketQueue, bucketQueueBody} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.close()
		return nil, fmt.Errorf("store: init queue: %w", err)
	}
	return &Queue{f: f}, nil
}

// Close closes the queue file.
func (q *Queue) Close() error { return q.f.close() }

// Add stores a new message and returns its ID once it is durable. The ID,
// Size and Created fields of e are filled in here.
func (q *Queue) Add(e QueueEntry, body []byte) (QueueEntry, error) {
	if e.Created.IsZero() {
		e.Created = time.Now().UTC()
	}
	e.Size = int64(len(body))
	err := q.f.update(func(tx *bolt.Tx) error {
		qb := tx.Bucket(bucketQueue)
		id, err := qb.NextSequence()
		if err != nil {
			return err
		}
		e.ID = id
		bb := tx.Bucket(bucketQueueBody)
		bb.FillPercent = 1.0 // keys only ever grow
		for i := 0; i*chunkSize < len(body) || i == 0; i++ {
			end := min((i+1)*chunkSize, len(body))
			if err := bb.Put(bodyKey(id, uint32(i)), body[i*chunkSize:end]); err != nil {
				return err
			}
		}
		return putJSON(qb, u64(id), e)
	})
	if err != nil {
		return QueueEntry{}, fmt.Errorf("store: queue add: %w", err)
	}
	return e, nil
}

func bodyKey(id uint64, chunk uint32) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, id)
	binary.BigEndian.PutUint32(k[8:], chunk)
	return k
}

// Get returns the entry with id (ErrNotFound if there is none).
func (q *Queue) Get(id uint64) (QueueEntry, error) {
	var e QueueEntry
	err := q.f.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketQueue).Get(u64(id))
		if v == nil {
			return fmt.Errorf("queued message %d: %w", id, ErrNotFound)
		}
		return json.Unmarshal(v, &e)
	})
	return e, err
}

// List returns every entry, oldest first.
func (q *Queue) List() ([]QueueEntry, error) {
	var out []QueueEntry
	err := q.f.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
			var e QueueEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("queued message %x: %w", k, err)
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// Len returns the number of queued messages.
func (q *Queue) Len() int {
	n := 0
	q.f.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketQueue).Stats().KeyN
		return nil
	})
	return n
}

// Update changes an entry in one durable transaction (ErrNotFound if it
// is gone, e.g. deleted by the admin meanwhile).
func (q *Queue) Update(id uint64, fn func(*QueueEntry) error) (QueueEntry, error) {
	var e QueueEntry
	err := q.f.update(func(tx *bolt.Tx) error {
		qb := tx.Bucket(bucketQueue)
		v := qb.Get(u64(id))
		if v == nil {
			return fmt.Errorf("queued message %d: %w", id, ErrNotFound)
		}
		e = QueueEntry{}
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		if err := fn(&e); err != nil {
			return err
		}
		e.ID = id
		return putJSON(qb, u64(id), e)
	})
	return e, err
}

// Delete removes an entry and its body (ErrNotFound if there is none).
func (q *Queue) Delete(id uint64) error {
	return q.f.update(func(tx *bolt.Tx) error {
		qb := tx.Bucket(bucketQueue)
		if qb.Get(u64(id)) == nil {
			return fmt.Errorf("queued message %d: %w", id, ErrNotFound)
		}
		if err := qb.Delete(u64(id)); err != nil {
			return err
		}
		c := tx.Bucket(bucketQueueBody).Cursor()
		prefix := u64(id)
		for k, _ := c.Seek(prefix); k != nil && string(k[:8]) == string(prefix); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Body returns a reader over a queued message's body. It reads one chunk
// per read transaction, so a slow reader (a remote server taking the
// message) never holds the file open for writers.
func (q *Queue) Body(id uint64) (io.Reader, error) {
	if _, err := q.Get(id); err != nil {
		return nil, err
	}
	return &queueBody{q: q, id: id}, nil
}

type queueBody struct {
	q     *Queue
	id    uint64
	chunk uint32
	buf   []byte
	eof   bool
}

func (r *queueBody) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		err := r.q.f.db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketQueueBody).Get(bodyKey(r.id, r.chunk))
			if v == nil {
				if r.chunk == 0 {
					return fmt.Errorf("queued message %d: body: %w", r.id, ErrNotFound)
				}
				r.eof = true
				return nil
			}
			r.buf = append(r.buf[:0], v...)
			return nil
		})
		if err != nil {
			return 0, err
		}
		r.chunk++
		if len(r.buf) < chunkSize {
			r.eof = true // a short chunk is the last one
		}
		if len(r.buf) == 0 && r.eof {
			return 0, io.EOF
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
