package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
)

const claimSQL = "UPDATE deliveries SET claim_owner = ?, claim_id = ?, next_at = ? WHERE pos = ?"

// promoteClaimSQL makes the lowest-seq active delivery of a queue its head
// and claims it if it is due (?1 now, ?2 owner, ?3 claim id, ?4 lease end).
// SQLite evaluates every SET expression on the row's values before the update.
const promoteClaimSQL = `UPDATE deliveries SET head = 1,
	claim_owner = CASE WHEN next_at <= ?1 THEN ?2 ELSE claim_owner END,
	claim_id = CASE WHEN next_at <= ?1 THEN ?3 ELSE claim_id END,
	next_at = CASE WHEN next_at <= ?1 THEN ?4 ELSE next_at END
	WHERE pos = (SELECT pos FROM deliveries WHERE endpoint_id = ?5 AND user_id = ?6 AND status IN ('pending', 'failed') ORDER BY seq LIMIT 1)
	RETURNING pos, claim_id`

// newClaimID returns a random positive claim id.
func newClaimID() int64 { return rand.Int64N(math.MaxInt64-1) + 1 }

func deliveryID(pos int64) string { return "del_" + strconv.FormatInt(pos, 10) }

func parseDeliveryID(id string) (int64, bool) {
	s, ok := strings.CutPrefix(id, "del_")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// promoteHead makes the lowest-seq active delivery of a queue its head.
// The caller has cleared the old head.
func promoteHead(ctx context.Context, tx execQuerier, endpointID, userID string) error {
	_, err := tx.ExecContext(ctx, `UPDATE deliveries SET head = 1 WHERE pos = (SELECT pos FROM deliveries WHERE endpoint_id = ? AND user_id = ?
		AND status IN ('pending', 'failed') ORDER BY seq LIMIT 1)`, endpointID, userID)
	return err
}

// fixHead re-points a queue's head at its lowest-seq active delivery,
// unless the current head is claimed (its completion will promote).
func fixHead(ctx context.Context, tx execQuerier, endpointID, userID string) error {
	var cur int64
	var owner string
	err := tx.QueryRowContext(ctx, `SELECT pos, claim_owner FROM deliveries WHERE endpoint_id = ? AND user_id = ? AND status IN ('pending', 'failed')
		AND head = 1`, endpointID, userID).Scan(&cur, &owner)
	if err == nil && owner != "" {
		return nil
	} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if cur != 0 {
		if _, err := tx.ExecContext(ctx, "UPDATE deliveries SET head = 0 WHERE pos = ?", cur); err != nil {
			return err
		}
	}
	return promoteHead(ctx, tx, endpointID, userID)
}

// setEndpointParked parks (disabled) or unparks (enabled) an endpoint's
// queues: a disabled endpoint has no heads, so nothing of it is claimed.
func setEndpointParked(ctx context.Context, tx execQuerier, endpointID string, parked bool) error {
	if parked {
		_, err := tx.ExecContext(ctx, "UPDATE deliveries SET head = 0 WHERE endpoint_id = ? AND head = 1 AND claim_owner = ''", endpointID)
		return err
	}
	rows, err := tx.QueryContext(ctx, "SELECT DISTINCT user_id FROM deliveries WHERE endpoint_id = ? AND status IN ('pending', 'failed')", endpointID)
	if err != nil {
		return err
	}
	var users []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return err
		}
		users = append(users, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, u := range users {
		if err := fixHead(ctx, tx, endpointID, u); err != nil {
			return err
		}
	}
	return nil
}

const deliveryCols = `d.pos, d.app_id, d.endpoint_id, d.event_pos, d.event_id, d.event_type, d.user_id, d.seq, d.status, d.attempts, d.next_at,
	d.last_error, d.last_code, d.superseded_by, d.created_at, d.updated_at, d.delivered_at`

func scanDelivery(sc scanner, extra ...any) (*meetsync.Delivery, error) {
	var d meetsync.Delivery
	var pos, nextAt, created, updated int64
	var delivered sql.NullInt64
	dst := append([]any{&pos, &d.AppID, &d.EndpointID, &d.EventPos, &d.EventID, &d.EventType, &d.UserID, &d.Seq, &d.Status, &d.Attempts,
		&nextAt, &d.LastError, &d.LastCode, &d.SupersededBy, &created, &updated, &delivered}, extra...)
	if err := sc.Scan(dst...); err != nil {
		return nil, err
	}
	d.ID = deliveryID(pos)
	if d.Status == meetsync.DeliveryPending || d.Status == meetsync.DeliveryFailed {
		t := fromMicros(nextAt)
		d.NextAttemptAt = &t
	}
	d.CreatedAt, d.UpdatedAt, d.DeliveredAt = fromMicros(created), fromMicros(updated), nullTime(delivered)
	return &d, nil
}

// DeliveriesClaim claims up to Limit due queue heads of enabled endpoints
// for Owner until Now+Lease and returns them with their events and endpoints.
func (db *DB) DeliveriesClaim(ctx context.Context, p meetsync.DeliveryClaimParams) ([]*meetsync.DeliveryTask, error) {
	// Look first on a reader: most wake-ups find nothing due, and then the
	// single writer connection is not taken from the ingest path at all.
	var due int
	if err := db.queryRow(ctx, "SELECT count(*) FROM (SELECT 1 FROM deliveries WHERE head = 1 AND next_at <= ? LIMIT 1)",
		micros(p.Now)).Scan(&due); err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	if due == 0 {
		return nil, nil
	}
	sqltx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	defer sqltx.Rollback()
	tx := wtx{db, sqltx}
	rows, err := tx.QueryContext(ctx, `SELECT d.pos FROM deliveries d JOIN endpoints ep ON ep.id = d.endpoint_id
		WHERE d.head = 1 AND d.next_at <= ? AND ep.disabled = 0 ORDER BY d.next_at LIMIT ?`, micros(p.Now), p.Limit)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	var poses []int64
	for rows.Next() {
		var pos int64
		if err := rows.Scan(&pos); err != nil {
			rows.Close()
			return nil, fmt.Errorf("claim deliveries: %w", err)
		}
		poses = append(poses, pos)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	if len(poses) == 0 {
		return nil, nil
	}
	until := p.Now.Add(p.Lease)
	for _, pos := range poses {
		if _, err := tx.ExecContext(ctx, claimSQL, p.Owner, newClaimID(), micros(until), pos); err != nil {
			return nil, fmt.Errorf("claim deliveries: %w", err)
		}
	}
	tasks, err := loadTasks(ctx, tx, poses, until)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	if err := db.commit(sqltx); err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return tasks, nil
}

// loadTasks reads deliveries with their events and endpoints.
func loadTasks(ctx context.Context, tx execQuerier, poses []int64, until time.Time) ([]*meetsync.DeliveryTask, error) {
	args := make([]any, len(poses))
	for i, p := range poses {
		args[i] = p
	}
	q := "SELECT " + deliveryCols + ", d.claim_id, e.pos, e.id, e.type, e.app_id, e.user_id, e.seq, e.occurred_at, e.received_at, e.source, e.device_id, e.client_seq, e.stale, e.data, e.schema_version" +
		" FROM deliveries d JOIN events e ON e.pos = d.event_pos WHERE d.pos IN (?" + strings.Repeat(", ?", len(poses)-1) + ") ORDER BY d.pos"
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var tasks []*meetsync.DeliveryTask
	endpoints := map[string]*meetsync.Endpoint{}
	for rows.Next() {
		var e meetsync.Event
		var occ, rec, claimID int64
		var data []byte
		d, err := scanDelivery(rows, &claimID, &e.Pos, &e.ID, &e.Type, &e.AppID, &e.UserID, &e.Seq, &occ, &rec, &e.Source, &e.DeviceID, &e.ClientSeq, &e.Stale, &data, &e.SchemaVersion)
		if err != nil {
			rows.Close()
			return nil, err
		}
		e.OccurredAt, e.ReceivedAt, e.Data = fromMicros(occ), fromMicros(rec), data
		endpoints[d.EndpointID] = nil
		tasks = append(tasks, &meetsync.DeliveryTask{Delivery: d, Event: &e, ClaimedUntil: until, ClaimID: claimID})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for id := range endpoints {
		ep, err := scanEndpoint(tx.QueryRowContext(ctx, "SELECT "+endpointCols+" FROM endpoints WHERE id = ?", id))
		if err != nil {
			return nil, err
		}
		endpoints[id] = ep
	}
	for _, t := range tasks {
		t.Endpoint = endpoints[t.Delivery.EndpointID]
	}
	return tasks, nil
}

// DeliveriesComplete records attempt outcomes in one transaction: the
// delivery's new status, the attempt, the endpoint's failure run or
// disabling, the outcome's system events and the promotion of each queue's
// next head (claimed at once for Owner when ClaimNext is set and it is due).
// An outcome whose claim was lost (the lease expired and another worker
// claimed it) is ignored. The endpoint's disabled flag is read inside the
// transaction: a queue of an endpoint disabled meanwhile (through the API
// or by an earlier outcome) is left parked.
func (db *DB) DeliveriesComplete(ctx context.Context, p meetsync.DeliveryCompleteParams) ([]*meetsync.DeliveryTask, error) {
	tasks, t, err := db.deliveriesComplete(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := db.sync.wait(t); err != nil {
		return nil, fmt.Errorf("complete deliveries: %w", err)
	}
	return tasks, nil
}

// deliveriesComplete commits the outcomes under the write lock and returns
// the next tasks with the commit's durability ticket.
func (db *DB) deliveriesComplete(ctx context.Context, p meetsync.DeliveryCompleteParams) ([]*meetsync.DeliveryTask, uint64, error) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	sqltx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("complete deliveries: %w", err)
	}
	defer sqltx.Rollback()
	tx := wtx{db, sqltx}
	now := micros(p.Now)
	until := p.Now.Add(p.Lease)
	var next []int64
	var at *appendTx
	appendEvents := func(evs ...*meetsync.Event) error {
		if at == nil {
			at = db.newAppendTx(ctx, sqltx)
		}
		for _, ev := range evs {
			if _, err := at.appendEvent(ev); err != nil {
				return err
			}
		}
		return nil
	}
	failing := map[string]bool{} // endpoint → only failures (true) or a success (false)
	disabled := map[string]bool{}
	isDisabled := func(id string) (bool, error) {
		if v, ok := disabled[id]; ok {
			return v, nil
		}
		var v bool
		err := tx.QueryRowContext(ctx, "SELECT disabled FROM endpoints WHERE id = ?", id).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			v, err = true, nil // deleted meanwhile
		}
		disabled[id] = v
		return v, err
	}
	for _, o := range p.Outcomes {
		d := o.Task.Delivery
		pos, _ := parseDeliveryID(d.ID)
		if o.Release {
			if _, err := tx.ExecContext(ctx, "UPDATE deliveries SET claim_owner = '', claim_id = 0, next_at = ? WHERE pos = ? AND claim_id = ?",
				micros(o.NextAttemptAt), pos, o.Task.ClaimID); err != nil {
				return nil, 0, fmt.Errorf("complete deliveries: %w", err)
			}
			continue
		}
		epDisabled, err := isDisabled(d.EndpointID)
		if err != nil {
			return nil, 0, fmt.Errorf("complete deliveries: %w", err)
		}
		active := o.Status == meetsync.DeliveryFailed
		var deliveredAt any
		if o.Status == meetsync.DeliveryDelivered {
			deliveredAt = now
		}
		res, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = ?, attempts = attempts + 1, next_at = ?, claim_owner = '', claim_id = 0,
			last_error = ?, last_code = ?, updated_at = ?, delivered_at = ?, head = ? WHERE pos = ? AND claim_id = ?`,
			o.Status, micros(o.NextAttemptAt), o.Attempt.Error, o.Attempt.StatusCode, now, deliveredAt, active && !epDisabled, pos, o.Task.ClaimID)
		if err != nil {
			return nil, 0, fmt.Errorf("complete deliveries: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // claim lost
		}
		a := o.Attempt
		if _, err := tx.ExecContext(ctx, `INSERT INTO delivery_attempts (delivery_pos, n, at, status_code, latency_us, error, response_body)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, pos, d.Attempts+1, micros(a.At), a.StatusCode, a.Latency.Microseconds(), a.Error, a.ResponseBody); err != nil {
			return nil, 0, fmt.Errorf("complete deliveries: %w", err)
		}
		if o.Status == meetsync.DeliveryDelivered {
			failing[d.EndpointID] = false
		} else if _, seen := failing[d.EndpointID]; !seen {
			failing[d.EndpointID] = true
		}
		if o.DisableEndpoint != "" && !epDisabled {
			if _, err := tx.ExecContext(ctx, `UPDATE endpoints SET disabled = 1, disabled_reason = ?, disabled_at = ?, updated_at = ? WHERE id = ?`,
				o.DisableEndpoint, now, now, d.EndpointID); err != nil {
				return nil, 0, fmt.Errorf("complete deliveries: %w", err)
			}
			if err := setEndpointParked(ctx, tx, d.EndpointID, true); err != nil {
				return nil, 0, fmt.Errorf("complete deliveries: %w", err)
			}
			disabled[d.EndpointID], epDisabled = true, true
			clear(db.endpoints)
			if o.DisabledEvent != nil {
				if err := appendEvents(o.DisabledEvent); err != nil {
					return nil, 0, fmt.Errorf("complete deliveries: %w", err)
				}
			}
		}
		if len(o.Events) > 0 {
			if err := appendEvents(o.Events...); err != nil {
				return nil, 0, fmt.Errorf("complete deliveries: %w", err)
			}
		}
		if active || epDisabled {
			continue
		}
		if !p.ClaimNext {
			if err := promoteHead(ctx, tx, d.EndpointID, d.UserID); err != nil {
				return nil, 0, fmt.Errorf("complete deliveries: %w", err)
			}
			continue
		}
		// Promote the queue's next delivery and, if it is due, claim it,
		// in one statement.
		var npos, claimID int64
		err = tx.QueryRowContext(ctx, promoteClaimSQL, now, p.Owner, newClaimID(), micros(until), d.EndpointID, d.UserID).Scan(&npos, &claimID)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, 0, fmt.Errorf("complete deliveries: %w", err)
		}
		if err == nil && claimID != 0 {
			next = append(next, npos)
		}
	}
	for id, f := range failing {
		q := "UPDATE endpoints SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL"
		args := []any{id}
		if f {
			q = "UPDATE endpoints SET failing_since = ? WHERE id = ? AND failing_since IS NULL"
			args = []any{now, id}
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return nil, 0, fmt.Errorf("complete deliveries: %w", err)
		}
	}
	if at != nil {
		if err := at.finish(); err != nil {
			return nil, 0, fmt.Errorf("complete deliveries: %w", err)
		}
	}
	var tasks []*meetsync.DeliveryTask
	if len(next) > 0 {
		if tasks, err = loadTasks(ctx, tx, next, until); err != nil {
			return nil, 0, fmt.Errorf("complete deliveries: %w", err)
		}
	}
	if err := sqltx.Commit(); err != nil {
		db.userCache.clear()
		clear(db.endpoints)
		return nil, 0, fmt.Errorf("complete deliveries: %w", err)
	}
	if at != nil {
		at.committed()
	}
	return tasks, db.sync.ticket(), nil
}

