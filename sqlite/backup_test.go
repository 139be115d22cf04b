package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sqlite"
)

// openWithApp opens a store at path (closed when the test ends) with one
// app, "test", whose states wait in the backlog under cfg.
func openWithApp(t *testing.T, path string, cfg sqlite.Config) (*sqlite.DB, *meetsync.App) {
	t.Helper()
	db, err := sqlite.Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "test", CreatedAt: now}
	key, _ := meetsync.NewAPIKey(app.ID, now)
	if err := db.AppCreate(context.Background(), app, key); err != nil {
		t.Fatal(err)
	}
	return db, app
}

// TestBackup: a backup taken while states are still in the backlog (not
// yet written behind their events) opens as the store was at that moment,
// whatever the store does after it; a backup never overwrites a file.
func TestBackup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	cfg := sqlite.Config{Materialize: sqlite.MaterializeConfig{After: time.Hour, MaxPending: 1 << 30, Batch: 3}}
	db, app := openWithApp(t, filepath.Join(dir, "meetsync.db"), cfg)
	w := newWorkload(t, 7, app.ID)
	for range 40 {
		w.append(ctx, db)
	}
	if _, err := db.MaterializeSome(ctx); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		w.append(ctx, db)
	}
	if db.BacklogSize() == 0 {
		t.Fatal("nothing in the backlog: the test would prove less")
	}
	before := takeSnapshot(ctx, t, db, app.ID, w.users)
	backup := filepath.Join(dir, "backup.db")
	if err := db.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	for range 20 { // after the backup: not in it
		w.append(ctx, db)
	}
	if err := db.Backup(ctx, backup); err == nil {
		t.Error("a second backup to the same file overwrote it")
	}

	copyDB, err := sqlite.Open(backup, cfg)
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	defer copyDB.Close()
	compareSnapshots(t, "the backup", before, takeSnapshot(ctx, t, copyDB, app.ID, w.users))
	if a, err := copyDB.AppGet(ctx, app.ID); err != nil || a.Name != "test" {
		t.Errorf("the backup's app: %+v, %v", a, err)
	}
}

// TestBeside: a store opened beside the server that owns it (an admin
// command) rebuilds no backlog and writes no user state, even when the
// server has states not written yet; its own calls (an app) work.
func TestBeside(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meetsync.db")
	db, app := openWithApp(t, path, sqlite.Config{Materialize: sqlite.MaterializeConfig{After: time.Hour, MaxPending: 1 << 30}})
	now := time.Now().UTC()
	w := newWorkload(t, 3, app.ID)
	for range 30 {
		w.append(ctx, db)
	}
	if db.BacklogSize() == 0 {
		t.Fatal("nothing in the backlog: the test would prove nothing")
	}
	rows := func() (n int) {
		t.Helper()
		raw, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if err := raw.QueryRow("SELECT count(*) FROM users").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := rows()
	admin, err := sqlite.Open(path, sqlite.Config{NoMigrate: true, Beside: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := admin.BacklogSize(); n != 0 {
		t.Errorf("beside: a backlog of %d events rebuilt", n)
	}
	other := &meetsync.App{ID: meetsync.NewID("app"), Name: "other", CreatedAt: now}
	key2, _ := meetsync.NewAPIKey(other.ID, now)
	if err := admin.AppCreate(ctx, other, key2); err != nil {
		t.Fatal(err)
	}
	if err := admin.Close(); err != nil {
		t.Fatal(err)
	}
	if after := rows(); after != before {
		t.Errorf("beside wrote user states: %d users rows, then %d", before, after)
	}
	if a, err := db.AppGet(ctx, other.ID); err != nil || a.Name != "other" {
		t.Errorf("the server does not see the app made beside it: %+v, %v", a, err)
	}
}
