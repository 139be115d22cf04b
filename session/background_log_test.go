package session_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/logtest"
	"github.com/meetsync/meetsync/session"
)

// downSessions is a session store whose UsersDue fails as a database out
// of reach does.
type downSessions struct {
	meetsync.SessionStore // nil: the loop calls only UsersDue
	calls                 atomic.Int64
}

func (d *downSessions) UsersDue(context.Context, time.Time, int) ([]*meetsync.UserState, error) {
	d.calls.Add(1)
	return nil, meetsync.Errorf(meetsync.EUNAVAILABLE, "the database is unavailable; try again shortly")
}

// TestBackgroundLoopOutageLog: while the database is unavailable, the
// session engine's deadline loop, which tries at every tick, logs one WARN
// (and the count left out later), not an ERROR for every try.
func TestBackgroundLoopOutageLog(t *testing.T) {
	var buf logtest.Buffer
	store := &downSessions{}
	svc := session.New(session.Config{Sessions: store, Logger: slog.New(slog.NewTextHandler(&buf, nil)),
		TickEvery: time.Millisecond, ReconcileEvery: -1})
	svc.Start()
	waitFor(t, func() bool { return store.calls.Load() >= 20 })
	svc.Close()
	log := buf.String()
	if strings.Contains(log, "level=ERROR") {
		t.Errorf("an unavailable database is logged at ERROR:\n%s", log)
	}
	if n := strings.Count(log, `level=WARN msg="session deadlines"`); n != 1 {
		t.Errorf("%d WARN lines for %d failed tries within 10 s, want 1:\n%s", n, store.calls.Load(), log)
	}
	if !strings.Contains(log, "the database is unavailable; try again shortly") || !strings.Contains(log, "similar_since_last=0") {
		t.Errorf("the first failure is not logged with its error and similar_since_last=0:\n%s", log)
	}
}
