package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
)

var _ meetsync.SessionStore = (*DB)(nil)

// nullTime returns nil (SQL NULL) for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// AppSettingsGet returns an app's settings, the defaults if never set.
// ENOTFOUND (app).
func (db *DB) AppSettingsGet(ctx context.Context, appID string) (*meetsync.AppSettings, error) {
	var b []byte
	var updated *time.Time
	err := db.pool.QueryRow(ctx, "SELECT s.settings, s.updated_at FROM apps a LEFT JOIN app_settings s ON s.app_id = a.id WHERE a.id = $1",
		appID).Scan(&b, &updated)
	if err != nil {
		return nil, interpretError(err, "app")
	}
	s := meetsync.DefaultAppSettings()
	if b == nil {
		return &s, nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode app settings: %w", err)
	}
	s.UpdatedAt = fromNull(updated)
	return &s, nil
}

// AppSettingsPut replaces an app's settings. ENOTFOUND (app).
func (db *DB) AppSettingsPut(ctx context.Context, appID string, s *meetsync.AppSettings) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO app_settings (app_id, settings, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (app_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at`,
		appID, b, nullTime(s.UpdatedAt))
	return interpretError(err, "app "+appID)
}

const accountCols = "app_id, user_id, provider, app_key, user_uuid, user_token, created_at, updated_at"

func scanAccount(row pgx.Row) (*meetsync.StoredAccount, error) {
	var a meetsync.StoredAccount
	if err := row.Scan(&a.AppID, &a.UserID, &a.Provider, &a.AppKey, &a.UserUUID, &a.UserToken, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return nil, interpretError(err, "meeting account")
	}
	return &a, nil
}

// AccountGet returns a user's meeting account. ENOTFOUND.
func (db *DB) AccountGet(ctx context.Context, appID, userID string) (*meetsync.StoredAccount, error) {
	return scanAccount(db.pool.QueryRow(ctx, "SELECT "+accountCols+" FROM meeting_accounts WHERE app_id = $1 AND user_id = $2", appID, userID))
}

// AccountByUUID returns the account with a platform id. ENOTFOUND.
func (db *DB) AccountByUUID(ctx context.Context, appID, provider, userUUID string) (*meetsync.StoredAccount, error) {
	return scanAccount(db.pool.QueryRow(ctx, "SELECT "+accountCols+" FROM meeting_accounts WHERE app_id = $1 AND provider = $2 AND user_uuid = $3",
		appID, provider, userUUID))
}

// AccountPut inserts or replaces a user's meeting account (its CreatedAt
// stays). ECONFLICT if another user of the app has its platform id.
func (db *DB) AccountPut(ctx context.Context, a *meetsync.StoredAccount) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO meeting_accounts (`+accountCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (app_id, user_id) DO UPDATE SET provider = excluded.provider, app_key = excluded.app_key, user_uuid = excluded.user_uuid,
		user_token = excluded.user_token, updated_at = excluded.updated_at`,
		a.AppID, a.UserID, a.Provider, a.AppKey, a.UserUUID, a.UserToken, a.CreatedAt, a.UpdatedAt)
	return interpretError(err, "meeting account of "+a.UserID)
}

// ClientTokenCreate stores a client token. ECONFLICT if its id or hash exists.
func (db *DB) ClientTokenCreate(ctx context.Context, t *meetsync.ClientToken) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO client_tokens (id, app_id, user_id, device_id, session_id, hash, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, t.ID, t.AppID, t.UserID, t.DeviceID, t.SessionID, t.Hash, t.CreatedAt, t.ExpiresAt)
	return interpretError(err, "client token")
}

// ClientTokenGetByHash returns a token by hash, revoked or not. ENOTFOUND.
func (db *DB) ClientTokenGetByHash(ctx context.Context, hash []byte) (*meetsync.ClientToken, error) {
	var t meetsync.ClientToken
	var revoked *time.Time
	err := db.pool.QueryRow(ctx, `SELECT id, app_id, user_id, device_id, session_id, hash, created_at, expires_at, revoked_at
		FROM client_tokens WHERE hash = $1`, hash).Scan(&t.ID, &t.AppID, &t.UserID, &t.DeviceID, &t.SessionID, &t.Hash, &t.CreatedAt, &t.ExpiresAt, &revoked)
	if err != nil {
		return nil, interpretError(err, "client token")
	}
	t.RevokedAt = utcPtr(revoked)
	return &t, nil
}

// ClientTokensRevoke revokes a user's tokens of one session ("" = every
// session) that are not revoked yet, and returns how many it revoked.
func (db *DB) ClientTokensRevoke(ctx context.Context, appID, userID, sessionID string, at time.Time) (int, error) {
	q := "UPDATE client_tokens SET revoked_at = $1 WHERE app_id = $2 AND user_id = $3 AND revoked_at IS NULL"
	args := []any{at, appID, userID}
	if sessionID != "" {
		q += " AND session_id = $4"
		args = append(args, sessionID)
	}
	ct, err := db.pool.Exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("revoke client tokens: %w", err)
	}
	return int(ct.RowsAffected()), nil
}

// CommandsCreate stores commands; a command whose id exists is left as it
// is. When it stores one, its commit notifies the other replicas
// (NotifyCommands), whose command streams read on.
func (db *DB) CommandsCreate(ctx context.Context, cmds []*meetsync.Command) error {
	n := len(cmds)
	if n == 0 {
		return nil
	}
	var (
		id, app, user, dev, sess, typ = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		data                          = make([][]byte, n)
		created                       = make([]time.Time, n)
	)
	for i, c := range cmds {
		id[i], app[i], user[i], dev[i], sess[i], typ[i] = c.ID, c.AppID, c.UserID, c.DeviceID, c.SessionID, c.Type
		data[i], created[i] = c.Data, c.CreatedAt
	}
	_, err := db.pool.Exec(ctx, `WITH ins AS (INSERT INTO commands (id, app_id, user_id, device_id, session_id, type, data, created_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::timestamptz[])
			ON CONFLICT (id) DO NOTHING RETURNING 1)
		SELECT pg_notify('`+notifyChannel+`', $9) WHERE EXISTS (SELECT 1 FROM ins)`, id, app, user, dev, sess, typ, data, created,
		kindCommands+":"+db.cfg.Node)
	if err != nil {
		if dataError(err) {
			return interpretError(err, "command")
		}
		return fmt.Errorf("create commands: %w", err)
	}
	return nil
}

const commandCols = "id, app_id, user_id, device_id, session_id, type, data, created_at, acked_at, ack_ok, ack_error"

func scanCommand(row pgx.Row) (*meetsync.Command, error) {
	var c meetsync.Command
	var data []byte
	var acked *time.Time
	if err := row.Scan(&c.ID, &c.AppID, &c.UserID, &c.DeviceID, &c.SessionID, &c.Type, &data, &c.CreatedAt, &acked, &c.AckOK, &c.AckError); err != nil {
		return nil, err
	}
	c.Data, c.AckedAt = data, utcPtr(acked)
	return &c, nil
}

func (db *DB) queryCommands(ctx context.Context, q string, args ...any) ([]*meetsync.Command, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.Command, error) { return scanCommand(r) })
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	return out, nil
}

// CommandList returns a device's commands, oldest first (pending only if
// asked; at most 1000).
func (db *DB) CommandList(ctx context.Context, appID, userID, deviceID string, pendingOnly bool) ([]*meetsync.Command, error) {
	q := "SELECT " + commandCols + " FROM commands WHERE app_id = $1 AND user_id = $2 AND device_id = $3"
	if pendingOnly {
		q += " AND acked_at IS NULL"
	}
	return db.queryCommands(ctx, q+" ORDER BY created_at, id LIMIT 1000", appID, userID, deviceID)
}

// CommandsForSession returns every command of a session, oldest first.
func (db *DB) CommandsForSession(ctx context.Context, appID, userID, sessionID string) ([]*meetsync.Command, error) {
	return db.queryCommands(ctx, "SELECT "+commandCols+" FROM commands WHERE app_id = $1 AND user_id = $2 AND session_id = $3 ORDER BY created_at, id",
		appID, userID, sessionID)
}

// CommandAck records a device's acknowledgement and returns the command;
// acking twice keeps the first. ENOTFOUND (no such command of the device).
// The error text is stored as valid UTF-8 without NUL characters.
func (db *DB) CommandAck(ctx context.Context, appID, userID, deviceID, id string, ok bool, errText string, at time.Time) (*meetsync.Command, error) {
	// The update returns the acked row; a command acked before is read as it is.
	c, err := scanCommand(db.pool.QueryRow(ctx, `WITH acked AS (UPDATE commands SET acked_at = $1, ack_ok = $2, ack_error = $3
			WHERE id = $4 AND app_id = $5 AND user_id = $6 AND device_id = $7 AND acked_at IS NULL RETURNING `+commandCols+`)
		SELECT `+commandCols+` FROM acked
		UNION ALL
		SELECT `+commandCols+` FROM commands WHERE id = $4 AND app_id = $5 AND user_id = $6 AND device_id = $7 AND NOT EXISTS (SELECT 1 FROM acked)`,
		at, ok, cleanText(errText), id, appID, userID, deviceID))
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, interpretError(err, "command "+id)
		}
		return nil, fmt.Errorf("ack command: %w", err)
	}
	return c, nil
}

// UsersDue returns users whose due time has passed (any app), earliest
// first, at most limit (default 100).
func (db *DB) UsersDue(ctx context.Context, now time.Time, limit int) ([]*meetsync.UserState, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.pool.Query(ctx, "SELECT "+userCols+" FROM users WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at LIMIT $2", now, limit)
	if err != nil {
		return nil, fmt.Errorf("due users: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.UserState, error) { return scanUser(r) })
	if err != nil {
		return nil, fmt.Errorf("due users: %w", err)
	}
	return out, nil
}
