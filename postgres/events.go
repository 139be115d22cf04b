package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/meetsync/meetsync"
)

// Notification payloads are "<kind>:<node>".
const (
	notifyChannel  = "meetsync"
	kindEvents     = "events"
	kindDeliveries = "deliveries"
	kindCommands   = "commands"
	userCols       = "app_id, user_id, last_seq, status, reason, meeting_num, device_id, since, status_seq, business_side, meeting_side, updated_at, devices, extra, due_at"
	eventCols      = "pos, id, type, app_id, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data, schema_version"
)

func scanUser(row pgx.Row) (*meetsync.UserState, error) {
	var u meetsync.UserState
	var status, reason int32
	var since, due *time.Time
	var devices, extra []byte
	var business, meeting string
	if err := row.Scan(&u.AppID, &u.UserID, &u.LastSeq, &status, &reason, &u.MeetingNum, &u.DeviceID, &since, &u.StatusSeq,
		&business, &meeting, &u.UpdatedAt, &devices, &extra, &due); err != nil {
		return nil, err
	}
	u.Status, u.Reason = meetsync.MeetingStatus(status), meetsync.Reason(reason)
	u.Since, u.DueAt = fromNull(since), fromNull(due)
	var err error
	if u.Devices, err = meetsync.DecodeDevices(devices); err != nil {
		return nil, err
	}
	return &u, meetsync.DecodeUserExtra(extra, business, meeting, &u)
}

type userKey struct{ app, user string }

func (k userKey) less(o userKey) int {
	if c := strings.Compare(k.app, o.app); c != 0 {
		return c
	}
	return strings.Compare(k.user, o.user)
}

type queueKey struct{ endpoint, user string }

func (k queueKey) less(o queueKey) int {
	if c := strings.Compare(k.endpoint, o.endpoint); c != 0 {
		return c
	}
	return strings.Compare(k.user, o.user)
}

// userEntry is a user's state inside an append transaction.
// noStatus is no status at all: the "old" status of a new user in
// user_status (a value no status has).
const noStatus = -1 << 20

// qualified prefixes each of a comma-separated list of columns with t.
func qualified(t, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, c := range parts {
		parts[i] = t + "." + c
	}
	return strings.Join(parts, ", ")
}

type userEntry struct {
	state  *meetsync.UserState
	exists bool                   // its row existed (and is locked)
	status meetsync.MeetingStatus // the row's status when it was read
	dirty  bool
}

// resultRef is one result of a request: an event appended in this
// transaction (ev; its position comes at flush), or a result known already.
type resultRef struct {
	ev    *meetsync.Event
	fixed meetsync.EventResult
	dup   bool
}

func (r resultRef) result() meetsync.EventResult {
	if r.ev == nil {
		return r.fixed
	}
	return meetsync.EventResult{ID: r.ev.ID, Seq: r.ev.Seq, Stale: r.ev.Stale, Pos: r.ev.Pos, Duplicate: r.dup}
}

type idemKey struct {
	app string
	key string
}

// idemEntry is an Idempotency-Key seen in this transaction: stored before
// (results) or used by an earlier request of the transaction (req).
type idemEntry struct {
	hash    []byte
	results []meetsync.EventResult
	req     *reqState
}

type reqState struct {
	req   *meetsync.AppendRequest
	refs  []resultRef
	dupOf *reqState // a repeat of an earlier request of this transaction (same key)
	fixed []meetsync.EventResult
	store bool // record its Idempotency-Key
}

type csKey struct {
	app, user, device string
	seq               int64
}

// newDelivery is a delivery this transaction inserts.
type newDelivery struct {
	id           int64
	ev           *meetsync.Event
	endpointID   string
	status       string
	head         bool
	nextAt       time.Time
	updatedAt    time.Time
	supersededBy string
}

// dbDelivery is a stored delivery an append may supersede.
type dbDelivery struct {
	id         int64
	typ        string
	nextAt     time.Time
	head       bool
	superseded bool
}

// queueState is what an append transaction knows of one (endpoint, user) queue.
type queueState struct {
	dbActive     bool          // it had an active delivery (locked FOR SHARE)
	supersedable []*dbDelivery // stored pending, unattempted, unclaimed deliveries of debounced types (locked)
	batch        []*newDelivery
	promote      bool // a stored head was superseded: promote the lowest active in SQL
}

// appendTx is the state of one transaction that appends events.
type appendTx struct {
	ctx context.Context
	db  *DB
	tx  *txn

	users      map[userKey]*userEntry
	dirty      []*userEntry
	callerIDs  map[idemKey]resultRef // caller ids known: stored or appended here
	clientSeqs map[csKey]*meetsync.Event
	idem       map[idemKey]*idemEntry
	endpoints  map[string][]*meetsync.Endpoint // enabled endpoints per app (locked FOR KEY SHARE)
	debounced  map[string]map[string]bool      // custom types registered with debounce, per app (read with the endpoints)
	events     []*meetsync.Event               // appended, in order
	fanned     map[*meetsync.Event]int         // deliveries made per appended event (flush), when any
	reqs       []*reqState
	base       int64 // the base of the transaction's feed positions (txnBase), once read

	invVersions map[idemKey]int64     // invitations' versions: stored (rows locked) or written here
	invWrites   map[idemKey]*invWrite // invitation rows to write, merged per invitation
	invOrder    []idemKey
}

func (db *DB) newAppendTx(ctx context.Context, tx *txn) *appendTx {
	return &appendTx{ctx: ctx, db: db, tx: tx, users: map[userKey]*userEntry{}, callerIDs: map[idemKey]resultRef{},
		clientSeqs: map[csKey]*meetsync.Event{}, idem: map[idemKey]*idemEntry{}, endpoints: map[string][]*meetsync.Endpoint{},
		debounced: map[string]map[string]bool{}, invVersions: map[idemKey]int64{}, invWrites: map[idemKey]*invWrite{}}
}