// DeliveryNextDue returns when the earliest queue head is due (ok false if none).
func (db *DB) DeliveryNextDue(ctx context.Context) (time.Time, bool, error) {
	var v sql.NullInt64
	// Heads of disabled endpoints are normally parked (head = 0); the join
	// keeps one that is not (e.g. released at start) from waking the
	// dispatcher in a loop. The due index is read in order, so this stops
	// at the first head of an enabled endpoint.
	err := db.queryRow(ctx, `SELECT d.next_at FROM deliveries d JOIN endpoints ep ON ep.id = d.endpoint_id
		WHERE d.head = 1 AND ep.disabled = 0 ORDER BY d.next_at LIMIT 1`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due delivery: %w", err)
	}
	return fromMicros(v.Int64), v.Valid, nil
}

// DeliveriesReleaseClaims releases the claims of owner ("" = every owner),
// making them due at once. A single-node server calls it at start: no
// other process can hold claims on its store.
func (db *DB) DeliveriesReleaseClaims(ctx context.Context, owner string, now time.Time) (int, error) {
	q := "UPDATE deliveries SET claim_owner = '', claim_id = 0, next_at = ? WHERE claim_owner != ''"
	args := []any{micros(now)}
	if owner != "" {
		q += " AND claim_owner = ?"
		args = append(args, owner)
	}
	res, err := db.exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("release claims: %w", err)
	}
	n, _ := res.RowsAffected()
	// A released head of an endpoint disabled while it was claimed is parked.
	if _, err := db.exec(ctx, `UPDATE deliveries SET head = 0 WHERE head = 1 AND claim_owner = ''
		AND endpoint_id IN (SELECT id FROM endpoints WHERE disabled = 1)`); err != nil {
		return 0, fmt.Errorf("release claims: %w", err)
	}
	return int(n), nil
}

