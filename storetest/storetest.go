// Package storetest is the conformance suite of meetsync.Store: one set of
// tests that every store (SQLite, PostgreSQL) must pass, so that they keep
// exactly the same semantics (the approach of River's driver suite and
// Litestream's replica-client suite).
//
// It covers every Store method and every guarantee of the design that
// lives in the store: apps and keys; appending (gap-free per-user seqs,
// duplicates by (device, client_seq), by caller id and by Idempotency-Key,
// the stale rules and the resulting state); the feed (exactly once, in a
// stable order, while several writers commit); users; endpoints; the
// transactional outbox (every event gets its deliveries in the same
// transaction, coalescing of status changes); per-(endpoint, user) FIFO
// queue heads; claims with leases and fencing; outcomes (delivered,
// failed, dead, released, disabling); replay and recovery; queue depths;
// releasing claims. Appends also carry the session saga's state: the
// compare-and-set on a user's session version (ExpectSession, raced
// through several handles), the users' session, platform presence, open
// invitations and due time, and the schema version of events.
//
// The seams beyond Store are capabilities a store declares (Sessions,
// Invitations, Types, Purge): app settings, meeting accounts, client
// tokens, commands and due users; invitations written with their events
// under compare-and-set; custom event types with their versions and
// debounce; the retention purge. A declared capability's tests fail if the
// store lacks its interface, and a store that has an interface it did not
// declare fails too, so no store skips tests by accident.
//
// A store package runs it from a test:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) meetsync.Store { … a fresh, empty store … },
//			storetest.WithCapabilities(storetest.AllCapabilities))
//	}
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// Option configures Run.
type Option func(*suite)

// WithPeer tells the suite how to open another handle on the store of s
// (another replica sharing its database), so that the concurrency tests
// write through several handles at once. A store that allows one handle
// per database (SQLite) leaves it out.
func WithPeer(open func(t *testing.T, s meetsync.Store) meetsync.Store) Option {
	return func(su *suite) { su.peer = open }
}

// Capability is a set of seams beyond meetsync.Store that a store implements.
type Capability uint

// Capabilities.
const (
	// Sessions is meetsync.SessionStore.
	Sessions Capability = 1 << iota
	// Invitations is meetsync.InvitationStore (and EventEffects.Invitation
	// written by EventsAppend).
	Invitations
	// Types is meetsync.TypeStore (and the debounce of custom types in the
	// event fan-out).
	Types
	// Purge is meetsync.Purger.
	Purge

	// AllCapabilities is every capability.
	AllCapabilities = Sessions | Invitations | Types | Purge
)

func (c Capability) String() string {
	switch c {
	case Sessions:
		return "Sessions (meetsync.SessionStore)"
	case Invitations:
		return "Invitations (meetsync.InvitationStore)"
	case Types:
		return "Types (meetsync.TypeStore)"
	case Purge:
		return "Purge (meetsync.Purger)"
	}
	return fmt.Sprintf("Capability(%d)", uint(c))
}

// implements reports whether s implements the interface of capability c.
func implements(s meetsync.Store, c Capability) bool {
	var ok bool
	switch c {
	case Sessions:
		_, ok = s.(meetsync.SessionStore)
	case Invitations:
		_, ok = s.(meetsync.InvitationStore)
	case Types:
		_, ok = s.(meetsync.TypeStore)
	case Purge:
		_, ok = s.(meetsync.Purger)
	}
	return ok
}

// WithCapabilities declares the capabilities the store implements; their
// tests run (and fail if the store lacks the interface).
func WithCapabilities(c Capability) Option {
	return func(su *suite) { su.caps |= c }
}

type suite struct {
	newStore func(t *testing.T) meetsync.Store
	peer     func(t *testing.T, s meetsync.Store) meetsync.Store
	caps     Capability
}

// require checks that the store of e has capability c: a declared one it
// lacks fails the test, an undeclared one it lacks skips it, and one it
// has without declaring it fails too (its tests would never run).
func (su *suite) require(e *env, c Capability) {
	e.t.Helper()
	has := implements(e.s, c)
	switch {
	case su.caps&c != 0 && !has:
		e.t.Fatalf("the store was declared with capability %v but does not implement it", c)
	case su.caps&c == 0 && has:
		e.t.Fatalf("the store implements %v: declare it with storetest.WithCapabilities so that its tests run", c)
	case su.caps&c == 0:
		e.t.Skipf("the store does not have capability %v", c)
	}
}

