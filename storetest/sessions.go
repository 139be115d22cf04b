package storetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// sessionEvent is an event of the session engine that sets a user's
// session (its Version is assigned by the store's Apply).
func (e *env) sessionEvent(user, typ string, s meetsync.Session) *meetsync.Event {
	s.Devices = slices.Clone(s.Devices)
	ev := meetsync.NewServerEvent(e.app, user, typ, meetsync.SourceSystem, map[string]any{"n": e.ids.Add(1)}, e.now)
	ev.Effects = &meetsync.EventEffects{Session: &s}
	return ev
}

// memberEvent is the platform's report that a user joined or left a meeting.
func (e *env) memberEvent(user, num string, joined bool, checkAt time.Time) *meetsync.Event {
	typ := meetsync.TypeMeetingMemberLeft
	if joined {
		typ = meetsync.TypeMeetingMemberJoined
	}
	ev := meetsync.NewServerEvent(e.app, user, typ, meetsync.SourcePlatform, map[string]any{"meeting_num": num}, e.now)
	ev.Effects = &meetsync.EventEffects{Member: &meetsync.Membership{MeetingNum: num, Joined: joined, CheckAt: checkAt}}
	return ev
}

// expect makes a request conditional on a user's session version.
func expect(user string, version int64, events ...*meetsync.Event) *meetsync.AppendRequest {
	r := req(events...)
	r.ExpectSession = &meetsync.SessionExpectation{UserID: user, Version: version}
	return r
}

func (e *env) userFeed(user string) []*meetsync.Event {
	e.t.Helper()
	evs, err := e.s.EventList(e.ctx, meetsync.EventListParams{AppID: e.app, UserID: user, Limit: 10000})
	if err != nil {
		e.t.Fatalf("EventList(%s): %v", user, err)
	}
	return evs
}

// testExpectSession: a request conditional on a user's session version
// applies only at that version; otherwise it fails alone with ECONFLICT
// and has no effect, whatever users its events are for. Requests of one
// transaction see each other's session changes. An Idempotency-Key repeat
// answers with the first results before the version is looked at.
func testExpectSession(t *testing.T, su *suite) {
	e := su.setup(t)
	login := meetsync.Session{ID: "ses_1", Business: meetsync.SideLoggedIn, Meeting: meetsync.SidePending, Policy: meetsync.PolicyRollback,
		Deadline: e.now.Add(time.Minute), StartedAt: e.now, Devices: []string{"laptop"}}

	// A user with no events is at version 0.
	r := expect("alice", 0, e.sessionEvent("alice", meetsync.TypeSessionLoginStarted, login))
	e.append(r)
	if u := e.user("alice"); u.Session.Version != 1 || u.Session.ID != "ses_1" || u.Session.Business != meetsync.SideLoggedIn || u.Session.Meeting != meetsync.SidePending {
		t.Fatalf("after the first change: %+v", u.Session)
	}

	// Stale: nothing of the request is stored, for any of its users.
	stale := expect("alice", 0, e.sessionEvent("alice", meetsync.TypeSessionLoginStarted, login), e.note("bob"))
	if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{stale}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "a stale expectation", stale.Err, meetsync.ECONFLICT)
	if len(stale.Results) != 0 {
		t.Errorf("the refused request has results %s", fmtResults(stale.Results))
	}
	if _, err := e.s.UserGet(e.ctx, e.app, "bob"); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Errorf("the refused request stored bob: %v", err)
	}
	if n := len(e.feed(e.app, 0, 100)); n != 1 {
		t.Errorf("the feed has %d events after a refused request, want 1", n)
	}

	// One transaction: the first request at version 1 wins; the second,
	// also at 1, sees the first's change and fails; a third, unconditional,
	// is unaffected; the fourth expects the version the first made.
	loggedIn := login
	loggedIn.Meeting, loggedIn.Deadline = meetsync.SideLoggedIn, time.Time{}
	r1 := expect("alice", 1, e.sessionEvent("alice", meetsync.TypeSessionLoggedIn, loggedIn))
	r2 := expect("alice", 1, e.sessionEvent("alice", meetsync.TypeSessionLoginFailed, login), e.note("carol"))
	r3 := req(e.note("dave"))
	r4 := expect("alice", 2, e.note("erin"))
	if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r1, r2, r3, r4}); err != nil {
		t.Fatal(err)
	}
	for i, r := range []*meetsync.AppendRequest{r1, r3, r4} {
		if r.Err != nil || len(r.Results) != 1 {
			t.Errorf("request %d: %v %s", i, r.Err, fmtResults(r.Results))
		}
	}
	wantCode(t, "the second request at version 1", r2.Err, meetsync.ECONFLICT)
	if _, err := e.s.UserGet(e.ctx, e.app, "carol"); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Errorf("the refused request stored carol: %v", err)
	}
	if u := e.user("alice"); u.Session.Version != 2 || u.Session.Meeting != meetsync.SideLoggedIn || !u.Session.Deadline.IsZero() {
		t.Errorf("alice after the transaction: %+v", u.Session)
	}
	e.user("dave")
	e.user("erin")

	// The expectation is on its user, whoever the events are for.
	r = expect("alice", 1, e.note("frank"))
	if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "a stale expectation on another user", r.Err, meetsync.ECONFLICT)

	// Idempotency-Key: the repeat of a request that was applied answers
	// with its results, although the version it expected is gone.
	out := loggedIn
	out.Business, out.Meeting = meetsync.SideLoggedOut, meetsync.SideLoggedOut
	first := expect("alice", 2, e.sessionEvent("alice", meetsync.TypeSessionLoggedOut, out))
	first.IdempotencyKey, first.RequestHash = "logout-1", []byte("h")
	e.append(first)
	again := expect("alice", 2, e.sessionEvent("alice", meetsync.TypeSessionLoggedOut, out))
	again.IdempotencyKey, again.RequestHash = "logout-1", []byte("h")
	e.append(again)
	if again.Results[0].ID != first.Results[0].ID || !again.Results[0].Duplicate {
		t.Errorf("the repeat: %s, want the first's %s as a duplicate", fmtResults(again.Results), fmtResults(first.Results))
	}
	if u := e.user("alice"); u.Session.Version != 3 || u.Session.Business != meetsync.SideLoggedOut {
		t.Errorf("alice after the logout: %+v", u.Session)
	}
}

