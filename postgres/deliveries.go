package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
)

func deliveryID(id int64) string { return "del_" + strconv.FormatInt(id, 10) }

func parseDeliveryID(id string) (int64, bool) {
	s, ok := strings.CutPrefix(id, "del_")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

const deliveryCols = `d.id, d.app_id, d.endpoint_id, d.event_pos, d.event_id, d.event_type, d.user_id, d.seq, d.status, d.attempts, d.next_at,
	d.last_error, d.last_code, d.superseded_by, d.created_at, d.updated_at, d.delivered_at`

func scanDelivery(row pgx.Row, extra ...any) (*meetsync.Delivery, error) {
	var d meetsync.Delivery
	var id int64
	var attempts, code int32
	var nextAt time.Time
	var delivered *time.Time
	dst := append([]any{&id, &d.AppID, &d.EndpointID, &d.EventPos, &d.EventID, &d.EventType, &d.UserID, &d.Seq, &d.Status, &attempts,
		&nextAt, &d.LastError, &code, &d.SupersededBy, &d.CreatedAt, &d.UpdatedAt, &delivered}, extra...)
	if err := row.Scan(dst...); err != nil {
		return nil, err
	}
	d.ID, d.Attempts, d.LastCode = deliveryID(id), int(attempts), int(code)
	if d.Status == meetsync.DeliveryPending || d.Status == meetsync.DeliveryFailed {
		t := nextAt
		d.NextAttemptAt = &t
	}
	d.DeliveredAt = utcPtr(delivered)
	return &d, nil
}

// taskSelect reads the deliveries of the CTE "claimed" (deliveries rows)
// matching where, with their events and endpoints, as DeliveryTasks.
func taskSelect(where string) string {
	return `SELECT ` + deliveryCols + `, d.claim_id, ` +
		`e.pos, e.id, e.type, e.app_id, e.user_id, e.seq, e.occurred_at, e.received_at, e.source, e.device_id, e.client_seq, e.stale, e.data, e.schema_version, ` +
		`ep.id, ep.app_id, ep.url, ep.description, ep.event_types, ep.debounce_ms, ep.rate_limit, ep.secrets, ep.disabled, ep.disabled_reason, ` +
		`ep.disabled_at, ep.failing_since, ep.created_at, ep.updated_at
	FROM claimed d JOIN events e ON e.app_id = d.app_id AND e.pos = d.event_pos JOIN endpoints ep ON ep.id = d.endpoint_id ` + where + ` ORDER BY d.id`
}

// collectTasks reads the rows of a query ending in taskSelect, and closes
// them (the statement's errors, its commit's too, are seen).
func collectTasks(rows pgx.Rows, until time.Time) ([]*meetsync.DeliveryTask, error) {
	defer rows.Close()
	var tasks []*meetsync.DeliveryTask
	endpoints := map[string]*meetsync.Endpoint{}
	for rows.Next() {
		var e meetsync.Event
		var claimID int64
		var data []byte
		var schemaVersion int32
		var ep meetsync.Endpoint
		var types, secrets string
		var debounceMS int64
		var rateLimit int32
		var disabledAt, failingSince *time.Time
		d, err := scanDelivery(rows, &claimID, &e.Pos, &e.ID, &e.Type, &e.AppID, &e.UserID, &e.Seq, &e.OccurredAt, &e.ReceivedAt, &e.Source,
			&e.DeviceID, &e.ClientSeq, &e.Stale, &data, &schemaVersion,
			&ep.ID, &ep.AppID, &ep.URL, &ep.Description, &types, &debounceMS, &rateLimit, &secrets, &ep.Disabled, &ep.DisabledReason,
			&disabledAt, &failingSince, &ep.CreatedAt, &ep.UpdatedAt)
		if err != nil {
			return nil, err
		}
		e.Data, e.SchemaVersion = data, int(schemaVersion)
		epp, ok := endpoints[ep.ID]
		if !ok {
			if err := json.Unmarshal([]byte(types), &ep.EventTypes); err != nil {
				return nil, fmt.Errorf("endpoint %s event types: %w", ep.ID, err)
			}
			if err := json.Unmarshal([]byte(secrets), &ep.Secrets); err != nil {
				return nil, fmt.Errorf("endpoint %s secrets: %w", ep.ID, err)
			}
			ep.RateLimit, ep.Debounce = int(rateLimit), time.Duration(debounceMS)*time.Millisecond
			ep.DisabledAt, ep.FailingSince = utcPtr(disabledAt), utcPtr(failingSince)
			epp = &ep
			endpoints[ep.ID] = epp
		}
		tasks = append(tasks, &meetsync.DeliveryTask{Delivery: d, Event: &e, Endpoint: epp, ClaimedUntil: until, ClaimID: claimID})
	}
	rows.Close()
	return tasks, rows.Err()
}

// DeliveriesClaim claims up to Limit due queue heads of enabled endpoints
// for Owner until Now+Lease and returns them with their events and
// endpoints. Heads another transaction has locked are skipped (SKIP
// LOCKED): replicas claiming at once never wait for each other. The claim
// is committed asynchronously: a claim lost in a database crash only makes
// its delivery due again.
func (db *DB) DeliveriesClaim(ctx context.Context, p meetsync.DeliveryClaimParams) ([]*meetsync.DeliveryTask, error) {
	until := p.Now.Add(p.Lease)
	var tasks []*meetsync.DeliveryTask
	// One statement, its own transaction (no BEGIN or COMMIT to send):
	// set_config(…, true) makes its commit asynchronous.
	err := db.retry(ctx, txOptions{}, func() error {
		rows, err := db.pool.Query(ctx, `WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
			due AS (
				SELECT d.id FROM deliveries d
				WHERE d.head AND d.next_at <= $1 AND EXISTS (SELECT 1 FROM endpoints ep WHERE ep.id = d.endpoint_id AND NOT ep.disabled)
				ORDER BY d.next_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED),
			claimed AS (UPDATE deliveries d SET claim_owner = $3, claim_id = nextval('delivery_claim_ids'), next_at = $4
				FROM due, async WHERE d.id = due.id RETURNING d.*) `+taskSelect(""), p.Now, p.Limit, p.Owner, until)
		if err != nil {
			return err
		}
		tasks, err = collectTasks(rows, until)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return tasks, nil
}

// DeliveriesComplete records attempt outcomes in one transaction: the
// delivery's new status, the attempt, the endpoint's failure run or
// disabling, the outcome's system events and the promotion of each queue's
// next head (claimed at once for Owner when ClaimNext is set and it is due).
// An outcome whose claim was lost (the lease expired and another worker
// claimed it) is ignored. Of replicas disabling the same endpoint at once,
// only the one that disables it appends its DisabledEvent.
func (db *DB) DeliveriesComplete(ctx context.Context, p meetsync.DeliveryCompleteParams) ([]*meetsync.DeliveryTask, error) {
	var sys []*meetsync.Event
	for _, o := range p.Outcomes {
		if o.DisabledEvent != nil {
			sys = append(sys, o.DisabledEvent)
		}
		sys = append(sys, o.Events...)
	}
	if parts := splitOutcomes(p, len(sys)); parts != nil {
		return db.completeParts(ctx, p, parts)
	}
	snap := snapshotEvents(nil, sys...)
	var tasks []*meetsync.DeliveryTask
	err := db.inTx(ctx, txOptions{retryUnique: true}, func(tx *txn) error {
		restoreEvents(snap)
		var err error
		tasks, err = db.complete(ctx, tx, p, sys)
		return err
	})
	if err != nil {
		restoreEvents(snap)
		return nil, fmt.Errorf("complete deliveries: %w", err)
	}
	return tasks, nil
}

// completeParallel is into how many transactions, run at once on as many
// connections, DeliveriesComplete splits a batch of plain outcomes. One
// backend executing a batch's updates one row after another is what
// bounds a replica's delivery rate; the parts share the work.
const completeParallel = 2

// splitOutcomes splits a batch into completeParallel parts by queue
// (endpoint, user), or returns nil to keep it in one transaction: when it
// is small, or when an outcome does more than record a delivered (or
// released) attempt (a failure or a dead letter changes its endpoint's
// failure run, which must see the whole batch; disabling and system
// events go with it too).
func splitOutcomes(p meetsync.DeliveryCompleteParams, events int) [][]*meetsync.DeliveryOutcome {
	if completeParallel < 2 || len(p.Outcomes) < 2*completeParallel || events > 0 {
		return nil
	}
	parts := make([][]*meetsync.DeliveryOutcome, completeParallel)
	for _, o := range p.Outcomes {
		if o.DisableEndpoint != "" || len(o.Events) > 0 || o.DisabledEvent != nil || !o.Release && o.Status != meetsync.DeliveryDelivered {
			return nil
		}
		h := fnv.New32a()
		h.Write([]byte(o.Task.Delivery.EndpointID))
		h.Write([]byte{0})
		h.Write([]byte(o.Task.Delivery.UserID))
		i := h.Sum32() % completeParallel
		parts[i] = append(parts[i], o)
	}
	return slices.DeleteFunc(parts, func(p []*meetsync.DeliveryOutcome) bool { return len(p) == 0 })
}

// completeParts commits the parts of a batch at once, each in its own
// transaction (a queue's outcome and the claim of its next head stay in
// one). Each part is tried again on its own; an error of one is returned
// after the others are done.
func (db *DB) completeParts(ctx context.Context, p meetsync.DeliveryCompleteParams, parts [][]*meetsync.DeliveryOutcome) ([]*meetsync.DeliveryTask, error) {
	tasks := make([][]*meetsync.DeliveryTask, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Go(func() {
			pp := p
			pp.Outcomes = part
			errs[i] = db.inTx(ctx, txOptions{retryUnique: true}, func(tx *txn) error {
				var err error
				tasks[i], err = db.complete(ctx, tx, pp, nil)
				return err
			})
		})
	}
	wg.Wait()
	var all []*meetsync.DeliveryTask
	for i := range parts {
		all = append(all, tasks[i]...)
	}
	if err := errors.Join(errs...); err != nil {
		// The tasks of the parts that committed are claimed: hand them
		// over all the same, the claims are theirs.
		return all, fmt.Errorf("complete deliveries: %w", err)
	}
	return all, nil
}

func (db *DB) complete(ctx context.Context, tx *txn, p meetsync.DeliveryCompleteParams, sys []*meetsync.Event) ([]*meetsync.DeliveryTask, error) {
	at := db.newAppendTx(ctx, tx)
	until := p.Now.Add(p.Lease)
	ids := make([]int64, len(p.Outcomes))
	epSet := map[string]bool{}
	var eps []string
	for i, o := range p.Outcomes {
		ids[i], _ = parseDeliveryID(o.Task.Delivery.ID)
		if ep := o.Task.Delivery.EndpointID; !epSet[ep] {
			epSet[ep] = true
			eps = append(eps, ep)
		}
	}

	// Users first (system events), then the outcomes' deliveries in queue
	// order, as every writer locks them; and the endpoints' disabled flags.
	users := map[userKey]bool{}
	for _, ev := range sys {
		users[userKey{ev.AppID, ev.UserID}] = true
	}
	b := &pgx.Batch{}
	at.queueUserLocks(b, users)
	b.Queue("SELECT id FROM deliveries WHERE id = ANY($1) ORDER BY endpoint_id, user_id, id FOR UPDATE", ids)
	disabled := map[string]bool{}
	for _, ep := range eps {
		disabled[ep] = true // deleted meanwhile
	}
	b.Queue("SELECT id, disabled FROM endpoints WHERE id = ANY($1)", eps).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			var v bool
			if err := rows.Scan(&id, &v); err != nil {
				return err
			}
			disabled[id] = v
		}
		return nil
	})

	// The outcomes, fenced by claim id; an attempt row for each that won.
	// A failed delivery stays its queue's head unless its endpoint is
	// disabled (or gone).
	var rel struct {
		ids, claims []int64
		next        []time.Time
	}
	var o struct {
		ids, claims, latency []int64
		status, errs         []string
		next, at             []time.Time
		code                 []int32
		body                 [][]byte
	}
	for i, oc := range p.Outcomes {
		if oc.Release {
			rel.ids, rel.claims, rel.next = append(rel.ids, ids[i]), append(rel.claims, oc.Task.ClaimID), append(rel.next, oc.NextAttemptAt)
			continue
		}
		a := oc.Attempt
		o.ids, o.claims, o.latency = append(o.ids, ids[i]), append(o.claims, oc.Task.ClaimID), append(o.latency, a.Latency.Microseconds())
		o.status, o.errs = append(o.status, oc.Status), append(o.errs, cleanText(a.Error))
		o.next, o.at = append(o.next, oc.NextAttemptAt), append(o.at, a.At)
		o.code = append(o.code, int32(a.StatusCode))
		o.body = append(o.body, []byte(a.ResponseBody))
	}
	if len(rel.ids) > 0 {
		b.Queue(`UPDATE deliveries d SET claim_owner = '', claim_id = 0, next_at = u.next_at
			FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS u(id, claim_id, next_at) WHERE d.id = u.id AND d.claim_id = u.claim_id`,
			rel.ids, rel.claims, rel.next)
	}
	won := map[int64]bool{}
	if len(o.ids) > 0 {
		b.Queue(`WITH u AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::int[],
				$7::timestamptz[], $8::bigint[], $9::bytea[]) AS u(id, claim_id, status, next_at, err, code, at, latency, body)),
			won AS (UPDATE deliveries d SET status = u.status, attempts = d.attempts + 1, next_at = u.next_at, claim_owner = '', claim_id = 0,
				last_error = u.err, last_code = u.code, updated_at = $10,
				head = u.status = 'failed' AND EXISTS (SELECT 1 FROM endpoints ep WHERE ep.id = d.endpoint_id AND NOT ep.disabled),
				delivered_at = CASE WHEN u.status = 'delivered' THEN $10::timestamptz END
				FROM u WHERE d.id = u.id AND d.claim_id = u.claim_id RETURNING d.id, d.attempts)
			INSERT INTO delivery_attempts (delivery_id, n, at, status_code, latency_us, error, response_body)
			SELECT won.id, won.attempts, u.at, u.code, u.latency, u.err, u.body FROM won JOIN u ON u.id = won.id
			RETURNING delivery_id`,
			o.ids, o.claims, o.status, o.next, o.errs, o.code, o.at, o.latency, o.body, p.Now).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					return err
				}
				won[id] = true
			}
			return nil
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}

	// In outcome order, as the SQLite store does: failure runs, disabling,
	// system events, promotions.
	failing := map[string]bool{} // endpoint → only failures (true) or a success (false)
	var failOrder []string
	epDisabled := maps(disabled)
	type disabling struct {
		reason string
		ev     *meetsync.Event
	}
	disables := map[string]*disabling{}
	var disableOrder []string
	type step struct {
		disabledEv *meetsync.Event // appended only if this outcome disabled the endpoint
		endpoint   string
		events     []*meetsync.Event
	}
	var steps []step
	var promote []queueKey
	for i, oc := range p.Outcomes {
		if oc.Release || !won[ids[i]] {
			continue
		}
		ep := oc.Task.Delivery.EndpointID
		if _, seen := failing[ep]; !seen {
			failOrder = append(failOrder, ep)
			failing[ep] = true
		}
		if oc.Status == meetsync.DeliveryDelivered {
			failing[ep] = false
		}
		st := step{endpoint: ep, events: oc.Events}
		if oc.DisableEndpoint != "" && !epDisabled[ep] {
			epDisabled[ep] = true
			disables[ep] = &disabling{reason: oc.DisableEndpoint, ev: oc.DisabledEvent}
			disableOrder = append(disableOrder, ep)
			st.disabledEv = oc.DisabledEvent
		}
		steps = append(steps, st)
		if oc.Status != meetsync.DeliveryFailed && !epDisabled[ep] {
			promote = append(promote, queueKey{ep, oc.Task.Delivery.UserID})
		}
	}

	// Disabling and failure runs, then (when an outcome brings system
	// events) the events, then the next heads and the parking of the
	// queues of endpoints disabled here, and COMMIT: in the usual case
	// (no events) all in one round trip.
	b = &pgx.Batch{}
	didDisable := map[string]bool{}
	for _, ep := range disableOrder {
		// Only if still enabled: of several replicas, one disables it.
		b.Queue(`UPDATE endpoints SET disabled = true, disabled_reason = $1, disabled_at = $2, updated_at = $2 WHERE id = $3 AND NOT disabled RETURNING id`,
			cleanText(disables[ep].reason), p.Now, ep).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				didDisable[ep] = true
			}
			return nil
		})
	}
	if len(failOrder) > 0 {
		slices.Sort(failOrder)
		flags := make([]bool, len(failOrder))
		for i, ep := range failOrder {
			flags[i] = failing[ep]
		}
		b.Queue(`UPDATE endpoints e SET failing_since = CASE WHEN u.failing THEN $3::timestamptz END
			FROM unnest($1::text[], $2::bool[]) AS u(id, failing)
			WHERE e.id = u.id AND (u.failing AND e.failing_since IS NULL OR NOT u.failing AND e.failing_since IS NOT NULL)`,
			failOrder, flags, p.Now)
	}
	events := len(disableOrder) > 0
	for _, st := range steps {
		events = events || len(st.events) > 0
	}
	if events {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, err
		}
		b = &pgx.Batch{}
		// System events, in outcome order, in this transaction (the outbox).
		var evs []*meetsync.Event
		for _, st := range steps {
			if st.disabledEv != nil && didDisable[st.endpoint] {
				evs = append(evs, st.disabledEv)
			}
			evs = append(evs, st.events...)
		}
		if len(evs) > 0 {
			for _, ev := range evs {
				if _, err := at.appendEvent(ev); err != nil {
					return nil, err
				}
			}
			// The events' writes go with the COMMIT below.
			if err := at.flush(b); err != nil {
				return nil, err
			}
		}
	}

	var tasks []*meetsync.DeliveryTask
	if len(promote) > 0 {
		slices.SortFunc(promote, queueKey.less)
		promote = slices.Compact(promote)
		peps, pusers := queueArrays(promote)
		// $3: claim the due ones.
		b.Queue(`WITH q AS (SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(e, u, n)),
			nxt AS (SELECT n.id, $3 AND n.next_at <= $4 AS claim FROM q CROSS JOIN LATERAL (SELECT d.id, d.next_at FROM deliveries d
				WHERE d.endpoint_id = q.e AND d.user_id = q.u AND d.status IN ('pending', 'failed') ORDER BY d.seq LIMIT 1) n),
			claimed AS (UPDATE deliveries d SET head = true,
				claim_owner = CASE WHEN nxt.claim THEN $5 ELSE d.claim_owner END,
				claim_id = CASE WHEN nxt.claim THEN nextval('delivery_claim_ids') ELSE d.claim_id END,
				next_at = CASE WHEN nxt.claim THEN $6 ELSE d.next_at END
				FROM nxt WHERE d.id = nxt.id RETURNING d.*, nxt.claim AS claimed_now) `+taskSelect("WHERE d.claimed_now"),
			peps, pusers, p.ClaimNext, p.Now, p.Owner, until).Query(func(rows pgx.Rows) error {
			var err error
			tasks, err = collectTasks(rows, until)
			return err
		})
	}
	for _, ep := range disableOrder {
		b.Queue("UPDATE deliveries SET head = false WHERE endpoint_id = $1 AND head AND claim_owner = ''", ep)
	}
	if err := tx.CommitWith(ctx, b); err != nil {
		return nil, err
	}
	return tasks, nil
}

