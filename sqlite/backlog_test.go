package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sqlite"
	"github.com/meetsync/meetsync/storetest"
)

// TestStoreMaterializeEagerly runs the conformance suite with the backlog
// written almost at once and a few users at a time, so that reads merge
// the tables with a backlog that is partly written at any moment.
func TestStoreMaterializeEagerly(t *testing.T) {
	storetest.Run(t, func(t *testing.T) meetsync.Store {
		db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{
			Materialize: sqlite.MaterializeConfig{After: 2 * time.Millisecond, Batch: 2}})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}, storetest.WithCapabilities(storetest.AllCapabilities))
}

// workload appends a seeded random mix of events: status changes of
// several devices per user (some late, some repeated, some with an
// occurred_at in the past), custom events, client kick-outs, and events
// that carry Effects (sessions, platform membership: their rows are
// written with the event) through requests conditional on the session.
type workload struct {
	t     testing.TB
	rng   *rand.Rand
	app   string   // the app of the event being made
	apps  []string // the apps events are made for, at random
	now   time.Time
	seqs  map[string]int64 // per user/device: the last client_seq sent
	sent  []*meetsync.Event
	users []string
}

func newWorkload(t testing.TB, seed uint64, apps ...string) *workload {
	w := &workload{t: t, rng: rand.New(rand.NewPCG(seed, 7)), app: apps[0], apps: apps, now: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), seqs: map[string]int64{}}
	for i := range 12 {
		w.users = append(w.users, fmt.Sprintf("user-%02d", i))
	}
	return w
}

var statuses = []string{"idle", "connecting", "in_meeting", "in_meeting_minimized", "disconnecting", "in_waiting_room"}

func (w *workload) event() *meetsync.Event {
	w.now = w.now.Add(time.Duration(w.rng.IntN(900)+1) * time.Millisecond)
	user := w.users[w.rng.IntN(len(w.users))]
	device := fmt.Sprintf("dev-%d", w.rng.IntN(3))
	k := w.app + "/" + user + "/" + device
	switch r := w.rng.IntN(20); {
	case r < 2: // meetsync's own session change: written with the event
		s := meetsync.Session{ID: fmt.Sprintf("ses_%d", w.rng.IntN(1000)), Business: meetsync.SideLoggedIn, Meeting: meetsync.SideLoggedIn,
			Policy: meetsync.PolicyRollback, StartedAt: w.now, Devices: []string{device}}
		if w.rng.IntN(3) == 0 {
			s.Meeting, s.Deadline = meetsync.SidePending, w.now.Add(time.Minute)
		}
		ev := meetsync.NewServerEvent(w.app, user, meetsync.TypeSessionLoggedIn, meetsync.SourceSystem, map[string]any{"n": r}, w.now)
		ev.Effects = &meetsync.EventEffects{Session: &s}
		return ev
	case r < 3: // the platform says the user left a meeting (a due time follows)
		ev := meetsync.NewServerEvent(w.app, user, meetsync.TypeMeetingMemberLeft, meetsync.SourcePlatform, map[string]any{"meeting_num": "81234567890"}, w.now)
		ev.Effects = &meetsync.EventEffects{Member: &meetsync.Membership{MeetingNum: "81234567890", CheckAt: w.now.Add(30 * time.Second)}}
		return ev
	case r < 5: // a custom event, no device
		return w.prepare(&meetsync.EventInput{Type: "crm.note", UserID: user, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, r))})
	case r < 6: // the SDK's kick-out, from the client
		w.seqs[k]++
		cs := w.seqs[k]
		return w.prepare(&meetsync.EventInput{Type: meetsync.TypeSessionKickedOut, UserID: user, DeviceID: device, ClientSeq: &cs})
	case r < 8 && len(w.sent) > 0: // a retry of an event sent before (a duplicate)
		old := w.sent[w.rng.IntN(len(w.sent))]
		if old.ClientSeq != 0 && old.Type == meetsync.TypeMeetingStatusChanged && old.AppID == w.app {
			cs := old.ClientSeq
			return w.prepare(&meetsync.EventInput{Type: old.Type, UserID: old.UserID, DeviceID: old.DeviceID, ClientSeq: &cs, Data: json.RawMessage(`{"status":"idle"}`)})
		}
	}
	cs := w.seqs[k] + 1
	if w.rng.IntN(8) == 0 && cs > 3 {
		cs -= int64(w.rng.IntN(3) + 1) // late, from an offline queue (or a repeat)
	} else {
		w.seqs[k] = cs
	}
	in := &meetsync.EventInput{Type: meetsync.TypeMeetingStatusChanged, UserID: user, DeviceID: device, ClientSeq: &cs,
		Data: json.RawMessage(fmt.Sprintf(`{"status":%q,"arg":0,"meeting_num":"81234567890"}`, statuses[w.rng.IntN(len(statuses))]))}
	if w.rng.IntN(6) == 0 {
		in.OccurredAt = w.now.Add(-time.Duration(w.rng.IntN(5000)) * time.Millisecond).Format(time.RFC3339Nano)
	}
	return w.prepare(in)
}

