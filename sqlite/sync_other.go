//go:build !linux

package sqlite

import (
	"fmt"
	"os"
)

// fileSyncer makes the WAL durable with the platform's file sync.
type fileSyncer struct{}

func newFileSyncer(method string) (fileSyncer, error) {
	if method == SyncIOURing {
		return fileSyncer{}, fmt.Errorf("sqlite: sync method %s needs Linux", SyncIOURing)
	}
	return fileSyncer{}, nil
}

func (fileSyncer) sync(f *os.File) error { return f.Sync() }
func (fileSyncer) method() string        { return SyncFdatasync }
func (fileSyncer) close() error          { return nil }