func maps(m map[string]bool) map[string]bool {
	c := make(map[string]bool, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// DeliveryNextDue returns when the earliest queue head of an enabled
// endpoint is due (ok false if none).
func (db *DB) DeliveryNextDue(ctx context.Context) (time.Time, bool, error) {
	var t time.Time
	err := db.pool.QueryRow(ctx, `SELECT d.next_at FROM deliveries d JOIN endpoints ep ON ep.id = d.endpoint_id
		WHERE d.head AND NOT ep.disabled ORDER BY d.next_at LIMIT 1`).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due delivery: %w", err)
	}
	return t, true, nil
}

// DeliveriesReleaseClaims releases the claims of owner ("" = every owner,
// which only a process that knows no other one runs may do), making them
// due at once, and wakes the dispatchers of every replica.
func (db *DB) DeliveriesReleaseClaims(ctx context.Context, owner string, now time.Time) (int, error) {
	var n int64
	err := db.inTx(ctx, txOptions{}, func(tx *txn) error {
		// Claimed deliveries are always heads: the due index finds them.
		q := "UPDATE deliveries SET claim_owner = '', claim_id = 0, next_at = $1 WHERE head AND claim_owner <> ''"
		args := []any{now}
		if owner != "" {
			q += " AND claim_owner = $2"
			args = append(args, owner)
		}
		ct, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return err
		}
		n = ct.RowsAffected()
		// A released head of an endpoint disabled while it was claimed is parked.
		if _, err := tx.Exec(ctx, `UPDATE deliveries SET head = false WHERE head AND claim_owner = ''
			AND endpoint_id IN (SELECT id FROM endpoints WHERE disabled)`); err != nil {
			return err
		}
		if n > 0 {
			return notify(ctx, tx, kindDeliveries, db.cfg.Node)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("release claims: %w", err)
	}
	return int(n), nil
}

func notify(ctx context.Context, tx *txn, kind, node string) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify('"+notifyChannel+"', $1)", kind+":"+node)
	return err
}

// DeliveryGet returns a delivery of the app with its attempts, oldest first. ENOTFOUND.
func (db *DB) DeliveryGet(ctx context.Context, appID, id string) (*meetsync.Delivery, []*meetsync.Attempt, error) {
	n, ok := parseDeliveryID(id)
	if !ok {
		return nil, nil, meetsync.Errorf(meetsync.ENOTFOUND, "delivery %s not found", id)
	}
	d, err := scanDelivery(db.pool.QueryRow(ctx, "SELECT "+deliveryCols+" FROM deliveries d WHERE d.app_id = $1 AND d.id = $2", appID, n))
	if err != nil {
		return nil, nil, interpretError(err, "delivery "+id)
	}
	rows, err := db.pool.Query(ctx, `SELECT n, at, status_code, latency_us, error, response_body FROM delivery_attempts
		WHERE delivery_id = $1 ORDER BY n`, n)
	if err != nil {
		return nil, nil, fmt.Errorf("get delivery: %w", err)
	}
	attempts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.Attempt, error) {
		a := &meetsync.Attempt{DeliveryID: id}
		var n, code int32
		var lat int64
		var body []byte
		if err := r.Scan(&n, &a.At, &code, &lat, &a.Error, &body); err != nil {
			return nil, err
		}
		a.N, a.StatusCode, a.ResponseBody = int(n), int(code), string(body)
		a.Latency = time.Duration(lat) * time.Microsecond
		a.LatencyMS = float64(lat) / 1000
		return a, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("get delivery: %w", err)
	}
	return d, attempts, nil
}

