//go:build unix

package client

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockQueueDir takes an exclusive lock on DIR/queue.lock, so that two
// processes never share one queue. The lock goes with the process.
func lockQueueDir(dir string) (func(), error) {
	path := filepath.Join(dir, "queue.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock queue: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("queue %s is in use by another process (lock %s): %w", dir, path, err)
	}
	return func() { f.Close() }, nil
}

// syncDir makes the directory's entries (created, renamed files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
