package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
)

const endpointCols = "id, app_id, url, description, event_types, debounce_ms, rate_limit, secrets, disabled, disabled_reason, disabled_at, failing_since, created_at, updated_at"

func scanEndpoint(row pgx.Row) (*meetsync.Endpoint, error) {
	var e meetsync.Endpoint
	var types, secrets string
	var debounceMS int64
	var rateLimit int32
	var disabledAt, failingSince *time.Time
	if err := row.Scan(&e.ID, &e.AppID, &e.URL, &e.Description, &types, &debounceMS, &rateLimit, &secrets, &e.Disabled,
		&e.DisabledReason, &disabledAt, &failingSince, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(types), &e.EventTypes); err != nil {
		return nil, fmt.Errorf("endpoint %s event types: %w", e.ID, err)
	}
	if err := json.Unmarshal([]byte(secrets), &e.Secrets); err != nil {
		return nil, fmt.Errorf("endpoint %s secrets: %w", e.ID, err)
	}
	e.RateLimit = int(rateLimit)
	e.Debounce = time.Duration(debounceMS) * time.Millisecond
	e.DisabledAt, e.FailingSince = utcPtr(disabledAt), utcPtr(failingSince)
	return &e, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func endpointArgs(e *meetsync.Endpoint) []any {
	types, _ := json.Marshal(e.EventTypes)
	if e.EventTypes == nil {
		types = []byte("[]")
	}
	secrets, _ := json.Marshal(e.Secrets)
	return []any{e.ID, e.AppID, e.URL, e.Description, string(types), e.Debounce.Milliseconds(), int32(e.RateLimit), string(secrets),
		e.Disabled, e.DisabledReason, timePtr(e.DisabledAt), timePtr(e.FailingSince), e.CreatedAt, e.UpdatedAt}
}

// EndpointCreate stores a new endpoint. ENOTFOUND if the app does not
// exist, EINVALID for text PostgreSQL cannot store.
func (db *DB) EndpointCreate(ctx context.Context, e *meetsync.Endpoint) error {
	_, err := db.pool.Exec(ctx, "INSERT INTO endpoints ("+endpointCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
		endpointArgs(e)...)
	return interpretError(err, "endpoint")
}

// EndpointGet returns an endpoint of the app. ENOTFOUND.
func (db *DB) EndpointGet(ctx context.Context, appID, id string) (*meetsync.Endpoint, error) {
	e, err := scanEndpoint(db.pool.QueryRow(ctx, "SELECT "+endpointCols+" FROM endpoints WHERE app_id = $1 AND id = $2", appID, id))
	if err != nil {
		return nil, interpretError(err, "endpoint "+id)
	}
	return e, nil
}

// EndpointList returns the app's endpoints, oldest first.
func (db *DB) EndpointList(ctx context.Context, appID string) ([]*meetsync.Endpoint, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+endpointCols+" FROM endpoints WHERE app_id = $1 ORDER BY created_at, id", appID)
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.Endpoint, error) { return scanEndpoint(r) })
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	return out, nil
}

// EndpointUpdate replaces the mutable fields of an endpoint (everything
// but id, app and created_at). Disabling parks the endpoint's queues;
// enabling resumes them in order (and wakes the dispatchers of every
// replica). ENOTFOUND, EINVALID.
func (db *DB) EndpointUpdate(ctx context.Context, e *meetsync.Endpoint) error {
	return db.inTx(ctx, txOptions{}, func(tx *txn) error {
		// FOR NO KEY UPDATE: appends lock endpoints FOR KEY SHARE and keep going.
		old, err := scanEndpoint(tx.QueryRow(ctx, "SELECT "+endpointCols+" FROM endpoints WHERE app_id = $1 AND id = $2 FOR NO KEY UPDATE", e.AppID, e.ID))
		if err != nil {
			return interpretError(err, "endpoint "+e.ID)
		}
		a := endpointArgs(e)
		if _, err := tx.Exec(ctx, `UPDATE endpoints SET url = $1, description = $2, event_types = $3, debounce_ms = $4, rate_limit = $5,
			secrets = $6, disabled = $7, disabled_reason = $8, disabled_at = $9, failing_since = $10, updated_at = $11 WHERE app_id = $12 AND id = $13`,
			append(a[2:12:12], a[13], e.AppID, e.ID)...); err != nil {
			return interpretError(err, "endpoint "+e.ID)
		}
		if old.Disabled == e.Disabled {
			return nil
		}
		if e.Disabled {
			return parkEndpoint(ctx, tx, e.ID)
		}
		return unparkEndpoint(ctx, tx, db.cfg.Node, e.AppID, e.ID)
	})
}

// EndpointDelete deletes an endpoint with its deliveries and attempts. ENOTFOUND.
func (db *DB) EndpointDelete(ctx context.Context, appID, id string) error {
	return db.inTx(ctx, txOptions{}, func(tx *txn) error {
		// The endpoint first: that waits for the appends fanning out to it
		// (FOR KEY SHARE), so the deliveries they insert are deleted below.
		ct, err := tx.Exec(ctx, "DELETE FROM endpoints WHERE app_id = $1 AND id = $2", appID, id)
		if err != nil {
			return fmt.Errorf("delete endpoint: %w", err)
		}
		if ct.RowsAffected() == 0 {
			return meetsync.Errorf(meetsync.ENOTFOUND, "endpoint %s not found", id)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM deliveries WHERE endpoint_id = $1", id); err != nil {
			return fmt.Errorf("delete endpoint: %w", err)
		}
		return nil
	})
}

// parkEndpoint parks a disabled endpoint's queues: they have no heads, so
// nothing of it is claimed. Claimed heads stay (their completion parks them).
func parkEndpoint(ctx context.Context, tx *txn, endpointID string) error {
	_, err := tx.Exec(ctx, "UPDATE deliveries SET head = false WHERE endpoint_id = $1 AND head AND claim_owner = ''", endpointID)
	return err
}

// unparkEndpoint re-points every queue of an enabled endpoint at its
// lowest active delivery.
func unparkEndpoint(ctx context.Context, tx *txn, node, appID, endpointID string) error {
	rows, err := tx.Query(ctx, "SELECT DISTINCT user_id FROM deliveries WHERE endpoint_id = $1 AND status IN ('pending', 'failed') ORDER BY user_id", endpointID)
	if err != nil {
		return err
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(users) == 0 {
		return err
	}
	keys := make([]queueKey, len(users))
	for i, u := range users {
		keys[i] = queueKey{endpointID, u}
	}
	return fixHeads(ctx, tx, node, appID, keys)
}
