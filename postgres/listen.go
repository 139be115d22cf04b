package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Kinds of notification the store's commits send (on the channel
// "meetsync", as "<kind>:<node>").
const (
	// NotifyEvents: events were committed. The feed moved (SSE streams
	// read on).
	NotifyEvents = kindEvents
	// NotifyDeliveries: deliveries became due (dispatchers claim): an
	// append made some (sent after its NotifyEvents), or without new
	// events (a replay or recovery, an endpoint enabled again, claims
	// released by a replica that stopped).
	NotifyDeliveries = kindDeliveries
	// NotifyCommands: device commands were created (SSE command streams
	// read on).
	NotifyCommands = kindCommands
)

// Listen passes handler the kind of every notification sent by the
// commits of other replicas (other Config.Node values: a process signals
// its own commits itself), until ctx ends. It holds a connection of its
// own and reconnects, with backoff, when it is lost. Each time it starts
// listening (the first time, and after each reconnection, when
// notifications may have been missed) it calls handler with every kind.
//
// Notifications are sent inside the committing transaction, so a replica
// is told exactly of what committed, and NOTIFY's queue keeps them in
// commit order; no replica polls while the cluster is idle.
func (db *DB) Listen(ctx context.Context, handler func(kind string)) {
	db.handler.Store(&handler)
	defer db.handler.Store(nil)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, handler, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		_ = err // the loss of the connection is retried; the caller's log shows nothing for a blip
		if sleepCtx(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (db *DB) listenOnce(ctx context.Context, handler func(kind string), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, db.connCf.Copy())
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	connected()
	handler(NotifyEvents)
	handler(NotifyDeliveries)
	handler(NotifyCommands)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		kind, node, _ := strings.Cut(n.Payload, ":")
		if node == db.cfg.Node {
			continue
		}
		switch kind {
		case NotifyEvents, NotifyDeliveries, NotifyCommands:
			handler(kind)
		}
	}
}