// testExpectSessionConcurrentWriters races writers (through several
// handles when the store has peers) on one user's session: each reads the
// user, then appends a change conditional on the version it read, and
// reads again on ECONFLICT. No change is lost or applied twice: the
// version counts the changes, and the user's log holds each once, in
// version order. The note each request carries for another user is
// stored only with the change.
func testExpectSessionConcurrentWriters(t *testing.T, su *suite) {
	e := su.setup(t)
	hs := e.handles(su, 4)
	const writers, changes = 4, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	var mu sync.Mutex
	conflicts := 0
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := hs[w%len(hs)]
			for c := 0; c < changes; {
				u, err := s.UserGet(e.ctx, e.app, "alice")
				if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
					u, err = meetsync.NewUserState(e.app, "alice"), nil
				}
				if err != nil {
					errs <- err
					return
				}
				next := meetsync.Session{ID: "ses_1", Business: meetsync.SideLoggedIn, Meeting: meetsync.SidePending,
					LoginAttempts: w*100 + c}
				ev := meetsync.NewServerEvent(e.app, "alice", meetsync.TypeSessionLoginFailed, meetsync.SourceSystem,
					map[string]any{"writer": w, "change": c, "expected": u.Session.Version}, e.now)
				ev.Effects = &meetsync.EventEffects{Session: &next}
				note := meetsync.NewServerEvent(e.app, "witness", "app.note", meetsync.SourceSystem, map[string]any{"writer": w, "change": c}, e.now)
				r := expect("alice", u.Session.Version, ev, note)
				if err := s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r}); err != nil {
					errs <- err
					return
				}
				switch {
				case r.Err == nil:
					c++
				case meetsync.ErrorCode(r.Err) == meetsync.ECONFLICT:
					mu.Lock()
					conflicts++
					mu.Unlock()
				default:
					errs <- r.Err
					return
				}
				if e.ctx.Err() != nil {
					errs <- e.ctx.Err()
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("writer: %v", err)
	default:
	}
	t.Logf("%d changes, %d lost races (read again)", writers*changes, conflicts)
	u := e.user("alice")
	if u.Session.Version != writers*changes {
		t.Errorf("session version %d after %d changes", u.Session.Version, writers*changes)
	}
	log := e.userFeed("alice")
	if len(log) != writers*changes {
		t.Fatalf("alice's log has %d events, want %d", len(log), writers*changes)
	}
	seen := map[string]bool{}
	for i, ev := range log {
		var d struct {
			Writer, Change int
			Expected       int64
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Expected != int64(i) {
			t.Errorf("event %d (seq %d) was made at version %d, want %d: changes interleaved", i, ev.Seq, d.Expected, i)
		}
		k := fmt.Sprint(d.Writer, "/", d.Change)
		if seen[k] {
			t.Errorf("change %s applied twice", k)
		}
		seen[k] = true
	}
	if n := len(e.userFeed("witness")); n != writers*changes {
		t.Errorf("the witness has %d notes, want %d (one per applied change, none of a refused one)", n, writers*changes)
	}
	if last := log[len(log)-1]; u.Session.LoginAttempts != func() int {
		var d struct{ Writer, Change int }
		_ = json.Unmarshal(last.Data, &d)
		return d.Writer*100 + d.Change
	}() {
		t.Errorf("the session is not the last change's: %+v", u.Session)
	}
}

