package sqlite

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// newTestURing returns a ring, or skips where the kernel refuses io_uring
// (the store then uses fdatasync, which TestStoreFdatasync covers).
func newTestURing(t *testing.T) *uringSyncer {
	t.Helper()
	u, err := newURingSyncer()
	if errors.Is(err, errNoURing) {
		t.Skipf("io_uring is not available here (%v): the store falls back to fdatasync", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.close(); err != nil {
			t.Error(err)
		}
	})
	return u
}

func TestURingDatasync(t *testing.T) {
	u := newTestURing(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Many rounds: each one's completion must be the one it waits for
	// (a stale completion or a lost wake-up would hang or misreport).
	for i := range 2000 {
		if _, err := f.Write([]byte("frame\n")); err != nil {
			t.Fatal(err)
		}
		if err := u.datasync(f); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
	}
}

// TestURingDatasyncError checks that the kernel's error for the sync
// itself reaches the caller: a pipe cannot be synced (EINVAL).
func TestURingDatasyncError(t *testing.T) {
	u := newTestURing(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := u.datasync(w); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("sync of a pipe: got %v, want EINVAL", err)
	}
	// The ring still works after a failed operation.
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := u.datasync(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := u.datasync(f); err == nil {
		t.Fatal("sync of a closed file succeeded")
	}
}

func TestSyncMethod(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{SyncMethod: SyncFdatasync}, SyncFdatasync},
		{Config{Synchronous: "NORMAL"}, ""},
		{Config{SyncMethod: SyncIOURing}, SyncIOURing},
	} {
		if tc.want == SyncIOURing {
			newTestURing(t)
		}
		db, err := Open(filepath.Join(t.TempDir(), "meetsync.db"), tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := db.SyncMethod(); got != tc.want {
			t.Errorf("%+v: SyncMethod() = %q, want %q", tc.cfg, got, tc.want)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "meetsync.db"), Config{SyncMethod: "O_DIRECT"}); err == nil {
		t.Fatal("Open accepted an unknown sync method")
	}
}
