package backend

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Spool holds one incoming message while it is received. The first
// SpoolMemoryBytes stay in memory; a larger message goes to an unlinked
// temporary file, which Bytes maps into memory rather than reading, so a
// 50 MiB message costs no 50 MiB of heap before it is stored.
type Spool struct {
	dir      string
	memLimit int
	max      int64

	buf    bytes.Buffer
	f      *os.File
	size   int64
	mapped []byte
	tooBig bool
}

// NewSpool returns an empty spool limited to MaxMessageBytes.
func (b *Backend) NewSpool() *Spool {
	return &Spool{dir: filepath.Join(b.opts.DataDir, "tmp"), memLimit: b.opts.SpoolMemoryBytes, max: b.opts.MaxMessageBytes}
}

// NewSpoolSharing returns an empty spool for one more message of a
// command whose other messages hold inMemory octets in memory (their
// MemoryBytes): together they keep at most SpoolMemoryBytes there, and the
// rest goes to files, so that an IMAP MULTIAPPEND of many messages holds
// no more memory than one.
func (b *Backend) NewSpoolSharing(inMemory int) *Spool {
	s := b.NewSpool()
	s.memLimit = max(0, s.memLimit-inMemory)
	return s
}

// MemoryBytes returns the memory the spool holds for its message (none
// once it is in a file).
func (s *Spool) MemoryBytes() int {
	if s.f != nil {
		return 0
	}
	return s.buf.Cap()
}

// Write appends p. Past the size limit it keeps counting but stores nothing
// and returns ErrTooBig.
func (s *Spool) Write(p []byte) (int, error) {
	s.size += int64(len(p))
	if s.tooBig || (s.max > 0 && s.size > s.max) {
		s.tooBig = true
		return len(p), ErrTooBig
	}
	if s.f == nil && s.buf.Len()+len(p) > s.memLimit {
		f, err := os.CreateTemp(s.dir, "spool-*")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		// Unlinked at once: a crash can leave no stray file behind.
		os.Remove(f.Name())
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			f.Close()
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.buf = bytes.Buffer{}
		s.f = f
	}
	if s.f != nil {
		n, err := s.f.Write(p)
		if err != nil {
			err = fmt.Errorf("spool: %w", err)
		}
		return n, err
	}
	return s.buf.Write(p)
}

// Size returns the number of bytes written, including any past the limit.
func (s *Spool) Size() int64 { return s.size }

// TooBig reports whether the message exceeded the size limit.
func (s *Spool) TooBig() bool { return s.tooBig }

// Bytes returns the whole message. For a file-backed spool it is a
// read-only memory mapping, valid until Close.
func (s *Spool) Bytes() ([]byte, error) {
	if s.tooBig {
		return nil, ErrTooBig
	}
	if s.f == nil {
		return s.buf.Bytes(), nil
	}
	if s.mapped != nil {
		return s.mapped, nil
	}
	if s.size == 0 {
		return nil, nil
	}
	m, err := syscall.Mmap(int(s.f.Fd()), 0, int(s.size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("spool: mmap: %w", err)
	}
	s.mapped = m
	return m, nil
}

// Reader returns a reader over the message from its start.
func (s *Spool) Reader() (io.Reader, error) {
	b, err := s.Bytes()
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}

// Close releases the memory and the temporary file.
func (s *Spool) Close() error {
	if s.mapped != nil {
		syscall.Munmap(s.mapped)
		s.mapped = nil
	}
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	s.buf = bytes.Buffer{}
	return nil
}
