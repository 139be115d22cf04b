package meetsync

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// EventType is a custom event type registered by an app (PUT
// /v1/event-types/{name}): a name outside the reserved namespaces, a
// description and a JSON Schema (draft 2020-12) that the data of every
// event of the type is validated against on ingest.
//
// A type is versioned: registering it again with a different schema makes
// a new version (1, 2, 3, …) and new events are validated against it. An
// event records the version it was validated against (Event.SchemaVersion)
// and is never validated again, so changing a schema leaves older events
// valid and readable as they were. The description and Debounce are not
// versioned: a change of only those updates the type in place.
type EventType struct {
	AppID       string
	Name        string
	Description string
	// Schema is the JSON Schema of Version, in its canonical form (compact,
	// object keys sorted, numbers as written).
	Schema json.RawMessage
	// Version is the version Schema belongs to; LatestVersion is the
	// type's current one (they differ only when an older version was asked for).
	Version       int
	LatestVersion int
	// Debounce makes a pending delivery of the type wait out the endpoint's
	// debounce window and be superseded by a newer event of the same type
	// for the same user (as meeting.status_changed is).
	Debounce bool
	// CreatedAt is when the type was first registered, UpdatedAt when it
	// last changed, VersionCreatedAt when Version's schema was registered.
	CreatedAt        time.Time
	UpdatedAt        time.Time
	VersionCreatedAt time.Time
}

// Limits of custom event types.
const (
	// MaxSchemaBytes is the largest schema accepted, measured in its
	// canonical (compact) form.
	MaxSchemaBytes = 64 << 10
	// MaxTypeDescriptionBytes is the longest description accepted.
	MaxTypeDescriptionBytes = 1024
)

// EventTypePutParams registers a custom type or changes it.
type EventTypePutParams struct {
	AppID       string
	Name        string
	Description string
	// Schema is the canonical form of the schema (stores compare it byte for
	// byte with the current version's to decide whether a version is made).
	Schema   json.RawMessage
	Debounce bool
	Now      time.Time
}

// TypeStore keeps the custom event types of apps and their schema
// versions. Both stores implement it with the same semantics as Store. A
// store also applies each type's Debounce in its event fan-out (see
// Store.EventsAppend): the change of a type is seen by the next append.
type TypeStore interface {
	// EventTypePut registers a type (version 1) or updates it: a schema
	// that differs from the current version's becomes version n+1; the
	// description and debounce are replaced in place; a put that changes
	// nothing writes nothing (UpdatedAt stays). It returns the type as it
	// now is and whether it was created. ENOTFOUND (app).
	EventTypePut(ctx context.Context, p *EventTypePutParams) (et *EventType, created bool, err error)
	// EventTypeGet returns a type with the schema of a version (0 = the
	// current one). ENOTFOUND (no such type in the app, or no such version).
	EventTypeGet(ctx context.Context, appID, name string, version int) (*EventType, error)
	// EventTypeList returns the app's types at their current versions,
	// ordered by name.
	EventTypeList(ctx context.Context, appID string) ([]*EventType, error)
}

// CheckCustomTypeName validates the name of a custom event type: a
// well-formed type name (lowercase dot-separated segments, as on ingest)
// outside the reserved namespaces. Errors are EINVALID on field.
func CheckCustomTypeName(name, field string) error {
	if !validTypeName(name) {
		if err := checkTypeName(name, field); err != nil {
			return err
		}
		return FieldErrorf(field, "invalid type name %q", name)
	}
	if IsReservedType(name) {
		ns, _, _ := strings.Cut(name, ".")
		return FieldErrorf(field, "the namespace %s.* is reserved for meetsync's built-in types (reserved: %s); choose another name",
			ns, strings.Join(ReservedNamespaces, ", "))
	}
	return nil
}