func (w *workload) prepare(in *meetsync.EventInput) *meetsync.Event {
	ev, err := meetsync.PrepareEvent(in, meetsync.PrepareParams{AppID: w.app, Source: meetsync.SourceClient, ReceivedAt: w.now,
		NewID: func() string { return meetsync.NewID("evt") }})
	if err != nil {
		w.t.Fatalf("PrepareEvent: %v", err)
	}
	return ev
}

// append sends a transaction of a few requests of a few events each.
func (w *workload) append(ctx context.Context, s meetsync.Store) {
	var reqs []*meetsync.AppendRequest
	for range w.rng.IntN(6) + 1 {
		w.app = w.apps[w.rng.IntN(len(w.apps))]
		r := &meetsync.AppendRequest{AppID: w.app}
		for range w.rng.IntN(4) + 1 {
			r.Events = append(r.Events, w.event())
		}
		reqs = append(reqs, r)
	}
	if err := s.EventsAppend(ctx, reqs); err != nil {
		w.t.Fatalf("EventsAppend: %v", err)
	}
	for _, r := range reqs {
		if r.Err != nil {
			w.t.Fatalf("EventsAppend: request failed: %v", r.Err)
		}
		w.sent = append(w.sent, r.Events...)
	}
}

// snapshot is everything a reader can see of the app.
type snapshot struct {
	Users    map[string]*meetsync.UserState
	Lists    map[string][]string // user ids per status filter, read in pages of 5
	Feeds    map[string][]int64  // a user's feed positions, read in pages of 7
	CustomOf map[string][]int64  // a user's crm.* events
	Feed     []int64             // the app's feed, read in pages of 11
	Meeting  []int64             // the app's meeting.* events
	Head     int64
	Due      []string
}

func takeSnapshot(ctx context.Context, t *testing.T, s meetsync.Store, app string, users []string) *snapshot {
	t.Helper()
	sn := &snapshot{Users: map[string]*meetsync.UserState{}, Lists: map[string][]string{}, Feeds: map[string][]int64{}, CustomOf: map[string][]int64{}}
	for _, u := range users {
		st, err := s.UserGet(ctx, app, u)
		if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
			continue
		} else if err != nil {
			t.Fatalf("UserGet: %v", err)
		}
		st.Devices = slices.Clone(st.Devices)
		for _, d := range st.Devices {
			d.Dirty = false
		}
		sn.Users[u] = st
		sn.Feeds[u] = feed(ctx, t, s, meetsync.EventListParams{AppID: app, UserID: u, Limit: 7})
		sn.CustomOf[u] = feed(ctx, t, s, meetsync.EventListParams{AppID: app, UserID: u, Types: meetsync.TypeFilter{"crm.*"}, Limit: 3})
	}
	for _, st := range append([]*meetsync.MeetingStatus{nil}, ptr(meetsync.StatusIdle), ptr(meetsync.StatusInMeeting), ptr(meetsync.StatusConnecting)) {
		name := "all"
		if st != nil {
			name = st.Name()
		}
		after := ""
		for {
			page, err := s.UserList(ctx, meetsync.UserListParams{AppID: app, Status: st, After: after, Limit: 5})
			if err != nil {
				t.Fatalf("UserList: %v", err)
			}
			for _, u := range page {
				sn.Lists[name] = append(sn.Lists[name], u.UserID)
			}
			if len(page) < 5 {
				break
			}
			after = page[len(page)-1].UserID
		}
	}
	sn.Feed = feed(ctx, t, s, meetsync.EventListParams{AppID: app, Limit: 11})
	sn.Meeting = feed(ctx, t, s, meetsync.EventListParams{AppID: app, Types: meetsync.TypeFilter{"meeting.*"}, Limit: 4})
	var err error
	if sn.Head, err = s.EventFeedHead(ctx, app); err != nil {
		t.Fatalf("EventFeedHead: %v", err)
	}
	if ss, ok := s.(meetsync.SessionStore); ok {
		due, err := ss.UsersDue(ctx, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), 1000)
		if err != nil {
			t.Fatalf("UsersDue: %v", err)
		}
		for _, u := range due {
			sn.Due = append(sn.Due, u.UserID)
		}
		slices.Sort(sn.Due)
	}
	return sn
}

func ptr[T any](v T) *T { return &v }

func feed(ctx context.Context, t *testing.T, s meetsync.Store, p meetsync.EventListParams) []int64 {
	t.Helper()
	var out []int64
	for {
		page, err := s.EventList(ctx, p)
		if err != nil {
			t.Fatalf("EventList: %v", err)
		}
		for _, e := range page {
			out = append(out, e.Pos)
		}
		if len(page) < p.Limit {
			return out
		}
		p.After = page[len(page)-1].Pos
	}
}

