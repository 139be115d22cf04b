package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/meetsync/meetsync"
)

var _ meetsync.TypeStore = (*DB)(nil)

const (
	eventTypeCols = "t.app_id, t.name, t.description, t.version, t.debounce, t.created_at, t.updated_at, v.version, v.schema, v.created_at"
	eventTypeFrom = " FROM event_types t JOIN event_type_versions v ON v.app_id = t.app_id AND v.name = t.name"
)

func scanEventType(sc scanner) (*meetsync.EventType, error) {
	var et meetsync.EventType
	var created, updated, vcreated int64
	var schema string
	if err := sc.Scan(&et.AppID, &et.Name, &et.Description, &et.LatestVersion, &et.Debounce, &created, &updated,
		&et.Version, &schema, &vcreated); err != nil {
		return nil, err
	}
	et.Schema = []byte(schema)
	et.CreatedAt, et.UpdatedAt, et.VersionCreatedAt = fromMicros(created), fromMicros(updated), fromMicros(vcreated)
	return &et, nil
}

// EventTypePut registers a type or updates it; a changed schema becomes a
// new version. It runs under the write lock, which also guards the cache
// of debounced types the event fan-out reads: the next append sees the change.
func (db *DB) EventTypePut(ctx context.Context, p *meetsync.EventTypePutParams) (*meetsync.EventType, bool, error) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, fmt.Errorf("put event type: %w", err)
	}
	defer tx.Rollback()
	now := micros(p.Now)
	cur, err := scanEventType(tx.QueryRowContext(ctx, "SELECT "+eventTypeCols+eventTypeFrom+" AND v.version = t.version WHERE t.app_id = ? AND t.name = ?",
		p.AppID, p.Name))
	created := errors.Is(err, sql.ErrNoRows)
	switch {
	case created:
		if _, err := tx.ExecContext(ctx, `INSERT INTO event_types (app_id, name, description, version, debounce, created_at, updated_at)
			VALUES (?, ?, ?, 1, ?, ?, ?)`, p.AppID, p.Name, p.Description, p.Debounce, now, now); err != nil {
			return nil, false, interpretError(err, "app "+p.AppID)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO event_type_versions (app_id, name, version, schema, created_at) VALUES (?, ?, 1, ?, ?)",
			p.AppID, p.Name, string(p.Schema), now); err != nil {
			return nil, false, fmt.Errorf("put event type: %w", err)
		}
	case err != nil:
		return nil, false, fmt.Errorf("put event type: %w", err)
	default:
		version := cur.LatestVersion
		newSchema := !bytes.Equal(cur.Schema, p.Schema)
		if !newSchema && cur.Description == p.Description && cur.Debounce == p.Debounce {
			return cur, false, nil // nothing changes: nothing is written
		}
		if newSchema {
			version++
			if _, err := tx.ExecContext(ctx, "INSERT INTO event_type_versions (app_id, name, version, schema, created_at) VALUES (?, ?, ?, ?, ?)",
				p.AppID, p.Name, version, string(p.Schema), now); err != nil {
				return nil, false, fmt.Errorf("put event type: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE event_types SET description = ?, version = ?, debounce = ?, updated_at = ? WHERE app_id = ? AND name = ?",
			p.Description, version, p.Debounce, now, p.AppID, p.Name); err != nil {
			return nil, false, fmt.Errorf("put event type: %w", err)
		}
	}
	et, err := scanEventType(tx.QueryRowContext(ctx, "SELECT "+eventTypeCols+eventTypeFrom+" AND v.version = t.version WHERE t.app_id = ? AND t.name = ?",
		p.AppID, p.Name))
	if err != nil {
		return nil, false, fmt.Errorf("put event type: %w", err)
	}
	if err := db.commit(tx); err != nil {
		return nil, false, fmt.Errorf("put event type: commit: %w", err)
	}
	delete(db.debounced, p.AppID)
	return et, created, nil
}

// EventTypeGet returns a type with the schema of a version (0 = current). ENOTFOUND.
func (db *DB) EventTypeGet(ctx context.Context, appID, name string, version int) (*meetsync.EventType, error) {
	q := "SELECT " + eventTypeCols + eventTypeFrom + " AND v.version = t.version WHERE t.app_id = ? AND t.name = ?"
	args := []any{appID, name}
	what := "event type " + name
	if version != 0 {
		q = "SELECT " + eventTypeCols + eventTypeFrom + " AND v.version = ? WHERE t.app_id = ? AND t.name = ?"
		args = []any{version, appID, name}
		what = fmt.Sprintf("version %d of event type %s", version, name)
	}
	et, err := scanEventType(db.queryRow(ctx, q, args...))
	if err != nil {
		return nil, interpretError(err, what)
	}
	return et, nil
}

// EventTypeList returns the app's types at their current versions, by name.
func (db *DB) EventTypeList(ctx context.Context, appID string) ([]*meetsync.EventType, error) {
	rows, err := db.query(ctx, "SELECT "+eventTypeCols+eventTypeFrom+" AND v.version = t.version WHERE t.app_id = ? ORDER BY t.name", appID)
	if err != nil {
		return nil, fmt.Errorf("list event types: %w", err)
	}
	defer rows.Close()
	var out []*meetsync.EventType
	for rows.Next() {
		et, err := scanEventType(rows)
		if err != nil {
			return nil, fmt.Errorf("list event types: %w", err)
		}
		out = append(out, et)
	}
	return out, rows.Err()
}

// debouncedType reports whether typ is a custom type of the app registered
// with debounce, from the store's cache (EventTypePut clears an app's entry
// under the same write lock), loading the app's debounced types in the
// transaction on a miss.
func (at *appendTx) debouncedType(appID, typ string) (bool, error) {
	set, ok := at.db.debounced[appID]
	if !ok {
		rows, err := at.tx.QueryContext(at.ctx, "SELECT name FROM event_types WHERE app_id = ? AND debounce = 1", appID)
		if err != nil {
			return false, err
		}
		set = map[string]bool{}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return false, err
			}
			set[name] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, err
		}
		at.db.debounced[appID] = set
	}
	return set[typ], nil
}