// DeliveryList returns an endpoint's deliveries, newest first.
func (db *DB) DeliveryList(ctx context.Context, p meetsync.DeliveryListParams) ([]*meetsync.Delivery, error) {
	q := "SELECT " + deliveryCols + " FROM deliveries d WHERE d.app_id = $1 AND d.endpoint_id = $2"
	args := []any{p.AppID, p.EndpointID}
	if p.Status != "" {
		args = append(args, p.Status)
		q += fmt.Sprintf(" AND d.status = $%d", len(args))
	}
	if p.Before != "" {
		n, ok := parseDeliveryID(p.Before)
		if !ok {
			return nil, meetsync.FieldErrorf("cursor", "invalid cursor %q", p.Before)
		}
		args = append(args, n)
		q += fmt.Sprintf(" AND d.id < $%d", len(args))
	}
	args = append(args, p.Limit)
	q += fmt.Sprintf(" ORDER BY d.id DESC LIMIT $%d", len(args))
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

// DeliveriesRequeue puts deliveries back in their queues, due now: one
// delivery by id (any status but one in flight), or every dead or failed
// delivery of an endpoint created at or after Since. Each queue keeps its
// seq order. It returns how many deliveries were requeued and wakes the
// dispatchers of every replica. ENOTFOUND, ECONFLICT.
func (db *DB) DeliveriesRequeue(ctx context.Context, p meetsync.DeliveryRequeueParams) (int, error) {
	var n int
	err := db.inTx(ctx, txOptions{}, func(tx *txn) error {
		var err error
		n, err = db.requeue(ctx, tx, p)
		return err
	})
	if err != nil {
		if meetsync.ErrorCode(err) != meetsync.EINTERNAL {
			return 0, err
		}
		return 0, fmt.Errorf("requeue: %w", err)
	}
	return n, nil
}

func (db *DB) requeue(ctx context.Context, tx *txn, p meetsync.DeliveryRequeueParams) (int, error) {
	var keys []queueKey
	var endpointID string
	n := 0
	if p.DeliveryID != "" {
		id, ok := parseDeliveryID(p.DeliveryID)
		if !ok {
			return 0, meetsync.Errorf(meetsync.ENOTFOUND, "delivery %s not found", p.DeliveryID)
		}
		var userID string
		err := tx.QueryRow(ctx, "SELECT endpoint_id, user_id FROM deliveries WHERE app_id = $1 AND id = $2", p.AppID, id).Scan(&endpointID, &userID)
		if err != nil {
			return 0, interpretError(err, "delivery "+p.DeliveryID)
		}
		// The user before the delivery, as every writer locks them.
		if err := lockUsers(ctx, tx, p.AppID, []string{userID}); err != nil {
			return 0, err
		}
		var owner string
		if err := tx.QueryRow(ctx, "SELECT claim_owner FROM deliveries WHERE id = $1 FOR UPDATE", id).Scan(&owner); err != nil {
			return 0, interpretError(err, "delivery "+p.DeliveryID)
		}
		if owner != "" {
			return 0, meetsync.Errorf(meetsync.ECONFLICT, "delivery %s is being attempted right now", p.DeliveryID)
		}
		if _, err := tx.Exec(ctx, "UPDATE deliveries SET status = CASE WHEN status = 'failed' THEN 'failed' ELSE 'pending' END, next_at = $1, updated_at = $1 WHERE id = $2",
			p.Now, id); err != nil {
			return 0, err
		}
		keys, n = []queueKey{{endpointID, userID}}, 1
	} else {
		endpointID = p.EndpointID
		var one int
		if err := tx.QueryRow(ctx, "SELECT 1 FROM endpoints WHERE app_id = $1 AND id = $2", p.AppID, p.EndpointID).Scan(&one); err != nil {
			return 0, interpretError(err, "endpoint "+p.EndpointID)
		}
		rows, err := tx.Query(ctx, `SELECT DISTINCT user_id FROM deliveries WHERE endpoint_id = $1 AND created_at >= $2 AND status IN ('dead', 'failed')
			ORDER BY user_id`, p.EndpointID, p.Since)
		if err != nil {
			return 0, err
		}
		users, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return 0, err
		}
		if err := lockUsers(ctx, tx, p.AppID, users); err != nil {
			return 0, err
		}
		rows, err = tx.Query(ctx, `UPDATE deliveries SET status = CASE WHEN status = 'failed' THEN 'failed' ELSE 'pending' END, next_at = $1, updated_at = $1
			WHERE endpoint_id = $2 AND created_at >= $3 AND claim_owner = '' AND status IN ('dead', 'failed') RETURNING user_id`,
			p.Now, p.EndpointID, p.Since)
		if err != nil {
			return 0, err
		}
		requeued, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return 0, err
		}
		n = len(requeued)
		slices.Sort(requeued)
		for _, u := range slices.Compact(requeued) {
			keys = append(keys, queueKey{p.EndpointID, u})
		}
	}
	if len(keys) == 0 {
		return n, nil
	}
	var disabled bool
	if err := tx.QueryRow(ctx, "SELECT disabled FROM endpoints WHERE id = $1", endpointID).Scan(&disabled); err != nil {
		return 0, err
	}
	if disabled {
		return n, nil // unparked when the endpoint is enabled again
	}
	return n, fixHeads(ctx, tx, db.cfg.Node, p.AppID, keys)
}

