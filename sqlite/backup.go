package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Backup writes a consistent copy of the store to path, a file that must
// not exist yet, while the store stays in use (the writer and the readers
// go on): the snapshot of one read transaction, by VACUUM INTO, synced to
// disk before it is renamed into place. A store opened on the copy is this
// one as of that commit; the user states written behind the events are
// rebuilt from the events at its first open, as after a crash. The copy
// holds secrets sealed with the store's secret key, not the key.
func (db *DB) Backup(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("backup: %s exists already", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backup: %w", err)
	}
	tmp := path + ".partial"
	_ = os.Remove(tmp) // left by an interrupted backup
	// A connection of its own: the readers are query_only, which refuses
	// even VACUUM INTO's new file. VACUUM INTO reads the store in one
	// read transaction and writes only the new file.
	conn, err := sql.Open("sqlite", "file:"+db.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	return syncFile(filepath.Dir(path)) // the rename itself
}

// syncFile fsyncs a file or a directory.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