// eventSnapshot keeps what appending changes in an event, so that a
// transaction can be tried again from scratch.
type eventSnapshot struct {
	ev    *meetsync.Event
	data  json.RawMessage
	seq   int64
	stale bool
	pos   int64
}

func snapshotEvents(reqs []*meetsync.AppendRequest, extra ...*meetsync.Event) []eventSnapshot {
	var out []eventSnapshot
	add := func(ev *meetsync.Event) {
		out = append(out, eventSnapshot{ev, ev.Data, ev.Seq, ev.Stale, ev.Pos})
	}
	for _, r := range reqs {
		for _, ev := range r.Events {
			add(ev)
		}
	}
	for _, ev := range extra {
		add(ev)
	}
	return out
}

func restoreEvents(s []eventSnapshot) {
	for _, x := range s {
		x.ev.Data, x.ev.Seq, x.ev.Stale, x.ev.Pos = x.data, x.seq, x.stale, x.pos
	}
}

// EventsAppend commits every request's events in one transaction (see
// meetsync.Store). Replicas appending at the same time take turns per user
// (locks.go) and for nothing else.
//
// PostgreSQL refuses some values SQLite keeps (a NUL character in a text
// column); the transaction is then tried again one request at a time, and
// only the request at fault fails (EINVALID).
func (db *DB) EventsAppend(ctx context.Context, reqs []*meetsync.AppendRequest) error {
	snap := snapshotEvents(reqs)
	reset := func() {
		restoreEvents(snap)
		for _, r := range reqs {
			r.Results, r.Err, r.Deliveries = nil, nil, 0
		}
	}
	err := db.inTx(ctx, txOptions{retryUnique: true}, func(tx *txn) error {
		reset()
		at := db.newAppendTx(ctx, tx)
		if err := at.prefetch(reqs, nil); err != nil {
			return err
		}
		for _, r := range reqs {
			if err := at.appendRequest(r); err != nil {
				return err
			}
		}
		b := &pgx.Batch{}
		if err := at.flush(b); err != nil {
			return err
		}
		if err := tx.CommitWith(ctx, b); err != nil {
			return err
		}
		at.results()
		return nil
	})
	if err == nil {
		return nil
	}
	reset()
	if !dataError(err) {
		return fmt.Errorf("append events: %w", err)
	}
	if len(reqs) == 1 {
		reqs[0].Err = meetsync.Errorf(meetsync.EINVALID, "the events hold a value PostgreSQL cannot store (a NUL character or invalid UTF-8)")
		return nil
	}
	for _, r := range reqs {
		if err := db.EventsAppend(ctx, []*meetsync.AppendRequest{r}); err != nil {
			r.Results, r.Err = nil, err
		}
	}
	return nil
}

// prefetch locks the rows of the users of reqs' events and of extra (in key
// order) and reads, in one round trip, what the requests will look up: the
// stored Idempotency-Keys and caller ids, and the apps' enabled endpoints.
func (at *appendTx) prefetch(reqs []*meetsync.AppendRequest, extra []*meetsync.Event) error {
	users := map[userKey]bool{}
	apps := map[string]bool{}
	var idApps, ids, keyApps []string
	var keys [][]byte
	seenID := map[idemKey]bool{}
	addEvent := func(ev *meetsync.Event) {
		users[userKey{ev.AppID, ev.UserID}] = true
		apps[ev.AppID] = true
		if k := (idemKey{ev.AppID, ev.ID}); ev.CallerID && !seenID[k] {
			seenID[k] = true
			idApps, ids = append(idApps, ev.AppID), append(ids, ev.ID)
		}
	}
	var invApps, invIDs []string
	for _, r := range reqs {
		if r.IdempotencyKey != "" {
			keyApps, keys = append(keyApps, r.AppID), append(keys, []byte(r.IdempotencyKey))
		}
		if x := r.ExpectSession; x != nil {
			users[userKey{r.AppID, x.UserID}] = true
		}
		for _, ev := range r.Events {
			addEvent(ev)
			if ev.Effects != nil && ev.Effects.Invitation != nil {
				k := idemKey{r.AppID, ev.Effects.Invitation.ID}
				if _, ok := at.invVersions[k]; !ok {
					at.invVersions[k] = 0
					invApps, invIDs = append(invApps, k.app), append(invIDs, k.key)
				}
			}
		}
	}
	for _, ev := range extra {
		addEvent(ev)
	}
	b := &pgx.Batch{}
	at.queueUserLocks(b, users)
	if len(invIDs) > 0 {
		// The invitations the requests change, locked (after the users, in
		// id order): their compare-and-set holds until commit.
		sortPairs(invIDs, invApps)
		b.Queue(`SELECT i.app_id, i.id, i.version FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(a, id, n)
			CROSS JOIN LATERAL (SELECT app_id, id, version FROM invitations WHERE id = q.id AND app_id = q.a FOR UPDATE) i ORDER BY q.n`,
			invApps, invIDs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k idemKey
				var v int64
				if err := rows.Scan(&k.app, &k.key, &v); err != nil {
					return err
				}
				at.invVersions[k] = v
			}
			return nil
		})
	}
	if len(keys) > 0 {
		b.Queue(`SELECT k.app_id, k.key, k.request_hash, k.results FROM unnest($1::text[], $2::bytea[]) AS q(a, k)
			CROSS JOIN LATERAL (SELECT * FROM idempotency_keys WHERE app_id = q.a AND key = q.k LIMIT 1) k`, keyApps, keys).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var app string
				var key, hash, results []byte
				if err := rows.Scan(&app, &key, &hash, &results); err != nil {
					return err
				}
				res, err := meetsync.UnmarshalResults(results)
				if err != nil {
					return fmt.Errorf("idempotency record: %w", err)
				}
				at.idem[idemKey{app, string(key)}] = &idemEntry{hash: hash, results: res}
			}
			return nil
		})
	}
	if len(ids) > 0 {
		b.Queue(`SELECT q.a, q.id, e.seq, e.stale, e.pos FROM unnest($1::text[], $2::text[]) AS q(a, id)
			CROSS JOIN LATERAL (SELECT e.seq, e.stale, e.pos FROM event_ids i JOIN events e ON e.app_id = i.app_id AND e.pos = i.pos
				WHERE i.app_id = q.a AND i.id = q.id LIMIT 1) e`, idApps, ids).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var app string
				var r meetsync.EventResult
				if err := rows.Scan(&app, &r.ID, &r.Seq, &r.Stale, &r.Pos); err != nil {
					return err
				}
				r.Duplicate = true
				at.callerIDs[idemKey{app, r.ID}] = resultRef{fixed: r}
			}
			return nil
		})
	}
	at.queueEndpoints(b, apps)
	if len(apps) > 0 {
		at.queueBase(b)
	}
	return at.tx.SendBatch(at.ctx, b).Close()
}

