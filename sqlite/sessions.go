package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meetsync/meetsync"
)

var _ meetsync.SessionStore = (*DB)(nil)

// AppSettingsGet returns an app's settings, the defaults if never set.
func (db *DB) AppSettingsGet(ctx context.Context, appID string) (*meetsync.AppSettings, error) {
	var b []byte
	var updated int64
	err := db.queryRow(ctx, "SELECT settings, updated_at FROM app_settings WHERE app_id = ?", appID).Scan(&b, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := db.AppGet(ctx, appID); err != nil {
			return nil, err
		}
		s := meetsync.DefaultAppSettings()
		return &s, nil
	} else if err != nil {
		return nil, fmt.Errorf("get app settings: %w", err)
	}
	s := meetsync.DefaultAppSettings()
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode app settings: %w", err)
	}
	s.UpdatedAt = fromMicros(updated)
	return &s, nil
}

// AppSettingsPut replaces an app's settings.
func (db *DB) AppSettingsPut(ctx context.Context, appID string, s *meetsync.AppSettings) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = db.exec(ctx, `INSERT INTO app_settings (app_id, settings, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (app_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at`,
		appID, b, micros(s.UpdatedAt))
	return interpretError(err, "app "+appID)
}

const accountCols = "app_id, user_id, provider, app_key, user_uuid, user_token, created_at, updated_at"

func scanAccount(sc scanner) (*meetsync.StoredAccount, error) {
	var a meetsync.StoredAccount
	var created, updated int64
	if err := sc.Scan(&a.AppID, &a.UserID, &a.Provider, &a.AppKey, &a.UserUUID, &a.UserToken, &created, &updated); err != nil {
		return nil, interpretError(err, "meeting account")
	}
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &a, nil
}

// AccountGet returns a user's meeting account. ENOTFOUND.
func (db *DB) AccountGet(ctx context.Context, appID, userID string) (*meetsync.StoredAccount, error) {
	return scanAccount(db.queryRow(ctx, "SELECT "+accountCols+" FROM meeting_accounts WHERE app_id = ? AND user_id = ?", appID, userID))
}

// AccountByUUID returns the account with a platform id. ENOTFOUND.
func (db *DB) AccountByUUID(ctx context.Context, appID, provider, userUUID string) (*meetsync.StoredAccount, error) {
	return scanAccount(db.queryRow(ctx, "SELECT "+accountCols+" FROM meeting_accounts WHERE app_id = ? AND provider = ? AND user_uuid = ?",
		appID, provider, userUUID))
}

