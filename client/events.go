package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
)

// EventResult is the outcome of one posted event: its id, its per-user
// seq, whether it repeated an event already stored (and is the original's
// result), and whether it was too old to change the user's state.
type EventResult = meetsync.EventResult

// PostOption configures an event post.
type PostOption func(*postConfig)

type postConfig struct{ idemKey string }

// IdempotencyKey sends an Idempotency-Key header: the server stores the
// request once, and a repeat with the same body returns the original
// results (with the same key and another body: ECONFLICT). A post with a
// key is retried after a failure.
func IdempotencyKey(key string) PostOption { return func(c *postConfig) { c.idemKey = key } }

// PostEvent posts one event (POST /v1/events, app key). The answer is sent
// once the event is on disk.
func (c *Client) PostEvent(ctx context.Context, ev meetsync.EventInput, opts ...PostOption) (*EventResult, error) {
	res, err := c.postEvents(ctx, "/v1/events", ev, []meetsync.EventInput{ev}, opts)
	if err != nil {
		return nil, err
	}
	return &res[0], nil
}

// PostEvents posts up to meetsync.MaxBatchEvents events in one request
// (POST /v1/events with {"events":[…]}, app key). A batch is all or
// nothing: one invalid event rejects it with an EINVALID error whose field
// names the event (events[3].data.status).
func (c *Client) PostEvents(ctx context.Context, events []meetsync.EventInput, opts ...PostOption) ([]EventResult, error) {
	return c.postEvents(ctx, "/v1/events", map[string]any{"events": events}, events, opts)
}

// ClientEvents posts events for the token's own user and device (POST
// /v1/client/events, client token): user_id and device_id may be left
// empty; naming another user or device is EFORBIDDEN.
func (c *Client) ClientEvents(ctx context.Context, events []meetsync.EventInput, opts ...PostOption) ([]EventResult, error) {
	return c.postEvents(ctx, "/v1/client/events", map[string]any{"events": events}, events, opts)
}

func (c *Client) postEvents(ctx context.Context, path string, body any, events []meetsync.EventInput, opts []PostOption) ([]EventResult, error) {
	var cfg postConfig
	for _, o := range opts {
		o(&cfg)
	}
	r := request{method: "POST", path: path, body: body, idempotent: cfg.idemKey != "" || selfIdempotent(events)}
	if cfg.idemKey != "" {
		r.header = http.Header{"Idempotency-Key": {cfg.idemKey}}
	}
	var out struct {
		Events []EventResult `json:"events"`
	}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	if len(out.Events) != len(events) {
		return nil, meetsync.Errorf(meetsync.EINTERNAL, "POST %s: %d results for %d events", path, len(out.Events), len(events))
	}
	return out.Events, nil
}

// selfIdempotent reports whether every event is stored once however often
// it is posted: it carries an id, or a client_seq (with its device, given
// or taken from a client token).
func selfIdempotent(events []meetsync.EventInput) bool {
	for _, e := range events {
		if e.ID == "" && e.ClientSeq == nil {
			return false
		}
	}
	return len(events) > 0
}

// EventListParams selects a page of the event feed.
type EventListParams struct {
	// After is a cursor: the page starts right after it. "" or "0" is the
	// beginning of the feed.
	After string
	// Limit is the most events of the page (1–1000, default 100).
	Limit int
	// Types are exact type names and "prefix.*" patterns (none: every type).
	Types []string
	// UserID keeps one user's events.
	UserID string
}

