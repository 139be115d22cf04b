package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIngestStatusForms(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, tc := range []struct {
		name     string
		status   any
		wantName string
		wantCode int
		wantSDK  string
	}{
		{"integer code", 3, "in_meeting", 3, "MEETING_STATUS_INMEETING"},
		{"SDK constant", "MEETING_STATUS_INMEETING", "in_meeting", 3, "MEETING_STATUS_INMEETING"},
		{"snake case", "in_meeting", "in_meeting", 3, "MEETING_STATUS_INMEETING"},
		{"SDK short form", "INMEETING", "in_meeting", 3, "MEETING_STATUS_INMEETING"},
		{"SDK constant lower case", "meeting_status_inmeeting", "in_meeting", 3, "MEETING_STATUS_INMEETING"},
		{"code as string", "3", "in_meeting", 3, "MEETING_STATUS_INMEETING"},
		{"negative code", -1, "failed", -1, "MEETING_STATUS_FAILED"},
		{"unknown code 100", 100, "unknown", 100, "MEETING_STATUS_UNKNOWN"},
		{"minimized SDK", "MEETING_STATUS_INMEETING_MINIMIZED", "in_meeting_minimized", 4, "MEETING_STATUS_INMEETING_MINIMIZED"},
		{"waiting room snake", "in_waiting_room", "in_waiting_room", 5, "MEETING_STATUS_IN_WAITING_ROOM"},
		{"screen sharing code", 7, "in_screen_sharing", 7, "MEETING_STATUS_IN_SCREEN_SHARING"},
		{"connecting SDK", "MEETING_STATUS_CONNECTING", "connecting", 2, "MEETING_STATUS_CONNECTING"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			user := "u-" + strings.ReplaceAll(tc.name, " ", "-")
			res := e.ingest(t, statusEvent(user, "d1", 1, tc.status))
			if len(res) != 1 || res[0].Seq != 1 || res[0].Duplicate || res[0].Stale || !strings.HasPrefix(res[0].ID, "evt_") {
				t.Fatalf("results = %+v, want one new event evt_… with seq 1", res)
			}
			u := e.user(t, e.Key, user)
			if u.Meeting.Status != tc.wantName || u.Meeting.Code != tc.wantCode || u.Meeting.SDKName != tc.wantSDK {
				t.Errorf("meeting = %+v, want %s/%d/%s", u.Meeting, tc.wantName, tc.wantCode, tc.wantSDK)
			}
			evs := e.feedAll(t, e.Key, "user_id="+user, 10)
			if len(evs) != 1 {
				t.Fatalf("feed has %d events for %s, want 1", len(evs), user)
			}
			var d struct {
				Status     string `json:"status"`
				StatusCode int    `json:"status_code"`
			}
			if err := json.Unmarshal(evs[0].Data, &d); err != nil {
				t.Fatal(err)
			}
			if d.Status != tc.wantName || d.StatusCode != tc.wantCode {
				t.Errorf("stored data %s: want status %q, status_code %d", evs[0].Data, tc.wantName, tc.wantCode)
			}
		})
	}
}

func TestIngestReasonForms(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, tc := range []struct {
		name     string
		key      string
		arg      any
		wantName string
		wantCode int
	}{
		{"integer arg", "arg", 1, "removed_by_host", 1},
		{"snake-case arg", "arg", "closed_by_host", "closed_by_host", 2},
		{"SDK name arg", "arg", "MEETING_DISCONNECTING_LOGIN_ON_OTHER_DEVICE", "login_on_other_device", 3},
		{"reason key", "reason", 20, "waiting_verify_password", 20},
		{"no arg", "", nil, "by_self", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			user := "u-" + strings.ReplaceAll(tc.name, " ", "-")
			ev := statusEvent(user, "d1", 1, "idle")
			if tc.key != "" {
				ev["data"].(map[string]any)[tc.key] = tc.arg
			}
			e.ingest(t, ev)
			u := e.user(t, e.Key, user)
			if u.Meeting.Reason != tc.wantName || u.Meeting.ReasonCode != tc.wantCode {
				t.Errorf("reason = %q/%d, want %q/%d", u.Meeting.Reason, u.Meeting.ReasonCode, tc.wantName, tc.wantCode)
			}
		})
	}
}

func TestIngestUnknownStatus(t *testing.T) {
	t.Parallel()
	e := setup(t)
	valid := statusEvent("u1", "d1", 1, "in_meeting")
	for _, tc := range []struct {
		name      string
		body      any
		field     string
		mentioned []string // in the message: the accepted values
	}{
		{"unknown name", statusEvent("u1", "d1", 1, "bogus"), "data.status",
			[]string{"MEETING_STATUS_INMEETING", "in_meeting", "-1"}},
		{"unknown code in batch", batch(statusEvent("u1", "d1", 1, 42)), "events[0].data.status",
			[]string{"MEETING_STATUS_IDLE", "idle", "100"}},
		{"boolean status, second of batch", batch(valid, statusEvent("u1", "d1", 2, true)), "events[1].data.status",
			[]string{"in_screen_sharing"}},
		{"missing status", map[string]any{"type": "meeting.status_changed", "user_id": "u1", "data": map[string]any{}}, "data.status",
			[]string{"in_meeting"}},
		{"fractional code", statusEvent("u1", "d1", 1, 3.5), "data.status", []string{"in_meeting"}},
		{"unknown arg", map[string]any{"type": "meeting.status_changed", "user_id": "u1",
			"data": map[string]any{"status": 0, "arg": 99}}, "data.arg", []string{"removed_by_host", "20"}},
		{"unknown reason name in batch", batch(map[string]any{"type": "meeting.status_changed", "user_id": "u1",
			"data": map[string]any{"status": 0, "reason": "nope"}}), "events[0].data.reason", []string{"by_self"}},
		{"meeting_num object", map[string]any{"type": "meeting.status_changed", "user_id": "u1",
			"data": map[string]any{"status": 3, "meeting_num": map[string]any{}}}, "data.meeting_num", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := requireError(t, e.do(t, "POST", "/v1/events", e.Key, tc.body), http.StatusBadRequest, "invalid", tc.field)
			for _, m := range tc.mentioned {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not list accepted value %q", msg, m)
				}
			}
		})
	}
	if n := e.feedCount(t, e.Key); n != 0 {
		t.Errorf("feed has %d events after refused requests, want 0", n)
	}
	requireError(t, e.do(t, "GET", "/v1/users/u1", e.Key, nil), http.StatusNotFound, "not_found", "")
}

func TestIngestDuplicateClientSeq(t *testing.T) {
	t.Parallel()
	e := setup(t)
	first := e.ingest(t, statusEvent("u1", "d1", 1, "in_meeting"))[0]
	if first.Duplicate || first.Seq != 1 {
		t.Fatalf("first = %+v", first)
	}
	again := e.ingest(t, statusEvent("u1", "d1", 1, "in_meeting"))[0]
	if again != (result{ID: first.ID, Seq: first.Seq, Duplicate: true}) {
		t.Errorf("retry = %+v, want the original %+v marked duplicate", again, first)
	}
	// A repeat is recognised by (user, device, client_seq) alone, even if
	// its content differs, and changes no state.
	other := e.ingest(t, statusEvent("u1", "d1", 1, "idle"))[0]
	if other.ID != first.ID || other.Seq != 1 || !other.Duplicate {
		t.Errorf("repeat with other data = %+v, want duplicate of %+v", other, first)
	}
	if u := e.user(t, e.Key, "u1"); u.Meeting.Status != "in_meeting" || u.LastSeq != 1 {
		t.Errorf("state after duplicates = %s, last_seq %d; want in_meeting, 1", u.Meeting.Status, u.LastSeq)
	}
	// Inside one batch, and mixed with new events.
	res := e.ingest(t, batch(statusEvent("u1", "d1", 2, "idle"), statusEvent("u1", "d1", 2, "idle"), statusEvent("u1", "d1", 1, "idle")))
	want := []result{{ID: res[0].ID, Seq: 2}, {ID: res[0].ID, Seq: 2, Duplicate: true}, {ID: first.ID, Seq: 1, Duplicate: true}}
	if !slices.Equal(res, want) {
		t.Errorf("batch results = %+v, want %+v", res, want)
	}
	// The same device and client_seq of another user is another event.
	if r := e.ingest(t, statusEvent("u2", "d1", 1, "idle"))[0]; r.Duplicate || r.Seq != 1 || r.ID == first.ID {
		t.Errorf("other user's event = %+v, want a new event with seq 1", r)
	}
	if n := e.feedCount(t, e.Key); n != 3 {
		t.Errorf("feed has %d events, want 3 (nothing stored twice)", n)
	}
}

func TestIngestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := setup(t)
	body := batch(
		map[string]any{"type": "crm.note", "user_id": "u1", "data": map[string]any{"n": 1}},
		map[string]any{"type": "crm.note", "user_id": "u2", "data": map[string]any{"n": 2}},
	)
	first := e.ingest(t, body, "Idempotency-Key", "req-1")
	if len(first) != 2 || first[0].Duplicate || first[1].Duplicate {
		t.Fatalf("first = %+v", first)
	}
	again := e.ingest(t, body, "Idempotency-Key", "req-1")
	for i := range first {
		if want := (result{ID: first[i].ID, Seq: first[i].Seq, Duplicate: true}); again[i] != want {
			t.Errorf("retry[%d] = %+v, want %+v", i, again[i], want)
		}
	}
	if n := e.feedCount(t, e.Key); n != 2 {
		t.Fatalf("feed has %d events after a retry with the same Idempotency-Key, want 2", n)
	}
	other := batch(map[string]any{"type": "crm.note", "user_id": "u1", "data": map[string]any{"n": 3}})
	requireError(t, e.do(t, "POST", "/v1/events", e.Key, other, "Idempotency-Key", "req-1"), http.StatusConflict, "conflict", "")
	requireError(t, e.do(t, "POST", "/v1/events", e.Key, other, "Idempotency-Key", strings.Repeat("k", 256)),
		http.StatusBadRequest, "invalid", "Idempotency-Key")
	if n := e.feedCount(t, e.Key); n != 2 {
		t.Fatalf("feed has %d events after a conflicting request, want 2", n)
	}
	// Without the header the same body is new events: the key is what deduplicates.
	if r := e.ingest(t, body); r[0].Duplicate || r[0].ID == first[0].ID {
		t.Errorf("same body without Idempotency-Key = %+v, want new events", r)
	}

	// Concurrent retries of one request: stored once, every answer the same.
	const n = 8
	results := make([][]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := e.request("POST", "/v1/events", e.Key, other, "Idempotency-Key", "req-2")
			if err != nil || r.Status != http.StatusOK {
				t.Errorf("concurrent retry: %v %v", r, err)
				return
			}
			var out struct{ Events []result }
			if err := json.Unmarshal(r.Body, &out); err != nil || len(out.Events) != 1 {
				t.Errorf("concurrent retry: %s %v", r.Body, err)
				return
			}
			results[i] = out.Events
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	fresh := 0
	for _, r := range results {
		if r[0].ID != results[0][0].ID || r[0].Seq != results[0][0].Seq {
			t.Errorf("concurrent retries answered %+v and %+v", r[0], results[0][0])
		}
		if !r[0].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d of %d concurrent retries were not marked duplicate, want exactly 1", fresh, n)
	}
	if got := e.feedCount(t, e.Key); got != 5 {
		t.Errorf("feed has %d events, want 5", got)
	}
}

func TestIngestCallerID(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ev := map[string]any{"id": "crm-42", "type": "crm.order_paid", "user_id": "u1"}
	first := e.ingest(t, ev)[0]
	if first.ID != "crm-42" || first.Seq != 1 || first.Duplicate {
		t.Fatalf("first = %+v, want id crm-42, seq 1", first)
	}
	if again := e.ingest(t, ev)[0]; again != (result{ID: "crm-42", Seq: 1, Duplicate: true}) {
		t.Errorf("repeat = %+v, want duplicate of %+v", again, first)
	}
	res := e.ingest(t, batch(map[string]any{"id": "crm-43", "type": "crm.order_paid", "user_id": "u1"}, ev))
	want := []result{{ID: "crm-43", Seq: 2}, {ID: "crm-42", Seq: 1, Duplicate: true}}
	if !slices.Equal(res, want) {
		t.Errorf("batch = %+v, want %+v", res, want)
	}
	requireError(t, e.do(t, "POST", "/v1/events", e.Key, map[string]any{"id": "bad\nid", "type": "crm.x", "user_id": "u1"}),
		http.StatusBadRequest, "invalid", "id")
	evs := e.feedAll(t, e.Key, "", 100)
	if len(evs) != 2 || evs[0].ID != "crm-42" || evs[1].ID != "crm-43" {
		t.Errorf("feed = %+v, want crm-42 then crm-43", evs)
	}
	if u := e.user(t, e.Key, "u1"); u.LastSeq != 2 {
		t.Errorf("last_seq = %d, want 2", u.LastSeq)
	}
}

// TestIngestOwnIDRefused: meetsync's own ids cannot be reused by a caller
// (they are unique by construction and not indexed), e.g. an event
// re-posted from the feed with its id.
func TestIngestOwnIDRefused(t *testing.T) {
	t.Parallel()
	e := setup(t)
	own := e.ingest(t, map[string]any{"type": "crm.x", "user_id": "u1"})[0]
	requireError(t, e.do(t, "POST", "/v1/events", e.Key, map[string]any{"id": own.ID, "type": "crm.x", "user_id": "u1"}),
		http.StatusBadRequest, "invalid", "id")
	if n := e.feedCount(t, e.Key); n != 1 {
		t.Errorf("feed has %d events, want 1", n)
	}
}

// TestIngestCallerIDOfAnotherUser repeats a caller-supplied id under
// another user: the repeat is the original event, so it must not bring
// that other user into existence.
func TestIngestCallerIDOfAnotherUser(t *testing.T) {
	t.Parallel()
	e := setup(t)
	first := e.ingest(t, map[string]any{"id": "ext-1", "type": "crm.a", "user_id": "u1"})[0]
	if r := e.ingest(t, map[string]any{"id": "ext-1", "type": "crm.a", "user_id": "u2"})[0]; r != (result{ID: "ext-1", Seq: first.Seq, Duplicate: true}) {
		t.Errorf("repeat under another user = %+v, want the original marked duplicate", r)
	}
	requireError(t, e.do(t, "GET", "/v1/users/u2", e.Key, nil), http.StatusNotFound, "not_found", "")
	if r := e.do(t, "GET", "/v1/users", e.Key, nil); strings.Contains(string(r.Body), `"u2"`) {
		t.Errorf("user list shows u2, which has no event: %s", r.Body)
	}
}

func TestIngestSeqPerUser(t *testing.T) {
	t.Parallel()
	e := setup(t)
	next := map[string]int64{}
	for i := range 30 {
		user := []string{"alice", "bob", "carol"}[i%3]
		var res []result
		if i%4 == 0 {
			res = e.ingest(t, batch(
				map[string]any{"type": "crm.a", "user_id": user},
				map[string]any{"type": "crm.b", "user_id": user},
			))
		} else {
			res = e.ingest(t, map[string]any{"type": "crm.a", "user_id": user})
		}
		for _, r := range res {
			next[user]++
			if r.Seq != next[user] {
				t.Fatalf("%s got seq %d, want %d", user, r.Seq, next[user])
			}
		}
	}
	for user, n := range next {
		evs := e.feedAll(t, e.Key, "user_id="+user, 7)
		if int64(len(evs)) != n {
			t.Fatalf("%s: feed has %d events, want %d", user, len(evs), n)
		}
		for i, ev := range evs {
			if ev.Seq != int64(i+1) || ev.UserID != user {
				t.Fatalf("%s: feed event %d has user %s seq %d", user, i, ev.UserID, ev.Seq)
			}
		}
		if u := e.user(t, e.Key, user); u.LastSeq != n {
			t.Errorf("%s: last_seq %d, want %d", user, u.LastSeq, n)
		}
	}
}

