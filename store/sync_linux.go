package store

import (
	"os"
	"syscall"
)

// fdatasyncFile flushes f's data (and the metadata needed to read it back,
// such as its size) to stable storage, as bbolt does for its commits.
func fdatasyncFile(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE (linux/fs.h); package
// syscall has the call but not its flags.
const syncFileRangeWrite = 2

// startWriteback asks the kernel to begin writing f's dirty pages out,
// without waiting for it. A pinned mail file takes unsynced commits until
// its checkpoint, whose fdatasync would otherwise have all of them to
// write at once (tens of milliseconds during which the file's committer,
// and the deliveries queued behind it, wait); begun early, the writes are
// mostly done by then. Errors are ignored: it is only a hint, and the
// checkpoint's fdatasync reports any real failure.
func startWriteback(f *os.File) {
	syscall.SyncFileRange(int(f.Fd()), 0, 0, syncFileRangeWrite)
}
