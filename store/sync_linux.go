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