// sameState compares the session, platform presence, open invitations and
// due time of a user with a model's.
func sameState(t *testing.T, what string, got, want *meetsync.UserState) {
	t.Helper()
	j := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	if j(got.Session) != j(want.Session) {
		t.Errorf("%s: session\n got %s\nwant %s", what, j(got.Session), j(want.Session))
	}
	if got.Session.Business != want.Session.Business || got.Session.Meeting != want.Session.Meeting {
		t.Errorf("%s: sides %s/%s, want %s/%s", what, got.Session.Business, got.Session.Meeting, want.Session.Business, want.Session.Meeting)
	}
	if j(got.Platform) != j(want.Platform) {
		t.Errorf("%s: platform\n got %s\nwant %s", what, j(got.Platform), j(want.Platform))
	}
	if j(got.Invites) != j(want.Invites) {
		t.Errorf("%s: invites\n got %s\nwant %s", what, j(got.Invites), j(want.Invites))
	}
	if !got.DueAt.Equal(want.DueAt) {
		t.Errorf("%s: due at %v, want %v", what, got.DueAt, want.DueAt)
	}
	if got.LastSeq != want.LastSeq || got.Status != want.Status || got.MeetingNum != want.MeetingNum {
		t.Errorf("%s: seq %d status %v %q, want %d %v %q", what, got.LastSeq, got.Status, got.MeetingNum, want.LastSeq, want.Status, want.MeetingNum)
	}
}

// model applies events to a model of a user as the store must (Apply), on
// copies, before the store appends them.
type model struct{ u *meetsync.UserState }

func (m *model) apply(evs ...*meetsync.Event) {
	for _, ev := range evs {
		c := *ev
		c.Data = slices.Clone(ev.Data)
		m.u.Apply(&c)
	}
}