// queueBase queues the read of the base of the transaction's feed
// positions. It gives the transaction its id: it must come after the
// users' locks (locks.go).
func (at *appendTx) queueBase(b *pgx.Batch) {
	b.Queue("SELECT " + txnBase).QueryRow(func(row pgx.Row) error { return row.Scan(&at.base) })
}

// sortPairs sorts the pairs (keys[i], others[i]) by key, then other.
func sortPairs(keys, others []string) {
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := strings.Compare(keys[a], keys[b]); c != 0 {
			return c
		}
		return strings.Compare(others[a], others[b])
	})
	k, o := slices.Clone(keys), slices.Clone(others)
	for i, j := range idx {
		keys[i], others[i] = k[j], o[j]
	}
}

// Reads of rows by key take the keys from arrays and look each up with a
// LATERAL subquery (… CROSS JOIN LATERAL (SELECT … WHERE key = q.key
// LIMIT 1)): an index lookup per key whatever the planner thinks of the
// table's size. The LIMIT (or a FOR UPDATE) is what keeps the planner from
// pulling the subquery up into a join.
// A join of the table with unnest() is planned as a sequential scan and a
// hash join while a table is small (or its statistics say so), and such a
// plan, cached by the prepared statement, then reads every row version of
// the table in every transaction.

// queueUserLocks queues the users' locks (locks.go) and then the read of
// their rows, which, in a statement of its own, sees every commit of the
// transactions that held the locks before.
func (at *appendTx) queueUserLocks(b *pgx.Batch, users map[userKey]bool) {
	var keys []userKey
	for k := range users {
		if _, ok := at.users[k]; !ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	slices.SortFunc(keys, userKey.less)
	apps, ids := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		apps[i], ids[i] = k.app, k.user
		at.users[k] = &userEntry{state: meetsync.NewUserState(k.app, k.user)}
	}
	queueLocks(b, keys)
	b.Queue(`SELECT u.* FROM unnest($1::text[], $2::text[]) AS q(a, u)
		CROSS JOIN LATERAL (SELECT `+userCols+` FROM users WHERE app_id = q.a AND user_id = q.u LIMIT 1) u`, apps, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				return err
			}
			at.users[userKey{u.AppID, u.UserID}] = &userEntry{state: u, exists: true, status: u.Status}
		}
		return nil
	})
}

// queueEndpoints queues the read of the apps' enabled endpoints. FOR KEY
// SHARE keeps them from being deleted before this transaction commits (it
// inserts their deliveries) without holding up their updates.
func (at *appendTx) queueEndpoints(b *pgx.Batch, apps map[string]bool) {
	var list []string
	for a := range apps {
		if _, ok := at.endpoints[a]; !ok {
			list = append(list, a)
			at.endpoints[a] = nil
		}
	}
	if len(list) == 0 {
		return
	}
	slices.Sort(list)
	b.Queue("SELECT "+endpointCols+" FROM endpoints WHERE app_id = ANY($1) AND NOT disabled ORDER BY app_id, created_at, id FOR KEY SHARE",
		list).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			ep, err := scanEndpoint(rows)
			if err != nil {
				return err
			}
			at.endpoints[ep.AppID] = append(at.endpoints[ep.AppID], ep)
		}
		return nil
	})
	// The apps' debounced custom types, as committed now: a change of a
	// type is seen by the next append on every replica (nothing is cached).
	b.Queue("SELECT app_id, name FROM event_types WHERE app_id = ANY($1) AND debounce", list).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var app, name string
			if err := rows.Scan(&app, &name); err != nil {
				return err
			}
			if at.debounced[app] == nil {
				at.debounced[app] = map[string]bool{}
			}
			at.debounced[app][name] = true
		}
		return nil
	})
}

// loadEndpoints reads the enabled endpoints of apps not read yet.
func (at *appendTx) loadEndpoints(events []*meetsync.Event) error {
	apps := map[string]bool{}
	for _, ev := range events {
		apps[ev.AppID] = true
	}
	b := &pgx.Batch{}
	at.queueEndpoints(b, apps)
	if b.Len() == 0 {
		return nil
	}
	return at.tx.SendBatch(at.ctx, b).Close()
}

