package httpapi

import (
	"context"
	"errors"
	"time"

	"github.com/meetsync/meetsync"
)

// DefaultStoreTimeout is Config.StoreTimeout's default.
const DefaultStoreTimeout = 10 * time.Second

// storeTimeout bounds each call the API makes to the store, and each wait
// of a request for its commit (Config.StoreTimeout). It bounds calls, not
// requests: the streams (GET /v1/events/stream, GET /v1/client/commands)
// live for hours, each of their reads bounded alone.
//
// A call whose own time ran out while its caller still waited fails with
// EUNAVAILABLE (503, Retry-After: 1 in the API), whatever the store made
// of its context: a database that hangs (stopped, or behind a network
// partition, its connections open but silent) is unavailable, not an
// internal error. An error the store gave a code (unavailable, not found…)
// and the caller's own cancellation (the client went away) are returned
// as they are.
type storeTimeout struct {
	d   time.Duration
	err *meetsync.Error // what the caller is told when a call's time is up
}

func newStoreTimeout(d time.Duration) *storeTimeout {
	return &storeTimeout{d: d, err: meetsync.Errorf(meetsync.EUNAVAILABLE,
		"the database did not answer within %s; try again shortly", d)}
}

// WithStoreTimeout returns the stores with each call bounded by d as the
// API bounds its own (Config.StoreTimeout): for the session engine, whose
// work for the API's requests (logins, logouts, client reports, platform
// callbacks, invitations) then waits for the database no longer than the
// API's own reads. A nil store stays nil; d <= 0 is DefaultStoreTimeout.
func WithStoreTimeout(d time.Duration, store meetsync.Store, sessions meetsync.SessionStore, invitations meetsync.InvitationStore) (meetsync.Store, meetsync.SessionStore, meetsync.InvitationStore) {
	c := Config{Store: store, SessionStore: sessions, InvitationStore: invitations, StoreTimeout: d}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	c = c.withStoreTimeout()
	return c.Store, c.SessionStore, c.InvitationStore
}

// call is one bounded call: begin it, pass ctx to the store, end it with
// the store's error.
type call struct {
	t      *storeTimeout
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
}

func (t *storeTimeout) begin(parent context.Context) call {
	ctx, cancel := context.WithTimeout(parent, t.d)
	return call{t: t, parent: parent, ctx: ctx, cancel: cancel}
}

func (c call) end(err error) error {
	late := err != nil && errors.Is(c.ctx.Err(), context.DeadlineExceeded) && c.parent.Err() == nil
	c.cancel()
	if !late || meetsync.ErrorCode(err) != meetsync.EINTERNAL {
		return err
	}
	return &storeTimeoutError{public: c.t.err, d: c.t.d, cause: err}
}

// bound runs f, one store call, bounded by t.
func bound[T any](ctx context.Context, t *storeTimeout, f func(context.Context) (T, error)) (T, error) {
	c := t.begin(ctx)
	v, err := f(c.ctx)
	return v, c.end(err)
}

// bound0 is bound for a call that returns only an error.
func bound0(ctx context.Context, t *storeTimeout, f func(context.Context) error) error {
	c := t.begin(ctx)
	return c.end(f(c.ctx))
}

// storeTimeoutError is a store call that ran out of time: its code and
// message are public's, its text (for the log) and its chain keep the
// store's own error.
type storeTimeoutError struct {
	public *meetsync.Error
	d      time.Duration
	cause  error
}

func (e *storeTimeoutError) Error() string {
	return "the store did not answer within " + e.d.String() + ": " + e.cause.Error()
}

func (e *storeTimeoutError) Unwrap() []error { return []error{e.public, e.cause} }

// boundedIngester is an Ingester whose Append waits at most the store
// timeout for its commit. The ingest service then stops waiting (the
// events may still commit: its error says so, and a retry with the same
// Idempotency-Key, event ids or client_seq is answered as a duplicate).
type boundedIngester struct {
	Ingester
	t *storeTimeout
}