// AccountPut inserts or replaces a user's meeting account.
func (db *DB) AccountPut(ctx context.Context, a *meetsync.StoredAccount) error {
	_, err := db.exec(ctx, `INSERT INTO meeting_accounts (`+accountCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (app_id, user_id) DO UPDATE SET provider = excluded.provider, app_key = excluded.app_key, user_uuid = excluded.user_uuid,
		user_token = excluded.user_token, updated_at = excluded.updated_at`,
		a.AppID, a.UserID, a.Provider, a.AppKey, a.UserUUID, a.UserToken, micros(a.CreatedAt), micros(a.UpdatedAt))
	return interpretError(err, "meeting account of "+a.UserID)
}

// ClientTokenCreate stores a client token.
func (db *DB) ClientTokenCreate(ctx context.Context, t *meetsync.ClientToken) error {
	_, err := db.exec(ctx, `INSERT INTO client_tokens (id, app_id, user_id, device_id, session_id, hash, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, t.ID, t.AppID, t.UserID, t.DeviceID, t.SessionID, t.Hash, micros(t.CreatedAt), micros(t.ExpiresAt))
	return interpretError(err, "client token")
}

// ClientTokenGetByHash returns a token by hash. ENOTFOUND.
func (db *DB) ClientTokenGetByHash(ctx context.Context, hash []byte) (*meetsync.ClientToken, error) {
	var t meetsync.ClientToken
	var created, expires int64
	var revoked sql.NullInt64
	err := db.queryRow(ctx, `SELECT id, app_id, user_id, device_id, session_id, hash, created_at, expires_at, revoked_at
		FROM client_tokens WHERE hash = ?`, hash).Scan(&t.ID, &t.AppID, &t.UserID, &t.DeviceID, &t.SessionID, &t.Hash, &created, &expires, &revoked)
	if err != nil {
		return nil, interpretError(err, "client token")
	}
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	if revoked.Valid {
		r := fromMicros(revoked.Int64)
		t.RevokedAt = &r
	}
	return &t, nil
}

// ClientTokensRevoke revokes a user's tokens of one session ("" = every session).
func (db *DB) ClientTokensRevoke(ctx context.Context, appID, userID, sessionID string, at time.Time) (int, error) {
	q := "UPDATE client_tokens SET revoked_at = ? WHERE app_id = ? AND user_id = ? AND revoked_at IS NULL"
	args := []any{micros(at), appID, userID}
	if sessionID != "" {
		q += " AND session_id = ?"
		args = append(args, sessionID)
	}
	res, err := db.exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("revoke client tokens: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// CommandsCreate stores commands; existing ids are left as they are.
func (db *DB) CommandsCreate(ctx context.Context, cmds []*meetsync.Command) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create commands: %w", err)
	}
	defer tx.Rollback()
	for _, c := range cmds {
		if _, err := tx.ExecContext(ctx, `INSERT INTO commands (id, app_id, user_id, device_id, session_id, type, data, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			c.ID, c.AppID, c.UserID, c.DeviceID, c.SessionID, c.Type, []byte(c.Data), micros(c.CreatedAt)); err != nil {
			return fmt.Errorf("create commands: %w", err)
		}
	}
	return db.commit(tx)
}

const commandCols = "id, app_id, user_id, device_id, session_id, type, data, created_at, acked_at, ack_ok, ack_error"

func scanCommand(sc scanner) (*meetsync.Command, error) {
	var c meetsync.Command
	var data []byte
	var created int64
	var acked sql.NullInt64
	if err := sc.Scan(&c.ID, &c.AppID, &c.UserID, &c.DeviceID, &c.SessionID, &c.Type, &data, &created, &acked, &c.AckOK, &c.AckError); err != nil {
		return nil, err
	}
	c.Data, c.CreatedAt = data, fromMicros(created)
	if acked.Valid {
		t := fromMicros(acked.Int64)
		c.AckedAt = &t
	}
	return &c, nil
}

func (db *DB) queryCommands(ctx context.Context, q string, args ...any) ([]*meetsync.Command, error) {
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	defer rows.Close()
	var out []*meetsync.Command
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, fmt.Errorf("list commands: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CommandList returns a device's commands, oldest first.
func (db *DB) CommandList(ctx context.Context, appID, userID, deviceID string, pendingOnly bool) ([]*meetsync.Command, error) {
	q := "SELECT " + commandCols + " FROM commands WHERE app_id = ? AND user_id = ? AND device_id = ?"
	if pendingOnly {
		q += " AND acked_at IS NULL"
	}
	return db.queryCommands(ctx, q+" ORDER BY created_at, id LIMIT 1000", appID, userID, deviceID)
}

// CommandsForSession returns every command of a session, oldest first.
func (db *DB) CommandsForSession(ctx context.Context, appID, userID, sessionID string) ([]*meetsync.Command, error) {
	return db.queryCommands(ctx, "SELECT "+commandCols+" FROM commands WHERE app_id = ? AND user_id = ? AND session_id = ? ORDER BY created_at, id",
		appID, userID, sessionID)
}

// CommandAck records an acknowledgement; the first one stays.
func (db *DB) CommandAck(ctx context.Context, appID, userID, deviceID, id string, ok bool, errText string, at time.Time) (*meetsync.Command, error) {
	if _, err := db.exec(ctx, `UPDATE commands SET acked_at = ?, ack_ok = ?, ack_error = ?
		WHERE id = ? AND app_id = ? AND user_id = ? AND device_id = ? AND acked_at IS NULL`,
		micros(at), ok, errText, id, appID, userID, deviceID); err != nil {
		return nil, fmt.Errorf("ack command: %w", err)
	}
	c, err := scanCommand(db.writer.QueryRowContext(ctx, "SELECT "+commandCols+" FROM commands WHERE id = ? AND app_id = ? AND user_id = ? AND device_id = ?",
		id, appID, userID, deviceID))
	if err != nil {
		return nil, interpretError(err, "command "+id)
	}
	return c, nil
}

// UsersDue returns users whose due time has passed, earliest first.
func (db *DB) UsersDue(ctx context.Context, now time.Time, limit int) ([]*meetsync.UserState, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.query(ctx, "SELECT "+userCols+" FROM users WHERE due_at > 0 AND due_at <= ? ORDER BY due_at LIMIT ?", micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("due users: %w", err)
	}
	defer rows.Close()
	var out []*meetsync.UserState
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("due users: %w", err)
		}
		// A change of the due time is always written with its event, so
		// the index is right; the backlog may hold a newer state otherwise.
		if b := db.backlog.user(userKey{u.AppID, u.UserID}); b != nil {
			u = b
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