func (at *appendTx) appendRequest(req *meetsync.AppendRequest) error {
	rs := &reqState{req: req}
	at.reqs = append(at.reqs, rs)
	k := idemKey{req.AppID, req.IdempotencyKey}
	if req.IdempotencyKey != "" {
		if e := at.idem[k]; e != nil {
			if !bytes.Equal(e.hash, req.RequestHash) {
				req.Err = meetsync.Errorf(meetsync.ECONFLICT, "Idempotency-Key %q was already used with a different request body", req.IdempotencyKey)
				return nil
			}
			if e.req != nil {
				rs.dupOf = e.req
			} else {
				rs.fixed = e.results
			}
			return nil
		}
	}
	if x := req.ExpectSession; x != nil {
		ue, err := at.user(req.AppID, x.UserID)
		if err != nil {
			return err
		}
		if ue.state.Session.Version != x.Version {
			req.Err = meetsync.Errorf(meetsync.ECONFLICT, "the session of user %s changed concurrently; try again", x.UserID)
			return nil
		}
	}
	if ok, err := at.checkInvitations(req); err != nil || !ok {
		return err
	}
	rs.refs = make([]resultRef, 0, len(req.Events))
	for _, ev := range req.Events {
		r, err := at.appendEvent(ev)
		if err != nil {
			return err
		}
		rs.refs = append(rs.refs, r)
	}
	if req.IdempotencyKey != "" {
		rs.store = true
		at.idem[k] = &idemEntry{hash: req.RequestHash, req: rs}
	}
	return nil
}

// appendEvent applies one event: a duplicate (of a caller id, or of its
// device's client_seq) gets the original's result; any other gets the
// user's next seq (UserState.Apply) and is queued for writing.
func (at *appendTx) appendEvent(ev *meetsync.Event) (resultRef, error) {
	idk := idemKey{ev.AppID, ev.ID}
	if ev.CallerID {
		if r, ok := at.callerIDs[idk]; ok {
			r.dup = true
			return r, nil
		}
	}
	ue, err := at.user(ev.AppID, ev.UserID)
	if err != nil {
		return resultRef{}, err
	}
	u := ue.state
	csk := csKey{ev.AppID, ev.UserID, ev.DeviceID, ev.ClientSeq}
	if u.NeedsDuplicateCheck(ev) {
		if prev := at.clientSeqs[csk]; prev != nil {
			return resultRef{ev: prev, dup: true}, nil
		}
		var r meetsync.EventResult
		err := at.tx.QueryRow(at.ctx, `SELECT id, seq, stale, pos FROM events WHERE app_id = $1 AND user_id = $2 AND device_id = $3 AND client_seq = $4
			ORDER BY pos DESC LIMIT 1`, ev.AppID, ev.UserID, ev.DeviceID, ev.ClientSeq).Scan(&r.ID, &r.Seq, &r.Stale, &r.Pos)
		if err == nil {
			r.Duplicate = true
			return resultRef{fixed: r}, nil
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return resultRef{}, err
		}
	}
	u.Apply(ev)
	if !ue.dirty {
		ue.dirty = true
		at.dirty = append(at.dirty, ue)
	}
	at.events = append(at.events, ev)
	if ev.Effects != nil && ev.Effects.Invitation != nil {
		at.writeInvitation(ev.Effects.Invitation)
	}
	ref := resultRef{ev: ev}
	if ev.CallerID {
		at.callerIDs[idk] = ref
	}
	if ev.ClientSeq != 0 {
		at.clientSeqs[csk] = ev
	}
	return ref, nil
}

