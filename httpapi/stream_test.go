package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const streamWait = 15 * time.Second // a deadline, not an expectation

func TestStreamLive(t *testing.T) {
	t.Parallel()
	e := setup(t)
	old := e.ingest(t, map[string]any{"type": "crm.old", "user_id": "u1"})
	// Without a cursor the stream starts at the current end of the feed:
	// the headers are sent once that end is fixed.
	s := e.openStream(t, e.Key, "", "")
	for i := range 5 {
		var want []result
		if i%2 == 0 {
			want = e.ingest(t, statusEvent("u1", "d1", int64(i+1), "in_meeting"))
		} else {
			want = e.ingest(t, batch(
				map[string]any{"type": "crm.a", "user_id": "u2"},
				map[string]any{"type": "crm.b", "user_id": "u3"},
			))
		}
		for _, w := range want {
			ev := s.next(t, streamWait).event(t)
			if ev.ID == old[0].ID {
				t.Fatalf("stream without a cursor replayed an old event")
			}
			if ev.ID != w.ID || ev.Seq != w.Seq {
				t.Fatalf("stream sent %s seq %d, want %s seq %d", ev.ID, ev.Seq, w.ID, w.Seq)
			}
		}
	}
	// A status event arrives normalised, as in the feed.
	feed := e.feedAll(t, e.Key, "", 100)
	var d map[string]any
	if err := json.Unmarshal(feed[1].Data, &d); err != nil || d["status"] != "in_meeting" || d["status_code"] != 3.0 {
		t.Errorf("status event data = %s", feed[1].Data)
	}
}

func TestStreamReplay(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var want []string
	for i := range 4 {
		want = append(want, e.ingest(t, map[string]any{"type": "crm.a", "user_id": fmt.Sprint("u", i)})[0].ID)
	}
	feed := e.feedAll(t, e.Key, "", 100)
	for _, tc := range []struct {
		name, query, lastEventID string
		from                     int // index in want of the first event expected
	}{
		{"after=0 replays from the beginning", "after=0", "", 0},
		{"after a cursor", "after=" + feed[1].Cursor, "", 2},
		{"Last-Event-ID", "", feed[0].Cursor, 1},
		{"Last-Event-ID wins over after", "after=0", feed[2].Cursor, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.openStream(t, e.Key, tc.query, tc.lastEventID)
			for _, id := range want[tc.from:] {
				if got := s.next(t, streamWait).event(t); got.ID != id {
					t.Fatalf("replayed %s, want %s", got.ID, id)
				}
			}
			s.Close()
		})
	}
	// Replay then live, with no seam between them.
	s := e.openStream(t, e.Key, "after=0", "")
	for _, id := range want {
		if got := s.next(t, streamWait).event(t); got.ID != id {
			t.Fatalf("replayed %s, want %s", got.ID, id)
		}
	}
	live := e.ingest(t, map[string]any{"type": "crm.live", "user_id": "u9"})
	if got := s.next(t, streamWait).event(t); got.ID != live[0].ID || got.Type != "crm.live" {
		t.Fatalf("live event %s %s, want %s", got.ID, got.Type, live[0].ID)
	}
}

// TestStreamReplayLong replays more events than the stream reads from the
// store at once.
func TestStreamReplayLong(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var want []string
	for b := range 3 {
		var evs []map[string]any
		for i := range 500 {
			evs = append(evs, map[string]any{"type": "crm.a", "user_id": fmt.Sprint("u", i%7), "id": fmt.Sprintf("b%d-%d", b, i)})
		}
		for _, r := range e.ingest(t, batch(evs...)) {
			want = append(want, r.ID)
		}
	}
	s := e.openStream(t, e.Key, "after=0", "")
	for i, id := range want {
		if got := s.next(t, streamWait).event(t); got.ID != id {
			t.Fatalf("event %d of the replay is %s, want %s", i, got.ID, id)
		}
	}
	live := e.ingest(t, map[string]any{"type": "crm.live", "user_id": "u1"})
	if got := s.next(t, streamWait).event(t); got.ID != live[0].ID {
		t.Fatalf("after the replay: %s, want the live event %s", got.ID, live[0].ID)
	}
}

func TestStreamFilters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	s := e.openStream(t, e.Key, "after=0&type=meeting.*&user_id=u1", "")
	e.ingest(t, batch(
		map[string]any{"type": "crm.a", "user_id": "u1"},
		statusEvent("u2", "d1", 1, "idle"),
		statusEvent("u1", "d1", 1, "connecting"),
		map[string]any{"type": "meeting.member_joined", "user_id": "u1"},
		map[string]any{"type": "meetingroom.booked", "user_id": "u1"},
		statusEvent("u1", "d1", 2, "in_meeting"),
	))
	for _, want := range []string{"meeting.status_changed/2", "meeting.member_joined/3", "meeting.status_changed/5"} {
		ev := s.next(t, streamWait).event(t)
		if got := fmt.Sprintf("%s/%d", ev.Type, ev.Seq); ev.UserID != "u1" || got != want {
			t.Fatalf("stream sent %s of %s, want %s of u1", got, ev.UserID, want)
		}
	}
}

