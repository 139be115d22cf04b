package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
)

// Feed positions.
//
// An event's position is its transaction's id shifted left by posBits
// (txnBase, read by the append after its users' locks), plus the event's
// place in the transaction (1, 2, …): positions grow with transaction ids, not with commit order, and take no
// lock. A reader returns only the events of transactions below the oldest
// one of this database still running when its snapshot was taken
// (feedBound): every one of those has ended, so nothing can commit later
// with a lower position, and a cursor never skips an event that commits
// late. What a running transaction holds back appears when it ends (a long
// transaction on the database delays the feed by as long; see
// docs/scaling.md). An append takes its users' locks before its id
// (locks.go), so a user's events are in the feed in seq order.
//
// Transaction ids (xid8, never wrapping) stay below 2^43 for as long as a
// cluster lives, so positions fit in a bigint; positions of stores from
// before (a per-app counter from 1) are all lower than these.
const (
	posBits      = 20
	maxTxnEvents = 1<<posBits - 1
	// txnBase is the base of the current transaction's positions.
	txnBase = "(pg_current_xact_id()::text::bigint << 20)"
	// feedBound is the first position a reader must not return yet: the
	// lowest transaction id running when the statement's snapshot was
	// taken (or, with none, the next to be handed out), leaving out the
	// transactions known to be of other databases of the cluster (they
	// write no events here). A transaction that has ended by the time
	// pg_stat_activity is read counts as of this database: the bound is
	// never too high, at worst too low for one read.
	feedBound = `(SELECT coalesce((SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x
		WHERE x::text::bigint % 4294967296 NOT IN (SELECT backend_xid::text::bigint FROM pg_stat_activity
			WHERE backend_xid IS NOT NULL AND datname <> current_database())), pg_snapshot_xmax(s)::text::bigint) << 20
		FROM pg_current_snapshot() AS s)`
)

// How long EventList waits for running transactions to end when committed
// events lie beyond its bound, and how often it looks again: after 1 ms,
// then twice as long each time up to 64 ms (a short transaction ends
// within the first looks; a long one costs each waiting reader about ten
// queries per feedWait, not one per millisecond).
const (
	feedWait     = 250 * time.Millisecond
	feedRetry    = time.Millisecond
	feedRetryMax = 64 * time.Millisecond
)

// EventList returns events after a feed position, in feed order.
//
// Events that committed before the call are returned: when a transaction
// that started earlier is still running (so later positions are held
// back), EventList looks again until it has ended, up to feedWait. If it
// has not by then, EventList returns what it may and, once this replica is
// listening (Listen), tells its handler of new events shortly after, so
// streams read on without a notification of their own.
func (db *DB) EventList(ctx context.Context, p meetsync.EventListParams) ([]*meetsync.Event, error) {
	evs, held, err := db.eventList(ctx, p)
	if held {
		db.rewakeSoon()
	}
	return evs, err
}

// eventList is EventList, reporting whether committed events were left out.
func (db *DB) eventList(ctx context.Context, p meetsync.EventListParams) (evs []*meetsync.Event, held bool, err error) {
	q := "SELECT " + eventCols + ", h.bound FROM events CROSS JOIN (SELECT " + feedBound + " AS bound) h WHERE app_id = $1 AND pos > $2"
	args := []any{p.AppID, p.After}
	if p.UserID != "" {
		args = append(args, p.UserID)
		q += " AND user_id = $3"
	}
	cond, args := typeCondition(p.Types, args)
	args = append(args, p.Limit)
	q += cond + fmt.Sprintf(" ORDER BY pos LIMIT $%d", len(args))
	var out []*meetsync.Event
	var bound int64
	held, err = untilVisible(ctx, func() (last, b int64, seen bool, err error) {
		// No row means nothing committed after the cursor (the bound
		// comes with the rows, so there is none to compare with either):
		// nothing is held back.
		if out, bound, err = db.listEvents(ctx, q, args); err != nil || len(out) == 0 {
			return 0, 0, false, err
		}
		return out[len(out)-1].Pos, bound, true, nil
	})
	if err != nil {
		return nil, false, err
	}
	visible := len(out)
	for visible > 0 && out[visible-1].Pos >= bound {
		visible--
	}
	return out[:visible], held, nil
}

// untilVisible calls read, which reports the last committed position it
// saw and its bound (seen is false when it saw nothing), until what had
// committed by the first call is below the bound (at once, when nothing
// was held back), or until feedWait has passed: then it reports held.
func untilVisible(ctx context.Context, read func() (last, bound int64, seen bool, err error)) (held bool, err error) {
	var deadline time.Time
	var committed int64
	pause := feedRetry
	for {
		last, bound, seen, err := read()
		if err != nil || !seen {
			return false, err
		}
		if deadline.IsZero() {
			deadline, committed = time.Now().Add(feedWait), last
		}
		if committed < bound {
			return false, nil
		}
		if time.Now().After(deadline) {
			return true, nil
		}
		if err := sleepCtx(ctx, pause); err != nil {
			return false, err
		}
		pause = min(2*pause, feedRetryMax)
	}
}

// listEvents runs EventList's query: the events and the statement's bound.
func (db *DB) listEvents(ctx context.Context, q string, args []any) ([]*meetsync.Event, int64, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	out := []*meetsync.Event{}
	var bound int64
	for rows.Next() {
		ev, err := scanEvent(boundRow{rows, &bound})
		if err != nil {
			return nil, 0, fmt.Errorf("list events: %w", err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list events: %w", err) // marked unavailable by pool.Query's rows
	}
	return out, bound, nil
}

// boundRow scans an event row followed by the bound column.
type boundRow struct {
	rows  pgx.Rows
	bound *int64
}

func (r boundRow) Scan(dest ...any) error { return r.rows.Scan(append(dest, r.bound)...) }

// EventFeedHead returns the app's newest feed position (0 for none): like
// EventList, it waits for the transactions that hold back what committed
// before the call, up to feedWait.
func (db *DB) EventFeedHead(ctx context.Context, appID string) (int64, error) {
	var visible int64
	_, err := untilVisible(ctx, func() (top, bound int64, seen bool, err error) {
		err = db.pool.QueryRow(ctx, `SELECT coalesce((SELECT max(pos) FROM events WHERE app_id = $1), 0),
			coalesce((SELECT max(pos) FROM events WHERE app_id = $1 AND pos < h.bound), 0), h.bound
			FROM (SELECT `+feedBound+` AS bound) h`, appID).Scan(&top, &visible, &bound)
		return top, bound, top > 0, err
	})
	if err != nil {
		return 0, fmt.Errorf("feed head: %w", err)
	}
	return visible, nil
}

// sleepCtx waits for d or the end of ctx.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rewakeSoon calls the Listen handler with NotifyEvents after feedWait,
// once for any number of calls meanwhile.
func (db *DB) rewakeSoon() {
	h := db.handler.Load()
	if h == nil || !db.rewaking.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(feedWait, func() {
		db.rewaking.Store(false)
		(*h)(NotifyEvents)
	})
}