// user returns a user's state in this transaction, locking the user if it
// was not prefetched.
func (at *appendTx) user(appID, userID string) (*userEntry, error) {
	k := userKey{appID, userID}
	if ue, ok := at.users[k]; ok {
		return ue, nil
	}
	ue := &userEntry{state: meetsync.NewUserState(appID, userID)}
	if err := lockUsers(at.ctx, at.tx, appID, []string{userID}); err != nil {
		return nil, err
	}
	u, err := scanUser(at.tx.QueryRow(at.ctx, "SELECT "+userCols+" FROM users WHERE app_id = $1 AND user_id = $2", appID, userID))
	if err == nil {
		ue.state, ue.exists, ue.status = u, true, u.Status
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	at.users[k] = ue
	return ue, nil
}

// fanOut is one delivery to make: event ev to endpoint ep.
type fanOut struct {
	ev *meetsync.Event
	ep *meetsync.Endpoint
	k  queueKey
}

// coalesces reports whether the delivery of ev to ep waits out the
// endpoint's debounce window, superseding older pending deliveries of the
// same type for the same user: ev is not stale and its type is debounced
// (meeting.status_changed, or a custom type registered with debounce).
func (at *appendTx) coalesces(ev *meetsync.Event, ep *meetsync.Endpoint) bool {
	if ep.Debounce <= 0 || ev.Stale {
		return false
	}
	if ev.Type == meetsync.TypeMeetingStatusChanged {
		return true
	}
	return !meetsync.IsReservedType(ev.Type) && at.debounced[ev.AppID][ev.Type]
}

// queueType is a queue and an event type coalesced in it.
type queueType struct {
	queueKey
	typ string
}

// flush writes what the transaction appended. When the new deliveries join
// queues it first reads their state (locked) and draws the deliveries' ids,
// in one round trip of its own; everything else it queues into b, which the
// caller sends (an append with its COMMIT) and which must succeed before
// results: the writes of users, invitations and superseded deliveries, then
// one statement that inserts events, caller ids, deliveries and
// idempotency records, and notifies. An event's feed position is the
// transaction's base (read by prefetch, after the users' locks) plus its
// place in the transaction: positions take no lock, so appends commit side
// by side and PostgreSQL flushes their commits together. A transaction of
// copyEvents events or more loads its events with COPY instead (one round
// trip more, a faster load).
func (at *appendTx) flush(b *pgx.Batch) error {
	if err := at.loadEndpoints(at.events); err != nil {
		return err
	}
	var outs []fanOut
	queues := map[queueKey]*queueState{}
	coalescing := map[queueType]bool{}
	for _, ev := range at.events {
		for _, ep := range at.endpoints[ev.AppID] {
			if !ep.Subscribed(ev.Type) {
				continue
			}
			k := queueKey{ep.ID, ev.UserID}
			outs = append(outs, fanOut{ev, ep, k})
			if at.fanned == nil {
				at.fanned = map[*meetsync.Event]int{}
			}
			at.fanned[ev]++
			if queues[k] == nil {
				queues[k] = &queueState{}
			}
			if at.coalesces(ev, ep) {
				coalescing[queueType{k, ev.Type}] = true
			}
		}
	}
	if len(at.events) > maxTxnEvents {
		return fmt.Errorf("append events: %d events in one transaction, over the %d a transaction's feed positions allow", len(at.events), maxTxnEvents)
	}
	copied := len(at.events) >= copyEvents

	// Round trip 1 (when needed): the queues' current state (locked), the
	// new deliveries' ids, and the base of the feed positions if the
	// transaction has not read it yet.
	rt := &pgx.Batch{}
	if len(queues) > 0 {
		keys := sortedQueues(queues)
		eps, users := queueArrays(keys)
		// The lowest active delivery of each queue, locked: a completion that
		// empties the queue updates that row, so either it commits first (and
		// this statement then sees the queue empty, or the head it promoted)
		// or it waits for this transaction (and then promotes what it inserts).
		rt.Queue(`SELECT q.e, q.u, d.id FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(e, u, n)
			CROSS JOIN LATERAL (SELECT d.id FROM deliveries d WHERE d.endpoint_id = q.e AND d.user_id = q.u AND d.status IN ('pending', 'failed')
				ORDER BY d.seq LIMIT 1 FOR SHARE) d ORDER BY q.n`, eps, users).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k queueKey
				var id int64
				if err := rows.Scan(&k.endpoint, &k.user, &id); err != nil {
					return err
				}
				queues[k].dbActive = true
			}
			return nil
		})
		if len(coalescing) > 0 {
			// The deliveries the new ones may supersede: pending, never
			// attempted, unclaimed, of a type coalesced in their queue;
			// locked in queue and seq order.
			var ceps, cusers, ctypes []string
			for k := range coalescing {
				ceps, cusers, ctypes = append(ceps, k.endpoint), append(cusers, k.user), append(ctypes, k.typ)
			}
			rt.Queue(`SELECT d.endpoint_id, d.user_id, d.id, d.event_type, d.next_at, d.head FROM unnest($1::text[], $2::text[], $3::text[]) AS q(e, u, t)
				JOIN deliveries d ON d.endpoint_id = q.e AND d.user_id = q.u AND d.event_type = q.t
				WHERE d.status = 'pending' AND d.attempts = 0 AND d.claim_owner = ''
				ORDER BY d.endpoint_id, d.user_id, d.seq FOR UPDATE OF d`, ceps, cusers, ctypes).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var k queueKey
					d := &dbDelivery{}
					if err := rows.Scan(&k.endpoint, &k.user, &d.id, &d.typ, &d.nextAt, &d.head); err != nil {
						return err
					}
					queues[k].supersedable = append(queues[k].supersedable, d)
				}
				return nil
			})
		}
	}
	var ids []int64
	if len(outs) > 0 {
		rt.Queue("SELECT nextval('deliveries_id_seq') FROM generate_series(1, $1)", len(outs)).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return nil
		})
	}
	if at.base == 0 && len(at.events) > 0 {
		at.queueBase(rt)
	}
	if rt.Len() > 0 {
		if err := at.tx.SendBatch(at.ctx, rt).Close(); err != nil {
			return err
		}
	}
	for i, ev := range at.events {
		ev.Pos = at.base + int64(i) + 1
	}
	if copied {
		if err := at.copyEventRows(); err != nil {
			return err
		}
	}

	// The deliveries, in event order (the transactional outbox), with
	// coalescing as the SQLite store does it.
	dels := make([]*newDelivery, 0, len(outs))
	var superseded []*dbDelivery
	var supersededBy []string
	var supersededAt []time.Time
	for i, o := range outs {
		q := queues[o.k]
		active := q.dbActive || len(q.batch) > 0
		nd := &newDelivery{id: ids[i], ev: o.ev, endpointID: o.ep.ID, status: meetsync.DeliveryPending, head: !active, nextAt: o.ev.ReceivedAt,
			updatedAt: o.ev.ReceivedAt}
		coalesce := at.coalesces(o.ev, o.ep)
		if coalesce {
			nd.nextAt = nd.nextAt.Add(o.ep.Debounce)
		}
		if coalesce && active {
			by := "del_" + strconv.FormatInt(nd.id, 10)
			wasHead := false
			for _, d := range q.supersedable {
				if d.superseded || d.typ != o.ev.Type {
					continue
				}
				d.superseded = true
				superseded, supersededBy, supersededAt = append(superseded, d), append(supersededBy, by), append(supersededAt, o.ev.ReceivedAt)
				if d.nextAt.Before(nd.nextAt) {
					nd.nextAt = d.nextAt
				}
				if d.head {
					wasHead, q.promote = true, true
				}
			}
			for _, d := range q.batch {
				if d.status != meetsync.DeliveryPending || d.ev.Type != o.ev.Type || d.ev.Seq >= o.ev.Seq {
					continue
				}
				d.status, d.supersededBy, d.updatedAt = meetsync.DeliverySuperseded, by, o.ev.ReceivedAt
				if d.nextAt.Before(nd.nextAt) {
					nd.nextAt = d.nextAt
				}
				if d.head {
					d.head, wasHead = false, true
				}
			}
			q.batch = append(q.batch, nd)
			if wasHead && !q.dbActive {
				// The queue is this transaction's alone: its head is the
				// lowest active delivery among them.
				for _, d := range q.batch {
					if d.status == meetsync.DeliveryPending {
						d.head = true
						break
					}
				}
			}
		} else {
			q.batch = append(q.batch, nd)
		}
		dels = append(dels, nd)
	}

	// Into b: the writes of users, invitations and superseded deliveries,
	// then one statement that inserts the rest and notifies.
	at.queueUserWrites(b)
	at.queueInvitationWrites(b)
	if len(superseded) > 0 {
		sid := make([]int64, len(superseded))
		for i, d := range superseded {
			sid[i] = d.id
		}
		b.Queue(`UPDATE deliveries d SET status = 'superseded', head = false, superseded_by = u.by, updated_at = u.at
			FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS u(id, by, at) WHERE d.id = u.id`, sid, supersededBy, supersededAt)
	}
	w := &chainedWrites{}
	if !copied {
		at.addEventInserts(w)
	}
	at.addCallerIDs(w)
	addDeliveries(w, dels)
	at.addIdempotency(w)
	if len(at.events) > 0 {
		// The wake-ups of the other replicas, sent at commit: their SSE
		// streams, and their dispatchers if there are deliveries to claim.
		w.notify = append(w.notify, w.arg(kindEvents+":"+at.db.cfg.Node))
		if len(dels) > 0 {
			w.notify = append(w.notify, w.arg(kindDeliveries+":"+at.db.cfg.Node))
		}
	}
	if q := w.sql(); q != "" {
		b.Queue(q, w.args...)
	}
	var promote []queueKey
	for k, q := range queues {
		if q.promote {
			promote = append(promote, k)
		}
	}
	if len(promote) > 0 {
		slices.SortFunc(promote, queueKey.less)
		eps, users := queueArrays(promote)
		b.Queue(promoteSQL, eps, users)
	}
	return nil
}