// testSessionState: a user's session (every field), the platform's word
// on its meeting membership and its due time go through appends and come
// back from UserGet and UserList as UserState.Apply makes them: session
// changes by the engine, the client's kick-out and auth expiry (not when
// stale), platform joins and leaves, a device the platform contradicts.
func testSessionState(t *testing.T, su *suite) {
	e := su.setup(t)
	m := &model{meetsync.NewUserState(e.app, "alice")}
	step := func(what string, reqs ...*meetsync.AppendRequest) {
		t.Helper()
		for _, r := range reqs {
			m.apply(r.Events...)
		}
		e.append(reqs...)
		sameState(t, what, e.user("alice"), m.u)
	}
	// Times with nanoseconds: stores keep microseconds.
	e.tick(1500 * time.Nanosecond)
	login := meetsync.Session{ID: "ses_1", Business: meetsync.SideLoggedIn, Meeting: meetsync.SidePending, Policy: meetsync.PolicyDegrade,
		Deadline: e.now.Add(time.Minute + 700*time.Nanosecond), CheckAt: e.now.Add(2 * time.Minute), Devices: []string{"laptop"},
		StartedAt: e.now, LoginAttempts: 2, RevokePending: true}
	step("login started", req(e.sessionEvent("alice", meetsync.TypeSessionLoginStarted, login)))
	u := e.user("alice")
	if u.Session.Version != 1 || len(u.Session.Devices) != 1 || !u.Session.RevokePending || u.Session.Policy != meetsync.PolicyDegrade ||
		!u.DueAt.Equal(login.Deadline.Truncate(time.Microsecond)) {
		t.Fatalf("after login: %+v due %v", u.Session, u.DueAt)
	}

	// The device joins a meeting and the session logs in: nothing is due.
	e.tick(time.Second)
	loggedIn := login
	loggedIn.Meeting, loggedIn.Deadline, loggedIn.Devices, loggedIn.RevokePending = meetsync.SideLoggedIn, time.Time{}, []string{"laptop", "phone"}, false
	step("logged in, in a meeting",
		req(e.status("alice", "laptop", 1, "in_meeting")),
		req(e.sessionEvent("alice", meetsync.TypeSessionLoggedIn, loggedIn), e.memberEvent("alice", "777", true, time.Time{})))
	if u := e.user("alice"); !u.DueAt.IsZero() || !u.Platform.InMeeting || u.Platform.MeetingNum != "777" {
		t.Errorf("logged in: due %v, platform %+v", u.DueAt, u.Platform)
	}

	// The platform says the user left; the device still says it is in
	// the meeting: due at the end of the grace period.
	e.tick(time.Second)
	grace := e.now.Add(30 * time.Second).Truncate(time.Microsecond)
	step("left by the platform's word", req(e.memberEvent("alice", "777", false, grace)))
	if u := e.user("alice"); !u.DueAt.Equal(grace) || len(u.ContradictedDevices()) != 1 {
		t.Errorf("contradicted: due %v, want %v; contradicted %v", u.DueAt, grace, u.ContradictedDevices())
	}

	// The client's kick-out takes the meeting side out (a new version);
	// its auth expiry then changes nothing (the side is not logged in);
	// a stale kick-out (lower client_seq) neither.
	e.tick(time.Second)
	kick := e.event(in{typ: meetsync.TypeSessionKickedOut, user: "alice", device: "laptop", clientSeq: 5, data: `{}`})
	step("kicked out", req(kick))
	if u := e.user("alice"); u.Session.Meeting != meetsync.SideLoggedOut || u.Session.Version != 3 {
		t.Errorf("kicked out: %+v", u.Session)
	}
	step("auth expired while logged out", req(e.event(in{typ: meetsync.TypeSessionAuthExpired, user: "alice", device: "phone", clientSeq: 1, data: `{}`})))
	step("logged in again", req(e.sessionEvent("alice", meetsync.TypeSessionLoggedIn, loggedIn)))
	e.tick(time.Second)
	step("a stale kick-out", req(e.event(in{typ: meetsync.TypeSessionKickedOut, user: "alice", device: "laptop", clientSeq: 3, data: `{}`})))
	step("auth expired", req(e.event(in{typ: meetsync.TypeSessionAuthExpired, user: "alice", device: "phone", clientSeq: 2, data: `{}`})))
	if u := e.user("alice"); u.Session.Meeting != meetsync.SidePending || u.Session.Version != 5 {
		t.Errorf("auth expired: %+v", u.Session)
	}

	// UserList reads the same state.
	list, err := e.s.UserList(e.ctx, meetsync.UserListParams{AppID: e.app, Limit: 10})
	if err != nil || len(list) != 1 {
		t.Fatalf("UserList: %v %v", list, err)
	}
	sameState(t, "UserList", list[0], m.u)
	// A user without session events has the default sides.
	e.appendOne(e.note("bob"))
	if u := e.user("bob"); u.Session.Business != meetsync.SideLoggedOut || u.Session.Meeting != meetsync.SideLoggedOut || u.Session.Version != 0 ||
		!u.DueAt.IsZero() || u.Platform != (meetsync.PlatformPresence{}) || len(u.Invites) != 0 {
		t.Errorf("a user without a session: %+v due %v platform %+v", u.Session, u.DueAt, u.Platform)
	}
}

// testSchemaVersion: an event keeps the schema version it was validated
// against (0: none), in the feed (whole and per user) and in the events
// of claimed deliveries, also those claimed by a completion.
func testSchemaVersion(t *testing.T, su *suite) {
	e := su.setup(t)
	e.endpoint(nil, 0)
	evs := []*meetsync.Event{e.event(in{typ: "crm.order_paid", user: "u1", data: `{"amount":1}`}),
		e.event(in{typ: "crm.order_paid", user: "u1", data: `{"amount":2}`}), e.note("u1")}
	evs[0].SchemaVersion, evs[1].SchemaVersion = 1, 7
	want := map[string]int{evs[0].ID: 1, evs[1].ID: 7, evs[2].ID: 0}
	e.appendOne(evs...)
	check := func(what string, got []*meetsync.Event) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d events", what, len(got))
		}
		for _, ev := range got {
			if ev.SchemaVersion != want[ev.ID] {
				t.Errorf("%s: event %s has schema version %d, want %d", what, ev.ID, ev.SchemaVersion, want[ev.ID])
			}
		}
	}
	check("feed", e.feed(e.app, 0, 10))
	check("user feed", e.userFeed("u1"))
	now := e.tick(time.Second)
	var claimed []*meetsync.Event
	tasks := e.claim(now)
	for len(tasks) > 0 {
		if len(tasks) != 1 {
			t.Fatalf("%d heads claimed, want 1", len(tasks))
		}
		claimed = append(claimed, tasks[0].Event)
		tasks = e.complete(now, true, delivered(tasks[0], now))
	}
	check("claimed deliveries", claimed)
}

