// Package storetimeout bounds each call to the store: a database that
// hangs (stopped, or behind a network partition, its connections open but
// silent) fails the call in time as unavailable, instead of holding its
// caller until TCP gives up. The HTTP API bounds its requests' calls with
// it (--store-timeout), and serve the session engine's and, on
// PostgreSQL, the delivery dispatcher's.
package storetimeout

import (
	"context"
	"errors"
	"time"

	"github.com/meetsync/meetsync"
)

// Timeout bounds calls to d each. It bounds calls, not their callers: a
// stream that lives for hours has each of its reads bounded alone.
//
// A call whose own time ran out while its caller still waited fails with
// EUNAVAILABLE (503, Retry-After: 1 in the API), whatever the store made
// of its context. An error the store gave a code (unavailable, not
// found…) and the caller's own cancellation (a client that went away) are
// returned as they are.
type Timeout struct {
	d   time.Duration
	err *meetsync.Error // what the caller is told when a call's time is up
}

// New returns a Timeout of d (positive).
func New(d time.Duration) *Timeout {
	return &Timeout{d: d, err: meetsync.Errorf(meetsync.EUNAVAILABLE,
		"the database did not answer within %s; try again shortly", d)}
}

// Call runs f, one store call, with ctx bounded by t.
func Call[T any](ctx context.Context, t *Timeout, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, t.d)
	v, err := f(cctx)
	err = t.end(ctx, cctx, err)
	cancel()
	return v, err
}

// Call0 is Call for a call that returns only an error.
func Call0(ctx context.Context, t *Timeout, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, t.d)
	err := t.end(ctx, cctx, f(cctx))
	cancel()
	return err
}

// end is the error of a call made with cctx, derived from parent: an
// uncoded error of a call whose own deadline passed is the timeout's.
func (t *Timeout) end(parent, cctx context.Context, err error) error {
	late := err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) && parent.Err() == nil
	if !late || meetsync.ErrorCode(err) != meetsync.EINTERNAL {
		return err
	}
	return &timeoutError{public: t.err, d: t.d, cause: err}
}

// timeoutError is a store call that ran out of time: its code and message
// are public's, its text (for the log) and its chain keep the store's own
// error.
type timeoutError struct {
	public *meetsync.Error
	d      time.Duration
	cause  error
}

func (e *timeoutError) Error() string {
	return "the store did not answer within " + e.d.String() + ": " + e.cause.Error()
}

func (e *timeoutError) Unwrap() []error { return []error{e.public, e.cause} }

// Store returns s with each call bounded by t (nil stays nil).
func Store(s meetsync.Store, t *Timeout) meetsync.Store {
	if s == nil {
		return nil
	}
	return boundedStore{s, t}
}

// SessionStore returns s with each call bounded by t (nil stays nil).
func SessionStore(s meetsync.SessionStore, t *Timeout) meetsync.SessionStore {
	if s == nil {
		return nil
	}
	return boundedSessionStore{s, t}
}

// InvitationStore returns s with each call bounded by t (nil stays nil).
func InvitationStore(s meetsync.InvitationStore, t *Timeout) meetsync.InvitationStore {
	if s == nil {
		return nil
	}
	return boundedInvitationStore{s, t}
}

// The stores' wrappers embed the store, so a method added to an interface
// is passed on (unbounded) until it is added here; every method meetsync
// calls is.

// boundedStore is a meetsync.Store whose calls are bounded by t.
type boundedStore struct {
	meetsync.Store
	t *Timeout
}

func (s boundedStore) AppCreate(ctx context.Context, app *meetsync.App, key *meetsync.APIKey) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.Store.AppCreate(ctx, app, key) })
}

func (s boundedStore) AppGet(ctx context.Context, id string) (*meetsync.App, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.App, error) { return s.Store.AppGet(ctx, id) })
}

func (s boundedStore) AppGetByName(ctx context.Context, name string) (*meetsync.App, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.App, error) { return s.Store.AppGetByName(ctx, name) })
}

func (s boundedStore) AppList(ctx context.Context) ([]*meetsync.App, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.App, error) { return s.Store.AppList(ctx) })
}

func (s boundedStore) SecretKeyCheck(ctx context.Context) (string, error) {
	return Call(ctx, s.t, func(ctx context.Context) (string, error) { return s.Store.SecretKeyCheck(ctx) })
}

func (s boundedStore) SecretKeyCheckInit(ctx context.Context, check string) (string, error) {
	return Call(ctx, s.t, func(ctx context.Context) (string, error) { return s.Store.SecretKeyCheckInit(ctx, check) })
}

func (s boundedStore) APIKeyCreate(ctx context.Context, key *meetsync.APIKey) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.Store.APIKeyCreate(ctx, key) })
}