// chainedWrites builds one statement of several writes: a chain of
// data-modifying CTEs, and a NOTIFY.
type chainedWrites struct {
	ctes   []string
	args   []any
	notify []string // the placeholders of the payloads to NOTIFY, in order
}

// arg adds an argument and returns its placeholder.
func (w *chainedWrites) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

// add appends a CTE; each %s in format is replaced by the placeholder of
// the next of args.
func (w *chainedWrites) add(format string, args ...any) {
	ph := make([]any, len(args))
	for i, a := range args {
		ph[i] = w.arg(a)
	}
	w.ctes = append(w.ctes, fmt.Sprintf(format, ph...))
}

// sql returns the statement ("" for nothing to do).
func (w *chainedWrites) sql() string {
	q := "SELECT 1"
	if len(w.notify) > 0 {
		calls := make([]string, len(w.notify))
		for i, ph := range w.notify {
			calls[i] = "pg_notify('" + notifyChannel + "', " + ph + "::text)"
		}
		q = "SELECT " + strings.Join(calls, ", ")
	} else if len(w.ctes) == 0 {
		return ""
	}
	if len(w.ctes) > 0 {
		q = "WITH " + strings.Join(w.ctes, ",\n") + "\n" + q
	}
	return q
}

// addEventInserts inserts the transaction's events.
func (at *appendTx) addEventInserts(w *chainedWrites) {
	n := len(at.events)
	var (
		app, id, typ, user, source, device = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		pos, seq, cs                       = make([]int64, n), make([]int64, n), make([]int64, n)
		occ, rec                           = make([]time.Time, n), make([]time.Time, n)
		stale                              = make([]bool, n)
		data                               = make([][]byte, n)
		schema                             = make([]int32, n)
	)
	for i, ev := range at.events {
		app[i], id[i], typ[i], user[i], source[i], device[i] = ev.AppID, ev.ID, ev.Type, ev.UserID, ev.Source, ev.DeviceID
		pos[i], seq[i], cs[i] = ev.Pos, ev.Seq, ev.ClientSeq
		occ[i], rec[i], stale[i], data[i], schema[i] = ev.OccurredAt, ev.ReceivedAt, ev.Stale, ev.Data, int32(ev.SchemaVersion)
	}
	w.add(`ev AS (INSERT INTO events (app_id, pos, id, type, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data, schema_version)
		SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::timestamptz[], %s::timestamptz[],
			%s::text[], %s::text[], %s::bigint[], %s::bool[], %s::bytea[], %s::int[]))`,
		app, pos, id, typ, user, seq, occ, rec, source, device, cs, stale, data, schema)
}

// addCallerIDs indexes the ids callers gave their events.
func (at *appendTx) addCallerIDs(w *chainedWrites) {
	var apps, ids []string
	var pos []int64
	for _, ev := range at.events {
		if ev.CallerID {
			apps, ids, pos = append(apps, ev.AppID), append(ids, ev.ID), append(pos, ev.Pos)
		}
	}
	if len(ids) == 0 {
		return
	}
	w.add(`ids AS (INSERT INTO event_ids (app_id, id, pos) SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]))`, apps, ids, pos)
}

