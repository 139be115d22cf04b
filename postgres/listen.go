package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	// Connecting is bounded too: a server that accepts the connection and
	// then says nothing (stopped, partitioned) is tried again later.
	cctx, cancel := context.WithTimeout(ctx, db.cfg.ListenCheck)
	conn, err := pgx.ConnectConfig(cctx, db.connCf.Copy())
	cancel()
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
		n, err := db.waitForNotification(ctx, conn)
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

// waitForNotification waits for the next notification on conn until ctx
// ends. Each time conn stays quiet for ListenCheck it pings it (a
// deadline that ends the wait leaves the connection usable), and returns
// the error when the ping gets no answer within ListenCheck: a connection
// whose server went silent is then replaced instead of waited on forever.
func (db *DB) waitForNotification(ctx context.Context, conn *pgx.Conn) (*pgconn.Notification, error) {
	for {
		wctx, cancel := context.WithTimeout(ctx, db.cfg.ListenCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(wctx.Err(), context.DeadlineExceeded) || conn.IsClosed() {
			return n, err
		}
		pctx, cancel := context.WithTimeout(ctx, db.cfg.ListenCheck)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("listen: the connection did not answer a ping: %w", err)
		}
	}
}
