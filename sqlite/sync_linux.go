package sqlite

import (
	"os"
	"syscall"
)

// syncData flushes f's data (and the metadata needed to read it, such as
// its size) to the disk: fdatasync, as SQLite itself uses on Linux.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