// addDeliveries inserts the new deliveries.
func addDeliveries(w *chainedWrites, dels []*newDelivery) {
	n := len(dels)
	if n == 0 {
		return
	}
	var (
		id, pos, seq                            = make([]int64, n), make([]int64, n), make([]int64, n)
		app, ep, evID, typ, user, status, supBy = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		head                                    = make([]bool, n)
		nextAt, created, updated                = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	)
	for i, d := range dels {
		id[i], pos[i], seq[i] = d.id, d.ev.Pos, d.ev.Seq
		app[i], ep[i], evID[i], typ[i], user[i], status[i], supBy[i] = d.ev.AppID, d.endpointID, d.ev.ID, d.ev.Type, d.ev.UserID, d.status, d.supersededBy
		head[i], nextAt[i], created[i], updated[i] = d.head, d.nextAt, d.ev.ReceivedAt, d.updatedAt
	}
	w.add(`del AS (INSERT INTO deliveries (id, app_id, endpoint_id, event_pos, event_id, event_type, user_id, seq, status, head, next_at, superseded_by,
			created_at, updated_at)
		SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[],
			%s::bool[], %s::timestamptz[], %s::text[], %s::timestamptz[], %s::timestamptz[]))`,
		id, app, ep, pos, evID, typ, user, seq, status, head, nextAt, supBy, created, updated)
}

// addIdempotency stores the Idempotency-Keys of new requests with their
// results.
func (at *appendTx) addIdempotency(w *chainedWrites) {
	var apps []string
	var keys, hashes, results [][]byte
	var created []time.Time
	for _, rs := range at.reqs {
		if !rs.store {
			continue
		}
		res := make([]meetsync.EventResult, len(rs.refs))
		for i, r := range rs.refs {
			res[i] = r.result()
		}
		apps, keys, hashes = append(apps, rs.req.AppID), append(keys, []byte(rs.req.IdempotencyKey)), append(hashes, rs.req.RequestHash)
		results, created = append(results, meetsync.MarshalResults(res)), append(created, rs.req.Events[0].ReceivedAt)
	}
	if len(apps) == 0 {
		return
	}
	w.add(`idem AS (INSERT INTO idempotency_keys (app_id, key, request_hash, results, created_at)
		SELECT * FROM unnest(%s::text[], %s::bytea[], %s::bytea[], %s::bytea[], %s::timestamptz[]))`, apps, keys, hashes, results, created)
}

// promoteSQL makes the lowest-seq active delivery of each queue ($1
// endpoints, $2 users) its head.
const promoteSQL = `UPDATE deliveries SET head = true WHERE id IN (
	SELECT (SELECT d.id FROM deliveries d WHERE d.endpoint_id = q.e AND d.user_id = q.u AND d.status IN ('pending', 'failed') ORDER BY d.seq LIMIT 1)
	FROM unnest($1::text[], $2::text[]) AS q(e, u))`

func sortedQueues(m map[queueKey]*queueState) []queueKey {
	keys := make([]queueKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, queueKey.less)
	return keys
}

func queueArrays(keys []queueKey) (eps, users []string) {
	eps, users = make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		eps[i], users[i] = k.endpoint, k.user
	}
	return eps, users
}

// copyEvents is the number of events from which a transaction loads them
// with COPY (one round trip more, a faster load) rather than in its
// pipelined INSERT.
const copyEvents = 256

// copyEventRows loads the transaction's events with COPY.
func (at *appendTx) copyEventRows() error {
	_, err := at.tx.CopyFrom(at.ctx, pgx.Identifier{"events"},
		[]string{"app_id", "pos", "id", "type", "user_id", "seq", "occurred_at", "received_at", "source", "device_id", "client_seq", "stale", "data",
			"schema_version"},
		pgx.CopyFromSlice(len(at.events), func(i int) ([]any, error) {
			ev := at.events[i]
			return []any{ev.AppID, ev.Pos, ev.ID, ev.Type, ev.UserID, ev.Seq, ev.OccurredAt, ev.ReceivedAt, ev.Source, ev.DeviceID, ev.ClientSeq,
				ev.Stale, []byte(ev.Data), int32(ev.SchemaVersion)}, nil
		}))
	return err
}

// queueUserWrites writes back the users an event was applied to: an
// INSERT for new users (a unique violation, if another replica created the
// same user meanwhile, makes the transaction start again) and, for the
// others, whose rows it locked, an update through ON CONFLICT.
func (at *appendTx) queueUserWrites(b *pgx.Batch) {
	var ins, upd []*meetsync.UserState
	// user_status follows new users and changed statuses.
	var sApps, sUsers []string
	var sOld, sNew []int32
	for _, ue := range at.dirty {
		if ue.exists {
			upd = append(upd, ue.state)
		} else {
			ins = append(ins, ue.state)
		}
		if !ue.exists || ue.status != ue.state.Status {
			old := int32(ue.status)
			if !ue.exists {
				old = noStatus
			}
			sApps, sUsers = append(sApps, ue.state.AppID), append(sUsers, ue.state.UserID)
			sOld, sNew = append(sOld, old), append(sNew, int32(ue.state.Status))
		}
	}
	if len(sApps) > 0 {
		// The rows to delete are found by key (a lateral LIMIT 1 is never
		// turned into a join, which a cached plan would make a scan of the
		// table while it is small) and deleted by ctid.
		b.Queue(`WITH gone AS (DELETE FROM user_status WHERE ctid = ANY(ARRAY(SELECT s.ctid FROM unnest($1::text[], $2::text[], $3::int[]) AS o(a, u, st)
			CROSS JOIN LATERAL (SELECT ctid FROM user_status WHERE app_id = o.a AND status = o.st AND user_id = o.u LIMIT 1) s)))
			INSERT INTO user_status (app_id, status, user_id) SELECT a, st, u FROM unnest($1::text[], $2::text[], $4::int[]) AS n(a, u, st)
			ON CONFLICT DO NOTHING`, sApps, sUsers, sOld, sNew)
	}
	cols := func(us []*meetsync.UserState) []any {
		n := len(us)
		var (
			app, user, num, dev, bside, mside = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			last, sseq                        = make([]int64, n), make([]int64, n)
			status, reason                    = make([]int32, n), make([]int32, n)
			since, due                        = make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
			updated                           = make([]time.Time, n)
			devices, extra                    = make([][]byte, n), make([][]byte, n)
		)
		for i, u := range us {
			app[i], user[i], num[i], dev[i], bside[i], mside[i] = u.AppID, u.UserID, u.MeetingNum, u.DeviceID, u.Session.Business, u.Session.Meeting
			last[i], sseq[i], status[i], reason[i] = u.LastSeq, u.StatusSeq, int32(u.Status), int32(u.Reason)
			since[i] = pgtype.Timestamptz{Time: u.Since, Valid: !u.Since.IsZero()}
			due[i] = pgtype.Timestamptz{Time: u.DueAt, Valid: !u.DueAt.IsZero()}
			updated[i], devices[i], extra[i] = u.UpdatedAt, meetsync.EncodeDevices(u.Devices), meetsync.EncodeUserExtra(u)
		}
		return []any{app, user, last, status, reason, num, dev, since, sseq, bside, mside, updated, devices, extra, due}
	}
	const src = `unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::int[], $6::text[], $7::text[], $8::timestamptz[], $9::bigint[],
		$10::text[], $11::text[], $12::timestamptz[], $13::bytea[], $14::bytea[], $15::timestamptz[])`
	if len(ins) > 0 {
		b.Queue("INSERT INTO users ("+userCols+") SELECT * FROM "+src, cols(ins)...)
	}
	if len(upd) > 0 {
		// The rows exist and are locked: ON CONFLICT finds each through the
		// primary key (an UPDATE … FROM unnest() may be planned as a scan).
		b.Queue(`INSERT INTO users AS u (`+userCols+`) SELECT * FROM `+src+`
			ON CONFLICT (app_id, user_id) DO UPDATE SET last_seq = excluded.last_seq, status = excluded.status, reason = excluded.reason,
			meeting_num = excluded.meeting_num, device_id = excluded.device_id, since = excluded.since, status_seq = excluded.status_seq,
			business_side = excluded.business_side, meeting_side = excluded.meeting_side, updated_at = excluded.updated_at,
			devices = excluded.devices, extra = excluded.extra, due_at = excluded.due_at`, cols(upd)...)
	}
}

