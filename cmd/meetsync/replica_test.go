package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/pgtest"
)

// TestReplicas runs three `meetsync serve` processes on one PostgreSQL
// database (started at the same moment: they migrate and bootstrap once),
// with three local webhook receivers (one subscribed to meeting.*, one to
// everything, one to two exact types that is slow and answers 500 to
// about one webhook in five). Events are posted from many goroutines, each
// request to a replica picked at random; once enough requests were
// acknowledged and every receiver has taken webhooks, one replica is
// killed with SIGKILL. The load goes on on the two others, the requests
// that got no answer are retried there, and the dead replica's claims are
// taken over when their lease ends. Then:
//
//   - every acknowledged event is in the feed exactly once, with the id and
//     seq it was acknowledged with; a request in flight at the kill is
//     stored wholly or not at all; every user's seqs run 1..n;
//   - every event reaches every endpoint subscribed to it, and no other;
//   - each endpoint receives each user's webhooks in seq order, a
//     duplicate being only a re-send of the webhook just received (same
//     webhook-id, same body), and every signature verifies;
//   - the API shows, at every endpoint, one delivered delivery per
//     subscribed event and nothing pending, failed, dead or superseded.
func TestReplicas(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, 2))
	db := pgtest.NewDatabase(t)

	h := &hooks{}
	h.add(t, "meeting", []string{"meeting.*"}, false, seed)
	h.add(t, "all", []string{}, false, seed)
	h.add(t, "flaky", []string{meetsync.TypeMeetingStatusChanged, "app.note"}, true, seed)

	// Quick retries (the flaky receiver refuses a webhook at most 4 times),
	// and a short lease so that the killed replica's claims are taken over
	// within the test.
	dir := t.TempDir()
	args := []string{"--database-url", db, "--allow-private-endpoints", "--retry-schedule", "0s,100ms,200ms,400ms,800ms,1s,1s,1s,1s,1s",
		"--delivery-timeout", "2s", "--delivery-lease", "6s", "--secret-key-file", sharedSecretKey(t, dir)}
	var replicas []*server
	for i := range 3 {
		data := filepath.Join(dir, string(rune('a'+i)))
		replicas = append(replicas, &server{proc: startProc(t, "", nil, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data}, args...)...), Data: data})
	}
	var key string
	for _, s := range replicas {
		s.waitReady(t)
		if _, err := os.Stat(filepath.Join(s.Data, "bootstrap-key")); err == nil {
			if key != "" {
				t.Fatal("two replicas bootstrapped an app")
			}
			key = readKey(t, s.Data)
		}
	}
	if key == "" {
		t.Fatal("no replica bootstrapped the app")
	}
	clients := make([]*apiClient, len(replicas))
	for i, s := range replicas {
		clients[i] = newClient(t, s.URL, key)
	}
	for _, r := range h.rs {
		r.register(ctx, t, clients[rng.IntN(len(clients))])
	}

	workers, minAcks := 16, int64(40)
	if raceEnabled() {
		workers, minAcks = 8, 15
	}
	m := newLoadModel("r", 60, 3)
	before := h.accepted()
	load := m.start(ctx, t, clients[0], loadOptions{workers: workers, triggerAt: minAcks + rng.Int64N(minAcks), seed: seed, clients: clients})
	select {
	case <-load.trigger:
	case <-load.finished:
		t.Fatal("the load ended before enough acknowledged requests")
	case <-ctx.Done():
		load.stop()
		t.Fatal("not enough acknowledged requests before the deadline")
	}
	if !h.await(ctx, func() bool {
		now := h.accepted()
		for i := range now {
			if now[i] < before[i]+10 {
				return false
			}
		}
		return true
	}) {
		load.stop()
		t.Fatalf("not every receiver got 10 webhooks before the deadline (%v)", h.accepted())
	}
	victim := rng.IntN(len(replicas))
	atKill, killedAt := h.accepted(), time.Since(began)
	replicas[victim].kill() // SIGKILL, mid-load and mid-delivery
	all := load.stop()
	if t.Failed() {
		t.FailNow()
	}
	var live []*apiClient
	var liveServers []*server
	for i, c := range clients {
		if i != victim {
			live, liveServers = append(live, c), append(liveServers, replicas[i])
		}
	}
	c := live[0]
	acked, unacked := 0, []*request(nil)
	for _, r := range all {
		if r.acked {
			acked++
		} else {
			unacked = append(unacked, r)
		}
	}

	// More load on the two replicas left, then the retries of the requests
	// that got no answer.
	load = m.start(ctx, t, c, loadOptions{workers: workers / 2, triggerAt: minAcks, seed: seed + 1, clients: live})
	select {
	case <-load.trigger:
	case <-load.finished:
		t.Fatalf("the load on the remaining replicas ended early; logs:\n%s\n%s", liveServers[0].stderr.String(), liveServers[1].stderr.String())
	case <-ctx.Done():
		load.stop()
		t.Fatal("the remaining replicas acknowledged too little before the deadline")
	}
	all = append(all, load.stop()...)
	if t.Failed() {
		t.FailNow()
	}
	feed := verifyLog(t, c, all)
	stored := retry(ctx, t, c, feed, unacked)
	feed = verifyLog(t, c, all) // every request is acknowledged now: the log is exactly what was sent
	t.Logf("%.1fs: replica %d killed at %.1fs after %d acknowledged requests, receivers had %v webhooks; %d requests got no answer, %d of them had been committed; the log has %d events",
		time.Since(began).Seconds(), victim, killedAt.Seconds(), acked, atKill, len(unacked), stored, len(feed.events))
	if t.Failed() {
		t.FailNow()
	}

	byID := map[string]*feedEvent{}
	for _, e := range feed.events {
		byID[e.ID] = e
	}
	want := make([]map[string]bool, len(h.rs))
	for i, r := range h.rs {
		want[i] = map[string]bool{}
		for _, e := range feed.events {
			if r.subscribed(e.Type) {
				want[i][e.ID] = true
			}
		}
	}
	if !h.await(ctx, func() bool {
		for i, r := range h.rs {
			got := r.ids()
			for id := range want[i] {
				if !got[id] {
					return false
				}
			}
		}
		return true
	}) {
		for i, r := range h.rs {
			t.Errorf("endpoint %s: missing e.g. %s; its queue:\n%s", r.name, r.someMissing(want[i], byID, 5), r.queueReport(t, c))
		}
		t.Fatalf("not every event was delivered before the deadline; logs:\n%s\n%s", liveServers[0].stderr.String(), liveServers[1].stderr.String())
	}
	t.Logf("%.1fs: every event (%d) reached its endpoints", time.Since(began).Seconds(), len(feed.events))

	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		if errs++; errs >= 20 {
			t.FailNow()
		}
	}
	for i, r := range h.rs {
		accepted, dups := checkReplicaReceipts(r, byID, want[i], fail)
		t.Logf("endpoint %s (%v): %d events subscribed, %d webhooks accepted, %d of them re-sends", r.name, r.types, len(want[i]), accepted, dups)
	}
	h.checkServerSide(ctx, t, c, want, fail)
	for _, s := range liveServers {
		if code := s.term(t); code != 0 {
			t.Errorf("SIGTERM: exit %d", code)
		}
	}
}

