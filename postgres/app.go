package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
)

// AppCreate stores a new app with its first key.
// ECONFLICT if the name is taken.
func (db *DB) AppCreate(ctx context.Context, app *meetsync.App, key *meetsync.APIKey) error {
	return db.inTx(ctx, txOptions{}, func(tx *txn) error {
		// Creates take turns (every replica's), so the names read are
		// all there are when the insert commits.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("app-names")); err != nil {
			return fmt.Errorf("create app: %w", err)
		}
		rows, err := tx.Query(ctx, "SELECT name FROM apps")
		if err != nil {
			return fmt.Errorf("create app: %w", err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("create app: %w", err)
		}
		for _, n := range names {
			if meetsync.SameAppName(n, app.Name) {
				return meetsync.Errorf(meetsync.ECONFLICT, "app %s already exists (as %q: app names are unique regardless of case)", app.Name, n)
			}
		}
		if _, err := tx.Exec(ctx, "INSERT INTO apps (id, name, created_at) VALUES ($1, $2, $3)", app.ID, app.Name, app.CreatedAt); err != nil {
			return interpretError(err, "app "+app.Name)
		}
		return insertKey(ctx, tx, key)
	})
}

func insertKey(ctx context.Context, tx *txn, key *meetsync.APIKey) error {
	_, err := tx.Exec(ctx, "INSERT INTO api_keys (id, app_id, prefix, hash, created_at) VALUES ($1, $2, $3, $4, $5)",
		key.ID, key.AppID, key.Prefix, key.Hash, key.CreatedAt)
	return interpretError(err, "app "+key.AppID)
}

// AppGet returns an app by id. ENOTFOUND.
func (db *DB) AppGet(ctx context.Context, id string) (*meetsync.App, error) {
	return db.appBy(ctx, "id", id)
}

// AppGetByName returns an app by name. ENOTFOUND.
func (db *DB) AppGetByName(ctx context.Context, name string) (*meetsync.App, error) {
	return db.appBy(ctx, "name", name)
}

func (db *DB) appBy(ctx context.Context, col, v string) (*meetsync.App, error) {
	var a meetsync.App
	err := db.pool.QueryRow(ctx, "SELECT id, name, created_at FROM apps WHERE "+col+" = $1", v).Scan(&a.ID, &a.Name, &a.CreatedAt)
	if err != nil {
		return nil, interpretError(err, "app")
	}
	return &a, nil
}

// AppList returns every app, oldest first.
func (db *DB) AppList(ctx context.Context) ([]*meetsync.App, error) {
	rows, err := db.pool.Query(ctx, "SELECT id, name, created_at FROM apps ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.App, error) {
		var a meetsync.App
		err := r.Scan(&a.ID, &a.Name, &a.CreatedAt)
		return &a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return out, nil
}

// APIKeyCreate stores another key for an app. ENOTFOUND if the app does not exist.
func (db *DB) APIKeyCreate(ctx context.Context, key *meetsync.APIKey) error {
	return db.inTx(ctx, txOptions{}, func(tx *txn) error { return insertKey(ctx, tx, key) })
}

const keyCols = "id, app_id, prefix, hash, created_at, revoked_at"

func scanKey(row pgx.Row) (*meetsync.APIKey, error) {
	var k meetsync.APIKey
	var revoked *time.Time
	if err := row.Scan(&k.ID, &k.AppID, &k.Prefix, &k.Hash, &k.CreatedAt, &revoked); err != nil {
		return nil, err
	}
	if revoked != nil {
		t := revoked.UTC()
		k.RevokedAt = &t
	}
	return &k, nil
}

// APIKeyGetByHash returns the key with this hash. ENOTFOUND.
func (db *DB) APIKeyGetByHash(ctx context.Context, hash []byte) (*meetsync.APIKey, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, "SELECT "+keyCols+" FROM api_keys WHERE hash = $1", hash))
	if err != nil {
		return nil, interpretError(err, "key")
	}
	return k, nil
}

// APIKeyList returns an app's keys, oldest first.
func (db *DB) APIKeyList(ctx context.Context, appID string) ([]*meetsync.APIKey, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+keyCols+" FROM api_keys WHERE app_id = $1 ORDER BY created_at, id", appID)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.APIKey, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}

// APIKeyRevoke revokes a key of the app (the first revocation time stays). ENOTFOUND.
func (db *DB) APIKeyRevoke(ctx context.Context, appID, keyID string, at time.Time) error {
	ct, err := db.pool.Exec(ctx, "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $1) WHERE app_id = $2 AND id = $3", at, appID, keyID)
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	if ct.RowsAffected() == 0 {
		return meetsync.Errorf(meetsync.ENOTFOUND, "key %s not found", keyID)
	}
	return nil
}

// SecretKeyCheck returns the secret-key check value, "" if none is stored.
func (db *DB) SecretKeyCheck(ctx context.Context) (string, error) {
	var v string
	err := db.pool.QueryRow(ctx, "SELECT sealed FROM secret_key_check WHERE id = 1").Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("secret key check: %w", err)
	}
	return v, nil
}

// SecretKeyCheckInit stores v as the check value unless one is stored (by
// another replica meanwhile too) and returns the one stored.
func (db *DB) SecretKeyCheckInit(ctx context.Context, v string) (string, error) {
	if _, err := db.pool.Exec(ctx, "INSERT INTO secret_key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", v); err != nil {
		return "", fmt.Errorf("secret key check: %w", err)
	}
	return db.SecretKeyCheck(ctx)
}
