package sqlite

import (
	"fmt"
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

// fileSyncer is how the walSyncer makes the WAL durable: through io_uring
// where the kernel allows it (see uringSyncer), else with fdatasync.
type fileSyncer struct {
	u *uringSyncer
}

// newFileSyncer returns the syncer method names: SyncAuto takes io_uring
// when it is available and fdatasync otherwise.
func newFileSyncer(method string) (fileSyncer, error) {
	if method == SyncFdatasync {
		return fileSyncer{}, nil
	}
	u, err := newURingSyncer()
	if err != nil {
		if method == SyncIOURing {
			return fileSyncer{}, fmt.Errorf("sqlite: sync method %s: %w", SyncIOURing, err)
		}
		return fileSyncer{}, nil
	}
	return fileSyncer{u: u}, nil
}

func (s fileSyncer) sync(f *os.File) error {
	if s.u != nil {
		return s.u.datasync(f)
	}
	return syncData(f)
}

func (s fileSyncer) method() string {
	if s.u != nil {
		return SyncIOURing
	}
	return SyncFdatasync
}

func (s fileSyncer) close() error {
	if s.u != nil {
		return s.u.close()
	}
	return nil
}