// testAppSettings: an app's settings are the defaults until set; a put
// replaces them whole; an unknown app is ENOTFOUND.
func testAppSettings(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Sessions)
	ss := e.s.(meetsync.SessionStore)
	got, err := ss.AppSettingsGet(e.ctx, e.app)
	if err != nil {
		t.Fatal(err)
	}
	def := meetsync.DefaultAppSettings()
	if j1, j2 := mustJSON(got), mustJSON(&def); j1 != j2 {
		t.Errorf("a new app's settings: %s, want the defaults %s", j1, j2)
	}
	set := meetsync.AppSettings{
		Provider:      meetsync.ProviderConfig{Kind: meetsync.ProviderNetEase, AppKey: "key", AppSecret: "secret", BaseURL: "https://meeting.example.com"},
		SessionPolicy: meetsync.PolicyDegrade, LoginDeadline: meetsync.Duration(90 * time.Second), LogoutDeadline: meetsync.Duration(10 * time.Second),
		ClientTokenTTL: meetsync.Duration(time.Hour), Retention: meetsync.Duration(48 * time.Hour), ReconcileGrace: meetsync.Duration(5 * time.Second),
		StrictEventTypes: true, UpdatedAt: e.tick(time.Second + 1500*time.Nanosecond),
	}
	if err := ss.AppSettingsPut(e.ctx, e.app, &set); err != nil {
		t.Fatal(err)
	}
	got, err = ss.AppSettingsGet(e.ctx, e.app)
	if err != nil {
		t.Fatal(err)
	}
	want := set
	want.UpdatedAt = set.UpdatedAt.Truncate(time.Microsecond)
	if j1, j2 := mustJSON(got), mustJSON(&want); j1 != j2 {
		t.Errorf("settings read back as %s, want %s", j1, j2)
	}
	// Replaced whole.
	set2 := meetsync.DefaultAppSettings()
	set2.SessionPolicy, set2.UpdatedAt = meetsync.PolicyRollback, e.tick(time.Second).Truncate(time.Microsecond)
	if err := ss.AppSettingsPut(e.ctx, e.app, &set2); err != nil {
		t.Fatal(err)
	}
	if got, err = ss.AppSettingsGet(e.ctx, e.app); err != nil || mustJSON(got) != mustJSON(&set2) {
		t.Errorf("after a second put: %s %v, want %s", mustJSON(got), err, mustJSON(&set2))
	}
	other := e.newApp("other")
	if got, err := ss.AppSettingsGet(e.ctx, other); err != nil || mustJSON(got) != mustJSON(&def) {
		t.Errorf("another app's settings: %s %v", mustJSON(got), err)
	}
	_, err = ss.AppSettingsGet(e.ctx, "app_missing")
	wantCode(t, "AppSettingsGet(unknown app)", err, meetsync.ENOTFOUND)
	wantCode(t, "AppSettingsPut(unknown app)", ss.AppSettingsPut(e.ctx, "app_missing", &set), meetsync.ENOTFOUND)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// testMeetingAccounts: a user's meeting account by user and by platform