func (b boundedIngester) Append(ctx context.Context, req *meetsync.AppendRequest) error {
	return bound0(ctx, b.t, func(ctx context.Context) error { return b.Ingester.Append(ctx, req) })
}

// The stores' wrappers embed the store, so a method added to an interface
// is passed on (unbounded) until it is added here; every method the API
// calls is.

// boundedStore is a meetsync.Store whose calls are bounded by t.
type boundedStore struct {
	meetsync.Store
	t *storeTimeout
}

func (s boundedStore) AppCreate(ctx context.Context, app *meetsync.App, key *meetsync.APIKey) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.Store.AppCreate(ctx, app, key) })
}

func (s boundedStore) AppGet(ctx context.Context, id string) (*meetsync.App, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.App, error) { return s.Store.AppGet(ctx, id) })
}

func (s boundedStore) AppGetByName(ctx context.Context, name string) (*meetsync.App, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.App, error) { return s.Store.AppGetByName(ctx, name) })
}

func (s boundedStore) AppList(ctx context.Context) ([]*meetsync.App, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.App, error) { return s.Store.AppList(ctx) })
}

func (s boundedStore) SecretKeyCheck(ctx context.Context) (string, error) {
	return bound(ctx, s.t, func(ctx context.Context) (string, error) { return s.Store.SecretKeyCheck(ctx) })
}

func (s boundedStore) SecretKeyCheckInit(ctx context.Context, check string) (string, error) {
	return bound(ctx, s.t, func(ctx context.Context) (string, error) { return s.Store.SecretKeyCheckInit(ctx, check) })
}

func (s boundedStore) APIKeyCreate(ctx context.Context, key *meetsync.APIKey) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.Store.APIKeyCreate(ctx, key) })
}

func (s boundedStore) APIKeyGetByHash(ctx context.Context, hash []byte) (*meetsync.APIKey, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.APIKey, error) { return s.Store.APIKeyGetByHash(ctx, hash) })
}

func (s boundedStore) APIKeyList(ctx context.Context, appID string) ([]*meetsync.APIKey, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.APIKey, error) { return s.Store.APIKeyList(ctx, appID) })
}

func (s boundedStore) APIKeyRevoke(ctx context.Context, appID, keyID string, at time.Time) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.Store.APIKeyRevoke(ctx, appID, keyID, at) })
}

func (s boundedStore) EventsAppend(ctx context.Context, reqs []*meetsync.AppendRequest) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.Store.EventsAppend(ctx, reqs) })
}

func (s boundedStore) EventList(ctx context.Context, p meetsync.EventListParams) ([]*meetsync.Event, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.Event, error) { return s.Store.EventList(ctx, p) })
}

func (s boundedStore) EventFeedHead(ctx context.Context, appID string) (int64, error) {
	return bound(ctx, s.t, func(ctx context.Context) (int64, error) { return s.Store.EventFeedHead(ctx, appID) })
}

func (s boundedStore) UserGet(ctx context.Context, appID, userID string) (*meetsync.UserState, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.UserState, error) { return s.Store.UserGet(ctx, appID, userID) })
}

func (s boundedStore) UserList(ctx context.Context, p meetsync.UserListParams) ([]*meetsync.UserState, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.UserState, error) { return s.Store.UserList(ctx, p) })
}

func (s boundedStore) EndpointCreate(ctx context.Context, e *meetsync.Endpoint) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.Store.EndpointCreate(ctx, e) })
}

func (s boundedStore) EndpointGet(ctx context.Context, appID, id string) (*meetsync.Endpoint, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.Endpoint, error) { return s.Store.EndpointGet(ctx, appID, id) })
}

func (s boundedStore) EndpointList(ctx context.Context, appID string) ([]*meetsync.Endpoint, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.Endpoint, error) { return s.Store.EndpointList(ctx, appID) })
}

func (s boundedStore) EndpointUpdate(ctx context.Context, e *meetsync.Endpoint) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.Store.EndpointUpdate(ctx, e) })
}

