package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
)

const (
	userCols = "app_id, user_id, last_seq, status, reason, meeting_num, device_id, since, status_seq, business_side, meeting_side, updated_at, devices, extra, due_at"

	idemGetSQL = "SELECT request_hash, results FROM idempotency_keys WHERE app_id = ? AND key = ?"
	idemPutSQL = "INSERT INTO idempotency_keys (app_id, key, request_hash, results, created_at) VALUES (?, ?, ?, ?, ?)"
	userGetSQL = "SELECT " + userCols + " FROM users WHERE app_id = ? AND user_id = ?"
	userPutSQL = `INSERT INTO users (` + userCols + `, state_pos) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (app_id, user_id) DO UPDATE SET last_seq = excluded.last_seq, status = excluded.status, reason = excluded.reason,
		meeting_num = excluded.meeting_num, device_id = excluded.device_id, since = excluded.since, status_seq = excluded.status_seq,
		business_side = excluded.business_side, meeting_side = excluded.meeting_side, updated_at = excluded.updated_at,
		devices = excluded.devices, extra = excluded.extra, due_at = excluded.due_at, state_pos = excluded.state_pos`
	eventByIDSQL      = "SELECT e.id, e.seq, e.stale, e.pos FROM event_ids i JOIN events e ON e.pos = i.pos WHERE i.app_id = ? AND i.id = ?"
	eventIDPutSQL     = "INSERT INTO event_ids (app_id, id, pos) VALUES (?, ?, ?)"
	queueActiveSQL    = "SELECT count(*) FROM (SELECT 1 FROM deliveries WHERE endpoint_id = ? AND user_id = ? AND status IN ('pending', 'failed') LIMIT 1)"
	deliveryInsertSQL = `INSERT INTO deliveries (app_id, endpoint_id, event_pos, event_id, event_type, user_id, seq, status, head, next_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)`
	supersedableSQL = `SELECT pos, next_at, head FROM deliveries WHERE endpoint_id = ? AND user_id = ? AND status = 'pending'
		AND attempts = 0 AND claim_owner = '' AND event_type = ? AND seq < ?`
)

// eventRowCols is the number of columns of an events row as inserted.
const eventRowCols = 14

var eventInsertSQL = multiRowSQL(`INSERT INTO events (pos, app_id, id, type, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data, schema_version)
	VALUES `, eventRowCols)

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

// putUser writes a user's row, reflecting the events up to statePos.
func putUser(ctx context.Context, w wtx, u *meetsync.UserState, statePos int64) error {
	_, err := w.ExecContext(ctx, userPutSQL, u.AppID, u.UserID, u.LastSeq, int(u.Status), int(u.Reason), u.MeetingNum,
		u.DeviceID, micros(u.Since), u.StatusSeq, u.Session.Business, u.Session.Meeting, micros(u.UpdatedAt), meetsync.EncodeDevices(u.Devices),
		meetsync.EncodeUserExtra(u), micros(u.DueAt), statePos)
	return err
}

type userKey struct{ app, user string }

type queueKey struct{ endpoint, user string }

// appendTx is the state of one transaction that appends events.
type appendTx struct {
	ctx    context.Context
	db     *DB
	tx     wtx
	users  map[userKey]*txUser
	order  []*txUser         // users touched, to publish after the commit
	queues map[queueKey]bool // has an active delivery
	// rows holds the events rows not yet inserted (eventRowCols values
	// each): they go in several per statement, before anything reads
	// events in the transaction (finish).
	rows    []any
	feed    []feedEntry                     // the events written, in position order
	ids     map[string]meetsync.EventResult // caller-supplied event ids written here, by app_id + "\x00" + id
	nextPos int64                           // the feed position the next event gets
	maxPos  int64                           // the highest feed position written
	// deliveries counts the deliveries fanOut inserted.
	deliveries int
}

// txUser is a user touched by an append transaction.
type txUser struct {
	k        userKey
	u        *meetsync.UserState
	startDue time.Time
	// written: the row must be written in this transaction, because an
	// event carried Effects (which replaying the log cannot redo) or the
	// due time moved (the session engine reads the due_at index).
	written bool
	events  []pendingEvent // this transaction's events of the user
}

// newAppendTx starts appending inside tx. The caller holds db.writeMu.
func (db *DB) newAppendTx(ctx context.Context, tx *sql.Tx) *appendTx {
	return &appendTx{ctx: ctx, db: db, tx: wtx{db, tx}, users: map[userKey]*txUser{}, queues: map[queueKey]bool{}, nextPos: db.nextPos}
}