// id; a put replaces the account (keeping when it was created); the
// platform id is unique in an app and provider (ECONFLICT); apps are apart.
func testMeetingAccounts(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Sessions)
	ss := e.s.(meetsync.SessionStore)
	_, err := ss.AccountGet(e.ctx, e.app, "alice")
	wantCode(t, "AccountGet(none)", err, meetsync.ENOTFOUND)
	a := &meetsync.StoredAccount{AppID: e.app, UserID: "alice", Provider: meetsync.ProviderSim, AppKey: "k1", UserUUID: meetsync.AccountUUID(e.app, "alice"),
		UserToken: "t1", CreatedAt: e.now, UpdatedAt: e.now}
	if err := ss.AccountPut(e.ctx, a); err != nil {
		t.Fatal(err)
	}
	same := func(what string, got *meetsync.StoredAccount, err error, want *meetsync.StoredAccount) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got.AppID != want.AppID || got.UserID != want.UserID || got.Provider != want.Provider || got.AppKey != want.AppKey ||
			got.UserUUID != want.UserUUID || got.UserToken != want.UserToken || !sameTime(got.CreatedAt, want.CreatedAt) || !sameTime(got.UpdatedAt, want.UpdatedAt) {
			t.Errorf("%s: %+v, want %+v", what, got, want)
		}
	}
	got, err := ss.AccountGet(e.ctx, e.app, "alice")
	same("AccountGet", got, err, a)
	got, err = ss.AccountByUUID(e.ctx, e.app, meetsync.ProviderSim, a.UserUUID)
	same("AccountByUUID", got, err, a)
	_, err = ss.AccountByUUID(e.ctx, e.app, meetsync.ProviderNetEase, a.UserUUID)
	wantCode(t, "AccountByUUID(other provider)", err, meetsync.ENOTFOUND)

	// Replaced: a new token and provider; created_at stays.
	b := *a
	b.Provider, b.AppKey, b.UserToken, b.CreatedAt, b.UpdatedAt = meetsync.ProviderNetEase, "k2", "t2", e.tick(time.Hour), e.now
	if err := ss.AccountPut(e.ctx, &b); err != nil {
		t.Fatal(err)
	}
	want := b
	want.CreatedAt = a.CreatedAt
	got, err = ss.AccountGet(e.ctx, e.app, "alice")
	same("AccountGet after a put", got, err, &want)
	_, err = ss.AccountByUUID(e.ctx, e.app, meetsync.ProviderSim, a.UserUUID)
	wantCode(t, "AccountByUUID(the old provider)", err, meetsync.ENOTFOUND)

	// Another user of the app cannot take the platform id.
	dup := b
	dup.UserID = "bob"
	wantCode(t, "AccountPut(a platform id taken)", ss.AccountPut(e.ctx, &dup), meetsync.ECONFLICT)
	// Another app can.
	other := e.newApp("other")
	o := b
	o.AppID = other
	if err := ss.AccountPut(e.ctx, &o); err != nil {
		t.Fatal(err)
	}
	_, err = ss.AccountGet(e.ctx, other, "bob")
	wantCode(t, "AccountGet(another app's user)", err, meetsync.ENOTFOUND)
	got, err = ss.AccountGet(e.ctx, e.app, "alice")
	same("AccountGet after another app's put", got, err, &want)
}

