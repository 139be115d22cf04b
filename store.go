package meetsync

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// Store is the seam every durable state of meetsync goes through. The
// embedded default is sqlite.DB; a PostgreSQL implementation plugs in here
// with the same semantics, checked by one conformance suite (storetest).
//
// Methods return *Error values with the codes they document; any other
// error is an infrastructure failure (EINTERNAL).
type Store interface {
	// AppCreate stores a new app with its first API key.
	// ECONFLICT if an app with that name exists.
	AppCreate(ctx context.Context, app *App, key *APIKey) error
	// AppGet returns an app by id. ENOTFOUND.
	AppGet(ctx context.Context, id string) (*App, error)
	// AppGetByName returns an app by name. ENOTFOUND.
	AppGetByName(ctx context.Context, name string) (*App, error)
	// AppList returns every app, oldest first.
	AppList(ctx context.Context) ([]*App, error)

	// SecretKeyCheck returns the store's secret-key check value (see
	// Sealer.Check), "" if none is stored yet.
	SecretKeyCheck(ctx context.Context) (string, error)
	// SecretKeyCheckInit stores v as the check value unless one is
	// stored, and returns the one stored (v, or another writer's).
	SecretKeyCheckInit(ctx context.Context, v string) (string, error)

	// APIKeyCreate stores another key for an existing app. ENOTFOUND (app).
	APIKeyCreate(ctx context.Context, key *APIKey) error
	// APIKeyGetByHash returns the key with this hash, revoked or not. ENOTFOUND.
	APIKeyGetByHash(ctx context.Context, hash []byte) (*APIKey, error)
	// APIKeyList returns an app's keys, oldest first.
	APIKeyList(ctx context.Context, appID string) ([]*APIKey, error)
	// APIKeyRevoke marks a key of the app revoked. ENOTFOUND (no such key in this app).
	APIKeyRevoke(ctx context.Context, appID, keyID string, at time.Time) error

	// EventsAppend commits the events of every request in one transaction,
	// applying the rules of UserState.Apply, and fills each request's
	// Results (or its Err, for a request-level failure such as ECONFLICT on
	// a reused Idempotency-Key with another body, which leaves that request
	// with no effect). A returned error means nothing was committed.
	EventsAppend(ctx context.Context, reqs []*AppendRequest) error
	// EventList returns an app's events after a feed position, in feed
	// order. A position is never reused and an event committed after a read
	// never appears before that read's last position (exactly once, in order).
	EventList(ctx context.Context, p EventListParams) ([]*Event, error)
	// EventFeedHead returns the app's newest feed position (0 for none).
	EventFeedHead(ctx context.Context, appID string) (int64, error)

	// UserGet returns a user's current state. ENOTFOUND if the app has no
	// event for that user.
	UserGet(ctx context.Context, appID, userID string) (*UserState, error)
	// UserList returns an app's users ordered by user id.
	UserList(ctx context.Context, p UserListParams) ([]*UserState, error)

	// EndpointCreate stores a new endpoint. ENOTFOUND (app).
	EndpointCreate(ctx context.Context, e *Endpoint) error
	// EndpointGet returns an endpoint of the app. ENOTFOUND.
	EndpointGet(ctx context.Context, appID, id string) (*Endpoint, error)
	// EndpointList returns the app's endpoints, oldest first.
	EndpointList(ctx context.Context, appID string) ([]*Endpoint, error)
	// EndpointUpdate replaces an endpoint's mutable fields; disabling parks
	// its queues, enabling resumes them in order. ENOTFOUND.
	EndpointUpdate(ctx context.Context, e *Endpoint) error
	// EndpointDelete deletes an endpoint with its deliveries. ENOTFOUND.
	EndpointDelete(ctx context.Context, appID, id string) error

	// DeliveriesClaim claims due queue heads (one per (endpoint, user)
	// queue, the lowest seq) with a lease, for several workers or replicas
	// to share the work.
	DeliveriesClaim(ctx context.Context, p DeliveryClaimParams) ([]*DeliveryTask, error)
	// DeliveriesComplete records attempt outcomes (see DeliveryOutcome) and
	// returns the next heads it claimed (ClaimNext). A store may split a
	// batch into transactions by queue (an outcome and the claim of its
	// queue's next head are always in one); then an error may come with
	// the heads claimed by the parts that committed. Recording an outcome
	// again is harmless: it is fenced by its claim.
	DeliveriesComplete(ctx context.Context, p DeliveryCompleteParams) ([]*DeliveryTask, error)
	// DeliveryNextDue returns when the earliest queue head is due.
	DeliveryNextDue(ctx context.Context) (time.Time, bool, error)
	// DeliveriesReleaseClaims releases the claims of owner ("" = all).
	DeliveriesReleaseClaims(ctx context.Context, owner string, now time.Time) (int, error)
	// DeliveryGet returns a delivery of the app with its attempts. ENOTFOUND.
	DeliveryGet(ctx context.Context, appID, id string) (*Delivery, []*Attempt, error)
	// DeliveryList returns an endpoint's deliveries, newest first.
	DeliveryList(ctx context.Context, p DeliveryListParams) ([]*Delivery, error)
	// DeliveriesRequeue replays one delivery or recovers an endpoint's
	// failed and dead deliveries since a time, in queue order. ENOTFOUND, ECONFLICT.
	DeliveriesRequeue(ctx context.Context, p DeliveryRequeueParams) (int, error)
	// DeliveryQueueDepths counts active deliveries per endpoint.
	DeliveryQueueDepths(ctx context.Context) (map[string]int64, error)

	// Ping checks the store can serve requests.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// AppendRequest is one ingest request: events of one app, committed
// together (all or none) and answered together.
type AppendRequest struct {
	AppID string
	// IdempotencyKey, when set, makes the whole request idempotent: a repeat
	// with the same key and the same RequestHash returns the first results
	// marked duplicate; with another hash it fails with ECONFLICT.
	IdempotencyKey string
	RequestHash    []byte
	Events         []*Event
	// ExpectSession, when set, makes the request conditional on the
	// session version of a user (compare-and-set across replicas): on a
	// mismatch the request fails with ECONFLICT and has no effect.
	ExpectSession *SessionExpectation

	// Filled by the store.
	Results []EventResult
	Err     error
	// Deliveries is how many deliveries the request's events made (their
	// fan-out to subscribed endpoints): the ingest service wakes the
	// delivery dispatcher only for commits that made some.
	Deliveries int
}

// EventResult is the outcome of one appended event.
type EventResult struct {
	ID        string `json:"id"`
	Seq       int64  `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Stale     bool   `json:"stale"`
	// Pos is the event's feed position (internal: not part of the API).
	Pos int64 `json:"-"`
}

// EventListParams selects events from the feed.
type EventListParams struct {
	AppID  string
	After  int64 // feed position; 0 is the beginning
	Limit  int
	Types  TypeFilter
	UserID string
}

// UserListParams selects users.
type UserListParams struct {
	AppID  string
	Status *MeetingStatus
	After  string // user id cursor
	Limit  int
}

// IdempotencyRecord is what a store keeps for an Idempotency-Key.
type IdempotencyRecord struct {
	RequestHash []byte
	Results     []EventResult
}

// MarshalResults encodes results for an idempotency record.
func MarshalResults(r []EventResult) []byte {
	type rec struct {
		ID    string `json:"i"`
		Seq   int64  `json:"s"`
		Stale bool   `json:"t,omitempty"`
		Pos   int64  `json:"p"`
	}
	out := make([]rec, len(r))
	for i, x := range r {
		out[i] = rec{x.ID, x.Seq, x.Stale, x.Pos}
	}
	b, _ := json.Marshal(out)
	return b
}

// UnmarshalResults decodes results of an idempotency record, marked duplicate.
func UnmarshalResults(b []byte) ([]EventResult, error) {
	var in []struct {
		ID    string `json:"i"`
		Seq   int64  `json:"s"`
		Stale bool   `json:"t"`
		Pos   int64  `json:"p"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, err
	}
	out := make([]EventResult, len(in))
	for i, x := range in {
		out[i] = EventResult{ID: x.ID, Seq: x.Seq, Stale: x.Stale, Pos: x.Pos, Duplicate: true}
	}
	return out, nil
}

// Signal wakes every waiter when something new was committed. A waiter
// takes the channel from Wait before it reads the store, then blocks on it:
// a commit between its read and its wait closes that channel, so no commit
// is missed.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns a channel closed at the next Notify.
func (s *Signal) Wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify wakes every current waiter.
func (s *Signal) Notify() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// MigrationList names missing schema migrations for an error message:
// "migration 0009" for one, "migrations 0009, 0010" for several.
func MigrationList(versions []string) string {
	if len(versions) == 1 {
		return "migration " + versions[0]
	}
	return "migrations " + strings.Join(versions, ", ")
}