// committed publishes the transaction's user states and events to the
// cache and the backlog; the caller holds db.writeMu and the transaction
// committed.
func (at *appendTx) committed() {
	db := at.db
	db.nextPos = at.nextPos
	// A written user's state goes to the cache; the others' stay in the
	// backlog (which the materializer hands to the cache with their rows).
	var written []*meetsync.UserState
	cs := make([]committedUser, 0, len(at.order))
	for _, tu := range at.order {
		if len(tu.events) == 0 {
			continue
		}
		if tu.written {
			written = append(written, tu.u)
		}
		cs = append(cs, committedUser{k: tu.k, state: tu.u, written: tu.written, events: tu.events})
	}
	db.userCache.put(written)
	db.backlog.publish(cs, at.feed, time.Now())
	if at.maxPos > 0 {
		db.sync.committedPos.Store(at.maxPos)
	}
	if db.backlog.size() > db.mat.MaxPending {
		select {
		case db.matKick <- struct{}{}:
		default:
		}
	}
}

// EventsAppend commits every request's events in one transaction and
// returns once it is durable. Concurrent calls take turns at the write
// lock, and one waits for the disk while the next one writes (see
// walSyncer): AppendCommitters says how many the ingest service runs.
func (db *DB) EventsAppend(ctx context.Context, reqs []*meetsync.AppendRequest) error {
	t, err := db.eventsAppend(ctx, reqs)
	if err != nil {
		return err
	}
	if err := db.sync.wait(t); err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	return nil
}

// AppendCommitters is 2: while one group commit waits for its fdatasync,
// the next one is written.
func (db *DB) AppendCommitters() int { return 2 }

// eventsAppend commits the requests' events under the write lock and
// returns the commit's durability ticket.
func (db *DB) eventsAppend(ctx context.Context, reqs []*meetsync.AppendRequest) (uint64, error) {
	// The transaction's statements read and write a local file under the
	// store's write lock: nothing in them waits on a network, so a
	// deadline (the committer's CommitTimeout) has nothing to cut short,
	// while a cancelable context makes the driver watch every statement
	// (a goroutine and a progress handler each). Its values are kept.
	ctx = context.WithoutCancel(ctx)
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return 0, fmt.Errorf("append events: begin: %w", err)
	}
	defer tx.Rollback()
	at := db.newAppendTx(ctx, tx)
	for _, req := range reqs {
		if err := at.appendRequest(req); err != nil {
			return 0, fmt.Errorf("append events: %w", err)
		}
	}
	if err := at.finish(); err != nil {
		return 0, fmt.Errorf("append events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		db.userCache.clear()
		return 0, fmt.Errorf("append events: commit: %w", err)
	}
	at.committed()
	return db.sync.ticket(), nil
}

func (at *appendTx) appendRequest(req *meetsync.AppendRequest) error {
	req.Results, req.Err, req.Deliveries = nil, nil, 0
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
		tu, err := at.user(req.AppID, x.UserID)
		if err != nil {
			return err
		}
		if tu.u.Session.Version != x.Version {
			req.Err = meetsync.Errorf(meetsync.ECONFLICT, "the session of user %s changed concurrently; try again", x.UserID)
			return nil
		}
	}
	if ok, err := at.checkInvitations(req); err != nil || !ok {
		return err
	}
	req.Results = make([]meetsync.EventResult, 0, len(req.Events))
	deliveries := at.deliveries
	for _, ev := range req.Events {
		r, err := at.appendEvent(ev)
		if err != nil {
			return err
		}
		req.Results = append(req.Results, r)
	}
	req.Deliveries = at.deliveries - deliveries
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
	var idKey string
	if ev.CallerID {
		idKey = ev.AppID + "\x00" + ev.ID
		if r, ok := at.ids[idKey]; ok {
			r.Duplicate = true
			return r, nil
		}
		err := at.tx.QueryRowContext(at.ctx, eventByIDSQL, ev.AppID, ev.ID).Scan(&r.ID, &r.Seq, &r.Stale, &r.Pos)
		if err == nil {
			r.Duplicate = true
			return r, nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return r, err
		}
	}
	tu, err := at.user(ev.AppID, ev.UserID)
	if err != nil {
		return r, err
	}
	if tu.u.NeedsDuplicateCheck(ev) {
		if r, ok, err := at.findClientSeq(tu, ev); err != nil || ok {
			return r, err
		}
	}
	ev.Pos = at.nextPos
	at.nextPos++
	at.maxPos = ev.Pos
	at.feed = append(at.feed, feedEntry{ev.AppID, ev.Pos})
	tu.u.Apply(ev)
	if ev.Effects != nil {
		tu.written = true
	}
	tu.events = append(tu.events, pendingEvent{pos: ev.Pos, seq: ev.Seq, clientSeq: ev.ClientSeq, id: ev.ID, deviceID: ev.DeviceID, stale: ev.Stale})
	at.rows = append(at.rows, ev.Pos, ev.AppID, ev.ID, ev.Type, ev.UserID, ev.Seq, micros(ev.OccurredAt),
		micros(ev.ReceivedAt), ev.Source, ev.DeviceID, ev.ClientSeq, ev.Stale, []byte(ev.Data), ev.SchemaVersion)
	r = meetsync.EventResult{ID: ev.ID, Seq: ev.Seq, Stale: ev.Stale, Pos: ev.Pos}
	if ev.CallerID {
		if _, err := at.tx.ExecContext(at.ctx, eventIDPutSQL, ev.AppID, ev.ID, ev.Pos); err != nil {
			return r, interpretError(err, "event "+ev.ID)
		}
		if at.ids == nil {
			at.ids = map[string]meetsync.EventResult{}
		}
		at.ids[idKey] = r
	}
	if ev.Effects != nil && ev.Effects.Invitation != nil {
		if err := at.writeInvitation(ev.Effects.Invitation); err != nil {
			return r, err
		}
	}
	if err := at.fanOut(ev); err != nil {
		return r, err
	}
	return r, nil
}

