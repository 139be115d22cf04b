package ingest_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/sqlite"
)

// stuckStore is a SQLite store whose EventsAppend, while stuck is set,
// reports that it started (entered) and then waits: for its context to
// end, failing as a driver does when the database does not answer, or,
// with ignoreCtx, for release (a transaction the database finishes late).
// At the end of the test (stop) whatever still waits fails.
type stuckStore struct {
	*sqlite.DB
	stuck     atomic.Bool
	ignoreCtx bool
	entered   chan struct{}
	release   chan struct{}
	stop      chan struct{}
}

func (s *stuckStore) EventsAppend(ctx context.Context, reqs []*meetsync.AppendRequest) error {
	if s.stuck.Load() {
		s.entered <- struct{}{}
		done := ctx.Done()
		if s.ignoreCtx {
			done = nil
		}
		select {
		case <-done:
			return errors.New("append events: interrupted")
		case <-s.stop:
			return errors.New("append events: the test ended")
		case <-s.release:
		}
	}
	return s.DB.EventsAppend(ctx, reqs)
}

// newService starts a Service on a new stuckStore, both closed when the
// test ends (whatever is stuck failing first), and returns them with the
// id of the store's app.
func newService(t *testing.T, ignoreCtx bool, cfg ingest.Config) (*ingest.Service, *stuckStore, string) {
	t.Helper()
	sdb, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sdb.Close() })
	db := &stuckStore{DB: sdb, ignoreCtx: ignoreCtx, entered: make(chan struct{}, 16), release: make(chan struct{}), stop: make(chan struct{})}
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "ingest", CreatedAt: now}
	k, _ := meetsync.NewAPIKey(app.ID, now)
	if err := db.AppCreate(context.Background(), app, k); err != nil {
		t.Fatal(err)
	}
	s := ingest.New(db, nil, cfg)
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(db.stop) }) // before s.Close
	return s, db, app.ID
}

func noteRequest(appID, id string) *meetsync.AppendRequest {
	now := time.Now().UTC()
	return &meetsync.AppendRequest{AppID: appID, Events: []*meetsync.Event{{ID: id, CallerID: true, Type: "app.note", AppID: appID, UserID: "u",
		OccurredAt: now, ReceivedAt: now, Source: meetsync.SourceBusiness, Data: []byte(`{}`)}}}
}

// appendBounded runs Append and fails the test if it does not return
// within a bound that only a wedged committer misses.
func appendBounded(t *testing.T, s *ingest.Service, ctx context.Context, req *meetsync.AppendRequest) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Append(ctx, req) }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second): // a deadline, not an expectation
		t.Fatal("Append did not return: the committer is wedged")
		return nil
	}
}

// TestCommitTimeout: a group commit whose database does not answer fails
// when CommitTimeout passes, with EUNAVAILABLE saying its outcome is
// unknown, and the committer goes on: the same request, sent again once
// the database answers, is committed, and once more is a duplicate.
func TestCommitTimeout(t *testing.T) {
	t.Parallel()
	s, db, appID := newService(t, false, ingest.Config{Committers: 1, CommitTimeout: 50 * time.Millisecond})

	db.stuck.Store(true)
	err := appendBounded(t, s, context.Background(), noteRequest(appID, "note-1"))
	if meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE || !errors.Is(err, ingest.ErrOutcomeUnknown) {
		t.Fatalf("Append on a database that does not answer: %v (code %s); want EUNAVAILABLE, outcome unknown", err, meetsync.ErrorCode(err))
	}
	db.stuck.Store(false)
	req := noteRequest(appID, "note-1")
	if err := appendBounded(t, s, context.Background(), req); err != nil {
		t.Fatalf("Append once the database answers: %v", err)
	}
	if req.Results[0].Duplicate {
		t.Error("the request that timed out was committed")
	}
	again := noteRequest(appID, "note-1")
	if err := appendBounded(t, s, context.Background(), again); err != nil || !again.Results[0].Duplicate {
		t.Errorf("the same event again: %v, %+v; want a duplicate", err, again.Results)
	}
}

// TestAppendStopsWaiting: when its context ends, Append returns at once.
// A request a committer was committing may still commit (the error says
// its outcome is unknown, and carries the context's error); one still
// queued is never written (the context's error alone).
func TestAppendStopsWaiting(t *testing.T) {
	t.Parallel()
	s, db, appID := newService(t, true, ingest.Config{Committers: 1})

	db.stuck.Store(true)
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- s.Append(ctxA, noteRequest(appID, "note-a")) }()
	<-db.entered // the committer has it
	db.stuck.Store(false)
	cancelA()
	var errA error
	select {
	case errA = <-doneA:
	case <-time.After(30 * time.Second): // a deadline, not an expectation
		t.Fatal("Append kept waiting for a commit after its context ended")
	}
	if !errors.Is(errA, ingest.ErrOutcomeUnknown) || !errors.Is(errA, context.Canceled) || meetsync.ErrorCode(errA) != meetsync.EUNAVAILABLE {
		t.Errorf("Append canceled during its commit: %v; want EUNAVAILABLE, outcome unknown, context.Canceled", errA)
	}

	// The committer is still busy with A: B waits in the queue, and its
	// caller gives up.
	ctxB, cancelB := context.WithCancel(context.Background())
	cancelB()
	if err := appendBounded(t, s, ctxB, noteRequest(appID, "note-b")); !errors.Is(err, context.Canceled) || errors.Is(err, ingest.ErrOutcomeUnknown) {
		t.Errorf("Append canceled before its turn: %v; want context.Canceled alone", err)
	}

	close(db.release) // the database finishes A
	c := noteRequest(appID, "note-c")
	if err := appendBounded(t, s, context.Background(), c); err != nil {
		t.Fatal(err)
	}
	events, err := db.EventList(context.Background(), meetsync.EventListParams{AppID: appID, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ev := range events {
		ids = append(ids, ev.ID)
	}
	if len(ids) != 2 || ids[0] != "note-a" || ids[1] != "note-c" {
		t.Errorf("committed %v, want [note-a note-c]: A (in its commit when its caller left) and C, never B", ids)
	}
}
