package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/meetsync/meetsync"
)

// TypeRegistry keeps the apps' custom event types and validates custom
// events on ingest (schema.Registry implements it).
type TypeRegistry interface {
	meetsync.TypeChecker
	// TypeStore's EventTypePut also checks the name, description and
	// schema (compiling it), and accepts the schema as the caller sent it.
	meetsync.TypeStore
	// Forget drops what is cached for an app; called when its settings change.
	Forget(appID string)
}

var errNoTypes = meetsync.Errorf(meetsync.EUNAVAILABLE, "custom event types are not configured on this server")

// eventTypeJSON is an event type as the API shows it, built-in or custom.
type eventTypeJSON struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Builtin     bool   `json:"builtin"`
	// Ingestible types may be posted to /v1/events (every custom type).
	Ingestible bool `json:"ingestible"`
	// Debounce: deliveries of the type are coalesced per (endpoint, user)
	// inside the endpoint's debounce window.
	Debounce bool `json:"debounce"`
	// The rest is for custom types only.
	Schema           json.RawMessage `json:"schema,omitempty"`
	Version          int             `json:"version,omitempty"`
	LatestVersion    int             `json:"latest_version,omitempty"`
	CreatedAt        *time.Time      `json:"created_at,omitempty"`
	UpdatedAt        *time.Time      `json:"updated_at,omitempty"`
	VersionCreatedAt *time.Time      `json:"version_created_at,omitempty"`
}

func renderBuiltinType(t meetsync.BuiltinType) eventTypeJSON {
	return eventTypeJSON{Name: t.Name, Description: t.Description, Builtin: true, Ingestible: t.Ingestible,
		Debounce: t.Name == meetsync.TypeMeetingStatusChanged}
}

func renderEventType(et *meetsync.EventType) eventTypeJSON {
	return eventTypeJSON{Name: et.Name, Description: et.Description, Ingestible: true, Debounce: et.Debounce,
		Schema: et.Schema, Version: et.Version, LatestVersion: et.LatestVersion,
		CreatedAt: &et.CreatedAt, UpdatedAt: &et.UpdatedAt, VersionCreatedAt: &et.VersionCreatedAt}
}

// handleEventTypeList lists the built-in types, then the app's custom
// types (by name) with their current schemas.
func (s *Server) handleEventTypeList(w http.ResponseWriter, r *http.Request) {
	out := make([]eventTypeJSON, 0, len(meetsync.BuiltinTypes))
	for _, t := range meetsync.BuiltinTypes {
		out = append(out, renderBuiltinType(t))
	}
	if s.cfg.Types != nil {
		types, err := s.cfg.Types.EventTypeList(r.Context(), principalOf(r.Context()).AppID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, et := range types {
			out = append(out, renderEventType(et))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"event_types": out, "reserved_namespaces": meetsync.ReservedNamespaces})
}

// handleEventTypeGet returns one type; ?version=N gives an older schema of
// a custom type.
func (s *Server) handleEventTypeGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	version := 0
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.writeError(w, r, meetsync.FieldErrorf("version", "version must be a positive integer"))
			return
		}
		version = n
	}
	if bt, ok := meetsync.LookupBuiltinType(name); ok {
		if version != 0 {
			s.writeError(w, r, meetsync.FieldErrorf("version", "built-in types have no versions"))
			return
		}
		writeJSON(w, http.StatusOK, renderBuiltinType(bt))
		return
	}
	if meetsync.IsReservedType(name) || s.cfg.Types == nil {
		s.writeError(w, r, meetsync.Errorf(meetsync.ENOTFOUND, "event type %s not found", name))
		return
	}
	if err := meetsync.CheckCustomTypeName(name, "name"); err != nil {
		s.writeError(w, r, err)
		return
	}
	et, err := s.cfg.Types.EventTypeGet(r.Context(), principalOf(r.Context()).AppID, name, version)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, renderEventType(et))
}

// handleEventTypePut registers a custom type or changes it: 201 when it
// is created, 200 otherwise (a changed schema makes a new version; an
// unchanged put changes nothing).
func (s *Server) handleEventTypePut(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Types == nil {
		s.writeError(w, r, errNoTypes)
		return
	}
	p := principalOf(r.Context())
	var in struct {
		Description string          `json:"description"`
		Schema      json.RawMessage `json:"schema"`
		Debounce    bool            `json:"debounce"`
	}
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	et, created, err := s.cfg.Types.EventTypePut(r.Context(), &meetsync.EventTypePutParams{
		AppID: p.AppID, Name: name, Description: in.Description, Schema: in.Schema, Debounce: in.Debounce, Now: s.now().UTC(),
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/event-types/"+url.PathEscape(et.Name))
	}
	s.log.Info("event type put", "app_id", p.AppID, "name", et.Name, "version", et.LatestVersion, "created", created, "by_key_id", p.KeyID)
	writeJSON(w, status, renderEventType(et))
}

// typesChanged tells the type registry that an app's settings changed.
func (s *Server) typesChanged(appID string) {
	if s.cfg.Types != nil {
		s.cfg.Types.Forget(appID)
	}
}
