package storetest

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// handles returns n handles on the test's store: peers (other replicas)
// when the store has them, else the store itself n times.
func (e *env) handles(su *suite, n int) []meetsync.Store {
	hs := []meetsync.Store{e.s}
	for len(hs) < n {
		if su.peer == nil {
			hs = append(hs, e.s)
			continue
		}
		p := su.peer(e.t, e.s)
		e.t.Cleanup(func() { p.Close() })
		hs = append(hs, p)
	}
	return hs
}

// testFeedConcurrentWriters appends from several writers (through several
// handles when the store has peers) while a reader pages the feed: the
// reader must see every committed event exactly once, in the feed's
// final order. A store whose positions did not follow commit order would
// let the reader's cursor pass an event that commits later (it would be
// missing from what the reader saw).
func testFeedConcurrentWriters(t *testing.T, su *suite) {
	e := su.setup(t)
	hs := e.handles(su, 3)
	const writers, requests = 6, 30
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"}
	work := make([][]*meetsync.AppendRequest, writers)
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		for r := range requests {
			var evs []*meetsync.Event
			for range 1 + rng.IntN(4) {
				u := users[rng.IntN(len(users))]
				if rng.IntN(3) == 0 {
					evs = append(evs, e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: u, device: fmt.Sprintf("w%d", w),
						data: `{"status":"in_meeting"}`}))
				} else {
					evs = append(evs, e.event(in{user: u, data: fmt.Sprintf(`{"w":%d,"r":%d}`, w, r)}))
				}
			}
			work[w] = append(work[w], req(evs...))
		}
	}

	poke := make(chan struct{}, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := hs[w%len(hs)]
			for _, r := range work[w] {
				if err := s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r}); err != nil {
					errs <- err
					return
				}
				select {
				case poke <- struct{}{}:
				default:
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	var seen []*meetsync.Event
	var after int64
	finished := false
	for {
		page, err := e.s.EventList(e.ctx, meetsync.EventListParams{AppID: e.app, After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, page...)
		if len(page) > 0 {
			after = page[len(page)-1].Pos
			continue
		}
		if finished {
			break
		}
		select {
		case <-poke:
		case <-done:
			finished = true // one more read after the last commit
		case <-e.ctx.Done():
			t.Fatal("timed out")
		}
	}
	select {
	case err := <-errs:
		t.Fatalf("EventsAppend: %v", err)
	default:
	}

	final := e.feed(e.app, 0, 1000)
	stored := 0
	ids := map[string]bool{}
	for w := range writers {
		for _, r := range work[w] {
			if r.Err != nil {
				t.Fatalf("request error: %v", r.Err)
			}
			for _, res := range r.Results {
				if res.Duplicate {
					t.Errorf("unexpected duplicate %+v", res)
				}
				ids[res.ID] = true
				stored++
			}
		}
	}
	if len(final) != stored {
		t.Errorf("the feed has %d events, %d were appended", len(final), stored)
	}
	if len(seen) != len(final) {
		t.Errorf("the concurrent reader saw %d events, the feed has %d: a cursor skipped a late commit", len(seen), len(final))
	}
	for i := range min(len(seen), len(final)) {
		if seen[i].ID != final[i].ID || seen[i].Pos != final[i].Pos {
			t.Fatalf("event %d: the concurrent reader saw %s at %d, the feed has %s at %d", i, seen[i].ID, seen[i].Pos, final[i].ID, final[i].Pos)
		}
	}
	perUser := map[string]int64{}
	for i, ev := range final {
		if !ids[ev.ID] {
			t.Errorf("the feed has %s, which no writer appended", ev.ID)
		}
		delete(ids, ev.ID)
		if i > 0 && ev.Pos <= final[i-1].Pos {
			t.Errorf("positions not increasing: %d after %d", ev.Pos, final[i-1].Pos)
		}
		perUser[ev.UserID]++
		if ev.Seq != perUser[ev.UserID] {
			t.Errorf("user %s: event %s has seq %d, want %d (gap-free, in feed order)", ev.UserID, ev.ID, ev.Seq, perUser[ev.UserID])
		}
	}
	if len(ids) > 0 {
		t.Errorf("%d appended events are missing from the feed", len(ids))
	}
}

// testSameUsersConcurrentWriters races writers (through several handles
// when the store has peers) on the same users, devices, client_seqs,
// caller ids and Idempotency-Keys: each is stored once, every writer gets
// the same answer, and seqs stay gap-free.
func testSameUsersConcurrentWriters(t *testing.T, su *suite) {
	e := su.setup(t)
	hs := e.handles(su, 4)
	const writers, rounds = 4, 25
	users := []string{"alice", "bob", "carol"}
	type key struct {
		user string
		cs   int64
	}
	// Every writer builds its own events for the same keys.
	build := func(w, r int) []*meetsync.AppendRequest {
		u := users[r%len(users)]
		shared := e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: u, device: "shared", clientSeq: int64(r + 1),
			data: fmt.Sprintf(`{"status":"%s"}`, []string{"in_meeting", "idle", "connecting"}[(r+w)%3])})
		own := e.event(in{user: u, device: fmt.Sprintf("own%d", w), clientSeq: int64(r + 1)})
		caller := e.event(in{id: fmt.Sprintf("ext-%d", r), user: users[(r+1)%len(users)]})
		idem := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: fmt.Sprintf("key-%d", r), RequestHash: []byte("same"),
			Events: []*meetsync.Event{e.note(users[(r+2)%len(users)])}}
		return []*meetsync.AppendRequest{req(shared, own), req(caller), idem}
	}
	work := make([][][]*meetsync.AppendRequest, writers)
	for w := range writers {
		for r := range rounds {
			work[w] = append(work[w], build(w, r))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, reqs := range work[w] {
				if err := hs[w].EventsAppend(e.ctx, reqs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("EventsAppend: %v", err)
	default:
	}
	for r := range rounds {
		var shared, caller, idem string
		for w := range writers {
			reqs := work[w][r]
			for _, x := range reqs {
				if x.Err != nil {
					t.Fatalf("writer %d round %d: %v", w, r, x.Err)
				}
			}
			s, c, i := reqs[0].Results[0].ID, reqs[1].Results[0].ID, reqs[2].Results[0].ID
			if w == 0 {
				shared, caller, idem = s, c, i
				continue
			}
			if s != shared || c != caller || i != idem {
				t.Errorf("round %d: writer %d got %s/%s/%s, writer 0 %s/%s/%s", r, w, s, c, i, shared, caller, idem)
			}
		}
	}
	feed := e.feed(e.app, 0, 1000)
	perUser := map[string]int64{}
	sharedSeen := map[key]int{}
	for _, ev := range feed {
		perUser[ev.UserID]++
		if ev.Seq != perUser[ev.UserID] {
			t.Errorf("user %s: seq %d in feed position %d, want %d", ev.UserID, ev.Seq, ev.Pos, perUser[ev.UserID])
		}
		if ev.DeviceID == "shared" {
			sharedSeen[key{ev.UserID, ev.ClientSeq}]++
		}
	}
	// rounds shared + writers×rounds own + rounds caller ids + rounds keys.
	if want := rounds + writers*rounds + rounds + rounds; len(feed) != want {
		t.Errorf("the feed has %d events, want %d", len(feed), want)
	}
	for k, n := range sharedSeen {
		if n != 1 {
			t.Errorf("%v stored %d times", k, n)
		}
	}
	for _, u := range users {
		st := e.user(u)
		if st.LastSeq != perUser[u] {
			t.Errorf("user %s: last seq %d, the feed has %d events", u, st.LastSeq, perUser[u])
		}
	}
}

// testConcurrentDispatch runs writers and several dispatchers (through
// several handles when the store has peers) at once: every event reaches
// every subscribed endpoint exactly once (no lease expires), and each
// (endpoint, user) queue is sent in seq order, one delivery at a time.
func testConcurrentDispatch(t *testing.T, su *suite) {
	e := su.setup(t)
	hs := e.handles(su, 3)
	all := e.endpoint(nil, 0)
	meet := e.endpoint([]string{"meeting.*"}, 0)
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
	const writers, requests, dispatchers = 3, 25, 3
	work := make([][]*meetsync.AppendRequest, writers)
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(w), 11))
		for range requests {
			var evs []*meetsync.Event
			for range 1 + rng.IntN(3) {
				u := users[rng.IntN(len(users))]
				if rng.IntN(2) == 0 {
					evs = append(evs, e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: u, device: "d", data: `{"status":"idle"}`}))
				} else {
					evs = append(evs, e.note(u))
				}
			}
			work[w] = append(work[w], req(evs...))
		}
	}
	now := t0.Add(time.Hour) // every delivery is due; no lease (1 h) ends

	type qk struct{ ep, user string }
	var mu sync.Mutex
	sent := map[qk][]int64{}
	inflight := map[qk]bool{}
	var violations []string

	writersDone := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, writers+dispatchers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range work[w] {
				if err := hs[w%len(hs)].EventsAppend(e.ctx, []*meetsync.AppendRequest{r}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(writersDone) }()

	var dwg sync.WaitGroup
	for d := range dispatchers {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			s := hs[d%len(hs)]
			owner := fmt.Sprintf("dispatcher-%d", d)
			var queue []*meetsync.DeliveryTask
			for e.ctx.Err() == nil {
				if len(queue) == 0 {
					tasks, err := s.DeliveriesClaim(e.ctx, meetsync.DeliveryClaimParams{Owner: owner, Now: now, Lease: time.Hour, Limit: 4})
					if err != nil {
						errs <- err
						return
					}
					queue = tasks
				}
				if len(queue) == 0 {
					select {
					case <-writersDone:
						depths, err := s.DeliveryQueueDepths(e.ctx)
						if err != nil {
							errs <- err
							return
						}
						total := int64(0)
						for _, n := range depths {
							total += n
						}
						if total == 0 {
							return
						}
					default:
					}
					time.Sleep(time.Millisecond) // polling, bounded by the test's context
					continue
				}
				var outs []*meetsync.DeliveryOutcome
				mu.Lock()
				for _, tk := range queue {
					k := qk{tk.Delivery.EndpointID, tk.Delivery.UserID}
					if inflight[k] {
						violations = append(violations, fmt.Sprintf("two deliveries of queue %v in flight at once", k))
					}
					inflight[k] = true
					if prev := sent[k]; len(prev) > 0 && prev[len(prev)-1] >= tk.Delivery.Seq {
						violations = append(violations, fmt.Sprintf("queue %v: seq %d sent after %d", k, tk.Delivery.Seq, prev[len(prev)-1]))
					}
					sent[k] = append(sent[k], tk.Delivery.Seq)
					outs = append(outs, delivered(tk, now))
				}
				mu.Unlock()
				runtime.Gosched() // "sending": let the other dispatchers claim meanwhile
				// Out of flight before completing: the completion makes the next one claimable.
				mu.Lock()
				for _, tk := range queue {
					delete(inflight, qk{tk.Delivery.EndpointID, tk.Delivery.UserID})
				}
				mu.Unlock()
				next, err := s.DeliveriesComplete(e.ctx, meetsync.DeliveryCompleteParams{Owner: owner, Now: now, Lease: time.Hour, Outcomes: outs, ClaimNext: true})
				if err != nil {
					errs <- err
					return
				}
				queue = next
			}
		}()
	}
	dwg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("concurrent dispatch: %v", err)
	default:
	}
	if e.ctx.Err() != nil {
		t.Fatal("timed out")
	}
	for _, v := range violations {
		t.Error(v)
	}
	feed := e.feed(e.app, 0, 10000)
	want := map[qk][]int64{}
	for _, ev := range feed {
		want[qk{all.ID, ev.UserID}] = append(want[qk{all.ID, ev.UserID}], ev.Seq)
		if meet.EventTypes.Match(ev.Type) {
			want[qk{meet.ID, ev.UserID}] = append(want[qk{meet.ID, ev.UserID}], ev.Seq)
		}
	}
	for k, seqs := range want {
		if !slices.Equal(sent[k], seqs) {
			t.Errorf("queue %v: sent %v, want every event once in seq order %v", k, sent[k], seqs)
		}
	}
	if len(sent) != len(want) {
		t.Errorf("%d queues were sent to, %d have events", len(sent), len(want))
	}
	for _, ep := range []*meetsync.Endpoint{all, meet} {
		if ds := e.deliveries(ep, meetsync.DeliveryPending); len(ds) != 0 {
			t.Errorf("endpoint %v: %d deliveries still pending", ep.EventTypes, len(ds))
		}
	}
}