func (s boundedStore) APIKeyGetByHash(ctx context.Context, hash []byte) (*meetsync.APIKey, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.APIKey, error) { return s.Store.APIKeyGetByHash(ctx, hash) })
}

func (s boundedStore) APIKeyList(ctx context.Context, appID string) ([]*meetsync.APIKey, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.APIKey, error) { return s.Store.APIKeyList(ctx, appID) })
}

func (s boundedStore) APIKeyRevoke(ctx context.Context, appID, keyID string, at time.Time) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.Store.APIKeyRevoke(ctx, appID, keyID, at) })
}

func (s boundedStore) EventsAppend(ctx context.Context, reqs []*meetsync.AppendRequest) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.Store.EventsAppend(ctx, reqs) })
}

func (s boundedStore) EventList(ctx context.Context, p meetsync.EventListParams) ([]*meetsync.Event, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.Event, error) { return s.Store.EventList(ctx, p) })
}

func (s boundedStore) EventFeedHead(ctx context.Context, appID string) (int64, error) {
	return Call(ctx, s.t, func(ctx context.Context) (int64, error) { return s.Store.EventFeedHead(ctx, appID) })
}

func (s boundedStore) UserGet(ctx context.Context, appID, userID string) (*meetsync.UserState, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.UserState, error) { return s.Store.UserGet(ctx, appID, userID) })
}

func (s boundedStore) UserList(ctx context.Context, p meetsync.UserListParams) ([]*meetsync.UserState, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.UserState, error) { return s.Store.UserList(ctx, p) })
}

func (s boundedStore) EndpointCreate(ctx context.Context, e *meetsync.Endpoint) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.Store.EndpointCreate(ctx, e) })
}

func (s boundedStore) EndpointGet(ctx context.Context, appID, id string) (*meetsync.Endpoint, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.Endpoint, error) { return s.Store.EndpointGet(ctx, appID, id) })
}

func (s boundedStore) EndpointList(ctx context.Context, appID string) ([]*meetsync.Endpoint, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.Endpoint, error) { return s.Store.EndpointList(ctx, appID) })
}

func (s boundedStore) EndpointUpdate(ctx context.Context, e *meetsync.Endpoint) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.Store.EndpointUpdate(ctx, e) })
}

func (s boundedStore) EndpointDelete(ctx context.Context, appID, id string) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.Store.EndpointDelete(ctx, appID, id) })
}

func (s boundedStore) DeliveriesClaim(ctx context.Context, p meetsync.DeliveryClaimParams) ([]*meetsync.DeliveryTask, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.DeliveryTask, error) { return s.Store.DeliveriesClaim(ctx, p) })
}

func (s boundedStore) DeliveriesComplete(ctx context.Context, p meetsync.DeliveryCompleteParams) ([]*meetsync.DeliveryTask, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.DeliveryTask, error) { return s.Store.DeliveriesComplete(ctx, p) })
}

func (s boundedStore) DeliveryNextDue(ctx context.Context) (time.Time, bool, error) {
	var ok bool
	at, err := Call(ctx, s.t, func(ctx context.Context) (at time.Time, err error) {
		at, ok, err = s.Store.DeliveryNextDue(ctx)
		return at, err
	})
	return at, ok, err
}

func (s boundedStore) DeliveriesReleaseClaims(ctx context.Context, owner string, now time.Time) (int, error) {
	return Call(ctx, s.t, func(ctx context.Context) (int, error) { return s.Store.DeliveriesReleaseClaims(ctx, owner, now) })
}

func (s boundedStore) DeliveryGet(ctx context.Context, appID, id string) (*meetsync.Delivery, []*meetsync.Attempt, error) {
	var attempts []*meetsync.Attempt
	d, err := Call(ctx, s.t, func(ctx context.Context) (d *meetsync.Delivery, err error) {
		d, attempts, err = s.Store.DeliveryGet(ctx, appID, id)
		return d, err
	})
	return d, attempts, err
}

func (s boundedStore) DeliveryList(ctx context.Context, p meetsync.DeliveryListParams) ([]*meetsync.Delivery, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.Delivery, error) { return s.Store.DeliveryList(ctx, p) })
}

func (s boundedStore) DeliveriesRequeue(ctx context.Context, p meetsync.DeliveryRequeueParams) (int, error) {
	return Call(ctx, s.t, func(ctx context.Context) (int, error) { return s.Store.DeliveriesRequeue(ctx, p) })
}

func (s boundedStore) DeliveryQueueDepths(ctx context.Context) (map[string]int64, error) {
	return Call(ctx, s.t, func(ctx context.Context) (map[string]int64, error) { return s.Store.DeliveryQueueDepths(ctx) })
}

