package sqlite

import "context"

// CrashClose closes the store leaving its backlog unwritten, as a crash
// would (the events are committed; the next Open replays them).
func (db *DB) CrashClose() error { return db.close(false) }

// MaterializeSome writes one batch of the backlog (Materialize.Batch
// users, whatever their age) and returns how many users and feed entries
// it wrote.
func (db *DB) MaterializeSome(ctx context.Context) (int, error) { return db.materialize(ctx, true) }

// BacklogSize returns the number of events not yet materialized.
func (db *DB) BacklogSize() int { return db.backlog.size() }
