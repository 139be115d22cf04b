package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/meetsync/meetsync"
)

const (
	userCols = "app_id, user_id, last_seq, status, reason, meeting_num, device_id, since, status_seq, business_side, meeting_side, updated_at, devices, extra, due_at"

	idemGetSQL = "SELECT request_hash, results FROM idempotency_keys WHERE app_id = ? AND key = ?"
	idemPutSQL = "INSERT INTO idempotency_keys (app_id, key, request_hash, results, created_at) VALUES (?, ?, ?, ?, ?)"
	userGetSQL = "SELECT " + userCols + " FROM users WHERE app_id = ? AND user_id = ?"
	userPutSQL = `INSERT INTO users (` + userCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (app_id, user_id) DO UPDATE SET last_seq = excluded.last_seq, status = excluded.status, reason = excluded.reason,
		meeting_num = excluded.meeting_num, device_id = excluded.device_id, since = excluded.since, status_seq = excluded.status_seq,
		business_side = excluded.business_side, meeting_side = excluded.meeting_side, updated_at = excluded.updated_at,
		devices = excluded.devices, extra = excluded.extra, due_at = excluded.due_at`
	eventByIDSQL  = "SELECT e.id, e.seq, e.stale, e.pos FROM event_ids i JOIN events e ON e.pos = i.pos WHERE i.app_id = ? AND i.id = ?"
	eventIDPutSQL = "INSERT INTO event_ids (app_id, id, pos) VALUES (?, ?, ?)"
	// The newest event of the device with that client_seq, read from the
	// covering events_user index newest first.
	eventByClientSeqSQL = `SELECT id, seq, stale, pos FROM events INDEXED BY events_user
		WHERE app_id = ? AND user_id = ? AND device_id = ? AND client_seq = ? ORDER BY seq DESC LIMIT 1`
	eventInsertSQL = `INSERT INTO events (app_id, id, type, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data, schema_version)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	queueActiveSQL    = "SELECT count(*) FROM (SELECT 1 FROM deliveries WHERE endpoint_id = ? AND user_id = ? AND status IN ('pending', 'failed') LIMIT 1)"
	deliveryInsertSQL = `INSERT INTO deliveries (app_id, endpoint_id, event_pos, event_id, event_type, user_id, seq, status, head, next_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)`
	supersedableSQL = `SELECT pos, next_at, head FROM deliveries WHERE endpoint_id = ? AND user_id = ? AND status = 'pending'
		AND attempts = 0 AND claim_owner = '' AND event_type = ? AND seq < ?`
)

type scanner interface{ Scan(...any) error }

func scanUser(sc scanner) (*meetsync.UserState, error) {
	var u meetsync.UserState
	var status, reason int
	var since, updated int64
	var devices, extra []byte
	var business, meeting string
	var due int64
	if err := sc.Scan(&u.AppID, &u.UserID, &u.LastSeq, &status, &reason, &u.MeetingNum, &u.DeviceID, &since, &u.StatusSeq,
		&business, &meeting, &updated, &devices, &extra, &due); err != nil {
		return nil, err
	}
	u.Status, u.Reason = meetsync.MeetingStatus(status), meetsync.Reason(reason)
	u.Since, u.UpdatedAt = fromMicros(since), fromMicros(updated)
	if due != 0 {
		u.DueAt = fromMicros(due)
	}
	var err error
	if u.Devices, err = meetsync.DecodeDevices(devices); err != nil {
		return nil, err
	}
	return &u, meetsync.DecodeUserExtra(extra, business, meeting, &u)
}

type userKey struct{ app, user string }

type queueKey struct{ endpoint, user string }

// appendTx is the state of one transaction that appends events.
type appendTx struct {
	ctx    context.Context
	db     *DB
	tx     wtx
	users  map[userKey]*meetsync.UserState
	order  []*meetsync.UserState // users an event was applied to, to write back
	dirty  map[userKey]bool
	queues map[queueKey]bool // has an active delivery
}

// newAppendTx starts appending inside tx. The caller holds db.writeMu.
func (db *DB) newAppendTx(ctx context.Context, tx *sql.Tx) *appendTx {
	return &appendTx{ctx: ctx, db: db, tx: wtx{db, tx}, users: map[userKey]*meetsync.UserState{}, dirty: map[userKey]bool{},
		queues: map[queueKey]bool{}}
}

// committed publishes the transaction's user states to the cache; the
// caller holds db.writeMu and the transaction committed.
func (at *appendTx) committed() {
	at.db.userCache.put(at.order)
}