// results fills each request's Results.
func (at *appendTx) results() {
	for _, rs := range at.reqs {
		req := rs.req
		if req.Err != nil {
			continue
		}
		switch {
		case rs.dupOf != nil:
			req.Results = make([]meetsync.EventResult, len(rs.dupOf.refs))
			for i, r := range rs.dupOf.refs {
				req.Results[i] = r.result()
				req.Results[i].Duplicate = true
			}
		case rs.fixed != nil:
			req.Results = rs.fixed
		default:
			req.Results = make([]meetsync.EventResult, len(rs.refs))
			for i, r := range rs.refs {
				req.Results[i] = r.result()
				if r.ev != nil && !r.dup {
					req.Deliveries += at.fanned[r.ev]
				}
			}
		}
	}
}

func scanEvent(row pgx.Row) (*meetsync.Event, error) {
	var e meetsync.Event
	var data []byte
	var schemaVersion int32
	if err := row.Scan(&e.Pos, &e.ID, &e.Type, &e.AppID, &e.UserID, &e.Seq, &e.OccurredAt, &e.ReceivedAt, &e.Source, &e.DeviceID,
		&e.ClientSeq, &e.Stale, &data, &schemaVersion); err != nil {
		return nil, err
	}
	e.Data, e.SchemaVersion = data, int(schemaVersion)
	return &e, nil
}

// typeCondition renders a TypeFilter as SQL: exact names and prefix ranges
// (type > 'meeting.' AND type < 'meeting/', bytewise: the column is
// COLLATE "C"), which need no LIKE escaping.
func typeCondition(f meetsync.TypeFilter, args []any) (string, []any) {
	if len(f) == 0 {
		return "", args
	}
	var parts []string
	for _, p := range f {
		if prefix, ok := strings.CutSuffix(p, ".*"); ok {
			args = append(args, prefix+".", prefix+"/")
			parts = append(parts, fmt.Sprintf("(type > $%d AND type < $%d)", len(args)-1, len(args)))
		} else {
			args = append(args, p)
			parts = append(parts, fmt.Sprintf("type = $%d", len(args)))
		}
	}
	return " AND (" + strings.Join(parts, " OR ") + ")", args
}

// UserGet returns a user's state with its devices. ENOTFOUND.
func (db *DB) UserGet(ctx context.Context, appID, userID string) (*meetsync.UserState, error) {
	u, err := scanUser(db.pool.QueryRow(ctx, "SELECT "+userCols+" FROM users WHERE app_id = $1 AND user_id = $2", appID, userID))
	if err != nil {
		return nil, interpretError(err, "user "+userID)
	}
	return u, nil
}

// UserList returns users ordered by id (bytewise).
func (db *DB) UserList(ctx context.Context, p meetsync.UserListParams) ([]*meetsync.UserState, error) {
	q := "SELECT " + userCols + " FROM users WHERE app_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3"
	args := []any{p.AppID, p.After, p.Limit}
	if p.Status != nil {
		q = "SELECT " + qualified("u", userCols) + ` FROM user_status s JOIN users u ON u.app_id = s.app_id AND u.user_id = s.user_id
			WHERE s.app_id = $1 AND s.status = $4 AND s.user_id > $2 ORDER BY s.user_id LIMIT $3`
		args = append(args, int32(*p.Status))
	}
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.UserState, error) { return scanUser(r) })
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// AppendCommitters is how many EventsAppend calls the ingest service
// keeps in flight (the default of ingest.Config.Committers): while one
// commits, the next reads, locks and writes. With more, on 2 cores, each
// transaction gets slower and the total no higher (3, 4 and 8 measured).
func (db *DB) AppendCommitters() int { return 2 }