// checkReplicaReceipts checks what one receiver accepted, in arrival
// order: valid signed webhooks of subscribed events of the log, each
// user's in seq order, a duplicate only re-sending the webhook received
// just before it for that user (same webhook-id, same body), and every
// subscribed event received.
func checkReplicaReceipts(r *hookReceiver, byID map[string]*feedEvent, want map[string]bool, fail func(string, ...any)) (accepted, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	type last struct {
		seq  int64
		id   string
		body []byte
	}
	perUser := map[string]last{}
	distinct := map[string]bool{}
	for _, rc := range r.receipts {
		ev := rc.ev
		if rc.parseErr != nil {
			fail("endpoint %s: webhook %s: %v", r.name, rc.webhookID, rc.parseErr)
			continue
		}
		if rc.webhookID != ev.ID {
			fail("endpoint %s: webhook-id %q for event %s", r.name, rc.webhookID, ev.ID)
		}
		if rc.sigErr != nil {
			fail("endpoint %s: webhook %s: the signature does not verify: %v", r.name, rc.webhookID, rc.sigErr)
		}
		e, ok := byID[ev.ID]
		switch {
		case !ok:
			fail("endpoint %s: event %s is not in the log", r.name, ev.ID)
			continue
		case !want[ev.ID]:
			fail("endpoint %s (%v): event %s of type %s, not subscribed", r.name, r.types, ev.ID, e.Type)
		case ev.UserID != e.UserID || ev.Seq != e.Seq || ev.Type != e.Type:
			fail("endpoint %s: event %s arrived as %s/%s/%d, the log has %s/%s/%d", r.name, ev.ID, ev.Type, ev.UserID, ev.Seq, e.Type, e.UserID, e.Seq)
		}
		prev := perUser[ev.UserID]
		switch {
		case ev.Seq < prev.seq:
			fail("endpoint %s: user %s's seq %d (%s) arrived after its seq %d", r.name, ev.UserID, ev.Seq, ev.ID, prev.seq)
		case ev.Seq == prev.seq:
			dups++
			if rc.webhookID != prev.id || !bytes.Equal(rc.body, prev.body) {
				fail("endpoint %s: user %s's seq %d came twice, as %s and %s (or with different bodies)", r.name, ev.UserID, ev.Seq, prev.id, rc.webhookID)
			}
		default:
			if distinct[rc.webhookID] {
				fail("endpoint %s: webhook %s came again after a later one", r.name, rc.webhookID)
			}
		}
		distinct[rc.webhookID] = true
		perUser[ev.UserID] = last{ev.Seq, rc.webhookID, rc.body}
	}
	if len(distinct) != len(want) {
		fail("endpoint %s: %d distinct webhook-ids, %d subscribed events", r.name, len(distinct), len(want))
	}
	return len(r.receipts), dups
}
