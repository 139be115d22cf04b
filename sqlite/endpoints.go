package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/meetsync/meetsync"
)

const endpointCols = "id, app_id, url, description, event_types, debounce_ms, rate_limit, secrets, disabled, disabled_reason, disabled_at, failing_since, created_at, updated_at"

func scanEndpoint(sc scanner) (*meetsync.Endpoint, error) {
	var e meetsync.Endpoint
	var types, secrets string
	var debounceMS, created, updated int64
	var disabledAt, failingSince sql.NullInt64
	if err := sc.Scan(&e.ID, &e.AppID, &e.URL, &e.Description, &types, &debounceMS, &e.RateLimit, &secrets, &e.Disabled,
		&e.DisabledReason, &disabledAt, &failingSince, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(types), &e.EventTypes); err != nil {
		return nil, fmt.Errorf("endpoint %s event types: %w", e.ID, err)
	}
	if err := json.Unmarshal([]byte(secrets), &e.Secrets); err != nil {
		return nil, fmt.Errorf("endpoint %s secrets: %w", e.ID, err)
	}
	e.Debounce = time.Duration(debounceMS) * time.Millisecond
	e.CreatedAt, e.UpdatedAt = fromMicros(created), fromMicros(updated)
	e.DisabledAt, e.FailingSince = nullTime(disabledAt), nullTime(failingSince)
	return &e, nil
}

func nullTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return micros(*t)
}

func endpointArgs(e *meetsync.Endpoint) []any {
	types, _ := json.Marshal(e.EventTypes)
	if e.EventTypes == nil {
		types = []byte("[]")
	}
	secrets, _ := json.Marshal(e.Secrets)
	return []any{e.ID, e.AppID, e.URL, e.Description, string(types), e.Debounce.Milliseconds(), e.RateLimit, string(secrets),
		e.Disabled, e.DisabledReason, nullMicros(e.DisabledAt), nullMicros(e.FailingSince), micros(e.CreatedAt), micros(e.UpdatedAt)}
}

// EndpointCreate stores a new endpoint. ENOTFOUND if the app does not exist.
func (db *DB) EndpointCreate(ctx context.Context, e *meetsync.Endpoint) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	clear(db.endpoints)
	_, err := db.exec(ctx, "INSERT INTO endpoints ("+endpointCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", endpointArgs(e)...)
	return interpretError(err, "endpoint")
}

// EndpointGet returns an endpoint of the app. ENOTFOUND.
func (db *DB) EndpointGet(ctx context.Context, appID, id string) (*meetsync.Endpoint, error) {
	e, err := scanEndpoint(db.queryRow(ctx, "SELECT "+endpointCols+" FROM endpoints WHERE app_id = ? AND id = ?", appID, id))
	if err != nil {
		return nil, interpretError(err, "endpoint "+id)
	}
	return e, nil
}

// EndpointList returns the app's endpoints, oldest first.
func (db *DB) EndpointList(ctx context.Context, appID string) ([]*meetsync.Endpoint, error) {
	rows, err := db.query(ctx, "SELECT "+endpointCols+" FROM endpoints WHERE app_id = ? ORDER BY created_at, id", appID)
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	return collectEndpoints(rows)
}

func collectEndpoints(rows *sql.Rows) ([]*meetsync.Endpoint, error) {
	defer rows.Close()
	var out []*meetsync.Endpoint
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, fmt.Errorf("list endpoints: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// EndpointUpdate replaces the mutable fields of an endpoint (everything
// but id, app and created_at). Disabling parks the endpoint's queues;
// enabling resumes them in order. ENOTFOUND.
func (db *DB) EndpointUpdate(ctx context.Context, e *meetsync.Endpoint) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	clear(db.endpoints)
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update endpoint: %w", err)
	}
	defer tx.Rollback()
	old, err := db.endpointInTx(ctx, tx, e.AppID, e.ID)
	if err != nil {
		return err
	}
	a := endpointArgs(e)
	if _, err := tx.ExecContext(ctx, `UPDATE endpoints SET url = ?, description = ?, event_types = ?, debounce_ms = ?, rate_limit = ?,
		secrets = ?, disabled = ?, disabled_reason = ?, disabled_at = ?, failing_since = ?, updated_at = ? WHERE app_id = ? AND id = ?`,
		append(a[2:12:12], a[13], e.AppID, e.ID)...); err != nil {
		return fmt.Errorf("update endpoint: %w", err)
	}
	if old.Disabled != e.Disabled {
		if err := setEndpointParked(ctx, tx, e.ID, e.Disabled); err != nil {
			return fmt.Errorf("update endpoint: %w", err)
		}
	}
	return db.commit(tx)
}

// EndpointDelete deletes an endpoint with its deliveries and attempts. ENOTFOUND.
func (db *DB) EndpointDelete(ctx context.Context, appID, id string) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	clear(db.endpoints)
	res, err := db.exec(ctx, "DELETE FROM endpoints WHERE app_id = ? AND id = ?", appID, id)
	if err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return meetsync.Errorf(meetsync.ENOTFOUND, "endpoint %s not found", id)
	}
	return nil
}