// findClientSeq looks for the newest stored event of ev's device with
// ev's client_seq: in this transaction, in the backlog, then in the
// user's chunks.
func (at *appendTx) findClientSeq(tu *txUser, ev *meetsync.Event) (meetsync.EventResult, bool, error) {
	match := func(p pendingEvent) bool { return p.clientSeq == ev.ClientSeq && p.deviceID == ev.DeviceID }
	for i := len(tu.events) - 1; i >= 0; i-- {
		if match(tu.events[i]) {
			return tu.events[i].result(), true, nil
		}
	}
	pend := at.db.backlog.pending(tu.k)
	for i := len(pend) - 1; i >= 0; i-- {
		if match(pend[i]) {
			return pend[i].result(), true, nil
		}
	}
	// The user's chunks, newest first; an entry whose event was purged
	// since does not count.
	rows, err := at.tx.QueryContext(at.ctx, "SELECT first_pos, entries FROM user_chunks WHERE app_id = ? AND user_id = ? ORDER BY last_pos DESC",
		ev.AppID, ev.UserID)
	if err != nil {
		return meetsync.EventResult{}, false, err
	}
	var found []int64
	for rows.Next() {
		var first int64
		var b []byte
		if err := rows.Scan(&first, &b); err != nil {
			rows.Close()
			return meetsync.EventResult{}, false, err
		}
		es, err := decodeChunk(first, b)
		if err != nil {
			rows.Close()
			return meetsync.EventResult{}, false, err
		}
		for i := len(es) - 1; i >= 0; i-- {
			if es[i].clientSeq == ev.ClientSeq && es[i].deviceID == ev.DeviceID {
				found = append(found, es[i].pos)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return meetsync.EventResult{}, false, err
	}
	for _, pos := range found {
		r := meetsync.EventResult{Pos: pos, Duplicate: true}
		err := at.tx.QueryRowContext(at.ctx, "SELECT id, seq, stale FROM events WHERE pos = ?", pos).Scan(&r.ID, &r.Seq, &r.Stale)
		if err == nil {
			return r, true, nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return r, false, err
		}
	}
	return meetsync.EventResult{}, false, nil
}

// user returns a user's state for this transaction: from the backlog or
// the store's cache (a copy), else from its row, else a new user.
func (at *appendTx) user(appID, userID string) (*txUser, error) {
	k := userKey{appID, userID}
	if tu, ok := at.users[k]; ok {
		return tu, nil
	}
	u := at.db.backlog.user(k)
	if u == nil {
		u = at.db.userCache.get(k)
	}
	if u == nil {
		var err error
		u, err = scanUser(at.tx.QueryRowContext(at.ctx, userGetSQL, appID, userID))
		if errors.Is(err, sql.ErrNoRows) {
			u = meetsync.NewUserState(appID, userID)
		} else if err != nil {
			return nil, err
		}
	}
	tu := &txUser{k: k, u: u, startDue: u.DueAt}
	at.users[k] = tu
	at.order = append(at.order, tu)
	return tu, nil
}

// flushEvents inserts the events rows appended so far.
func (at *appendTx) flushEvents() error {
	err := execRows(at.ctx, at.tx, eventInsertSQL, eventRowCols, at.rows)
	at.rows = at.rows[:0]
	return interpretError(err, "event")
}

// finish inserts the pending events rows and writes the rows of the
// users whose change cannot wait for the backlog (see txUser.written).
func (at *appendTx) finish() error {
	if err := at.flushEvents(); err != nil {
		return err
	}
	for _, tu := range at.order {
		if len(tu.events) == 0 {
			continue
		}
		if !tu.u.DueAt.Equal(tu.startDue) {
			tu.written = true
		}
		if !tu.written {
			continue
		}
		if err := putUser(at.ctx, at.tx, tu.u, tu.events[len(tu.events)-1].pos); err != nil {
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

// EventList returns events after a feed position, in feed order, up to
// the durable position: a commit that a power loss could still take back
// is not shown (its position could be given again).
func (db *DB) EventList(ctx context.Context, p meetsync.EventListParams) ([]*meetsync.Event, error) {
	limitPos := db.sync.durablePos.Load()
	if p.UserID != "" {
		return db.userEventList(ctx, p, limitPos)
	}
	// The app's runs up to feedPos (read before the queries, so they see
	// at least that much of feed_runs), then the newer events from the
	// table itself.
	feedPos := min(db.feedPos.Load(), limitPos)
	var out []*meetsync.Event
	if p.After < feedPos {
		// The runs from the one holding After on, each a range of rowids.
		q := "SELECT " + eventColsE + ` FROM feed_runs r JOIN events e ON e.pos >= r.first_pos AND e.pos <= r.last_pos
			WHERE r.app_id = ?1 AND r.first_pos >= coalesce((SELECT max(first_pos) FROM feed_runs WHERE app_id = ?1 AND first_pos <= ?2), 0)
			AND e.pos > ?2 AND e.pos <= ?3 AND e.app_id = ?1`
		cond, args := typeCondition(p.Types, []any{p.AppID, p.After, feedPos})
		var err error
		if out, err = db.queryEvents(ctx, q+cond+" ORDER BY r.first_pos, e.pos LIMIT ?", append(args, p.Limit)...); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
	}
	if len(out) < p.Limit && limitPos > feedPos {
		q := "SELECT " + eventCols + " FROM events WHERE pos > ? AND pos <= ? AND app_id = ?"
		cond, args := typeCondition(p.Types, []any{max(p.After, feedPos), limitPos, p.AppID})
		more, err := db.queryEvents(ctx, q+cond+" ORDER BY pos LIMIT ?", append(args, p.Limit-len(out))...)
		if err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		out = append(out, more...)
	}
	return out, nil
}

const eventColsE = "e.pos, e.id, e.type, e.app_id, e.user_id, e.seq, e.occurred_at, e.received_at, e.source, e.device_id, e.client_seq, e.stale, e.data, e.schema_version"

// userEventList returns a user's events: those of its chunks, then those
// still in the backlog (a user's backlog entries come after its chunks').
// The backlog is copied before the chunks are read, and nothing above
// limitPos (read before that) is returned, so a materialization between
// the two leaves no gap.
func (db *DB) userEventList(ctx context.Context, p meetsync.EventListParams, limitPos int64) ([]*meetsync.Event, error) {
	pend := db.backlog.pending(userKey{p.AppID, p.UserID})
	var out []*meetsync.Event
	last := p.After // the highest position looked at
	// fetch reads the events at poses (ascending), with the type filter.
	fetch := func(poses []any) error {
		for len(poses) > 0 && len(out) < p.Limit {
			n := min(len(poses), 256)
			q := "SELECT " + eventCols + " FROM events WHERE pos IN (?" + strings.Repeat(", ?", n-1) + ")"
			cond, args := typeCondition(p.Types, poses[:n:n])
			more, err := db.queryEvents(ctx, q+cond+" ORDER BY pos", args...)
			if err != nil {
				return err
			}
			out = append(out, more[:min(len(more), p.Limit-len(out))]...)
			poses = poses[n:]
		}
		return nil
	}
	for after := p.After; len(out) < p.Limit; {
		rows, err := db.query(ctx, "SELECT last_pos, first_pos, entries FROM user_chunks WHERE app_id = ? AND user_id = ? AND last_pos > ? ORDER BY last_pos LIMIT 8",
			p.AppID, p.UserID, after)
		if err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		var poses []any
		chunks := 0
		for rows.Next() {
			var first int64
			var b []byte
			if err := rows.Scan(&after, &first, &b); err != nil {
				rows.Close()
				return nil, fmt.Errorf("list events: %w", err)
			}
			chunks++
			es, err := decodeChunk(first, b)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("list events: %w", err)
			}
			for _, e := range es {
				if e.pos > last && e.pos <= limitPos {
					poses = append(poses, e.pos)
					last = e.pos
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		if err := fetch(poses); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		if chunks < 8 {
			break
		}
	}
	var poses []any
	for _, e := range pend {
		if e.pos > last && e.pos <= limitPos {
			poses = append(poses, e.pos)
			last = e.pos
		}
	}
	if err := fetch(poses); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

func (db *DB) queryEvents(ctx context.Context, q string, args ...any) ([]*meetsync.Event, error) {
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*meetsync.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventFeedHead returns the app's newest durable feed position.
func (db *DB) EventFeedHead(ctx context.Context, appID string) (int64, error) {
	limitPos := db.sync.durablePos.Load()
	feedPos := min(db.feedPos.Load(), limitPos)
	var pos sql.NullInt64
	err := db.queryRow(ctx, "SELECT pos FROM events WHERE pos > ? AND pos <= ? AND app_id = ? ORDER BY pos DESC LIMIT 1", feedPos, limitPos, appID).Scan(&pos)
	if err == nil {
		return pos.Int64, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("feed head: %w", err)
	}
	if err := db.queryRow(ctx, "SELECT max(last_pos) FROM feed_runs WHERE app_id = ? AND first_pos <= ?", appID, feedPos).Scan(&pos); err != nil {
		return 0, fmt.Errorf("feed head: %w", err)
	}
	return pos.Int64, nil
}

// UserGet returns a user's state with its devices: from the backlog if
// it is newer than the row. ENOTFOUND.
func (db *DB) UserGet(ctx context.Context, appID, userID string) (*meetsync.UserState, error) {
	if u := db.backlog.user(userKey{appID, userID}); u != nil {
		return u, nil
	}
	u, err := scanUser(db.queryRow(ctx, "SELECT "+userCols+" FROM users WHERE app_id = ? AND user_id = ?", appID, userID))
	if err != nil {
		return nil, interpretError(err, "user "+userID)
	}
	return u, nil
}

// UserList returns users ordered by id, the backlog's states over their
// rows. The backlog is copied first; the rows read after it may be newer
// for a user materialized meanwhile, and the backlog's (committed) state
// is returned then.
func (db *DB) UserList(ctx context.Context, p meetsync.UserListParams) ([]*meetsync.UserState, error) {
	over := db.backlog.appUsers(p.AppID, p.After)
	matches := func(u *meetsync.UserState) bool { return p.Status == nil || u.Status == *p.Status }
	q := "SELECT " + userCols + " FROM users WHERE app_id = ? AND user_id > ?"
	args := []any{p.AppID, p.After}
	if p.Status != nil {
		q += " AND status = ?"
		args = append(args, int(*p.Status))
	}
	// A backlog user whose state does not match drops its row, if the row
	// matched: read that many more rows than asked for.
	want := p.Limit
	for _, u := range over {
		if !matches(u) {
			want++
		}
	}
	q += " ORDER BY user_id LIMIT ?"
	args = append(args, want)
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var table []*meetsync.UserState
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		table = append(table, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	// The rows read cover the users up to the last one's id (all of them,
	// when fewer rows than asked for came back).
	complete := len(table) < want
	var last string
	if len(table) > 0 {
		last = table[len(table)-1].UserID
	}
	out := make([]*meetsync.UserState, 0, p.Limit)
	i, j := 0, 0
	for len(out) < p.Limit && (i < len(table) || j < len(over)) {
		var u *meetsync.UserState
		switch {
		case j == len(over) || (i < len(table) && table[i].UserID < over[j].UserID):
			u = table[i]
			i++
		case i == len(table) || over[j].UserID < table[i].UserID:
			if !complete && over[j].UserID > last {
				return out, nil
			}
			u = over[j]
			j++
		default: // the same user: the backlog's state is the newer one
			u = over[j]
			i++
			j++
		}
		if matches(u) {
			out = append(out, u)
		}
	}
	return out, nil
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
		at.deliveries++
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