func (s boundedStore) Ping(ctx context.Context) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.Store.Ping(ctx) })
}

// boundedSessionStore is a meetsync.SessionStore whose calls are bounded by t.
type boundedSessionStore struct {
	meetsync.SessionStore
	t *Timeout
}

func (s boundedSessionStore) AppSettingsGet(ctx context.Context, appID string) (*meetsync.AppSettings, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.AppSettings, error) {
		return s.SessionStore.AppSettingsGet(ctx, appID)
	})
}

func (s boundedSessionStore) AppSettingsPut(ctx context.Context, appID string, set *meetsync.AppSettings) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.SessionStore.AppSettingsPut(ctx, appID, set) })
}

func (s boundedSessionStore) AccountGet(ctx context.Context, appID, userID string) (*meetsync.StoredAccount, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.StoredAccount, error) {
		return s.SessionStore.AccountGet(ctx, appID, userID)
	})
}

func (s boundedSessionStore) AccountByUUID(ctx context.Context, appID, provider, userUUID string) (*meetsync.StoredAccount, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.StoredAccount, error) {
		return s.SessionStore.AccountByUUID(ctx, appID, provider, userUUID)
	})
}

func (s boundedSessionStore) AccountPut(ctx context.Context, a *meetsync.StoredAccount) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.SessionStore.AccountPut(ctx, a) })
}

func (s boundedSessionStore) ClientTokenCreate(ctx context.Context, tok *meetsync.ClientToken) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.SessionStore.ClientTokenCreate(ctx, tok) })
}

func (s boundedSessionStore) ClientTokenGetByHash(ctx context.Context, hash []byte) (*meetsync.ClientToken, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.ClientToken, error) {
		return s.SessionStore.ClientTokenGetByHash(ctx, hash)
	})
}

func (s boundedSessionStore) ClientTokensRevoke(ctx context.Context, appID, userID, sessionID string, at time.Time) (int, error) {
	return Call(ctx, s.t, func(ctx context.Context) (int, error) {
		return s.SessionStore.ClientTokensRevoke(ctx, appID, userID, sessionID, at)
	})
}

func (s boundedSessionStore) CommandsCreate(ctx context.Context, cmds []*meetsync.Command) error {
	return Call0(ctx, s.t, func(ctx context.Context) error { return s.SessionStore.CommandsCreate(ctx, cmds) })
}

func (s boundedSessionStore) CommandList(ctx context.Context, appID, userID, deviceID string, pendingOnly bool) ([]*meetsync.Command, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.Command, error) {
		return s.SessionStore.CommandList(ctx, appID, userID, deviceID, pendingOnly)
	})
}

func (s boundedSessionStore) CommandsForSession(ctx context.Context, appID, userID, sessionID string) ([]*meetsync.Command, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.Command, error) {
		return s.SessionStore.CommandsForSession(ctx, appID, userID, sessionID)
	})
}

func (s boundedSessionStore) CommandAck(ctx context.Context, appID, userID, deviceID, id string, ok bool, errText string, at time.Time) (*meetsync.Command, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.Command, error) {
		return s.SessionStore.CommandAck(ctx, appID, userID, deviceID, id, ok, errText, at)
	})
}

func (s boundedSessionStore) UsersDue(ctx context.Context, now time.Time, limit int) ([]*meetsync.UserState, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.UserState, error) {
		return s.SessionStore.UsersDue(ctx, now, limit)
	})
}

// boundedInvitationStore is a meetsync.InvitationStore whose calls are
// bounded by t.
type boundedInvitationStore struct {
	meetsync.InvitationStore
	t *Timeout
}

func (s boundedInvitationStore) InvitationGet(ctx context.Context, appID, id string) (*meetsync.Invitation, error) {
	return Call(ctx, s.t, func(ctx context.Context) (*meetsync.Invitation, error) {
		return s.InvitationStore.InvitationGet(ctx, appID, id)
	})
}

func (s boundedInvitationStore) InvitationList(ctx context.Context, p meetsync.InvitationListParams) ([]*meetsync.Invitation, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.Invitation, error) {
		return s.InvitationStore.InvitationList(ctx, p)
	})
}

func (s boundedInvitationStore) InvitationsOpenFor(ctx context.Context, appID, invitee, meetingNum string) ([]*meetsync.Invitation, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.Invitation, error) {
		return s.InvitationStore.InvitationsOpenFor(ctx, appID, invitee, meetingNum)
	})
}

func (s boundedInvitationStore) InvitationCommandsSupersede(ctx context.Context, appID, invitee, invitationID, note string, at time.Time) ([]*meetsync.Command, error) {
	return Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.Command, error) {
		return s.InvitationStore.InvitationCommandsSupersede(ctx, appID, invitee, invitationID, note, at)
	})
}
