//go:build !linux

package store

import "os"

// fdatasyncFile flushes f to stable storage (fsync where there is no
// fdatasync).
func fdatasyncFile(f *os.File) error { return f.Sync() }