// Run runs the conformance suite. newStore returns a fresh, empty store
// for each test, which the test closes.
func Run(t *testing.T, newStore func(t *testing.T) meetsync.Store, opts ...Option) {
	su := &suite{newStore: newStore}
	for _, o := range opts {
		o(su)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, su *suite)
	}{
		{"Apps", testApps},
		{"APIKeys", testAPIKeys},
		{"SecretKeyCheck", testSecretKeyCheck},
		{"AppendSeqAndState", testAppendSeqAndState},
		{"AppendRoundTrip", testAppendRoundTrip},
		{"DuplicateClientSeq", testDuplicateClientSeq},
		{"DuplicateCallerID", testDuplicateCallerID},
		{"IdempotencyKey", testIdempotencyKey},
		{"StaleRules", testStaleRules},
		{"DeviceCombination", testDeviceCombination},
		{"UnstorableBytes", testUnstorableBytes},
		{"LargeTransaction", testLargeTransaction},
		{"Users", testUsers},
		{"Feed", testFeed},
		{"FeedConcurrentWriters", testFeedConcurrentWriters},
		{"SameUsersConcurrentWriters", testSameUsersConcurrentWriters},
		{"Endpoints", testEndpoints},
		{"Outbox", testOutbox},
		{"Coalescing", testCoalescing},
		{"CoalescingAcrossTransactions", testCoalescingAcrossTransactions},
		{"Claims", testClaims},
		{"CompleteDelivered", testCompleteDelivered},
		{"CompleteFailedAndDead", testCompleteFailedAndDead},
		{"Fencing", testFencing},
		{"Release", testRelease},
		{"DisableByOutcome", testDisableByOutcome},
		{"DisableWhileClaimed", testDisableWhileClaimed},
		{"FailingSince", testFailingSince},
		{"Requeue", testRequeue},
		{"ReleaseClaims", testReleaseClaims},
		{"DeliveryList", testDeliveryList},
		{"EndpointDelete", testEndpointDelete},
		{"ConcurrentDispatch", testConcurrentDispatch},

		{"ExpectSession", testExpectSession},
		{"ExpectSessionConcurrentWriters", testExpectSessionConcurrentWriters},
		{"SessionState", testSessionState},
		{"SchemaVersion", testSchemaVersion},

		{"AppSettings", testAppSettings},
		{"MeetingAccounts", testMeetingAccounts},
		{"ClientTokens", testClientTokens},
		{"Commands", testCommands},
		{"UsersDue", testUsersDue},

		{"Invitations", testInvitations},
		{"InvitationCompareAndSet", testInvitationCompareAndSet},
		{"InvitationConcurrentWriters", testInvitationConcurrentWriters},

		{"EventTypeVersions", testEventTypeVersions},
		{"EventTypeApps", testEventTypeApps},
		{"EventTypeConcurrentPuts", testEventTypeConcurrentPuts},
		{"CustomTypeDebounce", testCustomTypeDebounce},

		{"Purge", testPurge},
		{"PurgeKeepsActiveDeliveries", testPurgeKeepsActiveDeliveries},
		{"PurgeConcurrentReplays", testPurgeConcurrentReplays},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, su)
		})
	}
}

// t0 is the suite's clock origin: stores get every time from their callers.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

// env is one test's store, app and clock.
type env struct {
	t   *testing.T
	ctx context.Context
	s   meetsync.Store
	app string
	now time.Time
	ids atomic.Int64
}

func (su *suite) setup(t *testing.T) *env {
	t.Helper()
	s := su.newStore(t)
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, s: s, now: t0}
	e.app = e.newApp("app")
	return e
}

func (e *env) newApp(name string) string {
	e.t.Helper()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: name, CreatedAt: e.now}
	key, _ := meetsync.NewAPIKey(app.ID, e.now)
	if err := e.s.AppCreate(e.ctx, app, key); err != nil {
		e.t.Fatalf("AppCreate: %v", err)
	}
	return app.ID
}

// tick advances the clock.
func (e *env) tick(d time.Duration) time.Time {
	e.now = e.now.Add(d)
	return e.now
}

