//go:build !linux

package store

import "os"

// fdatasyncFile flushes f to stable storage (fsync where there is no
// fdatasync).
func fdatasyncFile(f *os.File) error { return f.Sync() }

// startWriteback does nothing where there is no sync_file_range: the
// checkpoint's sync writes everything (see the Linux version).
func startWriteback(*os.File) {}