func (s boundedStore) EndpointDelete(ctx context.Context, appID, id string) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.Store.EndpointDelete(ctx, appID, id) })
}

func (s boundedStore) DeliveriesClaim(ctx context.Context, p meetsync.DeliveryClaimParams) ([]*meetsync.DeliveryTask, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.DeliveryTask, error) { return s.Store.DeliveriesClaim(ctx, p) })
}

func (s boundedStore) DeliveriesComplete(ctx context.Context, p meetsync.DeliveryCompleteParams) ([]*meetsync.DeliveryTask, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.DeliveryTask, error) { return s.Store.DeliveriesComplete(ctx, p) })
}

func (s boundedStore) DeliveryNextDue(ctx context.Context) (time.Time, bool, error) {
	c := s.t.begin(ctx)
	at, ok, err := s.Store.DeliveryNextDue(c.ctx)
	return at, ok, c.end(err)
}

func (s boundedStore) DeliveriesReleaseClaims(ctx context.Context, owner string, now time.Time) (int, error) {
	return bound(ctx, s.t, func(ctx context.Context) (int, error) { return s.Store.DeliveriesReleaseClaims(ctx, owner, now) })
}

func (s boundedStore) DeliveryGet(ctx context.Context, appID, id string) (*meetsync.Delivery, []*meetsync.Attempt, error) {
	c := s.t.begin(ctx)
	d, attempts, err := s.Store.DeliveryGet(c.ctx, appID, id)
	return d, attempts, c.end(err)
}

func (s boundedStore) DeliveryList(ctx context.Context, p meetsync.DeliveryListParams) ([]*meetsync.Delivery, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.Delivery, error) { return s.Store.DeliveryList(ctx, p) })
}

func (s boundedStore) DeliveriesRequeue(ctx context.Context, p meetsync.DeliveryRequeueParams) (int, error) {
	return bound(ctx, s.t, func(ctx context.Context) (int, error) { return s.Store.DeliveriesRequeue(ctx, p) })
}

func (s boundedStore) DeliveryQueueDepths(ctx context.Context) (map[string]int64, error) {
	return bound(ctx, s.t, func(ctx context.Context) (map[string]int64, error) { return s.Store.DeliveryQueueDepths(ctx) })
}

func (s boundedStore) Ping(ctx context.Context) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.Store.Ping(ctx) })
}

// boundedSessionStore is a meetsync.SessionStore whose calls are bounded by t.
type boundedSessionStore struct {
	meetsync.SessionStore
	t *storeTimeout
}

func (s boundedSessionStore) AppSettingsGet(ctx context.Context, appID string) (*meetsync.AppSettings, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.AppSettings, error) {
		return s.SessionStore.AppSettingsGet(ctx, appID)
	})
}

func (s boundedSessionStore) AppSettingsPut(ctx context.Context, appID string, set *meetsync.AppSettings) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.SessionStore.AppSettingsPut(ctx, appID, set) })
}

func (s boundedSessionStore) AccountGet(ctx context.Context, appID, userID string) (*meetsync.StoredAccount, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.StoredAccount, error) {
		return s.SessionStore.AccountGet(ctx, appID, userID)
	})
}

func (s boundedSessionStore) AccountByUUID(ctx context.Context, appID, provider, userUUID string) (*meetsync.StoredAccount, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.StoredAccount, error) {
		return s.SessionStore.AccountByUUID(ctx, appID, provider, userUUID)
	})
}

func (s boundedSessionStore) AccountPut(ctx context.Context, a *meetsync.StoredAccount) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.SessionStore.AccountPut(ctx, a) })
}

func (s boundedSessionStore) ClientTokenCreate(ctx context.Context, tok *meetsync.ClientToken) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.SessionStore.ClientTokenCreate(ctx, tok) })
}

func (s boundedSessionStore) ClientTokenGetByHash(ctx context.Context, hash []byte) (*meetsync.ClientToken, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.ClientToken, error) {
		return s.SessionStore.ClientTokenGetByHash(ctx, hash)
	})
}

