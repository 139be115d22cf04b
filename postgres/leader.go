package postgres

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// LeaderConfig tunes RunLeader. The zero value is usable.
type LeaderConfig struct {
	// Retry is how often a replica that is not the leader tries to become
	// it (and so how soon it takes over from one that died). Default 2 s.
	Retry time.Duration
	// Check is how often the leader checks that its connection, and so its
	// lock, is still alive. Default 2 s.
	Check time.Duration
	// Logger gets an INFO line when this replica becomes the leader and
	// when it gives leadership up (with the reason). Default slog.Default().
	Logger *slog.Logger
}

// leaderPingTimeout bounds the leader's check of its connection: a dead
// connection fails the ping at once, and a slow answer (a loaded database
// or machine) is not taken for a lost lock, whatever Check is.
const leaderPingTimeout = 5 * time.Second

func (c LeaderConfig) withDefaults() LeaderConfig {
	if c.Retry <= 0 {
		c.Retry = 2 * time.Second
	}
	if c.Check <= 0 {
		c.Check = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// RunLeader runs fn on at most one replica of the cluster at a time, for
// background jobs that must run once per cluster (a reconciler, a
// retention purge): every replica calls RunLeader with the same name, the
// one holding the session advisory lock name (on a connection of its own)
// runs fn, the others wait to take over.
//
// fn's context ends when ctx ends or when the leader loses its lock (its
// connection died: the database released the lock and another replica may
// take it). A leader notices that within Check, and another replica may
// lead meanwhile: fn must stop promptly and its work must stand being
// done twice (as idempotent jobs are).
// When the process dies, its connection closes and the database releases
// the lock at once; another replica takes over within Retry. RunLeader
// returns when ctx ends, or when fn returns by itself while leading (the
// lock is then released).
func (db *DB) RunLeader(ctx context.Context, name string, cfg LeaderConfig, fn func(ctx context.Context)) {
	cfg = cfg.withDefaults()
	key := lockKey("leader:" + name)
	var conn *pgx.Conn
	closeConn := func() {
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			conn.Close(cctx) // closing the session releases its locks
			cancel()
			conn = nil
		}
	}
	defer closeConn()
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			if conn, err = pgx.ConnectConfig(ctx, db.connCf.Copy()); err != nil {
				conn = nil
			}
		}
		got := false
		if conn != nil {
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil {
				closeConn()
			}
		}
		if got {
			log := cfg.Logger.With("job", name, "node", db.Node())
			log.Info("became the leader of a cluster-wide job")
			byItself, reason := db.lead(ctx, conn, cfg, fn)
			log.Info("gave up the leadership of a cluster-wide job", "reason", reason)
			if byItself {
				// fn returned by itself: give leadership up and stop.
				cctx, cancel := context.WithTimeout(context.Background(), time.Second)
				if _, err := conn.Exec(cctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
					closeConn()
				}
				cancel()
				return
			}
			closeConn() // lost (or ctx ended): a fresh connection next time
			continue
		}
		_ = sleepCtx(ctx, cfg.Retry) // the loop ends with ctx
	}
}

// lead runs fn while conn stays alive. It reports whether fn returned by
// itself (rather than being stopped), and why leadership ends, for the log.
func (db *DB) lead(ctx context.Context, conn *pgx.Conn, cfg LeaderConfig, fn func(ctx context.Context)) (bool, string) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(lctx)
	}()
	tick := time.NewTicker(cfg.Check)
	defer tick.Stop()
	for {
		select {
		case <-done:
			if ctx.Err() != nil {
				return false, "stopping"
			}
			return true, "the job returned"
		case <-ctx.Done():
			<-done
			return false, "stopping"
		case <-tick.C:
			pctx, pcancel := context.WithTimeout(ctx, leaderPingTimeout)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && ctx.Err() == nil {
				cancel()
				<-done
				return false, "lost the connection that holds the leader lock (another replica may lead now): " + err.Error()
			}
		}
	}
}