// testClientTokens: tokens by hash (revoked or not), revoked per session
// or all at once, each once.
func testClientTokens(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Sessions)
	ss := e.s.(meetsync.SessionStore)
	t1, secret := meetsync.NewClientToken(e.app, "alice", "laptop", "ses_1", e.now, time.Hour)
	t2, _ := meetsync.NewClientToken(e.app, "alice", "phone", "ses_1", e.now, time.Hour)
	t3, _ := meetsync.NewClientToken(e.app, "alice", "laptop", "ses_2", e.now, time.Hour)
	t4, _ := meetsync.NewClientToken(e.app, "bob", "laptop", "ses_1", e.now, time.Hour)
	for _, tk := range []*meetsync.ClientToken{t1, t2, t3, t4} {
		if err := ss.ClientTokenCreate(e.ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ss.ClientTokenGetByHash(e.ctx, meetsync.HashSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != t1.ID || got.AppID != e.app || got.UserID != "alice" || got.DeviceID != "laptop" || got.SessionID != "ses_1" ||
		!bytes.Equal(got.Hash, t1.Hash) || !sameTime(got.CreatedAt, t1.CreatedAt) || !sameTime(got.ExpiresAt, t1.ExpiresAt) || got.RevokedAt != nil {
		t.Errorf("ClientTokenGetByHash = %+v, want %+v", got, t1)
	}
	_, err = ss.ClientTokenGetByHash(e.ctx, meetsync.HashSecret("mct_unknown"))
	wantCode(t, "ClientTokenGetByHash(unknown)", err, meetsync.ENOTFOUND)

	at := e.tick(time.Minute)
	if n, err := ss.ClientTokensRevoke(e.ctx, e.app, "alice", "ses_1", at); err != nil || n != 2 {
		t.Errorf("revoke alice's ses_1: %d %v, want 2", n, err)
	}
	if n, err := ss.ClientTokensRevoke(e.ctx, e.app, "alice", "ses_1", e.tick(time.Minute)); err != nil || n != 0 {
		t.Errorf("revoke alice's ses_1 again: %d %v, want 0", n, err)
	}
	revokedAt := func(tk *meetsync.ClientToken) *time.Time {
		t.Helper()
		got, err := ss.ClientTokenGetByHash(e.ctx, tk.Hash)
		if err != nil {
			t.Fatal(err)
		}
		return got.RevokedAt
	}
	for _, tk := range []*meetsync.ClientToken{t1, t2} {
		if r := revokedAt(tk); r == nil || !r.Equal(at) {
			t.Errorf("token %s revoked at %v, want %v (the first revocation)", tk.DeviceID, r, at)
		}
	}
	for _, tk := range []*meetsync.ClientToken{t3, t4} {
		if r := revokedAt(tk); r != nil {
			t.Errorf("token %s/%s revoked", tk.UserID, tk.SessionID)
		}
	}
	if n, err := ss.ClientTokensRevoke(e.ctx, e.app, "alice", "", e.now); err != nil || n != 1 {
		t.Errorf("revoke all of alice's: %d %v, want 1 (ses_2)", n, err)
	}
	if r := revokedAt(t4); r != nil {
		t.Errorf("bob's token was revoked with alice's")
	}
	// A token's hash is unique.
	dup := *t4
	dup.ID = meetsync.NewID("tok")
	wantCode(t, "ClientTokenCreate(a hash taken)", ss.ClientTokenCreate(e.ctx, &dup), meetsync.ECONFLICT)
}

// testCommands: commands per device oldest first (pending only if asked)
// and per session; creating a command again leaves it as it is; the first
// acknowledgement stays; acking another device's command is ENOTFOUND.
func testCommands(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Sessions)
	ss := e.s.(meetsync.SessionStore)
	cmd := func(id, user, device, session, typ string, at time.Time) *meetsync.Command {
		return &meetsync.Command{ID: id, AppID: e.app, UserID: user, DeviceID: device, SessionID: session, Type: typ,
			Data: json.RawMessage(`{"id":"` + id + `"}`), CreatedAt: at}
	}
	c1 := cmd("cmd_b", "alice", "laptop", "ses_1", meetsync.CommandLogout, e.now)
	c2 := cmd("cmd_a", "alice", "laptop", "ses_1", meetsync.CommandInvitation, e.tick(time.Second))
	c3 := cmd("cmd_c", "alice", "phone", "ses_1", meetsync.CommandLogout, e.now)
	c4 := cmd("cmd_d", "alice", "laptop", "ses_2", meetsync.CommandLogout, e.tick(time.Second))
	c5 := cmd("cmd_e", "bob", "laptop", "ses_1", meetsync.CommandLogout, e.now)
	if err := ss.CommandsCreate(e.ctx, []*meetsync.Command{c1, c2, c3}); err != nil {
		t.Fatal(err)
	}
	// Again, with a changed body, and new ones: the existing stay as they were.
	changed := *c1
	changed.Data, changed.Type = json.RawMessage(`{"changed":true}`), meetsync.CommandInvitationCanceled
	if err := ss.CommandsCreate(e.ctx, []*meetsync.Command{&changed, c4, c5}); err != nil {
		t.Fatal(err)
	}
	if err := ss.CommandsCreate(e.ctx, nil); err != nil {
		t.Errorf("CommandsCreate(none): %v", err)
	}
	ids := func(cs []*meetsync.Command, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return fmt.Sprint(out)
	}
	list, err := ss.CommandList(e.ctx, e.app, "alice", "laptop", false)
	if got := ids(list, err); got != "[cmd_b cmd_a cmd_d]" {
		t.Errorf("alice's laptop's commands: %s, want oldest first [cmd_b cmd_a cmd_d]", got)
	}
	if c := list[0]; c.Type != meetsync.CommandLogout || string(c.Data) != `{"id":"cmd_b"}` || c.UserID != "alice" || c.DeviceID != "laptop" ||
		c.SessionID != "ses_1" || c.AppID != e.app || !sameTime(c.CreatedAt, c1.CreatedAt) || c.AckedAt != nil || c.AckOK || c.AckError != "" {
		t.Errorf("command read back as %+v, want %+v", c, c1)
	}
	if got := ids(ss.CommandsForSession(e.ctx, e.app, "alice", "ses_1")); got != "[cmd_b cmd_a cmd_c]" {
		t.Errorf("alice's ses_1 commands: %s, want [cmd_b cmd_a cmd_c] (by time, then id)", got)
	}

	at := e.tick(time.Second)
	c, err := ss.CommandAck(e.ctx, e.app, "alice", "laptop", "cmd_a", false, "the SDK refused", at)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "cmd_a" || c.AckedAt == nil || !c.AckedAt.Equal(at) || c.AckOK || c.AckError != "the SDK refused" || c.Type != meetsync.CommandInvitation {
		t.Errorf("acked command: %+v", c)
	}
	// Acked again: the first acknowledgement stays.
	c, err = ss.CommandAck(e.ctx, e.app, "alice", "laptop", "cmd_a", true, "", e.tick(time.Second))
	if err != nil || c.AckedAt == nil || !c.AckedAt.Equal(at) || c.AckOK || c.AckError != "the SDK refused" {
		t.Errorf("acked twice: %+v %v, want the first acknowledgement", c, err)
	}
	if _, err := ss.CommandAck(e.ctx, e.app, "alice", "laptop", "cmd_b", true, "", e.now); err != nil {
		t.Fatal(err)
	}
	if got := ids(ss.CommandList(e.ctx, e.app, "alice", "laptop", true)); got != "[cmd_d]" {
		t.Errorf("alice's laptop's pending commands: %s, want [cmd_d]", got)
	}
	for _, x := range []struct{ user, device, id string }{{"alice", "phone", "cmd_a"}, {"bob", "laptop", "cmd_a"}, {"alice", "laptop", "cmd_missing"}} {
		_, err := ss.CommandAck(e.ctx, e.app, x.user, x.device, x.id, true, "", e.now)
		wantCode(t, fmt.Sprintf("CommandAck(%s, %s, %s)", x.user, x.device, x.id), err, meetsync.ENOTFOUND)
	}
	if got := ids(ss.CommandList(e.ctx, e.app, "alice", "phone", true)); got != "[cmd_c]" {
		t.Errorf("alice's phone's pending commands after a wrong ack: %s", got)
	}
	other := e.newApp("other")
	if got := ids(ss.CommandList(e.ctx, other, "alice", "laptop", false)); got != "[]" {
		t.Errorf("another app's commands: %s", got)
	}
}

// testUsersDue: the users whose due time has passed, of every app,
// earliest first, up to a limit; a user whose due time is cleared is no
// longer due.
func testUsersDue(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Sessions)
	ss := e.s.(meetsync.SessionStore)
	base := e.now
	deadline := func(user string, app string, at time.Time) {
		t.Helper()
		s := meetsync.Session{ID: "ses_" + user, Business: meetsync.SideLoggedIn, Meeting: meetsync.SidePending, Deadline: at}
		ev := e.sessionEvent(user, meetsync.TypeSessionLoginStarted, s)
		ev.AppID = app
		e.append(&meetsync.AppendRequest{AppID: app, Events: []*meetsync.Event{ev}})
	}
	other := e.newApp("other")
	deadline("c", e.app, base.Add(3*time.Second))
	deadline("a", e.app, base.Add(1*time.Second))
	deadline("b", other, base.Add(2*time.Second))
	deadline("late", e.app, base.Add(time.Hour))
	e.appendOne(e.note("never"))
	due := func(now time.Time, limit int) string {
		t.Helper()
		us, err := ss.UsersDue(e.ctx, now, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, u := range us {
			out = append(out, u.UserID)
			if u.DueAt.IsZero() || u.DueAt.After(now) {
				t.Errorf("user %s is due at %v, asked at %v", u.UserID, u.DueAt, now)
			}
			if u.Session.ID != "ses_"+u.UserID {
				t.Errorf("user %s read without its session: %+v", u.UserID, u.Session)
			}
		}
		return fmt.Sprint(out)
	}
	if got := due(base, 10); got != "[]" {
		t.Errorf("due before any deadline: %s", got)
	}
	if got := due(base.Add(2*time.Second), 10); got != "[a b]" {
		t.Errorf("due at +2s: %s, want [a b]", got)
	}
	if got := due(base.Add(time.Minute), 10); got != "[a b c]" {
		t.Errorf("due at +1m: %s, want [a b c]", got)
	}
	if got := due(base.Add(time.Minute), 2); got != "[a b]" {
		t.Errorf("due at +1m, limit 2: %s, want [a b]", got)
	}
	// a's deadline is cleared: a is no longer due.
	s := meetsync.Session{ID: "ses_a", Business: meetsync.SideLoggedIn, Meeting: meetsync.SideLoggedIn}
	e.appendOne(e.sessionEvent("a", meetsync.TypeSessionLoggedIn, s))
	if got := due(base.Add(2*time.Hour), 10); got != "[b c late]" {
		t.Errorf("due at +2h after a logged in: %s, want [b c late]", got)
	}
}
