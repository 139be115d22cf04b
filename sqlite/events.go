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

// writerStmts are prepared once on the single writer connection.
type writerStmts struct {
	idemGet, idemPut            *sql.Stmt
	userGet, devicesGet         *sql.Stmt
	userPut, devicePut          *sql.Stmt
	eventByID, eventByClientSeq *sql.Stmt
	eventInsert                 *sql.Stmt
	queueActive, deliveryInsert *sql.Stmt
	supersedable                *sql.Stmt
}

func (s *writerStmts) prepare(db *sql.DB) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.idemGet, "SELECT request_hash, results FROM idempotency_keys WHERE app_id = ? AND key = ?"},
		{&s.idemPut, "INSERT INTO idempotency_keys (app_id, key, request_hash, results, created_at) VALUES (?, ?, ?, ?, ?)"},
		{&s.userGet, "SELECT " + userCols + " FROM users WHERE app_id = ? AND user_id = ?"},
		{&s.devicesGet, "SELECT " + deviceCols + " FROM devices WHERE app_id = ? AND user_id = ? ORDER BY device_id"},
		{&s.userPut, `INSERT INTO users (app_id, user_id, last_seq, status, reason, meeting_num, device_id, since, status_seq, business_side, meeting_side, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (app_id, user_id) DO UPDATE SET last_seq = excluded.last_seq, status = excluded.status, reason = excluded.reason,
			meeting_num = excluded.meeting_num, device_id = excluded.device_id, since = excluded.since, status_seq = excluded.status_seq,
			business_side = excluded.business_side, meeting_side = excluded.meeting_side, updated_at = excluded.updated_at`},
		{&s.devicePut, `INSERT INTO devices (app_id, user_id, device_id, last_client_seq, status, reason, meeting_num, since, status_seq, last_seen_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (app_id, user_id, device_id) DO UPDATE SET last_client_seq = excluded.last_client_seq, status = excluded.status,
			reason = excluded.reason, meeting_num = excluded.meeting_num, since = excluded.since, status_seq = excluded.status_seq,
			last_seen_at = excluded.last_seen_at`},
		{&s.eventByID, "SELECT id, seq, stale, pos FROM events WHERE app_id = ? AND id = ?"},
		{&s.eventByClientSeq, "SELECT id, seq, stale, pos FROM events WHERE app_id = ? AND user_id = ? AND device_id = ? AND client_seq = ?"},
		{&s.queueActive, "SELECT count(*) FROM (SELECT 1 FROM deliveries WHERE endpoint_id = ? AND user_id = ? AND status IN ('pending', 'failed') LIMIT 1)"},
		{&s.deliveryInsert, `INSERT INTO deliveries (app_id, endpoint_id, event_pos, event_id, event_type, user_id, seq, status, head, next_at, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)`},
		{&s.supersedable, `SELECT pos, next_at, head FROM deliveries WHERE endpoint_id = ? AND user_id = ? AND status = 'pending'
			AND attempts = 0 AND claim_owner = '' AND event_type = 'meeting.status_changed' AND seq < ?`},
		{&s.eventInsert, `INSERT INTO events (app_id, id, type, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
	} {
		st, err := db.Prepare(p.sql)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", strings.Fields(p.sql)[0:3], err)
		}
		*p.dst = st
	}
	return nil
}

func (s *writerStmts) close() {
	for _, st := range []*sql.Stmt{s.idemGet, s.idemPut, s.userGet, s.devicesGet, s.userPut, s.devicePut, s.eventByID, s.eventByClientSeq,
		s.eventInsert, s.queueActive, s.deliveryInsert, s.supersedable} {
		if st != nil {
			st.Close()
		}
	}
}

const userCols = "app_id, user_id, last_seq, status, reason, meeting_num, device_id, since, status_seq, business_side, meeting_side, updated_at"
const deviceCols = "device_id, last_client_seq, status, reason, meeting_num, since, status_seq, last_seen_at"

type scanner interface{ Scan(...any) error }

func scanUser(sc scanner) (*meetsync.UserState, error) {
	var u meetsync.UserState
	var status, reason int
	var since, updated int64
	if err := sc.Scan(&u.AppID, &u.UserID, &u.LastSeq, &status, &reason, &u.MeetingNum, &u.DeviceID, &since, &u.StatusSeq,
		&u.BusinessSide, &u.MeetingSide, &updated); err != nil {
		return nil, err
	}
	u.Status, u.Reason = meetsync.MeetingStatus(status), meetsync.Reason(reason)
	u.Since, u.UpdatedAt = fromMicros(since), fromMicros(updated)
	return &u, nil
}

func scanDevices(rows *sql.Rows) ([]*meetsync.DeviceState, error) {
	defer rows.Close()
	var out []*meetsync.DeviceState
	for rows.Next() {
		var d meetsync.DeviceState
		var status, reason int
		var since, seen int64
		if err := rows.Scan(&d.DeviceID, &d.LastClientSeq, &status, &reason, &d.MeetingNum, &since, &d.StatusSeq, &seen); err != nil {
			return nil, err
		}
		d.Status, d.Reason = meetsync.MeetingStatus(status), meetsync.Reason(reason)
		d.Since, d.LastSeenAt = fromMicros(since), fromMicros(seen)
		out = append(out, &d)
	}
	return out, rows.Err()
}

type userKey struct{ app, user string }

// appendTx is the state of one EventsAppend transaction.
type appendTx struct {
	ctx       context.Context
	tx        wtx
	st        txStmts
	users     map[userKey]*meetsync.UserState
	order     []*meetsync.UserState // users an event was applied to, to write back
	dirty     map[userKey]bool
	endpoints map[string][]*meetsync.Endpoint // enabled endpoints per app
	queues    map[queueKey]bool               // has an active delivery
}

type queueKey struct{ endpoint, user string }

type txStmts struct {
	idemGet, idemPut, userGet, devicesGet, userPut, devicePut, eventByID, eventByClientSeq, eventInsert *sql.Stmt
	queueActive, deliveryInsert, supersedable                                                           *sql.Stmt
}

// newAppendTx prepares the statements of an append inside tx.
func (db *DB) newAppendTx(ctx context.Context, tx *sql.Tx) *appendTx {
	s := &db.stmts
	at := &appendTx{ctx: ctx, tx: wtx{db, tx}, users: make(map[userKey]*meetsync.UserState)}
	at.st = txStmts{tx.StmtContext(ctx, s.idemGet), tx.StmtContext(ctx, s.idemPut), tx.StmtContext(ctx, s.userGet),
		tx.StmtContext(ctx, s.devicesGet), tx.StmtContext(ctx, s.userPut), tx.StmtContext(ctx, s.devicePut),
		tx.StmtContext(ctx, s.eventByID), tx.StmtContext(ctx, s.eventByClientSeq), tx.StmtContext(ctx, s.eventInsert),
		tx.StmtContext(ctx, s.queueActive), tx.StmtContext(ctx, s.deliveryInsert), tx.StmtContext(ctx, s.supersedable)}
	return at
}

// EventsAppend commits every request's events in one transaction.
func (db *DB) EventsAppend(ctx context.Context, reqs []*meetsync.AppendRequest) error {
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
		return fmt.Errorf("append events: commit: %w", err)
	}
	return nil
}

func (at *appendTx) appendRequest(req *meetsync.AppendRequest) error {
	req.Results, req.Err = nil, nil
	if req.IdempotencyKey != "" {
		var hash, results []byte
		err := at.st.idemGet.QueryRowContext(at.ctx, req.AppID, req.IdempotencyKey).Scan(&hash, &results)
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
	req.Results = make([]meetsync.EventResult, 0, len(req.Events))
	for _, ev := range req.Events {
		r, err := at.appendEvent(ev)
		if err != nil {
			return err
		}
		req.Results = append(req.Results, r)
	}
	if req.IdempotencyKey != "" {
		if _, err := at.st.idemPut.ExecContext(at.ctx, req.AppID, req.IdempotencyKey, req.RequestHash,
			meetsync.MarshalResults(req.Results), micros(req.Events[0].ReceivedAt)); err != nil {
			return err
		}
	}
	return nil
}

func (at *appendTx) appendEvent(ev *meetsync.Event) (meetsync.EventResult, error) {
	u, err := at.user(ev.AppID, ev.UserID)
	if err != nil {
		return meetsync.EventResult{}, err
	}
	var r meetsync.EventResult
	if ev.CallerID {
		err := at.st.eventByID.QueryRowContext(at.ctx, ev.AppID, ev.ID).Scan(&r.ID, &r.Seq, &r.Stale, &r.Pos)
		if err == nil {
			r.Duplicate = true
			return r, nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return r, err
		}
	}
	if u.NeedsDuplicateCheck(ev) {
		err := at.st.eventByClientSeq.QueryRowContext(at.ctx, ev.AppID, ev.UserID, ev.DeviceID, ev.ClientSeq).Scan(&r.ID, &r.Seq, &r.Stale, &r.Pos)
		if err == nil {
			r.Duplicate = true
			return r, nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return r, err
		}
	}
	u.Apply(ev)
	if k := (userKey{ev.AppID, ev.UserID}); !at.dirty[k] {
		if at.dirty == nil {
			at.dirty = map[userKey]bool{}
		}
		at.dirty[k] = true
		at.order = append(at.order, u)
	}
	res, err := at.st.eventInsert.ExecContext(at.ctx, ev.AppID, ev.ID, ev.Type, ev.UserID, ev.Seq, micros(ev.OccurredAt),
		micros(ev.ReceivedAt), ev.Source, ev.DeviceID, ev.ClientSeq, ev.Stale, []byte(ev.Data))
	if err != nil {
		return r, interpretError(err, "event "+ev.ID)
	}
	if ev.Pos, err = res.LastInsertId(); err != nil {
		return r, err
	}
	if err := at.fanOut(ev); err != nil {
		return r, err
	}
	return meetsync.EventResult{ID: ev.ID, Seq: ev.Seq, Stale: ev.Stale, Pos: ev.Pos}, nil
}

// user loads a user's state (and devices) once per transaction.
func (at *appendTx) user(appID, userID string) (*meetsync.UserState, error) {
	k := userKey{appID, userID}
	if u, ok := at.users[k]; ok {
		return u, nil
	}
	u, err := scanUser(at.st.userGet.QueryRowContext(at.ctx, appID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		u = meetsync.NewUserState(appID, userID)
	} else if err != nil {
		return nil, err
	} else {
		rows, err := at.st.devicesGet.QueryContext(at.ctx, appID, userID)
		if err != nil {
			return nil, err
		}
		if u.Devices, err = scanDevices(rows); err != nil {
			return nil, err
		}
	}
	at.users[k] = u
	return u, nil
}

func (at *appendTx) flushUsers() error {
	for _, u := range at.order {
		if _, err := at.st.userPut.ExecContext(at.ctx, u.AppID, u.UserID, u.LastSeq, int(u.Status), int(u.Reason), u.MeetingNum,
			u.DeviceID, micros(u.Since), u.StatusSeq, u.BusinessSide, u.MeetingSide, micros(u.UpdatedAt)); err != nil {
			return err
		}
		for _, d := range u.Devices {
			if !d.Dirty {
				continue
			}
			if _, err := at.st.devicePut.ExecContext(at.ctx, u.AppID, u.UserID, d.DeviceID, d.LastClientSeq, int(d.Status), int(d.Reason),
				d.MeetingNum, micros(d.Since), d.StatusSeq, micros(d.LastSeenAt)); err != nil {
				return err
			}
			d.Dirty = false
		}
	}
	return nil
}

const eventCols = "pos, id, type, app_id, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data"

func scanEvent(sc scanner) (*meetsync.Event, error) {
	var e meetsync.Event
	var occ, rec int64
	var data []byte
	if err := sc.Scan(&e.Pos, &e.ID, &e.Type, &e.AppID, &e.UserID, &e.Seq, &occ, &rec, &e.Source, &e.DeviceID, &e.ClientSeq, &e.Stale, &data); err != nil {
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
	if p.UserID != "" {
		q += " AND user_id = ?"
		args = append(args, p.UserID)
	}
	cond, args := typeCondition(p.Types, args)
	q += cond + " ORDER BY pos LIMIT ?"
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
	rows, err := db.reader.QueryContext(ctx, "SELECT "+deviceCols+" FROM devices WHERE app_id = ? AND user_id = ? ORDER BY device_id", appID, userID)
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	if u.Devices, err = scanDevices(rows); err != nil {
		return nil, fmt.Errorf("get user: %w", err)
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
// that subscribes to its type (the transactional outbox), coalescing a
// status change with a pending, unattempted older one inside the
// endpoint's debounce window.
func (at *appendTx) fanOut(ev *meetsync.Event) error {
	eps, err := at.appEndpoints(ev.AppID)
	if err != nil {
		return err
	}
	for _, ep := range eps {
		if !ep.Subscribed(ev.Type) {
			continue
		}
		k := queueKey{ep.ID, ev.UserID}
		active, ok := at.queues[k]
		if !ok {
			var n int
			if err := at.st.queueActive.QueryRowContext(at.ctx, ep.ID, ev.UserID).Scan(&n); err != nil {
				return err
			}
			active = n > 0
		}
		nextAt := ev.ReceivedAt
		coalesce := ev.Type == meetsync.TypeMeetingStatusChanged && ep.Debounce > 0 && !ev.Stale
		if coalesce {
			nextAt = nextAt.Add(ep.Debounce)
		}
		now := micros(ev.ReceivedAt)
		res, err := at.st.deliveryInsert.ExecContext(at.ctx, ev.AppID, ep.ID, ev.Pos, ev.ID, ev.Type, ev.UserID, ev.Seq, !active, micros(nextAt), now, now)
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
		if err := at.supersede(ep.ID, ev.UserID, ev.Seq, pos, micros(nextAt), now); err != nil {
			return err
		}
	}
	return nil
}

// supersede marks older pending, unattempted, unclaimed status deliveries
// of the queue superseded by delivery pos, which inherits the earliest of
// their due times (so a flapping connection cannot postpone delivery forever).
func (at *appendTx) supersede(endpointID, userID string, seq, pos, nextAt, now int64) error {
	rows, err := at.st.supersedable.QueryContext(at.ctx, endpointID, userID, seq)
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

// appEndpoints returns the enabled endpoints of an app, loaded once per transaction.
func (at *appendTx) appEndpoints(appID string) ([]*meetsync.Endpoint, error) {
	if eps, ok := at.endpoints[appID]; ok {
		return eps, nil
	}
	if at.endpoints == nil {
		at.endpoints = map[string][]*meetsync.Endpoint{}
		at.queues = map[queueKey]bool{}
	}
	rows, err := at.tx.QueryContext(at.ctx, "SELECT "+endpointCols+" FROM endpoints WHERE app_id = ? AND disabled = 0", appID)
	if err != nil {
		return nil, err
	}
	eps, err := collectEndpoints(rows)
	if err != nil {
		return nil, err
	}
	at.endpoints[appID] = eps
	return eps, nil
}