// EventsAppend commits every request's events in one transaction.
func (db *DB) EventsAppend(ctx context.Context, reqs []*meetsync.AppendRequest) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("append events: begin: %w", err)
	}
	defer tx.Rollback()
	at := db.newAppendTx(ctx, tx)
	for _, req := range reqs {
		if err := at.appendRequest(req); err != nil {
			return fmt.Errorf("append events: %w", err)
		}
	}
	if err := at.flushUsers(); err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		db.userCache.clear()
		return fmt.Errorf("append events: commit: %w", err)
	}
	at.committed()
	return nil
}

func (at *appendTx) appendRequest(req *meetsync.AppendRequest) error {
	req.Results, req.Err = nil, nil
	if req.IdempotencyKey != "" {
		var hash, results []byte
		err := at.tx.QueryRowContext(at.ctx, idemGetSQL, req.AppID, req.IdempotencyKey).Scan(&hash, &results)
		if err == nil {
			if !bytes.Equal(hash, req.RequestHash) {
				req.Err = meetsync.Errorf(meetsync.ECONFLICT, "Idempotency-Key %q was already used with a different request body", req.IdempotencyKey)
				return nil
			}
			req.Results, err = meetsync.UnmarshalResults(results)
			return err
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	if x := req.ExpectSession; x != nil {
		u, err := at.user(req.AppID, x.UserID)
		if err != nil {
			return err
		}
		if u.Session.Version != x.Version {
			req.Err = meetsync.Errorf(meetsync.ECONFLICT, "the session of user %s changed concurrently; try again", x.UserID)
			return nil
		}
	}
	if ok, err := at.checkInvitations(req); err != nil || !ok {
		return err
	}
	req.Results = make([]meetsync.EventResult, 0, len(req.Events))
	for _, ev := range req.Events {
		r, err := at.appendEvent(ev)
		if err != nil {
			return err
		}
		req.Results = append(req.Results, r)
	}
	if req.IdempotencyKey != "" {
		if _, err := at.tx.ExecContext(at.ctx, idemPutSQL, req.AppID, req.IdempotencyKey, req.RequestHash,
			meetsync.MarshalResults(req.Results), micros(req.Events[0].ReceivedAt)); err != nil {
			return err
		}
	}
	return nil
}

func (at *appendTx) appendEvent(ev *meetsync.Event) (meetsync.EventResult, error) {
	var r meetsync.EventResult
	if ev.CallerID {
		err := at.tx.QueryRowContext(at.ctx, eventByIDSQL, ev.AppID, ev.ID).Scan(&r.ID, &r.Seq, &r.Stale, &r.Pos)
		if err == nil {
			r.Duplicate = true
			return r, nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return r, err
		}
	}
	u, err := at.user(ev.AppID, ev.UserID)
	if err != nil {
		return r, err
	}
	if u.NeedsDuplicateCheck(ev) {
		err := at.tx.QueryRowContext(at.ctx, eventByClientSeqSQL, ev.AppID, ev.UserID, ev.DeviceID, ev.ClientSeq).Scan(&r.ID, &r.Seq, &r.Stale, &r.Pos)
		if err == nil {
			r.Duplicate = true
			return r, nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return r, err
		}
	}
	u.Apply(ev)
	if k := (userKey{ev.AppID, ev.UserID}); !at.dirty[k] {
		at.dirty[k] = true
		at.order = append(at.order, u)
	}
	res, err := at.tx.ExecContext(at.ctx, eventInsertSQL, ev.AppID, ev.ID, ev.Type, ev.UserID, ev.Seq, micros(ev.OccurredAt),
		micros(ev.ReceivedAt), ev.Source, ev.DeviceID, ev.ClientSeq, ev.Stale, []byte(ev.Data), ev.SchemaVersion)
	if err != nil {
		return r, interpretError(err, "event "+ev.ID)
	}
	if ev.Pos, err = res.LastInsertId(); err != nil {
		return r, err
	}
	if ev.CallerID {
		if _, err := at.tx.ExecContext(at.ctx, eventIDPutSQL, ev.AppID, ev.ID, ev.Pos); err != nil {
			return r, interpretError(err, "event "+ev.ID)
		}
	}
	if ev.Effects != nil && ev.Effects.Invitation != nil {
		if err := at.writeInvitation(ev.Effects.Invitation); err != nil {
			return r, err
		}
	}
	if err := at.fanOut(ev); err != nil {
		return r, err
	}
	return meetsync.EventResult{ID: ev.ID, Seq: ev.Seq, Stale: ev.Stale, Pos: ev.Pos}, nil
}

// user returns a user's state for this transaction: from the store's cache
// (a copy), else from its row, else a new user.
func (at *appendTx) user(appID, userID string) (*meetsync.UserState, error) {
	k := userKey{appID, userID}
	if u, ok := at.users[k]; ok {
		return u, nil
	}
	u := at.db.userCache.get(k)
	if u == nil {
		var err error
		u, err = scanUser(at.tx.QueryRowContext(at.ctx, userGetSQL, appID, userID))
		if errors.Is(err, sql.ErrNoRows) {
			u = meetsync.NewUserState(appID, userID)
		} else if err != nil {
			return nil, err
		}
	}
	at.users[k] = u
	return u, nil
}

func (at *appendTx) flushUsers() error {
	for _, u := range at.order {
		if _, err := at.tx.ExecContext(at.ctx, userPutSQL, u.AppID, u.UserID, u.LastSeq, int(u.Status), int(u.Reason), u.MeetingNum,
			u.DeviceID, micros(u.Since), u.StatusSeq, u.Session.Business, u.Session.Meeting, micros(u.UpdatedAt), meetsync.EncodeDevices(u.Devices),
			meetsync.EncodeUserExtra(u), micros(u.DueAt)); err != nil {
			return err
		}
	}
	return nil
}

const eventCols = "pos, id, type, app_id, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data, schema_version"

func scanEvent(sc scanner) (*meetsync.Event, error) {
	var e meetsync.Event
	var occ, rec int64
	var data []byte
	if err := sc.Scan(&e.Pos, &e.ID, &e.Type, &e.AppID, &e.UserID, &e.Seq, &occ, &rec, &e.Source, &e.DeviceID, &e.ClientSeq, &e.Stale, &data,
		&e.SchemaVersion); err != nil {
		return nil, err
	}
	e.OccurredAt, e.ReceivedAt, e.Data = fromMicros(occ), fromMicros(rec), data
	return &e, nil
}

// typeCondition renders a TypeFilter as SQL: exact names and prefix ranges
// (type > 'meeting.' AND type < 'meeting/'), which need no LIKE escaping.
func typeCondition(f meetsync.TypeFilter, args []any) (string, []any) {
	if len(f) == 0 {
		return "", args
	}
	var parts []string
	for _, p := range f {
		if prefix, ok := strings.CutSuffix(p, ".*"); ok {
			parts = append(parts, "(type > ? AND type < ?)")
			args = append(args, prefix+".", prefix+"/")
		} else {
			parts = append(parts, "type = ?")
			args = append(args, p)
		}
	}
	return " AND (" + strings.Join(parts, " OR ") + ")", args
}

// EventList returns events after a feed position, in feed order.
func (db *DB) EventList(ctx context.Context, p meetsync.EventListParams) ([]*meetsync.Event, error) {
	q := "SELECT " + eventCols + " FROM events WHERE app_id = ? AND pos > ?"
	args := []any{p.AppID, p.After}
	order := " ORDER BY pos"
	if p.UserID != "" {
		// A user's events in its index: seq order is feed order per user,
		// and pos (the rowid) is checked on the index entries themselves.
		q = "SELECT " + eventCols + " FROM events INDEXED BY events_user WHERE app_id = ? AND pos > ? AND user_id = ?"
		args = append(args, p.UserID)
		order = " ORDER BY seq"
	}
	cond, args := typeCondition(p.Types, args)
	q += cond + order + " LIMIT ?"
	args = append(args, p.Limit)
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	out := make([]*meetsync.Event, 0, p.Limit)
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventFeedHead returns the app's newest feed position.
func (db *DB) EventFeedHead(ctx context.Context, appID string) (int64, error) {
	var pos sql.NullInt64
	if err := db.reader.QueryRowContext(ctx, "SELECT max(pos) FROM events WHERE app_id = ?", appID).Scan(&pos); err != nil {
		return 0, fmt.Errorf("feed head: %w", err)
	}
	return pos.Int64, nil
}

// UserGet returns a user's state with its devices. ENOTFOUND.
func (db *DB) UserGet(ctx context.Context, appID, userID string) (*meetsync.UserState, error) {
	u, err := scanUser(db.reader.QueryRowContext(ctx, "SELECT "+userCols+" FROM users WHERE app_id = ? AND user_id = ?", appID, userID))
	if err != nil {
		return nil, interpretError(err, "user "+userID)
	}
	return u, nil
}

// UserList returns users ordered by id.
func (db *DB) UserList(ctx context.Context, p meetsync.UserListParams) ([]*meetsync.UserState, error) {
	q := "SELECT " + userCols + " FROM users WHERE app_id = ? AND user_id > ?"
	args := []any{p.AppID, p.After}
	if p.Status != nil {
		q += " AND status = ?"
		args = append(args, int(*p.Status))
	}
	q += " ORDER BY user_id LIMIT ?"
	args = append(args, p.Limit)
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []*meetsync.UserState
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// fanOut writes the deliveries of ev to every enabled endpoint of its app
// that subscribes to its type (the transactional outbox), coalescing an
// event of a debounced type (a status change, or a custom type registered
// with debounce) with a pending, unattempted older one of the same type
// inside the endpoint's debounce window.
func (at *appendTx) fanOut(ev *meetsync.Event) error {
	eps, err := at.appEndpoints(ev.AppID)
	if err != nil {
		return err
	}
	// Whether ev's type is debounced, looked up once an endpoint with a
	// debounce window needs it.
	var debounced, known bool
	for _, ep := range eps {
		if !ep.Subscribed(ev.Type) {
			continue
		}
		k := queueKey{ep.ID, ev.UserID}
		active, ok := at.queues[k]
		if !ok {
			var n int
			if err := at.tx.QueryRowContext(at.ctx, queueActiveSQL, ep.ID, ev.UserID).Scan(&n); err != nil {
				return err
			}
			active = n > 0
		}
		nextAt := ev.ReceivedAt
		if ep.Debounce > 0 && !ev.Stale && !known {
			if debounced, err = at.debounces(ev); err != nil {
				return err
			}
			known = true
		}
		coalesce := debounced && ep.Debounce > 0 && !ev.Stale
		if coalesce {
			nextAt = nextAt.Add(ep.Debounce)
		}
		now := micros(ev.ReceivedAt)
		res, err := at.tx.ExecContext(at.ctx, deliveryInsertSQL, ev.AppID, ep.ID, ev.Pos, ev.ID, ev.Type, ev.UserID, ev.Seq, !active, micros(nextAt), now, now)
		if err != nil {
			return err
		}
		at.queues[k] = true
		if !coalesce || !active {
			continue
		}
		pos, err := res.LastInsertId()
		if err != nil {
			return err
		}
		if err := at.supersede(ep.ID, ev.UserID, ev.Type, ev.Seq, pos, micros(nextAt), now); err != nil {
			return err
		}
	}
	return nil
}

// debounces reports whether ev's type is debounced: meeting.status_changed,
// or a custom type registered with debounce.
func (at *appendTx) debounces(ev *meetsync.Event) (bool, error) {
	if ev.Type == meetsync.TypeMeetingStatusChanged {
		return true, nil
	}
	if meetsync.IsReservedType(ev.Type) {
		return false, nil
	}
	return at.debouncedType(ev.AppID, ev.Type)
}

// supersede marks older pending, unattempted, unclaimed deliveries of the
// same type in the queue superseded by delivery pos, which inherits the
// earliest of their due times (so a flapping connection cannot postpone
// delivery forever).
func (at *appendTx) supersede(endpointID, userID, typ string, seq, pos, nextAt, now int64) error {
	rows, err := at.tx.QueryContext(at.ctx, supersedableSQL, endpointID, userID, typ, seq)
	if err != nil {
		return err
	}
	type old struct {
		pos, nextAt int64
		head        bool
	}
	var olds []old
	for rows.Next() {
		var o old
		if err := rows.Scan(&o.pos, &o.nextAt, &o.head); err != nil {
			rows.Close()
			return err
		}
		olds = append(olds, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(olds) == 0 {
		return err
	}
	wasHead := false
	for _, o := range olds {
		if _, err := at.tx.ExecContext(at.ctx, "UPDATE deliveries SET status = 'superseded', head = 0, superseded_by = ?, updated_at = ? WHERE pos = ?",
			deliveryID(pos), now, o.pos); err != nil {
			return err
		}
		nextAt = min(nextAt, o.nextAt)
		wasHead = wasHead || o.head
	}
	if _, err := at.tx.ExecContext(at.ctx, "UPDATE deliveries SET next_at = ? WHERE pos = ?", nextAt, pos); err != nil {
		return err
	}
	if wasHead {
		return promoteHead(at.ctx, at.tx, endpointID, userID)
	}
	return nil
}

// appEndpoints returns the enabled endpoints of an app, from the store's
// cache (endpoint writes clear it under the same write lock).
func (at *appendTx) appEndpoints(appID string) ([]*meetsync.Endpoint, error) {
	if eps, ok := at.db.endpoints[appID]; ok {
		return eps, nil
	}
	rows, err := at.tx.QueryContext(at.ctx, "SELECT "+endpointCols+" FROM endpoints WHERE app_id = ? AND disabled = 0", appID)
	if err != nil {
		return nil, err
	}
	eps, err := collectEndpoints(rows)
	if err != nil {
		return nil, err
	}
	at.db.endpoints[appID] = eps
	return eps, nil
}