func (p EventListParams) query() url.Values {
	q := url.Values{}
	if p.After != "" {
		q.Set("after", p.After)
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if len(p.Types) > 0 {
		q.Set("type", strings.Join(p.Types, ","))
	}
	if p.UserID != "" {
		q.Set("user_id", p.UserID)
	}
	return q
}

// EventPage is one page of the feed. Next is the cursor to pass as After
// for the next page; it equals After when the page is empty (the end of
// the feed for now).
type EventPage struct {
	Events []*meetsync.Event `json:"events"`
	Next   string            `json:"next"`
}

// ListEvents reads one page of the event feed (GET /v1/events, app key):
// the app's events in commit order, each exactly once.
func (c *Client) ListEvents(ctx context.Context, p EventListParams) (*EventPage, error) {
	var out EventPage
	path := "/v1/events"
	if q := p.query().Encode(); q != "" {
		path += "?" + q
	}
	if err := c.do(ctx, request{method: "GET", path: path, idempotent: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StreamParams selects the events of a stream.
type StreamParams struct {
	// After is the cursor to start after: "0" replays the whole feed, ""
	// starts at the current end. Once an event has arrived, reconnections
	// resume after the last one handled; before that, after the position
	// the server announced (an SSE id without data), if it did. (Give a
	// cursor, or "0", to be sure that nothing is missed by a reconnection
	// before the first event.)
	After string
	// Types are exact type names and "prefix.*" patterns (none: every type).
	Types []string
	// UserID keeps one user's events.
	UserID string
}

// StreamEvents follows the event feed live (GET /v1/events/stream, app
// key, Server-Sent Events) and calls fn with each event in commit order.
// When the connection drops it reconnects with backoff and resumes right
// after the last event fn returned from (Last-Event-ID): nothing is
// missed, nothing repeated. It returns when ctx ends (ctx.Err()), when fn
// returns an error (that error), or on an error a reconnection cannot fix
// (EUNAUTHORIZED, EINVALID…).
func (c *Client) StreamEvents(ctx context.Context, p StreamParams, fn func(*meetsync.Event) error, opts ...StreamOption) error {
	q := p.query()
	path := "/v1/events/stream"
	if s := q.Encode(); s != "" {
		path += "?" + s
	}
	return c.stream(ctx, path, "", func(m sseMessage) error {
		var ev meetsync.Event
		if err := json.Unmarshal([]byte(m.Data), &ev); err != nil {
			return meetsync.Errorf(meetsync.EINTERNAL, "event stream: cannot decode an event: %v", err)
		}
		return fn(&ev)
	}, opts)
}

func (p StreamParams) query() url.Values {
	return EventListParams{After: p.After, Types: p.Types, UserID: p.UserID}.query()
}

// EventType is an event type the server knows, built-in or custom (GET
// /v1/event-types, GET and PUT /v1/event-types/{name}).
type EventType struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Builtin     bool   `json:"builtin"`
	// Ingestible types may be posted (every custom type); the others are
	// emitted by meetsync.
	Ingestible bool `json:"ingestible"`
	// Debounce: deliveries of the type are coalesced per (endpoint, user)
	// inside the endpoint's debounce window (meeting.status_changed, and
	// custom types registered with it).
	Debounce bool `json:"debounce"`

	// The rest is set for custom types only.

	// Schema is the JSON Schema of Version, in the server's canonical form
	// (compact, object keys sorted).
	Schema json.RawMessage `json:"schema,omitempty"`
	// Version is the version Schema belongs to; LatestVersion is the
	// type's current one (they differ when an older version was asked for).
	Version       int `json:"version,omitempty"`
	LatestVersion int `json:"latest_version,omitempty"`
	// CreatedAt is when the type was first registered, UpdatedAt when it
	// last changed, VersionCreatedAt when Version's schema was registered.
	CreatedAt        time.Time `json:"created_at,omitzero"`
	UpdatedAt        time.Time `json:"updated_at,omitzero"`
	VersionCreatedAt time.Time `json:"version_created_at,omitzero"`
}

// EventTypeParams is the whole definition of a custom event type (PUT
// replaces the type: send every field each time).
type EventTypeParams struct {
	// Description is optional, up to 1024 bytes.
	Description string `json:"description"`
	// Schema (required) is a JSON Schema object, or true/false. Without
	// $schema it is read as draft 2020-12; $ref may only point inside it.
	Schema json.RawMessage `json:"schema,omitempty"`
	// Debounce coalesces deliveries of the type like meeting.status_changed.
	Debounce bool `json:"debounce"`
}

// PutEventType registers a custom event type or changes it (PUT
// /v1/event-types/{name}, app key); created reports that it was new (201).
// A schema different from the current one makes a new version; a change
// of only the description or debounce updates the type in place; the same
// params again change nothing. Errors: EINVALID with the field "name" (a
// malformed name or one in a reserved namespace), "schema" (missing or not
// a valid schema) or "description"; ETOOLARGE for a schema over 64 KiB.
//
// PUT is idempotent, so the call is retried after a failure; a retry after
// an answer lost on the way reports created false.
func (c *Client) PutEventType(ctx context.Context, name string, p EventTypeParams) (et *EventType, created bool, err error) {
	var out EventType
	status := 0
	r := request{method: "PUT", path: "/v1/event-types/" + escape(name), body: p, idempotent: true, status: &status}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, false, err
	}
	return &out, status == http.StatusCreated, nil
}

// GetEventType returns one event type, built-in or custom (GET
// /v1/event-types/{name}, app key). version 0 gives the current version;
// a positive version an older schema of a custom type (?version=N).
// ENOTFOUND for a type or version that does not exist (or another app's).
func (c *Client) GetEventType(ctx context.Context, name string, version int) (*EventType, error) {
	path := "/v1/event-types/" + escape(name)
	if version != 0 {
		path += "?version=" + strconv.Itoa(version)
	}
	var out EventType
	if err := c.do(ctx, request{method: "GET", path: path, idempotent: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EventTypes lists the event types — the built-in ones, then the app's
// custom types by name with their current schemas — and the reserved
// namespaces (GET /v1/event-types, app key).
func (c *Client) EventTypes(ctx context.Context) (types []EventType, reservedNamespaces []string, err error) {
	var out struct {
		Types    []EventType `json:"event_types"`
		Reserved []string    `json:"reserved_namespaces"`
	}
	if err := c.do(ctx, request{method: "GET", path: "/v1/event-types", idempotent: true}, &out); err != nil {
		return nil, nil, err
	}
	return out.Types, out.Reserved, nil
}