func compareSnapshots(t *testing.T, what string, want, got *snapshot) {
	t.Helper()
	if len(want.Users) == 0 || len(want.Feed) == 0 {
		t.Fatalf("%s: the snapshot is empty", what)
	}
	for u, w := range want.Users {
		if g := got.Users[u]; !reflect.DeepEqual(w, g) {
			wb, _ := json.Marshal(w)
			gb, _ := json.Marshal(g)
			t.Errorf("%s: user %s:\nwant %s\n got %s", what, u, wb, gb)
		}
	}
	if len(want.Users) != len(got.Users) {
		t.Errorf("%s: %d users, want %d", what, len(got.Users), len(want.Users))
	}
	for name, pair := range map[string][2]any{
		"lists": {want.Lists, got.Lists}, "user feeds": {want.Feeds, got.Feeds}, "custom feeds": {want.CustomOf, got.CustomOf},
		"feed": {want.Feed, got.Feed}, "meeting feed": {want.Meeting, got.Meeting}, "head": {want.Head, got.Head}, "due": {want.Due, got.Due},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s: %s differ:\nwant %v\n got %v", what, name, pair[0], pair[1])
		}
	}
}

// TestBacklogReplay: what readers see of a store with a backlog (written
// in part, at random moments) is what they see after a crash and the
// replay that follows, and after a clean shutdown, when everything comes
// from the tables; the replay recognises a repeated (device, client_seq)
// and the positions go on from where they were.
func TestBacklogReplay(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "meetsync.db")
			// The materializer never runs by itself here: the test decides.
			cfg := sqlite.Config{Materialize: sqlite.MaterializeConfig{After: time.Hour, MaxPending: 1 << 30, Batch: 3}}
			db, err := sqlite.Open(path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC()
			var ids []string
			for _, name := range []string{"test", "other"} {
				a := &meetsync.App{ID: meetsync.NewID("app"), Name: name, CreatedAt: now}
				key, _ := meetsync.NewAPIKey(a.ID, now)
				if err := db.AppCreate(ctx, a, key); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, a.ID)
			}
			app := struct{ ID string }{ids[0]}
			w := newWorkload(t, seed, ids...)
			for range 60 {
				w.append(ctx, db)
				if w.rng.IntN(5) == 0 {
					if _, err := db.MaterializeSome(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			if db.BacklogSize() == 0 {
				t.Fatal("nothing left in the backlog: the test would prove nothing")
			}
			before := takeSnapshot(ctx, t, db, app.ID, w.users)
			otherBefore := takeSnapshot(ctx, t, db, ids[1], w.users)
			if err := db.CrashClose(); err != nil {
				t.Fatal(err)
			}

			db, err = sqlite.Open(path, cfg)
			if err != nil {
				t.Fatalf("reopen after the crash: %v", err)
			}
			if db.BacklogSize() == 0 {
				t.Fatal("the replay rebuilt no backlog")
			}
			compareSnapshots(t, "after the crash", before, takeSnapshot(ctx, t, db, app.ID, w.users))
			compareSnapshots(t, "after the crash (other app)", otherBefore, takeSnapshot(ctx, t, db, ids[1], w.users))

			// A repeat of a status event sent before is a duplicate with
			// the original's result; a new event gets the next position.
			var orig *meetsync.Event
			for _, e := range w.sent {
				if e.Type == meetsync.TypeMeetingStatusChanged && e.ClientSeq != 0 && e.AppID == app.ID {
					orig = e
				}
			}
			w.app = app.ID
			cs := orig.ClientSeq
			repeat := w.prepare(&meetsync.EventInput{Type: orig.Type, UserID: orig.UserID, DeviceID: orig.DeviceID, ClientSeq: &cs, Data: json.RawMessage(`{"status":"idle"}`)})
			fresh := w.prepare(&meetsync.EventInput{Type: "crm.note", UserID: orig.UserID})
			r := &meetsync.AppendRequest{AppID: app.ID, Events: []*meetsync.Event{repeat, fresh}}
			if err := db.EventsAppend(ctx, []*meetsync.AppendRequest{r}); err != nil {
				t.Fatal(err)
			}
			if got := r.Results[0]; !got.Duplicate || got.ID != orig.ID || got.Seq != orig.Seq {
				t.Errorf("repeat of %s (seq %d): got %+v", orig.ID, orig.Seq, got)
			}
			if got := r.Results[1]; got.Duplicate || got.Pos != max(before.Head, otherBefore.Head)+1 {
				t.Errorf("new event after the replay: got %+v, want position %d", got, max(before.Head, otherBefore.Head)+1)
			}
			after := takeSnapshot(ctx, t, db, app.ID, w.users)
			otherAfter := takeSnapshot(ctx, t, db, ids[1], w.users)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			db, err = sqlite.Open(path, cfg)
			if err != nil {
				t.Fatalf("reopen after a clean close: %v", err)
			}
			defer db.Close()
			if n := db.BacklogSize(); n != 0 {
				t.Errorf("backlog after a clean close: %d events, want 0", n)
			}
			compareSnapshots(t, "after a clean close", after, takeSnapshot(ctx, t, db, app.ID, w.users))
			compareSnapshots(t, "after a clean close (other app)", otherAfter, takeSnapshot(ctx, t, db, ids[1], w.users))
		})
	}
}