// DeliveryGet returns a delivery of the app with its attempts, oldest first. ENOTFOUND.
func (db *DB) DeliveryGet(ctx context.Context, appID, id string) (*meetsync.Delivery, []*meetsync.Attempt, error) {
	pos, ok := parseDeliveryID(id)
	if !ok {
		return nil, nil, meetsync.Errorf(meetsync.ENOTFOUND, "delivery %s not found", id)
	}
	d, err := scanDelivery(db.queryRow(ctx, "SELECT "+deliveryCols+" FROM deliveries d WHERE d.app_id = ? AND d.pos = ?", appID, pos))
	if err != nil {
		return nil, nil, interpretError(err, "delivery "+id)
	}
	rows, err := db.query(ctx, `SELECT n, at, status_code, latency_us, error, response_body FROM delivery_attempts
		WHERE delivery_pos = ? ORDER BY n`, pos)
	if err != nil {
		return nil, nil, fmt.Errorf("get delivery: %w", err)
	}
	defer rows.Close()
	var attempts []*meetsync.Attempt
	for rows.Next() {
		a := &meetsync.Attempt{DeliveryID: id}
		var at, lat int64
		if err := rows.Scan(&a.N, &at, &a.StatusCode, &lat, &a.Error, &a.ResponseBody); err != nil {
			return nil, nil, fmt.Errorf("get delivery: %w", err)
		}
		a.At, a.Latency = fromMicros(at), time.Duration(lat)*time.Microsecond
		a.LatencyMS = float64(lat) / 1000
		attempts = append(attempts, a)
	}
	return d, attempts, rows.Err()
}

