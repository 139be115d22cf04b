package schema

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/meetsync/meetsync"
)

// SettingsSource gives an app's settings (the strict_event_types switch).
// meetsync.SessionStore implements it.
type SettingsSource interface {
	AppSettingsGet(ctx context.Context, appID string) (*meetsync.AppSettings, error)
}

// Config configures a Registry. The zero value is usable.
type Config struct {
	// CacheTTL is how long an app's registered types and its
	// strict_event_types setting are remembered by the ingest path. A
	// change made through this Registry applies at once; one made through
	// another replica sharing the store applies within CacheTTL. Default 5 s.
	CacheTTL time.Duration
	// LoadTimeout bounds the store reads of the ingest path. Default 5 s.
	LoadTimeout time.Duration
	// Logger receives store failures the ingest path rides out on cached
	// types. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.CacheTTL <= 0 {
		c.CacheTTL = 5 * time.Second
	}
	if c.LoadTimeout <= 0 {
		c.LoadTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Registry registers custom event types (checking names and compiling
// schemas before they are stored) and validates the data of custom events
// on ingest (meetsync.TypeChecker). Compiled schemas are cached per (app,
// type, version) — a version's schema never changes — and each app's
// current versions and strict setting are cached for Config.CacheTTL,
// dropped at once when a type of the app is put or Forget is called.
type Registry struct {
	store    meetsync.TypeStore
	settings SettingsSource
	cfg      Config

	mu   sync.Mutex
	apps map[string]*appTypes
	gens map[string]uint64 // bumped by every invalidation of an app
	// compiled holds the compiled schemas of each app's current versions.
	compiled map[string]map[versionKey]*jsonschema.Schema
}

// appTypes is what the ingest path knows of one app.
type appTypes struct {
	loadedAt time.Time
	strict   bool
	current  map[string]*current // by type name
}

type current struct {
	version int
	schema  *jsonschema.Schema
}

type versionKey struct {
	name    string
	version int
}

var (
	_ meetsync.TypeChecker = (*Registry)(nil)
	_ meetsync.TypeStore   = (*Registry)(nil)
)

// New returns a Registry over store. settings may be nil: then no app is strict.
func New(store meetsync.TypeStore, settings SettingsSource, cfg Config) *Registry {
	return &Registry{store: store, settings: settings, cfg: cfg.withDefaults(),
		apps: map[string]*appTypes{}, gens: map[string]uint64{}, compiled: map[string]map[versionKey]*jsonschema.Schema{}}
}

// EventTypePut checks and registers a type: the name (EINVALID on "name":
// malformed, or in a reserved namespace), the description (EINVALID on
// "description": over MaxTypeDescriptionBytes), the schema (EINVALID on
// "schema": missing, not JSON, not a schema, or not compilable, with the
// compiler's reason; ETOOLARGE on "schema": over MaxSchemaBytes in its
// canonical form). p.Schema may be as the caller sent it: it is stored in
// canonical form, and a schema equal to the current one up to formatting
// and key order makes no new version. Nothing is stored on an error.
func (r *Registry) EventTypePut(ctx context.Context, p *meetsync.EventTypePutParams) (*meetsync.EventType, bool, error) {
	if err := meetsync.CheckCustomTypeName(p.Name, "name"); err != nil {
		return nil, false, err
	}
	if len(p.Description) > meetsync.MaxTypeDescriptionBytes {
		return nil, false, meetsync.FieldErrorf("description", "description is longer than %d bytes", meetsync.MaxTypeDescriptionBytes)
	}
	if !utf8.ValidString(p.Description) {
		return nil, false, meetsync.FieldErrorf("description", "description is not valid UTF-8")
	}
	canon, doc, err := Canonical(p.Schema)
	if err != nil {
		return nil, false, err
	}
	if len(canon) > meetsync.MaxSchemaBytes {
		return nil, false, &meetsync.Error{Code: meetsync.ETOOLARGE, Field: "schema",
			Message: fmt.Sprintf("schema is %d bytes (compact); the limit is %d", len(canon), meetsync.MaxSchemaBytes)}
	}
	sch, err := compile(doc)
	if err != nil {
		return nil, false, err
	}
	q := *p
	q.Schema = canon
	et, created, err := r.store.EventTypePut(ctx, &q)
	if err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	// Copy on write: load reads a snapshot of the app's map without the lock.
	m := make(map[versionKey]*jsonschema.Schema, len(r.compiled[p.AppID])+1)
	for k, v := range r.compiled[p.AppID] {
		m[k] = v
	}
	m[versionKey{p.Name, et.LatestVersion}] = sch
	r.compiled[p.AppID] = m
	r.mu.Unlock()
	r.Forget(p.AppID)
	return et, created, nil
}

// EventTypeGet returns a type at a version (0 = current). ENOTFOUND.
func (r *Registry) EventTypeGet(ctx context.Context, appID, name string, version int) (*meetsync.EventType, error) {
	return r.store.EventTypeGet(ctx, appID, name, version)
}

// EventTypeList returns the app's types at their current versions, by name.
func (r *Registry) EventTypeList(ctx context.Context, appID string) ([]*meetsync.EventType, error) {
	return r.store.EventTypeList(ctx, appID)
}

// Forget drops what the ingest path remembers of an app (its types'
// current versions and its strict setting), so the next event reads them
// again. Call it when the app's settings change.
func (r *Registry) Forget(appID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.apps, appID)
	r.gens[appID]++
}

// CheckCustomEvent validates data against the current schema of a
// registered type and returns its version. A type that is not registered
// is accepted (version 0) unless the app's strict_event_types setting is
// on. See meetsync.TypeChecker for the errors.
func (r *Registry) CheckCustomEvent(appID, typ string, data json.RawMessage, prefix string) (int, error) {
	at, err := r.app(appID)
	if err != nil {
		return 0, err
	}
	cur, ok := at.current[typ]
	if !ok {
		if at.strict {
			field := "type"
			if prefix != "" {
				field = prefix + ".type"
			}
			return 0, meetsync.FieldErrorf(field, "event type %q is not registered, and this app accepts registered custom types only "+
				"(strict_event_types); register it with PUT /v1/event-types/%s", typ, typ)
		}
		return 0, nil
	}
	doc, err := decode(data)
	if err != nil {
		return 0, meetsync.FieldErrorf(dataField(prefix), "data is not valid JSON: %v", err)
	}
	if err := cur.schema.Validate(doc); err != nil {
		return 0, violation(err, doc, typ, cur.version, prefix)
	}
	return cur.version, nil
}

// app returns what the ingest path knows of an app: from the cache while
// fresh, else read from the store (compiling the versions not compiled
// yet). If the store fails and a stale entry exists, the stale one serves.
func (r *Registry) app(appID string) (*appTypes, error) {
	now := r.cfg.Now()
	r.mu.Lock()
	at, ok := r.apps[appID]
	gen := r.gens[appID]
	r.mu.Unlock()
	if ok && now.Sub(at.loadedAt) < r.cfg.CacheTTL {
		return at, nil
	}
	fresh, err := r.load(appID, now)
	if err != nil {
		if !ok {
			return nil, err
		}
		// Ride out the failure on what was known, for another CacheTTL.
		r.cfg.Logger.Warn("event types: reading the app's types failed; using the cached ones", "app_id", appID, "err", err)
		fresh = &appTypes{loadedAt: now, strict: at.strict, current: at.current}
	}
	r.mu.Lock()
	// An invalidation during the load may mean the load read the old
	// state: keep it for this event only.
	if r.gens[appID] == gen {
		r.apps[appID] = fresh
	}
	r.mu.Unlock()
	return fresh, nil
}

func (r *Registry) load(appID string, now time.Time) (*appTypes, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LoadTimeout)
	defer cancel()
	types, err := r.store.EventTypeList(ctx, appID)
	if err != nil {
		return nil, fmt.Errorf("load event types of %s: %w", appID, err)
	}
	at := &appTypes{loadedAt: now, current: make(map[string]*current, len(types))}
	if r.settings != nil {
		set, err := r.settings.AppSettingsGet(ctx, appID)
		if err != nil && meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
			return nil, fmt.Errorf("load settings of %s: %w", appID, err)
		}
		at.strict = set != nil && set.StrictEventTypes
	}
	r.mu.Lock()
	old := r.compiled[appID]
	r.mu.Unlock()
	// The compiled schemas of the current versions: the others are dropped.
	compiled := make(map[versionKey]*jsonschema.Schema, len(types))
	for _, et := range types {
		k := versionKey{et.Name, et.Version}
		sch := old[k]
		if sch == nil {
			_, doc, err := Canonical(et.Schema)
			if err == nil {
				sch, err = compile(doc)
			}
			if err != nil {
				// Stored schemas compiled when they were put; this one no
				// longer does (a library change): refuse its events
				// rather than let them in unchecked.
				return nil, fmt.Errorf("compile stored schema of %s version %d: %w", et.Name, et.Version, err)
			}
		}
		compiled[k] = sch
		at.current[et.Name] = &current{version: et.Version, schema: sch}
	}
	r.mu.Lock()
	r.compiled[appID] = compiled
	r.mu.Unlock()
	return at, nil
}
