package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meetsync/meetsync"
)

var _ meetsync.Purger = (*DB)(nil)

// errPurgeRace is a purge that found a delivery made active again (a
// replay) among those it was deleting: it starts again.
var errPurgeRace = errors.New("a delivery of a purged event became active")

// PurgeBefore deletes up to limit (default 1000) of an app's oldest events
// received before `before`, with their finished deliveries and those
// deliveries' attempts, their caller-id records, and the app's
// idempotency records older than `before`. Events from the oldest one
// with a delivery still pending or failed onwards are kept, so no queue
// loses its head; they go once delivered or dead. It returns how many
// events it deleted.
//
// Other replicas keep appending, completing and replaying meanwhile. A
// replay that makes a finished delivery pending again either commits
// before the purge deletes that delivery (the purge then sees it active
// and starts again, without that event) or waits for the purge and finds
// the delivery gone.
func (db *DB) PurgeBefore(ctx context.Context, appID string, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = 1000
	}
	var n int
	var err error
	for attempt := 1; ; attempt++ {
		err = db.inTx(ctx, txOptions{}, func(tx *txn) error {
			var err error
			n, err = purge(ctx, tx, appID, before, limit)
			return err
		})
		if !errors.Is(err, errPurgeRace) || attempt >= db.cfg.TxAttempts {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	return n, nil
}

func purge(ctx context.Context, tx *txn, appID string, before time.Time, limit int) (int, error) {
	var cutoff *int64
	err := tx.QueryRow(ctx, `SELECT max(pos) FROM (SELECT pos FROM events WHERE app_id = $1 AND received_at < $2
			AND pos < coalesce((SELECT min(event_pos) FROM deliveries WHERE app_id = $1 AND status IN ('pending', 'failed')), 9223372036854775807)
			ORDER BY pos LIMIT $3) e`, appID, before, limit).Scan(&cutoff)
	if err != nil {
		return 0, err
	}
	if cutoff == nil {
		return 0, nil
	}
	// The finished deliveries (their attempts go with them), then a look
	// for any delivery made active again meanwhile up to the cutoff.
	if _, err := tx.Exec(ctx, "DELETE FROM deliveries WHERE app_id = $1 AND event_pos <= $2 AND status NOT IN ('pending', 'failed')",
		appID, *cutoff); err != nil {
		return 0, err
	}
	var active bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM deliveries WHERE app_id = $1 AND event_pos <= $2 AND status IN ('pending', 'failed'))",
		appID, *cutoff).Scan(&active); err != nil {
		return 0, err
	}
	if active {
		return 0, errPurgeRace
	}
	if _, err := tx.Exec(ctx, "DELETE FROM event_ids WHERE app_id = $1 AND pos <= $2", appID, *cutoff); err != nil {
		return 0, err
	}
	ct, err := tx.Exec(ctx, "DELETE FROM events WHERE app_id = $1 AND pos <= $2 AND received_at < $3", appID, *cutoff, before)
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM idempotency_keys WHERE app_id = $1 AND created_at < $2", appID, before); err != nil {
		return 0, err
	}
	return int(ct.RowsAffected()), nil
}
