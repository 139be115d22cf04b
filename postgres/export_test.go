package postgres

import (
	"context"

	"github.com/meetsync/meetsync"
)

// EventListHeld is EventList, also reporting whether committed events
// were left out (so a listening replica is told to read again).
func (db *DB) EventListHeld(ctx context.Context, p meetsync.EventListParams) ([]*meetsync.Event, bool, error) {
	return db.eventList(ctx, p)
}