func (s boundedSessionStore) ClientTokensRevoke(ctx context.Context, appID, userID, sessionID string, at time.Time) (int, error) {
	return bound(ctx, s.t, func(ctx context.Context) (int, error) {
		return s.SessionStore.ClientTokensRevoke(ctx, appID, userID, sessionID, at)
	})
}

func (s boundedSessionStore) CommandsCreate(ctx context.Context, cmds []*meetsync.Command) error {
	return bound0(ctx, s.t, func(ctx context.Context) error { return s.SessionStore.CommandsCreate(ctx, cmds) })
}

func (s boundedSessionStore) CommandList(ctx context.Context, appID, userID, deviceID string, pendingOnly bool) ([]*meetsync.Command, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.Command, error) {
		return s.SessionStore.CommandList(ctx, appID, userID, deviceID, pendingOnly)
	})
}

func (s boundedSessionStore) CommandsForSession(ctx context.Context, appID, userID, sessionID string) ([]*meetsync.Command, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.Command, error) {
		return s.SessionStore.CommandsForSession(ctx, appID, userID, sessionID)
	})
}

func (s boundedSessionStore) CommandAck(ctx context.Context, appID, userID, deviceID, id string, ok bool, errText string, at time.Time) (*meetsync.Command, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.Command, error) {
		return s.SessionStore.CommandAck(ctx, appID, userID, deviceID, id, ok, errText, at)
	})
}

func (s boundedSessionStore) UsersDue(ctx context.Context, now time.Time, limit int) ([]*meetsync.UserState, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.UserState, error) {
		return s.SessionStore.UsersDue(ctx, now, limit)
	})
}

// boundedInvitationStore is a meetsync.InvitationStore whose calls are
// bounded by t.
type boundedInvitationStore struct {
	meetsync.InvitationStore
	t *storeTimeout
}

func (s boundedInvitationStore) InvitationGet(ctx context.Context, appID, id string) (*meetsync.Invitation, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.Invitation, error) {
		return s.InvitationStore.InvitationGet(ctx, appID, id)
	})
}

func (s boundedInvitationStore) InvitationList(ctx context.Context, p meetsync.InvitationListParams) ([]*meetsync.Invitation, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.Invitation, error) {
		return s.InvitationStore.InvitationList(ctx, p)
	})
}

func (s boundedInvitationStore) InvitationsOpenFor(ctx context.Context, appID, invitee, meetingNum string) ([]*meetsync.Invitation, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.Invitation, error) {
		return s.InvitationStore.InvitationsOpenFor(ctx, appID, invitee, meetingNum)
	})
}

func (s boundedInvitationStore) InvitationCommandsSupersede(ctx context.Context, appID, invitee, invitationID, note string, at time.Time) ([]*meetsync.Command, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.Command, error) {
		return s.InvitationStore.InvitationCommandsSupersede(ctx, appID, invitee, invitationID, note, at)
	})
}

// boundedTypes is a TypeRegistry whose store calls are bounded by t.
type boundedTypes struct {
	TypeRegistry
	t *storeTimeout
}

func (s boundedTypes) EventTypePut(ctx context.Context, p *meetsync.EventTypePutParams) (*meetsync.EventType, bool, error) {
	c := s.t.begin(ctx)
	et, created, err := s.TypeRegistry.EventTypePut(c.ctx, p)
	return et, created, c.end(err)
}

func (s boundedTypes) EventTypeGet(ctx context.Context, appID, name string, version int) (*meetsync.EventType, error) {
	return bound(ctx, s.t, func(ctx context.Context) (*meetsync.EventType, error) {
		return s.TypeRegistry.EventTypeGet(ctx, appID, name, version)
	})
}

func (s boundedTypes) EventTypeList(ctx context.Context, appID string) ([]*meetsync.EventType, error) {
	return bound(ctx, s.t, func(ctx context.Context) ([]*meetsync.EventType, error) {
		return s.TypeRegistry.EventTypeList(ctx, appID)
	})
}
