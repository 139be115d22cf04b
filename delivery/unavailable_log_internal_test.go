package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/logtest"
	"github.com/meetsync/meetsync/internal/storelog"
)

// fakeClock is a wall clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var errStoreUnavailable = fmt.Errorf("claim deliveries: %w", meetsync.Errorf(meetsync.EUNAVAILABLE, "the database is unavailable; try again shortly"))

// unavailableStore is a store whose every claim fails with EUNAVAILABLE,
// one at a time as the test allows: called receives when a claim starts,
// step lets it return.
type unavailableStore struct {
	meetsync.Store // nil: the dispatcher calls only the methods below
	called, step   chan struct{}
	release        chan struct{} // closed: claims return at once
}

func (s *unavailableStore) DeliveriesClaim(ctx context.Context, _ meetsync.DeliveryClaimParams) ([]*meetsync.DeliveryTask, error) {
	select {
	case s.called <- struct{}{}:
		select {
		case <-s.step:
		case <-s.release:
		}
	case <-s.release:
	}
	return nil, errStoreUnavailable
}

func (s *unavailableStore) DeliveryNextDue(context.Context) (time.Time, bool, error) {
	return time.Time{}, false, nil
}

func (s *unavailableStore) DeliveriesReleaseClaims(context.Context, string, time.Time) (int, error) {
	return 0, nil
}

// TestDispatcherStoreUnavailableLog: while the store is unavailable the
// claim loop logs a WARN once per 10 s with the count of the claims left
// out, not an ERROR for every claim.
func TestDispatcherStoreUnavailableLog(t *testing.T) {
	var buf logtest.Buffer
	store := &unavailableStore{called: make(chan struct{}), step: make(chan struct{}), release: make(chan struct{})}
	d, err := New(store, slog.New(slog.NewTextHandler(&buf, nil)), nil, Config{Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d.storeLog.Now = clock.Now
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			close(store.release)
			d.Close(time.Second)
		}
	}
	defer stop()
	// claim lets one claim fail and waits until the loop has logged it
	// (it started the next claim). Wake skips the loop's backoff.
	claim := func() {
		t.Helper()
		select {
		case store.step <- struct{}{}:
		case <-time.After(time.Minute):
			t.Fatalf("the dispatcher does not claim; log:\n%s", buf.String())
		}
		d.Wake()
		select {
		case <-store.called:
		case <-time.After(time.Minute):
			t.Fatalf("the dispatcher does not claim again; log:\n%s", buf.String())
		}
	}
	<-store.called
	for range 5 {
		claim()
	}
	log := buf.String()
	if n := strings.Count(log, "level=ERROR"); n != 0 {
		t.Errorf("%d ERROR lines for 5 claims of an unavailable store, want none:\n%s", n, log)
	}
	if n := strings.Count(log, `level=WARN msg="claim deliveries"`); n != 1 || !strings.Contains(log, "similar_since_last=0") {
		t.Errorf("%d WARN lines for 5 claims of an unavailable store within 10 s, want 1 (similar_since_last=0):\n%s", n, log)
	}
	clock.Add(storelog.Every)
	claim()
	stop()
	log = buf.String()
	if n := strings.Count(log, `level=WARN msg="claim deliveries"`); n < 2 || !strings.Contains(log, "similar_since_last=4") {
		t.Errorf("10 s later: %d WARN lines, want a second one with similar_since_last=4:\n%s", n, log)
	}
}