// TestIngestConcurrent has many goroutines post for the same few users,
// singly and in batches, retrying some requests (by client_seq or by
// Idempotency-Key). Every user's seqs must be exactly 1..n and the feed
// must hold every acknowledged event exactly once.
func TestIngestConcurrent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const (
		workers  = 16
		requests = 30
	)
	users := []string{"u0", "u1", "u2", "u3"}
	statuses := []string{"connecting", "in_meeting", "idle", "MEETING_STATUS_WAITING", "3"}
	type ack struct {
		user string
		res  result
	}
	acks := make([][]ack, workers)
	maxClientSeq := make([]map[string]int64, workers)
	var wg sync.WaitGroup

	// A follower pages the feed while the writers write: what it reads,
	// in order, must be the final feed (nothing committed behind its cursor).
	writing := make(chan struct{})
	followed := make(chan []feedEvent, 1)
	go func() {
		var got []feedEvent
		defer func() { followed <- got }()
		after := "0"
		poll := time.NewTicker(5 * time.Millisecond)
		defer poll.Stop()
		for {
			done := false
			select {
			case <-writing:
				done = true
			default:
			}
			r, err := e.request("GET", "/v1/events?limit=50&after="+after, e.Key, nil)
			if err != nil || r.Status != http.StatusOK {
				t.Errorf("follower: %v %v", r, err)
				return
			}
			var p feedPage
			if err := json.Unmarshal(r.Body, &p); err != nil {
				t.Errorf("follower: %v", err)
				return
			}
			got = append(got, p.Events...)
			after = p.Next
			if len(p.Events) == 0 {
				if done { // read to the end after the last write: complete
					return
				}
				select { // poll again soon
				case <-poll.C:
				case <-writing:
				}
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			device := fmt.Sprintf("dev-%02d", w)
			clientSeq := map[string]int64{}
			maxClientSeq[w] = clientSeq
			post := func(body any, hdr ...string) ([]result, bool) {
				r, err := e.request("POST", "/v1/events", e.Key, body, hdr...)
				if err != nil || r.Status != http.StatusOK {
					t.Errorf("worker %d: POST: %v %v", w, r, err)
					return nil, false
				}
				var out struct{ Events []result }
				if err := json.Unmarshal(r.Body, &out); err != nil {
					t.Errorf("worker %d: %s: %v", w, r.Body, err)
					return nil, false
				}
				return out.Events, true
			}
			for i := range requests {
				size := 1
				if rng.IntN(3) == 0 {
					size = 2 + rng.IntN(8)
				}
				evs := make([]map[string]any, size)
				evUsers := make([]string, size)
				for j := range evs {
					u := users[rng.IntN(len(users))]
					clientSeq[u]++
					evUsers[j] = u
					if rng.IntN(4) == 0 {
						evs[j] = map[string]any{"type": "client.initialized", "user_id": u, "device_id": device, "client_seq": clientSeq[u]}
					} else {
						evs[j] = statusEvent(u, device, clientSeq[u], statuses[rng.IntN(len(statuses))])
					}
				}
				var body any = batch(evs...)
				if size == 1 && rng.IntN(2) == 0 {
					body = evs[0]
				}
				var hdr []string
				if rng.IntN(5) == 0 {
					hdr = []string{"Idempotency-Key", fmt.Sprintf("w%d-r%d", w, i)}
				}
				res, ok := post(body, hdr...)
				if !ok {
					return
				}
				if len(res) != size {
					t.Errorf("worker %d: %d results for %d events", w, len(res), size)
					return
				}
				for j, r := range res {
					if r.Duplicate || r.Stale {
						t.Errorf("worker %d: fresh event answered %+v", w, r)
					}
					acks[w] = append(acks[w], ack{evUsers[j], r})
				}
				if rng.IntN(4) == 0 { // the client did not get the answer: retry
					again, ok := post(body, hdr...)
					if !ok {
						return
					}
					if len(again) != len(res) {
						t.Errorf("worker %d: retry has %d results, want %d", w, len(again), len(res))
						return
					}
					for j := range res {
						if want := (result{ID: res[j].ID, Seq: res[j].Seq, Duplicate: true}); again[j] != want {
							t.Errorf("worker %d: retry answered %+v, want %+v", w, again[j], want)
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(writing)
	follower := <-followed
	if t.Failed() {
		return
	}

	ids := map[string]ack{}
	seqs := map[string][]int64{}
	for _, as := range acks {
		for _, a := range as {
			if prev, dup := ids[a.res.ID]; dup {
				t.Fatalf("id %s acknowledged twice: %+v and %+v", a.res.ID, prev, a)
			}
			ids[a.res.ID] = a
			seqs[a.user] = append(seqs[a.user], a.res.Seq)
		}
	}
	for _, u := range users {
		s := seqs[u]
		slices.Sort(s)
		for i, q := range s {
			if q != int64(i+1) {
				t.Fatalf("%s: acknowledged seqs are not 1..%d: position %d holds %d", u, len(s), i, q)
			}
		}
	}

	feed := e.feedAll(t, e.Key, "", 97) // feedAll checks cursor order and paging
	if len(feed) != len(ids) {
		t.Errorf("feed has %d events, %d were acknowledged", len(feed), len(ids))
	}
	if len(follower) != len(feed) {
		t.Errorf("the follower read %d events while writers wrote, the feed has %d", len(follower), len(feed))
	}
	for i := range min(len(follower), len(feed)) {
		if follower[i].ID != feed[i].ID {
			t.Fatalf("the follower's event %d is %s, the feed's %s", i, follower[i].ID, feed[i].ID)
		}
	}
	lastSeq := map[string]int64{}
	seen := map[string]bool{}
	for _, ev := range feed {
		a, ok := ids[ev.ID]
		if !ok {
			t.Fatalf("feed event %s was never acknowledged", ev.ID)
		}
		if seen[ev.ID] {
			t.Fatalf("feed holds %s twice", ev.ID)
		}
		seen[ev.ID] = true
		if ev.UserID != a.user || ev.Seq != a.res.Seq {
			t.Errorf("feed event %s: user %s seq %d, acknowledged %s seq %d", ev.ID, ev.UserID, ev.Seq, a.user, a.res.Seq)
		}
		if ev.Seq != lastSeq[ev.UserID]+1 {
			t.Errorf("feed: %s seq %d follows %d", ev.UserID, ev.Seq, lastSeq[ev.UserID])
		}
		lastSeq[ev.UserID] = ev.Seq
	}
	for _, u := range users {
		st := e.user(t, e.Key, u)
		if st.LastSeq != int64(len(seqs[u])) {
			t.Errorf("%s: last_seq %d, want %d", u, st.LastSeq, len(seqs[u]))
		}
		for _, d := range st.Devices {
			var w int
			fmt.Sscanf(d.DeviceID, "dev-%d", &w)
			if want := maxClientSeq[w][u]; d.LastClientSeq != want {
				t.Errorf("%s/%s: last_client_seq %d, want %d", u, d.DeviceID, d.LastClientSeq, want)
			}
		}
	}
}

func TestStaleClientSeq(t *testing.T) {
	t.Parallel()
	e := setup(t)
	in := statusEvent("u1", "d1", 5, "in_meeting")
	in["data"].(map[string]any)["meeting_num"] = "123456"
	e.ingest(t, in)
	late := e.ingest(t, statusEvent("u1", "d1", 3, "idle"))[0]
	if !late.Stale || late.Duplicate || late.Seq != 2 {
		t.Fatalf("late event = %+v, want stored (seq 2) and stale", late)
	}
	u := e.user(t, e.Key, "u1")
	if u.Meeting.Status != "in_meeting" || u.Meeting.MeetingNum != "123456" || u.LastSeq != 2 {
		t.Errorf("state = %+v last_seq %d, want in_meeting 123456 and last_seq 2", u.Meeting, u.LastSeq)
	}
	if len(u.Devices) != 1 || u.Devices[0].LastClientSeq != 5 || u.Devices[0].Meeting.Status != "in_meeting" {
		t.Errorf("devices = %+v, want d1 at client_seq 5, in_meeting", u.Devices)
	}
	// A retry of the stale event is a duplicate that is still stale.
	if r := e.ingest(t, statusEvent("u1", "d1", 3, "idle"))[0]; r != (result{ID: late.ID, Seq: 2, Duplicate: true, Stale: true}) {
		t.Errorf("retry of stale event = %+v", r)
	}
	evs := e.feedAll(t, e.Key, "", 10)
	if len(evs) != 2 || evs[0].Stale || !evs[1].Stale || evs[1].ClientSeq != 3 {
		t.Fatalf("feed = %+v, want the event and the stored stale one", evs)
	}
	// A newer client_seq moves the state again.
	if r := e.ingest(t, statusEvent("u1", "d1", 6, "idle"))[0]; r.Stale {
		t.Errorf("newer event = %+v, want not stale", r)
	}
	if u := e.user(t, e.Key, "u1"); u.Meeting.Status != "idle" || u.LastSeq != 3 {
		t.Errorf("state = %s last_seq %d, want idle 3", u.Meeting.Status, u.LastSeq)
	}
}

func TestStaleOccurredAt(t *testing.T) {
	t.Parallel()
	e := setup(t)
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	at := func(ev map[string]any, d time.Duration) map[string]any {
		ev["occurred_at"] = t0.Add(d).Format(time.RFC3339Nano)
		return ev
	}
	t.Run("higher client_seq, older time", func(t *testing.T) {
		t.Parallel()
		e.ingest(t, at(statusEvent("a", "d1", 1, "in_meeting"), 10*time.Minute))
		r := e.ingest(t, at(statusEvent("a", "d1", 2, "idle"), 5*time.Minute))[0]
		if !r.Stale || r.Seq != 2 {
			t.Errorf("older event = %+v, want stale with seq 2", r)
		}
		u := e.user(t, e.Key, "a")
		if u.Meeting.Status != "in_meeting" || u.Meeting.Since == nil || !u.Meeting.Since.Equal(t0.Add(10*time.Minute)) {
			t.Errorf("state = %+v, want in_meeting since %v", u.Meeting, t0.Add(10*time.Minute))
		}
		if u.Devices[0].LastClientSeq != 2 {
			t.Errorf("last_client_seq = %d, want 2 (the stale event was applied to the device's sequence)", u.Devices[0].LastClientSeq)
		}
	})
	t.Run("no client_seq, out of order", func(t *testing.T) {
		t.Parallel()
		want := []bool{false, false, true, false}
		for i, ev := range []map[string]any{
			at(statusEvent("b", "d1", 0, "connecting"), 1*time.Minute),
			at(statusEvent("b", "d1", 0, "in_meeting"), 3*time.Minute),
			at(statusEvent("b", "d1", 0, "idle"), 2*time.Minute), // arrives late
			at(statusEvent("b", "d1", 0, "in_screen_sharing"), 3*time.Minute),
		} {
			if r := e.ingest(t, ev)[0]; r.Stale != want[i] {
				t.Errorf("event %d: stale = %v, want %v", i, r.Stale, want[i])
			}
		}
		u := e.user(t, e.Key, "b")
		if u.Meeting.Status != "in_screen_sharing" || !u.Meeting.Since.Equal(t0.Add(3*time.Minute)) || u.LastSeq != 4 {
			t.Errorf("state = %+v last_seq %d, want the newest status in_screen_sharing", u.Meeting, u.LastSeq)
		}
	})
	t.Run("future clock cannot pin the state", func(t *testing.T) {
		t.Parallel()
		future := statusEvent("c", "d1", 1, "in_meeting")
		future["occurred_at"] = time.Now().Add(24 * time.Hour).Format(time.RFC3339)
		e.ingest(t, future)
		now := statusEvent("c", "d1", 2, "idle")
		now["occurred_at"] = time.Now().UTC().Format(time.RFC3339Nano)
		if r := e.ingest(t, now)[0]; r.Stale {
			t.Errorf("event after one from a future clock = %+v, want not stale", r)
		}
		if u := e.user(t, e.Key, "c"); u.Meeting.Status != "idle" {
			t.Errorf("status = %s, want idle", u.Meeting.Status)
		}
	})
	t.Run("other device is independent", func(t *testing.T) {
		t.Parallel()
		e.ingest(t, at(statusEvent("d", "phone", 1, "idle"), 10*time.Minute))
		// Older than the phone's status, but the first of the laptop: not stale.
		if r := e.ingest(t, at(statusEvent("d", "laptop", 1, "in_meeting"), 5*time.Minute))[0]; r.Stale {
			t.Errorf("first event of another device = %+v, want not stale", r)
		}
		if u := e.user(t, e.Key, "d"); u.Meeting.Status != "in_meeting" || u.Meeting.DeviceID != "laptop" {
			t.Errorf("state = %+v, want in_meeting from laptop", u.Meeting)
		}
	})
}

func TestMultiDevice(t *testing.T) {
	t.Parallel()
	e := setup(t)
	steps := []struct {
		device     string
		clientSeq  int64
		status     string
		wantStatus string
		wantDevice string
	}{
		{"A", 1, "in_meeting", "in_meeting", "A"},
		{"B", 1, "idle", "in_meeting", "A"},       // an idle device does not hide a meeting
		{"B", 2, "connecting", "in_meeting", "A"}, // nor does one still connecting
		{"A", 2, "idle", "connecting", "B"},       // A left: B's connecting is the most present
		{"A", 3, "in_meeting_minimized", "in_meeting_minimized", "A"},
		{"B", 3, "in_meeting", "in_meeting", "B"}, // same rank: the newest wins
		{"B", 4, "idle", "in_meeting_minimized", "A"},
		{"A", 4, "idle", "idle", "A"},
	}
	for i, s := range steps {
		if r := e.ingest(t, statusEvent("u1", s.device, s.clientSeq, s.status))[0]; r.Stale {
			t.Fatalf("step %d: %+v is stale", i, r)
		}
		u := e.user(t, e.Key, "u1")
		if u.Meeting.Status != s.wantStatus || u.Meeting.DeviceID != s.wantDevice {
			t.Errorf("step %d (%s %s): user %s from %q, want %s from %q", i, s.device, s.status,
				u.Meeting.Status, u.Meeting.DeviceID, s.wantStatus, s.wantDevice)
		}
		if len(u.Devices) == 0 {
			t.Fatalf("step %d: no devices", i)
		}
	}
	u := e.user(t, e.Key, "u1")
	if len(u.Devices) != 2 || u.Devices[0].DeviceID != "A" || u.Devices[1].DeviceID != "B" ||
		u.Devices[0].Meeting.Status != "idle" || u.Devices[1].Meeting.Status != "idle" ||
		u.Devices[0].LastClientSeq != 4 || u.Devices[1].LastClientSeq != 4 {
		t.Errorf("devices = %+v", u.Devices)
	}
}

func TestUserGet(t *testing.T) {
	t.Parallel()
	e := setup(t)
	t1 := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	e.ingest(t, map[string]any{
		"type": "meeting.status_changed", "user_id": "u 1/ü", "device_id": "desk", "client_seq": 7,
		"occurred_at": "2025-03-01T17:30:00+08:00",
		"data":        map[string]any{"status": "MEETING_STATUS_INMEETING", "arg": 0, "meeting_num": 123456789, "extra": "kept"},
	})
	u := e.user(t, e.Key, "u 1/ü")
	want := meetingJSON{Status: "in_meeting", Code: 3, SDKName: "MEETING_STATUS_INMEETING", Reason: "by_self", ReasonCode: 0,
		MeetingNum: "123456789", DeviceID: "desk", Since: &t1}
	if !sameMeeting(u.Meeting, want) {
		t.Errorf("meeting = %+v, want %+v", u.Meeting, want)
	}
	if u.UserID != "u 1/ü" || u.LastSeq != 1 || u.UpdatedAt.IsZero() || u.Session.Business != "logged_out" || u.Session.Meeting != "logged_out" {
		t.Errorf("user = %+v", u)
	}
	want.DeviceID = ""
	if len(u.Devices) != 1 || u.Devices[0].DeviceID != "desk" || u.Devices[0].LastClientSeq != 7 ||
		!sameMeeting(u.Devices[0].Meeting, want) || u.Devices[0].LastSeenAt.IsZero() {
		t.Errorf("devices = %+v", u.Devices)
	}

	// The stored event is normalised: status and reason as name and code,
	// the previous status as "from", the device, unknown keys kept.
	evs := e.feedAll(t, e.Key, "", 10)
	var d map[string]any
	if err := json.Unmarshal(evs[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	wantData := map[string]any{"status": "in_meeting", "status_code": 3.0, "reason": "by_self", "reason_code": 0.0,
		"meeting_num": "123456789", "device_id": "desk", "from": "idle", "from_code": 0.0, "extra": "kept"}
	if fmt.Sprint(d) != fmt.Sprint(wantData) {
		t.Errorf("event data = %v, want %v", d, wantData)
	}
	if ev := evs[0]; ev.Source != "client" || ev.DeviceID != "desk" || ev.ClientSeq != 7 || !ev.OccurredAt.Equal(t1) || ev.ReceivedAt.IsZero() {
		t.Errorf("event = %+v", ev)
	}

	// Removed by the host: the reason shows, the meeting number goes.
	e.ingest(t, map[string]any{"type": "meeting.status_changed", "user_id": "u 1/ü", "device_id": "desk", "client_seq": 8,
		"data": map[string]any{"status": 0, "arg": "removed_by_host"}})
	u = e.user(t, e.Key, "u 1/ü")
	if u.Meeting.Status != "idle" || u.Meeting.Reason != "removed_by_host" || u.Meeting.ReasonCode != 1 || u.Meeting.MeetingNum != "" || u.LastSeq != 2 {
		t.Errorf("after removal: %+v last_seq %d", u.Meeting, u.LastSeq)
	}
	// Another kind of event moves last_seq, not the meeting status.
	before := u.Meeting
	e.ingest(t, map[string]any{"type": "crm.visit", "user_id": "u 1/ü"})
	u = e.user(t, e.Key, "u 1/ü")
	if u.LastSeq != 3 || !sameMeeting(u.Meeting, before) {
		t.Errorf("after a custom event: %+v last_seq %d, want meeting unchanged and last_seq 3", u.Meeting, u.LastSeq)
	}

	requireError(t, e.do(t, "GET", "/v1/users/nobody", e.Key, nil), http.StatusNotFound, "not_found", "")
}

func sameMeeting(a, b meetingJSON) bool {
	if (a.Since == nil) != (b.Since == nil) || (a.Since != nil && !a.Since.Equal(*b.Since)) {
		return false
	}
	a.Since, b.Since = nil, nil
	return a == b
}

func TestUserList(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, s := range []struct{ user, status string }{
		{"u1", "in_meeting"}, {"u2", "idle"}, {"u3", "MEETING_STATUS_INMEETING"}, {"u4", "connecting"}, {"u5", "3"},
		{"u6", "in_screen_sharing"}, {"u7", "in_meeting_minimized"},
	} {
		e.ingest(t, statusEvent(s.user, "d", 1, s.status))
	}
	list := func(t *testing.T, query string) ([]string, string) {
		t.Helper()
		r := e.do(t, "GET", "/v1/users?"+query, e.Key, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /v1/users?%s: %s", query, r)
		}
		var out struct {
			Users []userJSON `json:"users"`
			Next  string     `json:"next"`
		}
		decodeStrict(t, r.Body, &out)
		ids := []string{}
		for _, u := range out.Users {
			ids = append(ids, u.UserID)
		}
		return ids, out.Next
	}
	all := func(t *testing.T, query string, limit int) []string {
		t.Helper()
		var got []string
		cursor := ""
		for range 20 {
			ids, next := list(t, fmt.Sprintf("%s&limit=%d&cursor=%s", query, limit, cursor))
			got = append(got, ids...)
			if next == "" {
				return got
			}
			if len(ids) != limit || next != ids[len(ids)-1] {
				t.Fatalf("page %v has next %q", ids, next)
			}
			cursor = next
		}
		t.Fatal("paging does not end")
		return nil
	}
	for _, tc := range []struct {
		query string
		limit int
		want  []string
	}{
		{"status=in_meeting", 100, []string{"u1", "u3", "u5"}},
		{"status=MEETING_STATUS_INMEETING", 100, []string{"u1", "u3", "u5"}},
		{"status=3", 1, []string{"u1", "u3", "u5"}},
		{"status=in_meeting", 2, []string{"u1", "u3", "u5"}},
		{"status=idle", 100, []string{"u2"}},
		{"status=in_screen_sharing", 100, []string{"u6"}},
		{"status=in_waiting_room", 100, nil},
		// Several statuses (comma separated or repeated): one list in user id order.
		{"status=in_meeting,in_meeting_minimized,in_screen_sharing", 100, []string{"u1", "u3", "u5", "u6", "u7"}},
		{"status=in_screen_sharing,in_meeting_minimized,in_meeting", 2, []string{"u1", "u3", "u5", "u6", "u7"}},
		{"status=in_meeting_minimized&status=idle&status=connecting", 1, []string{"u2", "u4", "u7"}},
		{"status=idle,idle,%200", 1, []string{"u2"}},
		{"", 2, []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7"}},
		{"", 7, []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7"}},
	} {
		t.Run(fmt.Sprintf("%s limit %d", tc.query, tc.limit), func(t *testing.T) {
			if got := all(t, tc.query, tc.limit); !slices.Equal(got, tc.want) {
				t.Errorf("users = %v, want %v", got, tc.want)
			}
		})
	}
	if ids, next := list(t, "status=in_meeting&limit=2"); !slices.Equal(ids, []string{"u1", "u3"}) || next != "u3" {
		t.Errorf("first page = %v next %q, want [u1 u3] next u3", ids, next)
	}
	if ids, _ := list(t, "status=in_meeting&limit=2&cursor=u3"); !slices.Equal(ids, []string{"u5"}) {
		t.Errorf("second page = %v, want [u5]", ids)
	}
	if ids, next := list(t, "status=in_screen_sharing,in_meeting&limit=3"); !slices.Equal(ids, []string{"u1", "u3", "u5"}) || next != "u5" {
		t.Errorf("first page of two statuses = %v next %q, want [u1 u3 u5] next u5", ids, next)
	}
	if ids, next := list(t, "status=in_screen_sharing,in_meeting&limit=3&cursor=u5"); !slices.Equal(ids, []string{"u6"}) || next != "" {
		t.Errorf("second page of two statuses = %v next %q, want [u6] and no next", ids, next)
	}
	requireError(t, e.do(t, "GET", "/v1/users?status=in_meeting,bogus", e.Key, nil), http.StatusBadRequest, "invalid", "status")
	msg := requireError(t, e.do(t, "GET", "/v1/users?status=bogus", e.Key, nil), http.StatusBadRequest, "invalid", "status")
	if !strings.Contains(msg, "in_meeting") || !strings.Contains(msg, "MEETING_STATUS_IDLE") {
		t.Errorf("message %q does not list the accepted statuses", msg)
	}
	for _, l := range []string{"0", "-1", "1001", "ten"} {
		requireError(t, e.do(t, "GET", "/v1/users?limit="+l, e.Key, nil), http.StatusBadRequest, "invalid", "limit")
	}
}

func TestFeedFilters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.ingest(t, batch(
		statusEvent("u1", "d1", 1, "connecting"),
		map[string]any{"type": "client.initialized", "user_id": "u1", "device_id": "d1", "client_seq": 2},
		map[string]any{"type": "meeting.member_joined", "user_id": "u2", "data": map[string]any{"meeting_num": "1"}},
	))
	e.ingest(t, map[string]any{"type": "crm.order.created", "user_id": "u2"})
	e.ingest(t, statusEvent("u1", "d1", 3, "in_meeting"))
	e.ingest(t, map[string]any{"type": "crm.note", "user_id": "u1"})
	e.ingest(t, map[string]any{"type": "meetingroom.booked", "user_id": "u1"}) // not meeting.*

	all := e.feedAll(t, e.Key, "", 1)
	gotTypes := func(evs []feedEvent) string {
		var s []string
		for _, ev := range evs {
			s = append(s, ev.UserID+":"+ev.Type)
		}
		return strings.Join(s, " ")
	}
	if want := "u1:meeting.status_changed u1:client.initialized u2:meeting.member_joined u2:crm.order.created " +
		"u1:meeting.status_changed u1:crm.note u1:meetingroom.booked"; gotTypes(all) != want {
		t.Fatalf("feed = %s\nwant   %s", gotTypes(all), want)
	}
	if all[0].Source != "client" || all[2].Source != "business" || all[0].Seq != 1 || all[4].Seq != 3 {
		t.Errorf("feed sources/seqs: %+v", all)
	}
	for _, tc := range []struct {
		query, want string
	}{
		{"type=meeting.*", "u1:meeting.status_changed u2:meeting.member_joined u1:meeting.status_changed"},
		{"type=meeting.status_changed", "u1:meeting.status_changed u1:meeting.status_changed"},
		{"type=crm.*", "u2:crm.order.created u1:crm.note"},
		{"type=crm.order.*", "u2:crm.order.created"},
		{"type=client.initialized,crm.note", "u1:client.initialized u1:crm.note"},
		{"type=client.initialized&type=meetingroom.*", "u1:client.initialized u1:meetingroom.booked"},
		{"type=*", gotTypes(all)},
		{"type=meeting.*&user_id=u1", "u1:meeting.status_changed u1:meeting.status_changed"},
		{"user_id=u2", "u2:meeting.member_joined u2:crm.order.created"},
		{"user_id=nobody", ""},
		{"type=session.*", ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			t.Parallel()
			for _, limit := range []int{1, 2, 1000} {
				if got := gotTypes(e.feedAll(t, e.Key, tc.query, limit)); got != tc.want {
					t.Errorf("limit %d: feed = %s\nwant   %s", limit, got, tc.want)
				}
			}
		})
	}
	t.Run("after", func(t *testing.T) {
		t.Parallel()
		p := e.feedPage(t, e.Key, "after="+all[2].Cursor+"&limit=2")
		if gotTypes(p.Events) != gotTypes(all[3:5]) || p.Next != all[4].Cursor {
			t.Errorf("page after %s = %s next %s", all[2].Cursor, gotTypes(p.Events), p.Next)
		}
		end := e.feedPage(t, e.Key, "after="+all[len(all)-1].Cursor)
		if len(end.Events) != 0 || end.Next != all[len(all)-1].Cursor {
			t.Errorf("page at the end = %+v", end)
		}
		if p := e.feedPage(t, e.Key, "after=999999"); len(p.Events) != 0 || p.Next != "999999" {
			t.Errorf("page after the end = %+v", p)
		}
		// An empty page is an empty array, not null (OpenAPI EventPage).
		if r := e.do(t, "GET", "/v1/events?after=999999", e.Key, nil); !bytes.Contains(r.Body, []byte(`"events":[]`)) {
			t.Errorf("empty page body = %s, want \"events\":[]", r.Body)
		}
		if p := e.feedPage(t, e.Key, ""); len(p.Events) != len(all) || p.Next != all[len(all)-1].Cursor {
			t.Errorf("default page = %d events, next %s", len(p.Events), p.Next)
		}
	})
}

func TestFeedBadParams(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.ingest(t, map[string]any{"type": "crm.a", "user_id": "u1"})
	for _, tc := range []struct{ query, field string }{
		{"after=abc", "after"},
		{"after=-1", "after"},
		{"after=1.5", "after"},
		{"after=99999999999999999999", "after"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=abc", "limit"},
		{"limit=-5", "limit"},
		{"type=Meeting.*", "type"},
		{"type=meeting..x", "type"},
		{"type=.*", "type"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			t.Parallel()
			requireError(t, e.do(t, "GET", "/v1/events?"+tc.query, e.Key, nil), http.StatusBadRequest, "invalid", tc.field)
			requireError(t, e.do(t, "GET", "/v1/events/stream?"+tc.query, e.Key, nil), http.StatusBadRequest, "invalid", tc.field)
		})
	}
}

// TestBadInputChangesNothing posts bad requests and checks each gets a
// clear error and leaves the feed and the state as they were.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.ingest(t, statusEvent("u1", "d1", 1, "in_meeting"))
	ok := func(i int) map[string]any { return statusEvent("u1", "d1", int64(10+i), "idle") }
	with := func(ev map[string]any, k string, v any) map[string]any { ev[k] = v; return ev }
	without := func(ev map[string]any, k string) map[string]any { delete(ev, k); return ev }
	big := `{"type":"crm.big","user_id":"u1","data":{"x":"` + strings.Repeat("a", 1<<20) + `"}}`
	var many []map[string]any
	for i := range 1001 {
		many = append(many, map[string]any{"type": "crm.a", "user_id": "u1", "id": fmt.Sprint("m", i)})
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"malformed JSON", `{"type":"crm.a","user_id":`, 400, "invalid", ""},
		{"malformed JSON in batch", `{"events":[{"type":"crm.a",}]}`, 400, "invalid", ""},
		{"empty body", "", 400, "invalid", ""},
		{"not an object", `[1,2]`, 400, "invalid", ""},
		{"a string", `"hello"`, 400, "invalid", ""},
		{"trailing data", `{"type":"crm.a","user_id":"u1"} {"type":"crm.a","user_id":"u1"}`, 400, "invalid", ""},
		{"client_seq as string", with(ok(0), "client_seq", "11"), 400, "invalid", "client_seq"},
		{"client_seq as string in batch", batch(ok(1), with(ok(2), "client_seq", "12")), 400, "invalid", "events[1].client_seq"},
		{"client_seq fractional", with(ok(3), "client_seq", 1.5), 400, "invalid", "client_seq"},
		{"client_seq zero", with(ok(4), "client_seq", 0), 400, "invalid", "client_seq"},
		{"client_seq negative", with(ok(5), "client_seq", -3), 400, "invalid", "client_seq"},
		{"client_seq without device", without(ok(6), "device_id"), 400, "invalid", "device_id"},
		{"user_id as number", with(ok(7), "user_id", 1), 400, "invalid", "user_id"},
		{"missing user_id", without(ok(8), "user_id"), 400, "invalid", "user_id"},
		{"missing user_id in batch", batch(ok(9), without(ok(10), "user_id")), 400, "invalid", "events[1].user_id"},
		{"user_id too long", with(ok(11), "user_id", strings.Repeat("u", 129)), 400, "invalid", "user_id"},
		{"user_id with control character", with(ok(12), "user_id", "u\x001"), 400, "invalid", "user_id"},
		{"device_id with control character", with(ok(13), "device_id", "d\n1"), 400, "invalid", "device_id"},
		{"missing type", without(ok(14), "type"), 400, "invalid", "type"},
		{"type not lower case", with(ok(15), "type", "Meeting.Status_Changed"), 400, "invalid", "type"},
		{"type with empty segment", with(ok(16), "type", "crm..a"), 400, "invalid", "type"},
		{"unknown envelope field", with(ok(17), "colour", "red"), 400, "invalid", "colour"},
		{"unknown envelope field in batch", batch(with(ok(18), "colour", "red")), 400, "invalid", "events[0].colour"},
		{"envelope field beside events", with(batch(ok(19)), "type", "crm.a"), 400, "invalid", "events"},
		{"events not an array", map[string]any{"events": "x"}, 400, "invalid", "events"},
		{"event not an object", map[string]any{"events": []any{1}}, 400, "invalid", "events[0]"},
		{"data not an object", with(ok(20), "data", []int{1}), 400, "invalid", "data"},
		{"occurred_at not a time", with(ok(21), "occurred_at", "yesterday"), 400, "invalid", "occurred_at"},
		{"occurred_at out of range", with(ok(22), "occurred_at", "1970-01-01T00:00:00Z"), 400, "invalid", "occurred_at"},
		{"body over 1 MiB", big, 413, "too_large", ""},
		{"batch of 1001", batch(many...), 400, "invalid", "events"},
		{"empty batch", `{"events":[]}`, 400, "invalid", "events"},
		{"unknown type in reserved namespace", with(ok(23), "type", "meeting.bogus"), 400, "invalid", "type"},
		{"unknown type in reserved namespace in batch", batch(ok(24), with(ok(25), "type", "session.bogus")), 400, "invalid", "events[1].type"},
		{"system-only type", with(without(ok(26), "data"), "type", "delivery.exhausted"), 400, "invalid", "type"},
		{"system-only session type", with(without(ok(27), "data"), "type", "session.logged_in"), 400, "invalid", "type"},
		{"unknown status after valid events", batch(ok(28), ok(29), statusEvent("u1", "d1", 40, "nope")), 400, "invalid", "events[2].data.status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireError(t, e.do(t, "POST", "/v1/events", e.Key, tc.body), tc.status, tc.code, tc.field)
			if n := e.feedCount(t, e.Key); n != 1 {
				t.Fatalf("feed has %d events, want 1: the bad request changed something", n)
			}
			u := e.user(t, e.Key, "u1")
			if u.LastSeq != 1 || u.Meeting.Status != "in_meeting" || len(u.Devices) != 1 || u.Devices[0].LastClientSeq != 1 {
				t.Fatalf("state changed: %+v", u)
			}
		})
	}
	// The refused batch of 1001 fits at 1000.
	if res := e.ingest(t, batch(many[:1000]...)); len(res) != 1000 || res[999].Seq != 1001 {
		t.Errorf("batch of 1000: %d results, last %+v", len(res), res[len(res)-1])
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := setup(t)
	routes := []struct{ method, path string }{
		{"POST", "/v1/events"}, {"GET", "/v1/events"}, {"GET", "/v1/events/stream"}, {"GET", "/v1/users"},
		{"GET", "/v1/users/u1"}, {"GET", "/v1/keys"}, {"POST", "/v1/keys"}, {"DELETE", "/v1/keys/" + e.KeyID}, {"GET", "/v1/app"},
	}
	for _, auth := range []struct{ name, header string }{
		{"no key", ""},
		{"wrong key", "Bearer msk_" + strings.Repeat("x", 43)},
		{"not an API key", "Bearer " + strings.TrimPrefix(e.Key, "msk_")},
		{"not bearer", "Basic " + e.Key},
		{"no space after Bearer", "Bearer" + e.Key},
	} {
		for _, rt := range routes {
			t.Run(auth.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				t.Parallel()
				var hdr []string
				if auth.header != "" {
					hdr = []string{"Authorization", auth.header}
				}
				var body any
				if rt.method == "POST" {
					body = map[string]any{"type": "crm.a", "user_id": "u1"}
				}
				r := e.do(t, rt.method, rt.path, "", body, hdr...)
				requireError(t, r, http.StatusUnauthorized, "unauthorized", "")
				if r.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
			})
		}
	}
	t.Cleanup(func() {
		if n := e.feedCount(t, e.Key); n != 0 {
			t.Errorf("unauthenticated posts stored %d events", n)
		}
		if len(e.listKeys(t, e.Key)) != 1 {
			t.Errorf("unauthenticated requests changed the keys")
		}
	})
}

type keyJSON struct {
	ID        string     `json:"id"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	Current   bool       `json:"current"`
	Key       string     `json:"key"`
}

func (e *env) listKeys(t testing.TB, key string) []keyJSON {
	t.Helper()
	r := e.do(t, "GET", "/v1/keys", key, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/keys: %s", r)
	}
	if strings.Contains(string(r.Body), `"key"`) {
		t.Errorf("key list shows a secret: %s", r.Body)
	}
	var out struct {
		Keys []keyJSON `json:"keys"`
	}
	decodeStrict(t, r.Body, &out)
	return out.Keys
}

func TestKeys(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := e.do(t, "POST", "/v1/keys", e.Key, nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("POST /v1/keys: %s", r)
	}
	var created keyJSON
	decodeStrict(t, r.Body, &created)
	if !strings.HasPrefix(created.Key, "msk_") || len(created.Key) < 40 || created.ID == "" || created.ID == e.KeyID ||
		!strings.HasPrefix(created.Key, created.Prefix) || len(created.Prefix) >= len(created.Key)/2 || created.CreatedAt.IsZero() {
		t.Fatalf("created key = %+v", created)
	}
	second := created.Key

	// The new key works, for the same app.
	r = e.do(t, "GET", "/v1/app", second, nil)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), e.AppID) {
		t.Fatalf("GET /v1/app with the new key: %s", r)
	}
	e.ingestAs(t, second, map[string]any{"type": "crm.a", "user_id": "u1"})

	// The list shows both keys and no secret, ever.
	lr := e.do(t, "GET", "/v1/keys", second, nil)
	for _, secret := range []string{e.Key, second} {
		if strings.Contains(string(lr.Body), secret) || strings.Contains(string(lr.Body), secret[len(secret)-20:]) {
			t.Fatalf("GET /v1/keys returns a secret: %s", lr.Body)
		}
	}
	keys := e.listKeys(t, second)
	if len(keys) != 2 || keys[0].ID != e.KeyID || keys[1].ID != created.ID || keys[0].Current || !keys[1].Current ||
		keys[0].RevokedAt != nil || keys[1].RevokedAt != nil {
		t.Fatalf("keys = %+v", keys)
	}

	// Revoke the second key (which the server has seen and may cache).
	if r := e.do(t, "DELETE", "/v1/keys/"+created.ID, e.Key, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE /v1/keys/%s: %s", created.ID, r)
	}
	for _, rt := range []struct{ method, path string }{{"GET", "/v1/app"}, {"GET", "/v1/events"}, {"POST", "/v1/events"}} {
		requireError(t, e.do(t, rt.method, rt.path, second, map[string]any{"type": "crm.a", "user_id": "u1"}),
			http.StatusUnauthorized, "unauthorized", "")
	}
	if n := e.feedCount(t, e.Key); n != 1 {
		t.Errorf("feed has %d events, want 1 (a revoked key stored something)", n)
	}
	keys = e.listKeys(t, e.Key)
	if len(keys) != 2 || keys[1].RevokedAt == nil || keys[0].RevokedAt != nil || !keys[0].Current {
		t.Errorf("keys after revocation = %+v", keys)
	}
	// Revoking is idempotent; an unknown key is 404.
	if r := e.do(t, "DELETE", "/v1/keys/"+created.ID, e.Key, nil); r.Status != http.StatusNoContent {
		t.Errorf("revoking again: %s", r)
	}
	requireError(t, e.do(t, "DELETE", "/v1/keys/key_nope", e.Key, nil), http.StatusNotFound, "not_found", "")

	// POST /v1/keys takes no body (or {}): anything else is refused and
	// makes no key.
	if r := e.do(t, "POST", "/v1/keys", e.Key, map[string]any{}); r.Status != http.StatusCreated {
		t.Errorf("POST /v1/keys {}: %s", r)
	}
	requireError(t, e.do(t, "POST", "/v1/keys", e.Key, map[string]any{"name": "ci"}), http.StatusBadRequest, "invalid", "name")
	requireError(t, e.do(t, "POST", "/v1/keys", e.Key, `{"x"`), http.StatusBadRequest, "invalid", "")
	if keys := e.listKeys(t, e.Key); len(keys) != 3 {
		t.Errorf("%d keys after the refused creations, want 3", len(keys))
	}
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, keyB, keyIDB := e.newApp(t, "other")
	a := e.ingest(t, batch(
		statusEvent("shared", "d1", 1, "in_meeting"),
		map[string]any{"id": "ext-1", "type": "crm.a", "user_id": "shared"},
	), "Idempotency-Key", "k1")
	ra := e.ingest(t, statusEvent("only-a", "d1", 1, "in_meeting"))

	requireError(t, e.do(t, "GET", "/v1/users/only-a", keyB, nil), http.StatusNotFound, "not_found", "")
	requireError(t, e.do(t, "GET", "/v1/users/shared", keyB, nil), http.StatusNotFound, "not_found", "")
	if p := e.feedPage(t, keyB, "after=0"); len(p.Events) != 0 {
		t.Errorf("app B's feed shows %d events of app A", len(p.Events))
	}
	if p := e.feedPage(t, keyB, "user_id=only-a"); len(p.Events) != 0 {
		t.Errorf("app B's feed for user only-a shows %d events", len(p.Events))
	}
	r := e.do(t, "GET", "/v1/users", keyB, nil)
	if r.Status != http.StatusOK || strings.Contains(string(r.Body), "only-a") || strings.Contains(string(r.Body), "shared") {
		t.Errorf("app B's user list: %s", r)
	}
	// App B cannot revoke (or see) app A's key.
	requireError(t, e.do(t, "DELETE", "/v1/keys/"+e.KeyID, keyB, nil), http.StatusNotFound, "not_found", "")
	for _, k := range e.listKeys(t, keyB) {
		if k.ID != keyIDB {
			t.Errorf("app B lists key %s", k.ID)
		}
	}
	if r := e.do(t, "GET", "/v1/app", e.Key, nil); r.Status != http.StatusOK {
		t.Errorf("app A's key after B tried to revoke it: %s", r)
	}

	// The same ids, client_seqs and Idempotency-Key in app B are new there.
	b := e.ingestAs(t, keyB, batch(
		statusEvent("shared", "d1", 1, "idle"),
		map[string]any{"id": "ext-1", "type": "crm.a", "user_id": "shared"},
	), "Idempotency-Key", "k1")
	want := []result{{ID: b[0].ID, Seq: 1}, {ID: "ext-1", Seq: 2}}
	if !slices.Equal(b, want) || b[0].ID == a[0].ID {
		t.Errorf("app B results = %+v, want %+v (new events)", b, want)
	}
	if u := e.user(t, keyB, "shared"); u.Meeting.Status != "idle" || u.LastSeq != 2 {
		t.Errorf("app B's user = %+v", u)
	}
	if u := e.user(t, e.Key, "shared"); u.Meeting.Status != "in_meeting" || u.LastSeq != 2 {
		t.Errorf("app A's user changed: %+v", u)
	}
	feedB := e.feedAll(t, keyB, "", 100)
	if len(feedB) != 2 || feedB[0].ID != b[0].ID {
		t.Errorf("app B's feed = %+v", feedB)
	}
	if n := e.feedCount(t, e.Key); n != 3 {
		t.Errorf("app A's feed has %d events, want 3", n)
	}
	// B's stream does not carry A's events.
	s := e.openStream(t, keyB, "after=0", "")
	for _, want := range b {
		if ev := s.next(t, 10*time.Second).event(t); ev.ID != want.ID {
			t.Errorf("B's stream: %s, want %s", ev.ID, want.ID)
		}
	}
	e.ingest(t, map[string]any{"type": "crm.a", "user_id": "only-a"})
	rb := e.ingestAs(t, keyB, map[string]any{"type": "crm.b", "user_id": "only-b"})
	if ev := s.next(t, 10*time.Second).event(t); ev.ID != rb[0].ID {
		t.Errorf("B's stream shows %s (%s of %s), want B's %s; A's first was %s", ev.ID, ev.Type, ev.UserID, rb[0].ID, ra[0].ID)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := e.do(t, "GET", p, "", nil); r.Status != http.StatusOK {
			t.Errorf("GET %s: %s", p, r)
		}
	}
	e.ingest(t, batch(statusEvent("u1", "d1", 1, 3), statusEvent("u1", "d1", 2, 0)))
	e.ingest(t, statusEvent("u1", "d1", 2, 0))
	r := e.do(t, "GET", "/metrics", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	for _, want := range []string{
		`meetsync_ingest_events_total{outcome="new"} 2`,
		`meetsync_ingest_events_total{outcome="duplicate"} 1`,
		"meetsync_commit_batch_events_bucket",
		"meetsync_commit_batch_events_count 2",
		"meetsync_commit_seconds_bucket",
		"meetsync_commit_seconds_count 2",
		`meetsync_http_requests_total{code="200",route="POST /v1/events"} 2`,
	} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(r.Body), e.Key) {
		t.Error("/metrics shows the API key")
	}
	// Shutting down: not ready, still alive.
	e.API.BeginShutdown()
	requireError(t, e.do(t, "GET", "/readyz", "", nil), http.StatusServiceUnavailable, "unavailable", "")
	if r := e.do(t, "GET", "/healthz", "", nil); r.Status != http.StatusOK {
		t.Errorf("GET /healthz while shutting down: %s", r)
	}
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, rt := range []struct{ method, path, key string }{
		{"GET", "/v1/nope", e.Key},
		{"GET", "/v1/nope", ""},
		{"POST", "/v1/users/u1", e.Key},
		{"GET", "/v1/events/stream/extra", e.Key},
		{"PUT", "/v1/events", e.Key},
	} {
		requireError(t, e.do(t, rt.method, rt.path, rt.key, nil), http.StatusNotFound, "not_found", "")
	}
}

// TestSmallBodiesStrict: the JSON bodies of the other routes are strict as
// the ingest body is: trailing data, an empty body or malformed JSON is a
// 400 and changes nothing.
func TestSmallBodiesStrict(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, rt := range []struct{ method, path, good string }{
		{"PATCH", "/v1/app", `{"strict_event_types":true}`},
		{"PUT", "/v1/event-types/crm.strict", `{"schema":true}`},
		{"POST", "/v1/endpoints", `{"url":"https://example.com/hook"}`},
	} {
		for _, body := range []string{rt.good + ` {"x":1}`, rt.good + ` x`, rt.good + `,`, "", "  ", `{"strict_event_types":`} {
			requireError(t, e.do(t, rt.method, rt.path, e.Key, body), http.StatusBadRequest, "invalid", "")
		}
	}
	if r := e.do(t, "GET", "/v1/event-types/crm.strict", e.Key, nil); r.Status != http.StatusNotFound {
		t.Errorf("a refused PUT made the event type: %s", r)
	}
	if r := e.do(t, "GET", "/v1/app", e.Key, nil); !bytes.Contains(r.Body, []byte(`"strict_event_types":false`)) {
		t.Errorf("a refused PATCH changed the app: %s", r)
	}
	if r := e.do(t, "GET", "/v1/endpoints", e.Key, nil); !bytes.Contains(r.Body, []byte(`"endpoints":[]`)) {
		t.Errorf("a refused POST made an endpoint: %s", r)
	}
}

// TestUnknownFieldNamedByPath: an unknown field of a request body is
// refused with its whole path, at the top and inside nested objects and
// array elements, on every route that decodes a body.
func TestUnknownFieldNamedByPath(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t)
	_, token := e.login(t, "u1", "d1")
	for _, tc := range []struct {
		name, method, path, key string
		body                    string
		field                   string
	}{
		{"app top level", "PATCH", "/v1/app", e.Key, `{"strict_event_types":true,"bogus":1}`, "bogus"},
		{"app provider", "PATCH", "/v1/app", e.Key, `{"provider":{"kind":"sim","bogus":1}}`, "provider.bogus"},
		{"app provider with an object value", "PATCH", "/v1/app", e.Key, `{"provider":{"bogus":{"x":1}}}`, "provider.bogus"},
		{"app provider matched case-insensitively", "PATCH", "/v1/app", e.Key, `{"Provider":{"bogus":1}}`, "provider.bogus"},
		{"client init meeting", "POST", "/v1/client/init", token, `{"business":{"ok":true},"meeting":{"ok":true,"bogus":1}}`, "meeting.bogus"},
		{"client init business", "POST", "/v1/client/init", token, `{"business":{"ok":true,"code":0,"bogus":[1]},"meeting":{"ok":true}}`, "business.bogus"},
		{"client login", "POST", "/v1/client/login", token, `{"ok":true,"bogus":1}`, "bogus"},
		{"command ack", "POST", "/v1/client/commands/cmd_x/ack", token, `{"ok":true,"bogus":1}`, "bogus"},
		{"session login", "POST", "/v1/users/u2/login", e.Key, `{"device_id":"d1","bogus":{"x":1}}`, "bogus"},
		{"session logout", "POST", "/v1/users/u1/logout", e.Key, `{"bogus":1}`, "bogus"},
		{"invitation", "POST", "/v1/invitations", e.Key, `{"meeting_num":"123456789","inviter":"u1","invitees":["u9"],"bogus":1}`, "bogus"},
		{"endpoint", "POST", "/v1/endpoints", e.Key, `{"url":"http://127.0.0.1:1/hook","bogus":{"x":1}}`, "bogus"},
		{"event type", "PUT", "/v1/event-types/crm.probe", e.Key, `{"schema":{"type":"object"},"bogus":1}`, "bogus"},
		{"endpoint patch", "PATCH", "/v1/endpoints/ep_x", e.Key, `{"enabled":true,"bogus":1}`, "bogus"},
		{"secret rotate", "POST", "/v1/endpoints/ep_x/secrets/rotate", e.Key, `{"grace":"1s","bogus":1}`, "bogus"},
		{"endpoint recover", "POST", "/v1/endpoints/ep_x/recover", e.Key, `{"since":"2026-01-01T00:00:00Z","bogus":1}`, "bogus"},
		{"delivery replay", "POST", "/v1/deliveries/dlv_x/replay", e.Key, `{"bogus":1}`, "bogus"},
		{"invitation action", "POST", "/v1/invitations/inv_x/cancel", e.Key, `{"reason":"r","bogus":1}`, "bogus"},
		{"client invitation action", "POST", "/v1/client/invitations/inv_x/reject", token, `{"bogus":1}`, "bogus"},
		{"client credentials", "POST", "/v1/client/credentials", token, `{"refresh":false,"bogus":1}`, "bogus"},
		{"client event in a batch", "POST", "/v1/client/events", token, `{"events":[{"type":"crm.a"},{"type":"crm.a","bogus":1}]}`, "events[1].bogus"},
		{"keys", "POST", "/v1/keys", e.Key, `{"bogus":1}`, "bogus"},
		{"event", "POST", "/v1/events", e.Key, `{"type":"crm.a","user_id":"u1","data":{"x":1},"bogus":{"y":1}}`, "bogus"},
		{"event in a batch", "POST", "/v1/events", e.Key, `{"events":[{"type":"crm.a","user_id":"u1"},{"type":"crm.a","user_id":"u1"},{"type":"crm.a","bogus":1}]}`, "events[2].bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := requireError(t, e.do(t, tc.method, tc.path, tc.key, tc.body), http.StatusBadRequest, "invalid", tc.field)
			if want := "unknown field " + tc.field; msg != want {
				t.Errorf("message %q, want %q", msg, want)
			}
		})
	}
}