// fixHeads re-points each queue's head at its lowest-seq active delivery,
// unless its current head is claimed (its completion will promote), and
// wakes the dispatchers of every replica.
func fixHeads(ctx context.Context, tx *txn, node, appID string, keys []queueKey) error {
	slices.SortFunc(keys, queueKey.less)
	users := make([]string, 0, len(keys))
	for _, k := range keys {
		users = append(users, k.user)
	}
	slices.Sort(users)
	if err := lockUsers(ctx, tx, appID, slices.Compact(users)); err != nil {
		return err
	}
	eps, us := queueArrays(keys)
	const unclaimed = `NOT EXISTS (SELECT 1 FROM deliveries c WHERE c.endpoint_id = q.e AND c.user_id = q.u AND c.head
		AND c.status IN ('pending', 'failed') AND c.claim_owner <> '')`
	if _, err := tx.Exec(ctx, `UPDATE deliveries d SET head = false FROM unnest($1::text[], $2::text[]) AS q(e, u)
		WHERE d.endpoint_id = q.e AND d.user_id = q.u AND d.head AND d.status IN ('pending', 'failed') AND `+unclaimed, eps, us); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE deliveries SET head = true WHERE id IN (
		SELECT (SELECT d.id FROM deliveries d WHERE d.endpoint_id = q.e AND d.user_id = q.u AND d.status IN ('pending', 'failed') ORDER BY d.seq LIMIT 1)
		FROM unnest($1::text[], $2::text[]) AS q(e, u) WHERE `+unclaimed+`)`, eps, us); err != nil {
		return err
	}
	return notify(ctx, tx, kindDeliveries, node)
}

// DeliveryQueueDepths returns the number of active (pending or failed)
// deliveries per endpoint.
func (db *DB) DeliveryQueueDepths(ctx context.Context) (map[string]int64, error) {
	rows, err := db.pool.Query(ctx, "SELECT endpoint_id, count(*) FROM deliveries WHERE status IN ('pending', 'failed') GROUP BY endpoint_id")
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
