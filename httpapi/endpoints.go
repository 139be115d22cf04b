package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/meetsync/meetsync"
)

type endpointJSON struct {
	ID             string     `json:"id"`
	URL            string     `json:"url"`
	Description    string     `json:"description"`
	EventTypes     []string   `json:"event_types"`
	DebounceMS     int64      `json:"debounce_ms"`
	RateLimitPerS  int        `json:"rate_limit_per_s"`
	Enabled        bool       `json:"enabled"`
	DisabledReason string     `json:"disabled_reason,omitempty"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	FailingSince   *time.Time `json:"failing_since,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	// Secret is shown once: on creation and rotation.
	Secret string `json:"secret,omitempty"`
}

func renderEndpoint(e *meetsync.Endpoint) endpointJSON {
	types := []string(e.EventTypes)
	if types == nil {
		types = []string{}
	}
	return endpointJSON{ID: e.ID, URL: e.URL, Description: e.Description, EventTypes: types, DebounceMS: e.Debounce.Milliseconds(),
		RateLimitPerS: e.RateLimit, Enabled: !e.Disabled, DisabledReason: e.DisabledReason, DisabledAt: e.DisabledAt,
		FailingSince: e.FailingSince, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
}

// endpointInput is the body of POST and PATCH /v1/endpoints: nil fields
// keep their value (PATCH) or take the default (POST).
type endpointInput struct {
	URL           *string   `json:"url"`
	Description   *string   `json:"description"`
	EventTypes    *[]string `json:"event_types"`
	DebounceMS    *int64    `json:"debounce_ms"`
	RateLimitPerS *int      `json:"rate_limit_per_s"`
	Enabled       *bool     `json:"enabled"`
}

// apply validates in and writes it onto e.
func (s *Server) applyEndpointInput(r *http.Request, in *endpointInput, e *meetsync.Endpoint, now time.Time) error {
	if in.URL != nil {
		if _, err := s.cfg.URLPolicy.CheckURLResolved(r.Context(), *in.URL, "url"); err != nil {
			return err
		}
		e.URL = *in.URL
	}
	if in.Description != nil {
		if len(*in.Description) > 1024 {
			return meetsync.FieldErrorf("description", "description is longer than 1024 characters")
		}
		e.Description = *in.Description
	}
	if in.EventTypes != nil {
		if len(*in.EventTypes) > 100 {
			return meetsync.FieldErrorf("event_types", "at most 100 event type patterns")
		}
		f, err := meetsync.ParseTypeFilter(*in.EventTypes, "event_types")
		if err != nil {
			return err
		}
		e.EventTypes = f
	}
	if in.DebounceMS != nil {
		d := time.Duration(*in.DebounceMS) * time.Millisecond
		if *in.DebounceMS < 0 || d > meetsync.MaxDebounce {
			return meetsync.FieldErrorf("debounce_ms", "debounce_ms must be from 0 (off) to %d", meetsync.MaxDebounce.Milliseconds())
		}
		e.Debounce = d
	}
	if in.RateLimitPerS != nil {
		if *in.RateLimitPerS < 0 || *in.RateLimitPerS > 100000 {
			return meetsync.FieldErrorf("rate_limit_per_s", "rate_limit_per_s must be from 0 (no limit) to 100000")
		}
		e.RateLimit = *in.RateLimitPerS
	}
	if in.Enabled != nil && *in.Enabled == e.Disabled {
		e.Disabled = !*in.Enabled
		if e.Disabled {
			e.DisabledReason, e.DisabledAt = "disabled through the API", &now
		} else {
			e.DisabledReason, e.DisabledAt, e.FailingSince = "", nil, nil
		}
	}
	return nil
}

func (s *Server) handleEndpointCreate(w http.ResponseWriter, r *http.Request) {
	var in endpointInput
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.URL == nil || *in.URL == "" {
		s.writeError(w, r, meetsync.FieldErrorf("url", "url is required"))
		return
	}
	now := s.now().UTC()
	e := &meetsync.Endpoint{ID: meetsync.NewID("ep"), AppID: principalOf(r.Context()).AppID, Debounce: meetsync.DefaultDebounce,
		CreatedAt: now, UpdatedAt: now, Secrets: []meetsync.EndpointSecret{{Secret: meetsync.NewEndpointSecret(), CreatedAt: now}}}
	if err := s.applyEndpointInput(r, &in, e, now); err != nil {
		s.writeError(w, r, err)
		return
	}
	secret := e.Secrets[0].Secret
	e.Secrets[0].Secret = s.cfg.Sealer.Seal(secret) // encrypted at rest
	if err := s.store.EndpointCreate(r.Context(), e); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("endpoint created", "app_id", e.AppID, "endpoint_id", e.ID)
	out := renderEndpoint(e)
	out.Secret = secret
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) handleEndpointList(w http.ResponseWriter, r *http.Request) {
	eps, err := s.store.EndpointList(r.Context(), principalOf(r.Context()).AppID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]endpointJSON, 0, len(eps))
	for _, e := range eps {
		out = append(out, renderEndpoint(e))
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoints": out})
}

func (s *Server) handleEndpointGet(w http.ResponseWriter, r *http.Request) {
	e, err := s.store.EndpointGet(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, renderEndpoint(e))
}

func (s *Server) handleEndpointPatch(w http.ResponseWriter, r *http.Request) {
	var in endpointInput
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	e, err := s.store.EndpointGet(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.now().UTC()
	if err := s.applyEndpointInput(r, &in, e, now); err != nil {
		s.writeError(w, r, err)
		return
	}
	e.UpdatedAt = now
	if err := s.store.EndpointUpdate(r.Context(), e); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.wakeDelivery()
	writeJSON(w, http.StatusOK, renderEndpoint(e))
}

func (s *Server) handleEndpointDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.store.EndpointDelete(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleSecretRotate adds a new signing secret; the previous ones stay
// valid for the grace period (default 24 h; "grace":"0s" ends them now),
// and webhooks carry a signature per valid secret meanwhile.
func (s *Server) handleSecretRotate(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Grace *string `json:"grace"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	grace := meetsync.DefaultRotationGrace
	if in.Grace != nil {
		d, err := time.ParseDuration(*in.Grace)
		if err != nil || d < 0 || d > 7*24*time.Hour {
			s.writeError(w, r, meetsync.FieldErrorf("grace", "grace must be a duration from 0s to 168h, such as 24h"))
			return
		}
		grace = d
	}
	e, err := s.store.EndpointGet(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.now().UTC()
	expires := now.Add(grace)
	secret := meetsync.NewEndpointSecret()
	secrets := []meetsync.EndpointSecret{{Secret: s.cfg.Sealer.Seal(secret), CreatedAt: now}}
	for _, old := range e.Secrets {
		if old.ExpiresAt != nil && !now.Before(*old.ExpiresAt) {
			continue // already expired: drop it
		}
		if old.ExpiresAt == nil || expires.Before(*old.ExpiresAt) {
			old.ExpiresAt = &expires
		}
		if grace > 0 {
			secrets = append(secrets, old)
		}
	}
	e.Secrets, e.UpdatedAt = secrets, now
	if err := s.store.EndpointUpdate(r.Context(), e); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("endpoint secret rotated", "app_id", e.AppID, "endpoint_id", e.ID, "grace", grace)
	out := renderEndpoint(e)
	out.Secret = secret
	writeJSON(w, http.StatusOK, map[string]any{"endpoint": out, "secret": out.Secret, "previous_expires_at": expires})
}

var deliveryStatuses = map[string]bool{meetsync.DeliveryPending: true, meetsync.DeliveryFailed: true, meetsync.DeliveryDelivered: true,
	meetsync.DeliveryDead: true, meetsync.DeliverySuperseded: true}

func (s *Server) handleDeliveryList(w http.ResponseWriter, r *http.Request) {
	appID := principalOf(r.Context()).AppID
	q := r.URL.Query()
	p := meetsync.DeliveryListParams{AppID: appID, EndpointID: r.PathValue("id"), Status: q.Get("status"), Before: q.Get("cursor")}
	if p.Status != "" && !deliveryStatuses[p.Status] {
		s.writeError(w, r, meetsync.FieldErrorf("status", "status must be one of pending, failed, delivered, dead, superseded"))
		return
	}
	var err error
	if p.Limit, err = parseLimit(q.Get("limit")); err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := s.store.EndpointGet(r.Context(), appID, p.EndpointID); err != nil {
		s.writeError(w, r, err)
		return
	}
	ds, err := s.store.DeliveryList(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ds == nil {
		ds = []*meetsync.Delivery{}
	}
	resp := map[string]any{"deliveries": ds}
	if len(ds) == p.Limit {
		resp["next"] = ds[len(ds)-1].ID
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleDeliveryGet(w http.ResponseWriter, r *http.Request) {
	d, attempts, err := s.store.DeliveryGet(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if attempts == nil {
		attempts = []*meetsync.Attempt{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"delivery": d, "attempts": attempts})
}

// EndpointTester sends an endpoint a test webhook now (delivery.Dispatcher).
type EndpointTester interface {
	Test(ctx context.Context, ep *meetsync.Endpoint) *meetsync.Attempt
}

// handleEndpointTest sends the endpoint one signed test webhook, outside
// its queue, and answers what the receiver did: a setup check.
func (s *Server) handleEndpointTest(w http.ResponseWriter, r *http.Request) {
	if err := decodeOptionalJSON(r, &struct{}{}); err != nil {
		s.writeError(w, r, err)
		return
	}
	tester, ok := s.cfg.Delivery.(EndpointTester)
	if !ok {
		s.writeError(w, r, meetsync.Errorf(meetsync.EUNAVAILABLE, "webhook delivery is not running on this server"))
		return
	}
	ep, err := s.store.EndpointGet(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := tester.Test(r.Context(), ep)
	writeJSON(w, http.StatusOK, map[string]any{"ok": a.Error == "", "attempt": a})
}

func (s *Server) handleDeliveryReplay(w http.ResponseWriter, r *http.Request) {
	if err := decodeOptionalJSON(r, &struct{}{}); err != nil { // no body, or {}
		s.writeError(w, r, err)
		return
	}
	n, err := s.store.DeliveriesRequeue(r.Context(), meetsync.DeliveryRequeueParams{
		AppID: principalOf(r.Context()).AppID, DeliveryID: r.PathValue("id"), Now: s.now().UTC()})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.wakeDelivery()
	writeJSON(w, http.StatusAccepted, map[string]any{"requeued": n})
}

func (s *Server) handleEndpointRecover(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Since string `json:"since"`
	}
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	since, err := time.Parse(time.RFC3339Nano, in.Since)
	if err != nil {
		s.writeError(w, r, meetsync.FieldErrorf("since", "since must be an RFC 3339 time such as 2026-01-02T15:04:05Z"))
		return
	}
	n, err := s.store.DeliveriesRequeue(r.Context(), meetsync.DeliveryRequeueParams{
		AppID: principalOf(r.Context()).AppID, EndpointID: r.PathValue("id"), Since: since, Now: s.now().UTC()})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.wakeDelivery()
	writeJSON(w, http.StatusAccepted, map[string]any{"requeued": n})
}

func (s *Server) wakeDelivery() {
	if s.cfg.Delivery != nil {
		s.cfg.Delivery.Wake()
	}
}
