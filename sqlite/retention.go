package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/meetsync/meetsync"
)

var _ meetsync.Purger = (*DB)(nil)

// PurgeBefore deletes up to limit of an app's oldest events received
// before `before`, with their finished deliveries and those deliveries'
// attempts, their caller-id records, and the app's idempotency records
// older than `before`. Events from the oldest one with a delivery still
// pending or failed onwards are kept, so no queue loses its head; they go
// once delivered or dead. It returns how many events it deleted.
func (db *DB) PurgeBefore(ctx context.Context, appID string, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = 1000
	}
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	// Replaying the backlog after a crash needs its events: write it first.
	if err := db.materializeAll(ctx); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	defer tx.Rollback()
	var active sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT min(event_pos) FROM deliveries WHERE app_id = ? AND status IN ('pending', 'failed')`,
		appID).Scan(&active); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	bound := int64(1 << 62)
	if active.Valid {
		bound = active.Int64
	}
	// The app's oldest events, run by run: up to limit of them received
	// before `before`; everything of the app up to the newest of those goes
	// (an event committed a moment before one received earlier goes with it).
	var cutoff sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(pos) FROM (SELECT e.pos FROM feed_runs r JOIN events e ON e.pos >= r.first_pos AND e.pos <= r.last_pos
		WHERE r.app_id = ?1 AND e.app_id = ?1 AND e.pos < ?2 AND e.received_at < ?3 ORDER BY r.first_pos, e.pos LIMIT ?4)`,
		appID, bound, micros(before), limit).Scan(&cutoff); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	if !cutoff.Valid {
		return 0, nil
	}
	for _, q := range []string{
		`DELETE FROM delivery_attempts WHERE delivery_pos IN (SELECT pos FROM deliveries WHERE app_id = ? AND event_pos <= ?
			AND status NOT IN ('pending', 'failed'))`,
		`DELETE FROM deliveries WHERE app_id = ? AND event_pos <= ? AND status NOT IN ('pending', 'failed')`,
		`DELETE FROM event_ids WHERE app_id = ? AND pos <= ?`,
		// Chunks that end by the cutoff; a chunk across it keeps entries
		// of purged events, which readers skip.
		`DELETE FROM user_chunks WHERE app_id = ? AND last_pos <= ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, appID, cutoff.Int64); err != nil {
			return 0, fmt.Errorf("purge: %w", err)
		}
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE pos IN (SELECT e.pos FROM feed_runs r JOIN events e ON e.pos >= r.first_pos AND e.pos <= r.last_pos
		WHERE r.app_id = ?1 AND r.first_pos <= ?2 AND e.pos <= ?2 AND e.app_id = ?1)`, appID, cutoff.Int64)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, "DELETE FROM feed_runs WHERE app_id = ? AND last_pos <= ?", appID, cutoff.Int64); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE feed_runs SET first_pos = ?2 + 1 WHERE app_id = ?1 AND first_pos <= ?2", appID, cutoff.Int64); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	// The newest events may be gone now: their positions must not be given again.
	if _, err := tx.ExecContext(ctx, "UPDATE store_meta SET value = ? WHERE key = 'next_pos'", db.nextPos); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE app_id = ? AND created_at < ?`, appID, micros(before)); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	if err := db.commit(tx); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	if r := db.lastRun; r != nil && r.app == appID && r.first <= cutoff.Int64 {
		if r.last <= cutoff.Int64 {
			db.lastRun = nil
		} else {
			db.lastRun = &feedRun{app: r.app, first: cutoff.Int64 + 1, last: r.last}
		}
	}
	return int(n), nil
}