// in is an ingest input; fields left empty are filled in by event.
type in struct {
	app        string
	id         string
	typ        string
	user       string
	device     string
	clientSeq  int64
	occurredAt time.Time
	data       string
	received   time.Time
}

// event prepares an event as the API does (PrepareEvent).
func (e *env) event(x in) *meetsync.Event {
	e.t.Helper()
	if x.app == "" {
		x.app = e.app
	}
	if x.typ == "" {
		x.typ = "app.note"
	}
	if x.received.IsZero() {
		x.received = e.now
	}
	input := &meetsync.EventInput{ID: x.id, Type: x.typ, UserID: x.user, DeviceID: x.device, Data: json.RawMessage(x.data)}
	if x.clientSeq != 0 {
		cs := x.clientSeq
		input.ClientSeq = &cs
	}
	if !x.occurredAt.IsZero() {
		input.OccurredAt = x.occurredAt.Format(time.RFC3339Nano)
	}
	ev, err := meetsync.PrepareEvent(input, meetsync.PrepareParams{AppID: x.app, Source: meetsync.SourceClient, ReceivedAt: x.received,
		NewID: func() string { return meetsync.NewID("evt") }})
	if err != nil {
		e.t.Fatalf("PrepareEvent(%+v): %v", x, err)
	}
	return ev
}

// status is a meeting.status_changed event from a device.
func (e *env) status(user, device string, clientSeq int64, status string) *meetsync.Event {
	e.t.Helper()
	return e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: user, device: device, clientSeq: clientSeq, data: `{"status":"` + status + `"}`})
}

// note is a custom event of a user.
func (e *env) note(user string) *meetsync.Event {
	e.t.Helper()
	return e.event(in{user: user, data: `{"n":` + strconv.FormatInt(e.ids.Add(1), 10) + `}`})
}

func req(events ...*meetsync.Event) *meetsync.AppendRequest {
	return &meetsync.AppendRequest{AppID: events[0].AppID, Events: events}
}

// append commits requests in one EventsAppend and fails on any error.
func (e *env) append(reqs ...*meetsync.AppendRequest) {
	e.t.Helper()
	if err := e.s.EventsAppend(e.ctx, reqs); err != nil {
		e.t.Fatalf("EventsAppend: %v", err)
	}
	for i, r := range reqs {
		if r.Err != nil {
			e.t.Fatalf("EventsAppend: request %d: %v", i, r.Err)
		}
		if len(r.Results) != len(r.Events) {
			e.t.Fatalf("EventsAppend: request %d: %d results for %d events", i, len(r.Results), len(r.Events))
		}
	}
}

// appendOne appends events as one request and returns their results.
func (e *env) appendOne(events ...*meetsync.Event) []meetsync.EventResult {
	e.t.Helper()
	r := req(events...)
	e.append(r)
	return r.Results
}

// feed returns every event of app after a position, paging by limit.
func (e *env) feed(app string, after int64, limit int) []*meetsync.Event {
	e.t.Helper()
	var out []*meetsync.Event
	for {
		page, err := e.s.EventList(e.ctx, meetsync.EventListParams{AppID: app, After: after, Limit: limit})
		if err != nil {
			e.t.Fatalf("EventList: %v", err)
		}
		out = append(out, page...)
		if len(page) < limit {
			return out
		}
		after = page[len(page)-1].Pos
	}
}

func (e *env) user(id string) *meetsync.UserState {
	e.t.Helper()
	u, err := e.s.UserGet(e.ctx, e.app, id)
	if err != nil {
		e.t.Fatalf("UserGet(%s): %v", id, err)
	}
	return u
}

// wantCode fails unless err is a *meetsync.Error with code.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %s", what, code)
		return
	}
	if got := meetsync.ErrorCode(err); got != code {
		t.Errorf("%s: error %v (code %s), want %s", what, err, got, code)
	}
}

func sameTime(a, b time.Time) bool { return a.Equal(b) }

func fmtResults(rs []meetsync.EventResult) string {
	s := ""
	for _, r := range rs {
		s += fmt.Sprintf("{%s seq %d dup %v stale %v} ", r.ID, r.Seq, r.Duplicate, r.Stale)
	}
	return s
}
