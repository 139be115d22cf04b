package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"time"

	"github.com/meetsync/meetsync"
)

func (s *Server) handleAppGet(w http.ResponseWriter, r *http.Request) {
	app, err := s.store.AppGet(r.Context(), principalOf(r.Context()).AppID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.cfg.SessionStore == nil {
		writeJSON(w, http.StatusOK, app)
		return
	}
	set, err := s.cfg.SessionStore.AppSettingsGet(r.Context(), app.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, renderApp(app, set))
}

type keyJSON struct {
	ID        string     `json:"id"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Current   bool       `json:"current,omitempty"`
	Key       string     `json:"key,omitempty"`
}

func (s *Server) handleKeyList(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r.Context())
	keys, err := s.store.APIKeyList(r.Context(), p.AppID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyJSON{ID: k.ID, Prefix: k.Prefix, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt, Current: k.ID == p.KeyID})
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
}

func (s *Server) handleKeyCreate(w http.ResponseWriter, r *http.Request) {
	if err := decodeOptionalJSON(r, &struct{}{}); err != nil { // no body, or {}
		s.writeError(w, r, err)
		return
	}
	p := principalOf(r.Context())
	k, secret := meetsync.NewAPIKey(p.AppID, s.now().UTC())
	if err := s.store.APIKeyCreate(r.Context(), k); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("api key created", "app_id", p.AppID, "key_id", k.ID, "by_key_id", p.KeyID)
	writeJSON(w, http.StatusCreated, keyJSON{ID: k.ID, Prefix: k.Prefix, CreatedAt: k.CreatedAt, Key: secret})
}

func (s *Server) handleKeyRevoke(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r.Context())
	id := r.PathValue("id")
	if err := s.store.APIKeyRevoke(r.Context(), p.AppID, id, s.now().UTC()); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.keys.evict(id)
	s.log.Info("api key revoked", "app_id", p.AppID, "key_id", id, "by_key_id", p.KeyID)
	w.WriteHeader(http.StatusNoContent)
}

// decodeJSON decodes a small JSON body strictly into v: unknown fields
// and anything after the value are errors, and so is an empty body or
// null (which would leave v as it is: a PATCH changing nothing).
func decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, meetsync.MaxBodyBytes))
	if err != nil {
		return jsonError(err, "")
	}
	switch trimmed := bytes.TrimSpace(body); {
	case len(trimmed) == 0:
		return jsonError(io.EOF, "")
	case string(trimmed) == "null":
		return meetsync.FieldErrorf("", "the body is null: send a JSON object")
	}
	if err := strictUnmarshal(body, v); err != nil {
		return jsonError(err, "")
	}
	return nil
}