// DeliveryList returns an endpoint's deliveries, newest first.
func (db *DB) DeliveryList(ctx context.Context, p meetsync.DeliveryListParams) ([]*meetsync.Delivery, error) {
	q := "SELECT " + deliveryCols + " FROM deliveries d WHERE d.app_id = ? AND d.endpoint_id = ?"
	args := []any{p.AppID, p.EndpointID}
	if p.Status != "" {
		q += " AND d.status = ?"
		args = append(args, p.Status)
	}
	if p.Before != "" {
		pos, ok := parseDeliveryID(p.Before)
		if !ok {
			return nil, meetsync.FieldErrorf("cursor", "invalid cursor %q", p.Before)
		}
		q += " AND d.pos < ?"
		args = append(args, pos)
	}
	q += " ORDER BY d.pos DESC LIMIT ?"
	args = append(args, p.Limit)
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	var out []*meetsync.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("list deliveries: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeliveriesRequeue puts deliveries back in their queues, due now: one
// delivery by id (any status but one in flight), or every dead or failed
// delivery of an endpoint created at or after Since. Each queue keeps its
// seq order. It returns how many deliveries were requeued. ENOTFOUND.
func (db *DB) DeliveriesRequeue(ctx context.Context, p meetsync.DeliveryRequeueParams) (int, error) {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("requeue: %w", err)
	}
	defer tx.Rollback()
	now := micros(p.Now)
	type q struct{ endpoint, user string }
	queues := map[q]bool{}
	n := 0
	if p.DeliveryID != "" {
		pos, ok := parseDeliveryID(p.DeliveryID)
		if !ok {
			return 0, meetsync.Errorf(meetsync.ENOTFOUND, "delivery %s not found", p.DeliveryID)
		}
		var endpointID, userID, owner string
		err := tx.QueryRowContext(ctx, "SELECT endpoint_id, user_id, claim_owner FROM deliveries WHERE app_id = ? AND pos = ?", p.AppID, pos).
			Scan(&endpointID, &userID, &owner)
		if err != nil {
			return 0, interpretError(err, "delivery "+p.DeliveryID)
		}
		if owner != "" {
			return 0, meetsync.Errorf(meetsync.ECONFLICT, "delivery %s is being attempted right now", p.DeliveryID)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE deliveries SET status = CASE WHEN status = 'failed' THEN 'failed' ELSE 'pending' END, next_at = ?, updated_at = ? WHERE pos = ?",
			now, now, pos); err != nil {
			return 0, fmt.Errorf("requeue: %w", err)
		}
		queues[q{endpointID, userID}] = true
		n = 1
	} else {
		if _, err := db.endpointInTx(ctx, tx, p.AppID, p.EndpointID); err != nil {
			return 0, err
		}
		rows, err := tx.QueryContext(ctx, `UPDATE deliveries SET status = CASE WHEN status = 'failed' THEN 'failed' ELSE 'pending' END, next_at = ?, updated_at = ?
			WHERE endpoint_id = ? AND created_at >= ? AND claim_owner = '' AND status IN ('dead', 'failed') RETURNING user_id`,
			now, now, p.EndpointID, micros(p.Since))
		if err != nil {
			return 0, fmt.Errorf("requeue: %w", err)
		}
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return 0, fmt.Errorf("requeue: %w", err)
			}
			queues[q{p.EndpointID, u}] = true
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("requeue: %w", err)
		}
	}
	for k := range queues {
		var disabled bool
		if err := tx.QueryRowContext(ctx, "SELECT disabled FROM endpoints WHERE id = ?", k.endpoint).Scan(&disabled); err != nil {
			return 0, fmt.Errorf("requeue: %w", err)
		}
		if disabled {
			continue // unparked when the endpoint is enabled again
		}
		if err := fixHead(ctx, tx, k.endpoint, k.user); err != nil {
			return 0, fmt.Errorf("requeue: %w", err)
		}
	}
	return n, db.commit(tx)
}

func (db *DB) endpointInTx(ctx context.Context, tx execQuerier, appID, id string) (*meetsync.Endpoint, error) {
	e, err := scanEndpoint(tx.QueryRowContext(ctx, "SELECT "+endpointCols+" FROM endpoints WHERE app_id = ? AND id = ?", appID, id))
	if err != nil {
		return nil, interpretError(err, "endpoint "+id)
	}
	return e, nil
}

// DeliveryQueueDepths returns the number of active (pending or failed)
// deliveries per endpoint.
func (db *DB) DeliveryQueueDepths(ctx context.Context) (map[string]int64, error) {
	rows, err := db.query(ctx, "SELECT endpoint_id, count(*) FROM deliveries WHERE status IN ('pending', 'failed') GROUP BY endpoint_id")
	if err != nil {
		return nil, fmt.Errorf("queue depths: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("queue depths: %w", err)
		}
		out[id] = n
	}
	return out, rows.Err()
}
