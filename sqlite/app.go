package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/meetsync/meetsync"
)

// AppCreate stores a new app with its first key. ECONFLICT if the name is taken.
func (db *DB) AppCreate(ctx context.Context, app *meetsync.App, key *meetsync.APIKey) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create app: %w", err)
	}
	defer tx.Rollback()
	if err := appNameFree(ctx, tx, app.Name); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO apps (id, name, created_at) VALUES (?, ?, ?)",
		app.ID, app.Name, micros(app.CreatedAt)); err != nil {
		return interpretError(err, "app "+app.Name)
	}
	if err := insertKey(ctx, tx, key); err != nil {
		return err
	}
	return db.commit(tx)
}

// appNameFree fails with ECONFLICT if an app's name is name in any case
// (the transaction holds the write lock: no other create runs meanwhile).
func appNameFree(ctx context.Context, tx *sql.Tx, name string) error {
	rows, err := tx.QueryContext(ctx, "SELECT name FROM apps")
	if err != nil {
		return fmt.Errorf("create app: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("create app: %w", err)
		}
		if meetsync.SameAppName(n, name) {
			return meetsync.Errorf(meetsync.ECONFLICT, "app %s already exists (as %q: app names are unique regardless of case)", name, n)
		}
	}
	return rows.Err()
}

func insertKey(ctx context.Context, tx *sql.Tx, key *meetsync.APIKey) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO api_keys (id, app_id, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?)",
		key.ID, key.AppID, key.Prefix, key.Hash, micros(key.CreatedAt))
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
	var created int64
	err := db.queryRow(ctx, "SELECT id, name, created_at FROM apps WHERE "+col+" = ?", v).
		Scan(&a.ID, &a.Name, &created)
	if err != nil {
		return nil, interpretError(err, "app")
	}
	a.CreatedAt = fromMicros(created)
	return &a, nil
}

// AppList returns every app, oldest first.
func (db *DB) AppList(ctx context.Context) ([]*meetsync.App, error) {
	rows, err := db.query(ctx, "SELECT id, name, created_at FROM apps ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	defer rows.Close()
	var out []*meetsync.App
	for rows.Next() {
		var a meetsync.App
		var created int64
		if err := rows.Scan(&a.ID, &a.Name, &created); err != nil {
			return nil, fmt.Errorf("list apps: %w", err)
		}
		a.CreatedAt = fromMicros(created)
		out = append(out, &a)
	}
	return out, rows.Err()
}

// APIKeyCreate stores another key for an app. ENOTFOUND if the app does not exist.
func (db *DB) APIKeyCreate(ctx context.Context, key *meetsync.APIKey) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	defer tx.Rollback()
	if err := insertKey(ctx, tx, key); err != nil {
		return err
	}
	return db.commit(tx)
}

const keyCols = "id, app_id, prefix, hash, created_at, revoked_at"

func scanKey(sc interface{ Scan(...any) error }) (*meetsync.APIKey, error) {
	var k meetsync.APIKey
	var created int64
	var revoked sql.NullInt64
	if err := sc.Scan(&k.ID, &k.AppID, &k.Prefix, &k.Hash, &created, &revoked); err != nil {
		return nil, err
	}
	k.CreatedAt = fromMicros(created)
	if revoked.Valid {
		t := fromMicros(revoked.Int64)
		k.RevokedAt = &t
	}
	return &k, nil
}

// APIKeyGetByHash returns the key with this hash. ENOTFOUND.
func (db *DB) APIKeyGetByHash(ctx context.Context, hash []byte) (*meetsync.APIKey, error) {
	k, err := scanKey(db.queryRow(ctx, "SELECT "+keyCols+" FROM api_keys WHERE hash = ?", hash))
	if err != nil {
		return nil, interpretError(err, "key")
	}
	return k, nil
}

// APIKeyList returns an app's keys, oldest first.
func (db *DB) APIKeyList(ctx context.Context, appID string) ([]*meetsync.APIKey, error) {
	rows, err := db.query(ctx, "SELECT "+keyCols+" FROM api_keys WHERE app_id = ? ORDER BY created_at, id", appID)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	var out []*meetsync.APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// APIKeyRevoke revokes a key of the app. ENOTFOUND.
func (db *DB) APIKeyRevoke(ctx context.Context, appID, keyID string, at time.Time) error {
	res, err := db.exec(ctx, "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE app_id = ? AND id = ?",
		micros(at), appID, keyID)
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return meetsync.Errorf(meetsync.ENOTFOUND, "key %s not found", keyID)
	}
	return nil
}

// SecretKeyCheck returns the secret-key check value, "" if none is stored.
func (db *DB) SecretKeyCheck(ctx context.Context) (string, error) {
	var v string
	err := db.queryRow(ctx, "SELECT sealed FROM secret_key_check WHERE id = 1").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("secret key check: %w", err)
	}
	return v, nil
}

// SecretKeyCheckInit stores v as the check value unless one is stored and
// returns the one stored.
func (db *DB) SecretKeyCheckInit(ctx context.Context, v string) (string, error) {
	if _, err := db.writer.ExecContext(ctx, "INSERT INTO secret_key_check (id, sealed) VALUES (1, ?) ON CONFLICT (id) DO NOTHING", v); err != nil {
		return "", fmt.Errorf("secret key check: %w", err)
	}
	return db.SecretKeyCheck(ctx)
}
