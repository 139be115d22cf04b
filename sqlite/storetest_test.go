package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sqlite"
	"github.com/meetsync/meetsync/storetest"
)

// TestStore runs the store conformance suite on a fresh SQLite file per
// test, with every capability (sessions, invitations, types, purge).
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) meetsync.Store {
		db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}, storetest.WithCapabilities(storetest.AllCapabilities))
}

// TestStoreFdatasync runs the suite with the plain fdatasync group sync
// (what a kernel without io_uring gets; TestStore uses io_uring here).
func TestStoreFdatasync(t *testing.T) {
	storetest.Run(t, func(t *testing.T) meetsync.Store {
		db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{SyncMethod: sqlite.SyncFdatasync})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}, storetest.WithCapabilities(storetest.AllCapabilities))
}