// TestStreamResume disconnects and reconnects with Last-Event-ID while
// events keep arriving from concurrent writers: the reader must see every
// event of the feed exactly once, in feed order.
func TestStreamResume(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const (
		writers   = 3
		perWriter = 120
	)
	total := writers * perWriter
	var wg sync.WaitGroup
	defer wg.Wait() // even if the reader fails, the writers end before the server
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for sent := 0; sent < perWriter; {
				n := min(1+rng.IntN(4), perWriter-sent)
				var evs []map[string]any
				for range n {
					sent++
					evs = append(evs, statusEvent(fmt.Sprint("u", rng.IntN(3)), fmt.Sprint("w", w), int64(sent), []string{"idle", "in_meeting"}[sent%2]))
				}
				r, err := e.request("POST", "/v1/events", e.Key, batch(evs...))
				if err != nil || r.Status != http.StatusOK {
					t.Errorf("writer %d: %v %v", w, r, err)
					return
				}
			}
		})
	}

	var got []feedEvent
	lastID := ""
	connections := 0
	rng := rand.New(rand.NewPCG(1, 2))
	for len(got) < total && !t.Failed() {
		connections++
		query := ""
		if lastID == "" {
			query = "after=0"
		}
		s := e.openStream(t, e.Key, query, lastID)
		// Read a few events, then hang up.
		for n := 1 + rng.IntN(40); n > 0 && len(got) < total; n-- {
			m, err := s.nextErr(streamWait)
			if err != nil {
				t.Fatalf("after %d events on connection %d: %v", len(got), connections, err)
			}
			ev := m.event(t)
			got = append(got, ev)
			lastID = m.ID
		}
		s.Close()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	feed := e.feedAll(t, e.Key, "", 1000)
	if len(feed) != total {
		t.Fatalf("feed has %d events, want %d", len(feed), total)
	}
	if len(got) != len(feed) {
		t.Fatalf("stream gave %d events, feed has %d", len(got), len(feed))
	}
	for i := range feed {
		if got[i].ID != feed[i].ID || got[i].Cursor != feed[i].Cursor {
			t.Fatalf("event %d over %d connections: stream %s (cursor %s), feed %s (cursor %s)",
				i, connections, got[i].ID, got[i].Cursor, feed[i].ID, feed[i].Cursor)
		}
	}
	if connections < 5 {
		t.Errorf("only %d connections: the test did not exercise reconnection", connections)
	}
}

func TestStreamErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, tc := range []struct {
		name, lastEventID, field string
	}{
		{"Last-Event-ID not a cursor", "abc", "Last-Event-ID"},
		{"Last-Event-ID negative", "-4", "Last-Event-ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, "GET", "/v1/events/stream", e.Key, nil, "Last-Event-ID", tc.lastEventID)
			requireError(t, r, http.StatusBadRequest, "invalid", tc.field)
		})
	}
	requireError(t, e.do(t, "GET", "/v1/events/stream?after=0", "", nil), http.StatusUnauthorized, "unauthorized", "")
}

func TestStreamHeartbeat(t *testing.T) {
	t.Parallel()
	e := setup(t) // heartbeat every 200 ms
	s := e.openStream(t, e.Key, "", "")
	timer := time.AfterFunc(streamWait, s.cancel)
	defer timer.Stop()
	for s.sc.Scan() {
		if strings.HasPrefix(s.sc.Text(), ":") {
			return
		}
	}
	t.Fatalf("no keep-alive comment on an idle stream: %v", s.sc.Err())
}

func TestStreamEndsOnShutdown(t *testing.T) {
	t.Parallel()
	e := setup(t)
	s := e.openStream(t, e.Key, "after=0", "")
	e.ingest(t, map[string]any{"type": "crm.a", "user_id": "u1"})
	s.next(t, streamWait)
	e.API.BeginShutdown()
	if _, err := s.nextErr(streamWait); !errors.Is(err, io.EOF) {
		t.Fatalf("stream after BeginShutdown: %v, want the end of the stream", err)
	}
}

// TestStreamStartCursor: a stream opened without a cursor says where it
// starts, so a client that reconnects before its first event (with that
// id as Last-Event-ID) misses nothing committed in between.
func TestStreamStartCursor(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.ingest(t, map[string]any{"type": "crm.before", "user_id": "u1"})
	req, _ := http.NewRequest("GET", e.URL+"/v1/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+e.Key)
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	start := ""
	for start == "" {
		b := make([]byte, 64)
		n, err := resp.Body.Read(b)
		if err != nil {
			t.Fatalf("read the stream's start: %v (got %q)", err, buf)
		}
		buf = append(buf, b[:n]...)
		for _, line := range strings.Split(string(buf), "\n") {
			if id, ok := strings.CutPrefix(line, "id: "); ok && strings.Contains(string(buf), id+"\n\n") {
				start = id
			}
		}
	}
	resp.Body.Close()
	missed := e.ingest(t, map[string]any{"type": "crm.between", "user_id": "u2"})
	s := e.openStream(t, e.Key, "", start)
	if got := s.next(t, streamWait).event(t); got.ID != missed[0].ID {
		t.Fatalf("after reconnecting with the start id got %s, want the event committed in between %s", got.ID, missed[0].ID)
	}
}
