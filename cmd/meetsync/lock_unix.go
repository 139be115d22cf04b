//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive lock on DATA/meetsync.lock so that two
// servers never share one embedded store.
func lockDir(dir string) (func(), error) {
	path := filepath.Join(dir, "meetsync.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another meetsync server (lock %s): %w", dir, path, err)
	}
	return func() { f.Close() }, nil
}
