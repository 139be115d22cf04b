package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
)

var _ meetsync.TypeStore = (*DB)(nil)

const (
	eventTypeCols = "t.app_id, t.name, t.description, t.version, t.debounce, t.created_at, t.updated_at, v.version, v.schema, v.created_at"
	eventTypeFrom = " FROM event_types t JOIN event_type_versions v ON v.app_id = t.app_id AND v.name = t.name"
	eventTypeCur  = "SELECT " + eventTypeCols + eventTypeFrom + " AND v.version = t.version WHERE t.app_id = $1 AND t.name = $2"
)

func scanEventType(row pgx.Row) (*meetsync.EventType, error) {
	var et meetsync.EventType
	var latest, version int32
	var schema string
	if err := row.Scan(&et.AppID, &et.Name, &et.Description, &latest, &et.Debounce, &et.CreatedAt, &et.UpdatedAt,
		&version, &schema, &et.VersionCreatedAt); err != nil {
		return nil, err
	}
	et.LatestVersion, et.Version, et.Schema = int(latest), int(version), []byte(schema)
	return &et, nil
}

// EventTypePut registers a type (version 1) or updates it: a schema that
// differs from the current version's becomes version n+1; the description
// and debounce are replaced in place; a put that changes nothing writes
// nothing. The type's row is locked while it changes, so replicas putting
// the same type take turns (two registering it at once: one creates it,
// the other then updates it). Every replica's next append sees the change.
// ENOTFOUND (app).
func (db *DB) EventTypePut(ctx context.Context, p *meetsync.EventTypePutParams) (*meetsync.EventType, bool, error) {
	var et *meetsync.EventType
	var created bool
	err := db.inTx(ctx, txOptions{retryUnique: true}, func(tx *txn) error {
		var err error
		et, created, err = putEventType(ctx, tx, p)
		return err
	})
	if err != nil {
		if meetsync.ErrorCode(err) != meetsync.EINTERNAL {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("put event type: %w", err)
	}
	return et, created, nil
}

func putEventType(ctx context.Context, tx *txn, p *meetsync.EventTypePutParams) (*meetsync.EventType, bool, error) {
	cur, err := scanEventType(tx.QueryRow(ctx, eventTypeCur+" FOR UPDATE OF t", p.AppID, p.Name))
	created := errors.Is(err, pgx.ErrNoRows)
	switch {
	case created:
		// A type another replica creates meanwhile fails this insert on
		// its key: the transaction starts again and updates it.
		if _, err := tx.Exec(ctx, `INSERT INTO event_types (app_id, name, description, version, debounce, created_at, updated_at)
			VALUES ($1, $2, $3, 1, $4, $5, $5)`, p.AppID, p.Name, p.Description, p.Debounce, p.Now); err != nil {
			if pgCode(err) == codeUniqueViolation {
				return nil, false, err
			}
			return nil, false, interpretError(err, "app "+p.AppID)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO event_type_versions (app_id, name, version, schema, created_at) VALUES ($1, $2, 1, $3, $4)",
			p.AppID, p.Name, string(p.Schema), p.Now); err != nil {
			return nil, false, interpretError(err, "event type "+p.Name)
		}
	case err != nil:
		return nil, false, err
	default:
		version := cur.LatestVersion
		newSchema := !bytes.Equal(cur.Schema, p.Schema)
		if !newSchema && cur.Description == p.Description && cur.Debounce == p.Debounce {
			return cur, false, nil // nothing changes: nothing is written
		}
		if newSchema {
			version++
			if _, err := tx.Exec(ctx, "INSERT INTO event_type_versions (app_id, name, version, schema, created_at) VALUES ($1, $2, $3, $4, $5)",
				p.AppID, p.Name, version, string(p.Schema), p.Now); err != nil {
				return nil, false, interpretError(err, "event type "+p.Name)
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE event_types SET description = $1, version = $2, debounce = $3, updated_at = $4 WHERE app_id = $5 AND name = $6",
			p.Description, version, p.Debounce, p.Now, p.AppID, p.Name); err != nil {
			return nil, false, interpretError(err, "event type "+p.Name)
		}
	}
	et, err := scanEventType(tx.QueryRow(ctx, eventTypeCur, p.AppID, p.Name))
	if err != nil {
		return nil, false, err
	}
	return et, created, nil
}

// EventTypeGet returns a type with the schema of a version (0 = the
// current one). ENOTFOUND (no such type in the app, or no such version).
func (db *DB) EventTypeGet(ctx context.Context, appID, name string, version int) (*meetsync.EventType, error) {
	q, args, what := eventTypeCur, []any{appID, name}, "event type "+name
	if version != 0 {
		q = "SELECT " + eventTypeCols + eventTypeFrom + " AND v.version = $3 WHERE t.app_id = $1 AND t.name = $2"
		args = append(args, version)
		what = fmt.Sprintf("version %d of event type %s", version, name)
	}
	et, err := scanEventType(db.pool.QueryRow(ctx, q, args...))
	if err != nil {
		return nil, interpretError(err, what)
	}
	return et, nil
}

// EventTypeList returns the app's types at their current versions,
// ordered by name (bytewise).
func (db *DB) EventTypeList(ctx context.Context, appID string) ([]*meetsync.EventType, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+eventTypeCols+eventTypeFrom+" AND v.version = t.version WHERE t.app_id = $1 ORDER BY t.name", appID)
	if err != nil {
		return nil, fmt.Errorf("list event types: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.EventType, error) { return scanEventType(r) })
	if err != nil {
		return nil, fmt.Errorf("list event types: %w", err)
	}
	return out, nil
}
