package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/session"
)

const clientKey ctxKey = 1

func clientOf(ctx context.Context) session.ClientAuth {
	c, _ := ctx.Value(clientKey).(session.ClientAuth)
	return c
}

var errClientUnauthorized = meetsync.Errorf(meetsync.EUNAUTHORIZED, "missing or invalid client token: send Authorization: Bearer mct_… (issued by POST /v1/users/{id}/login)")

// withClient wraps a handler that needs a client token (mct_…). It never
// logs the token.
func (s *Server) withClient(h http.HandlerFunc) http.HandlerFunc { return s.clientAuth(h, false) }

// withClientEnded is withClient for the command routes, which also take a
// token revoked when its session ended, for session.EndedCommandsGrace.
func (s *Server) withClientEnded(h http.HandlerFunc) http.HandlerFunc { return s.clientAuth(h, true) }

func (s *Server) clientAuth(h http.HandlerFunc, allowEnded bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authenticateClient(r, allowEnded)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meetsync"`)
			s.writeError(w, r, err)
			return
		}
		if !s.limit(s.clientLimits, w, r, c.AppID+"\x00"+c.UserID+"\x00"+c.DeviceID, "device") {
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), clientKey, c)))
	}
}

func (s *Server) authenticateClient(r *http.Request, allowEnded bool) (session.ClientAuth, error) {
	if s.cfg.Sessions == nil {
		return session.ClientAuth{}, errNoSessions
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !strings.HasPrefix(token, meetsync.ClientTokenPrefix) || len(token) > 128 {
		return session.ClientAuth{}, errClientUnauthorized
	}
	t, err := s.cfg.SessionStore.ClientTokenGetByHash(r.Context(), meetsync.HashSecret(token))
	if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
		return session.ClientAuth{}, errClientUnauthorized
	} else if err != nil {
		return session.ClientAuth{}, err
	}
	c := session.ClientAuth{AppID: t.AppID, UserID: t.UserID, DeviceID: t.DeviceID, SessionID: t.SessionID}
	if t.RevokedAt != nil {
		if allowEnded && s.now().Before(t.RevokedAt.Add(session.EndedCommandsGrace)) {
			c.Ended = true
			return c, nil
		}
		return session.ClientAuth{}, errTokenRevoked
	}
	if !s.now().Before(t.ExpiresAt) {
		return session.ClientAuth{}, meetsync.Errorf(meetsync.EUNAUTHORIZED, "this client token expired; log in again")
	}
	return c, nil
}

var errTokenRevoked = meetsync.Errorf(meetsync.EUNAUTHORIZED, "this client token was revoked: its session ended; log in again")

var errNoSessions = meetsync.Errorf(meetsync.EUNAVAILABLE, "sessions are not configured on this server")

func (s *Server) sessions(w http.ResponseWriter, r *http.Request) *session.Service {
	if s.cfg.Sessions == nil {
		s.writeError(w, r, errNoSessions)
	}
	return s.cfg.Sessions
}

// decodeOptionalJSON decodes a small JSON body strictly into v; an empty
// body leaves v as it is.
func decodeOptionalJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, meetsync.MaxBodyBytes))
	if err != nil {
		return jsonError(err, "")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := strictUnmarshal(body, v); err != nil {
		return jsonError(err, "")
	}
	return nil
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	svc := s.sessions(w, r)
	if svc == nil {
		return
	}
	var in session.LoginInput
	if err := decodeOptionalJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := svc.Login(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id"), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	svc := s.sessions(w, r)
	if svc == nil {
		return
	}
	var in struct {
		Reason string `json:"reason"`
	}
	if err := decodeOptionalJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := svc.Logout(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id"), in.Reason)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}

func (s *Server) handleClientInit(w http.ResponseWriter, r *http.Request) {
	var in session.InitInput
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.cfg.Sessions.ClientInit(r.Context(), clientOf(r.Context()), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"event": res})
}

func (s *Server) handleClientLogin(w http.ResponseWriter, r *http.Request) {
	var in session.LoginReport
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	sess, err := s.cfg.Sessions.ClientLogin(r.Context(), clientOf(r.Context()), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": renderSession(*sess)})
}

func (s *Server) handleClientCredentials(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Refresh bool `json:"refresh"`
	}
	if err := decodeOptionalJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	acct, err := s.cfg.Sessions.Credentials(r.Context(), clientOf(r.Context()), in.Refresh)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"meeting": acct})
}

func (s *Server) handleClientEvents(w http.ResponseWriter, r *http.Request) {
	c := clientOf(r.Context())
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, meetsync.MaxBodyBytes))
	if err != nil {
		s.writeError(w, r, jsonError(err, ""))
		return
	}
	req, err := s.prepareClientAppend(c, body, r.Header.Get("Idempotency-Key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.ingest.Append(r.Context(), req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Err != nil {
		s.writeError(w, r, req.Err)
		return
	}
	writeIngestResponse(w, req.Results)
}

// handleCommands serves a device's pending commands: as Server-Sent Events
// (unacknowledged commands are sent again on every connection), or, with
// Accept: application/json, as one JSON answer. Like the event stream, an
// open commands stream outlives a database outage: heartbeats go on and it
// reads again once the store answers.
func (s *Server) handleCommands(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c := clientOf(ctx)
	svc := s.cfg.Sessions
	asJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
	if c.Ended || asJSON {
		cmds, err := s.cfg.SessionStore.CommandList(ctx, c.AppID, c.UserID, c.DeviceID, true)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		cmds = ownCommands(c, cmds)
		if c.Ended && len(cmds) == 0 {
			// Nothing of its session left to fetch: refused like any
			// revoked token.
			s.writeError(w, r, errTokenRevoked)
			return
		}
		if asJSON {
			writeJSON(w, http.StatusOK, map[string]any{"commands": cmds})
			return
		}
	}
	rc, err := startSSE(w, "")
	if err != nil {
		return
	}
	heartbeat := time.NewTicker(s.cfg.StreamHeartbeat)
	defer heartbeat.Stop()
	sent := map[string]bool{}
	var buf bytes.Buffer
	var retry time.Duration // the pause before the next read while the store is unavailable; 0: it is not
	for {
		changed := svc.Commands.Wait()
		cmds, err := s.cfg.SessionStore.CommandList(ctx, c.AppID, c.UserID, c.DeviceID, true)
		if err != nil {
			// The database out of reach keeps the stream open, as it
			// does the event stream's (streamReadFailed).
			if !s.streamReadFailed(r, w, rc, heartbeat.C, changed, &retry, "commands stream: list", err) {
				return
			}
			continue
		}
		retry = 0
		cmds = ownCommands(c, cmds)
		buf.Reset()
		for _, cmd := range cmds {
			if sent[cmd.ID] {
				continue
			}
			b, _ := json.Marshal(cmd)
			buf.WriteString("event: command\nid: ")
			buf.WriteString(cmd.ID)
			buf.WriteString("\ndata: ")
			buf.Write(b)
			buf.WriteString("\n\n")
			sent[cmd.ID] = true
		}
		if buf.Len() > 0 {
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-changed: // a command made here, or on another replica (LISTEN/NOTIFY)
		case <-heartbeat.C:
			if keepAlive(w, rc) != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}

// ownCommands is the commands a device may see with its token: all of its
// pending ones, or with the token of an ended session that session's only.
func ownCommands(c session.ClientAuth, cmds []*meetsync.Command) []*meetsync.Command {
	out := make([]*meetsync.Command, 0, len(cmds))
	for _, cmd := range cmds {
		if !c.Ended || cmd.SessionID == c.SessionID {
			out = append(out, cmd)
		}
	}
	return out
}

func (s *Server) handleCommandAck(w http.ResponseWriter, r *http.Request) {
	var in session.AckInput
	if err := decodeOptionalJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if c := clientOf(r.Context()); c.Ended {
		// The token of an ended session acknowledges that session's
		// commands only.
		cmds, err := s.cfg.SessionStore.CommandList(r.Context(), c.AppID, c.UserID, c.DeviceID, false)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !slices.ContainsFunc(ownCommands(c, cmds), func(cmd *meetsync.Command) bool { return cmd.ID == r.PathValue("id") }) {
			s.writeError(w, r, errTokenRevoked)
			return
		}
	}
	if err := s.cfg.Sessions.AckCommand(r.Context(), clientOf(r.Context()), r.PathValue("id"), in); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleProviderCallback receives a meeting platform's callback, verified
// by the platform's own signature (not an API key).
func (s *Server) handleProviderCallback(w http.ResponseWriter, r *http.Request) {
	svc := s.sessions(w, r)
	if svc == nil {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, meetsync.MaxBodyBytes))
	if err != nil {
		s.writeError(w, r, jsonError(err, ""))
		return
	}
	res, err := svc.HandleCallback(r.Context(), r.PathValue("kind"), r.PathValue("app_id"), r.Header, body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// A repeat (the platform missed the first answer) gets the same
	// success, so it stops sending it; nothing new was stored.
	writeJSON(w, http.StatusOK, map[string]any{"code": 200, "msg": "ok", "events": res.Events, "duplicate": res.Duplicate})
}

type sessionJSON struct {
	ID            string     `json:"id,omitempty"`
	Business      string     `json:"business"`
	Meeting       string     `json:"meeting"`
	Policy        string     `json:"policy,omitempty"`
	Deadline      *time.Time `json:"deadline,omitempty"`
	Devices       []string   `json:"devices,omitempty"`
	StartedAt     *time.Time `json:"started_at,omitempty"`
	LoginAttempts int        `json:"login_attempts,omitempty"`
	RevokePending bool       `json:"revoke_pending,omitempty"`
}

func renderSession(s meetsync.Session) sessionJSON {
	j := sessionJSON{ID: s.ID, Business: s.Business, Meeting: s.Meeting, Policy: s.Policy, Devices: s.Devices,
		LoginAttempts: s.LoginAttempts, RevokePending: s.RevokePending}
	if j.Business == "" {
		j.Business = meetsync.SideLoggedOut
	}
	if j.Meeting == "" {
		j.Meeting = meetsync.SideLoggedOut
	}
	if !s.Deadline.IsZero() {
		d := s.Deadline
		j.Deadline = &d
	}
	if !s.StartedAt.IsZero() {
		t := s.StartedAt
		j.StartedAt = &t
	}
	return j
}

// appJSON is GET/PATCH /v1/app: the app with its settings (secrets write-only).
type appJSON struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	CreatedAt      time.Time         `json:"created_at"`
	Provider       providerJSON      `json:"provider"`
	SessionPolicy  string            `json:"session_policy"`
	LoginDeadline  meetsync.Duration `json:"login_deadline"`
	LogoutDeadline meetsync.Duration `json:"logout_deadline"`
	ClientTokenTTL meetsync.Duration `json:"client_token_ttl"`
	ReconcileGrace meetsync.Duration `json:"reconcile_grace"`
	Retention      meetsync.Duration `json:"retention"`
	// StrictEventTypes: see meetsync.AppSettings (docs/event-types.md).
	StrictEventTypes bool              `json:"strict_event_types"`
	Callbacks        map[string]string `json:"callback_paths,omitempty"`
}

type providerJSON struct {
	Kind         string `json:"kind"`
	AppKey       string `json:"app_key,omitempty"`
	BaseURL      string `json:"base_url,omitempty"`
	AppSecretSet bool   `json:"app_secret_set,omitempty"`
}

func renderApp(app *meetsync.App, set *meetsync.AppSettings) appJSON {
	return appJSON{ID: app.ID, Name: app.Name, CreatedAt: app.CreatedAt,
		Provider:      providerJSON{Kind: set.Provider.Kind, AppKey: set.Provider.AppKey, BaseURL: set.Provider.BaseURL, AppSecretSet: set.Provider.AppSecret != ""},
		SessionPolicy: set.SessionPolicy, LoginDeadline: set.LoginDeadline, LogoutDeadline: set.LogoutDeadline,
		ClientTokenTTL: set.ClientTokenTTL, ReconcileGrace: set.ReconcileGrace, Retention: set.Retention, StrictEventTypes: set.StrictEventTypes,
		Callbacks: map[string]string{set.Provider.Kind: "/v1/providers/" + set.Provider.Kind + "/callback/" + app.ID}}
}

func (s *Server) handleAppPatch(w http.ResponseWriter, r *http.Request) {
	if s.cfg.SessionStore == nil {
		s.writeError(w, r, errNoSessions)
		return
	}
	ctx := r.Context()
	appID := principalOf(ctx).AppID
	var in struct {
		Provider       *meetsync.ProviderConfig `json:"provider"`
		SessionPolicy  *string                  `json:"session_policy"`
		LoginDeadline  *meetsync.Duration       `json:"login_deadline"`
		LogoutDeadline *meetsync.Duration       `json:"logout_deadline"`
		ClientTokenTTL *meetsync.Duration       `json:"client_token_ttl"`
		ReconcileGrace *meetsync.Duration       `json:"reconcile_grace"`
		Retention      *meetsync.Duration       `json:"retention"`
		StrictTypes    *bool                    `json:"strict_event_types"`
	}
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	app, err := s.store.AppGet(ctx, appID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	set, err := s.cfg.SessionStore.AppSettingsGet(ctx, appID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if p := in.Provider; p != nil {
		if p.AppSecret == "" && p.Kind == set.Provider.Kind && p.AppKey == set.Provider.AppKey {
			p.AppSecret = set.Provider.AppSecret // write-only: keep the stored one
		}
		p.BaseURL = strings.TrimRight(p.BaseURL, "/")
		set.Provider = *p
	}
	if in.SessionPolicy != nil {
		set.SessionPolicy = *in.SessionPolicy
	}
	if in.StrictTypes != nil {
		set.StrictEventTypes = *in.StrictTypes
	}
	for _, f := range []struct {
		in  *meetsync.Duration
		dst *meetsync.Duration
	}{{in.LoginDeadline, &set.LoginDeadline}, {in.LogoutDeadline, &set.LogoutDeadline}, {in.ClientTokenTTL, &set.ClientTokenTTL}, {in.ReconcileGrace, &set.ReconcileGrace}, {in.Retention, &set.Retention}} {
		if f.in != nil { // absent or null: unchanged
			*f.dst = *f.in
		}
	}
	if err := set.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	set.Provider.AppSecret = s.cfg.Sealer.Seal(set.Provider.AppSecret)
	set.UpdatedAt = s.now().UTC()
	if err := s.cfg.SessionStore.AppSettingsPut(ctx, appID, set); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.typesChanged(appID)
	s.log.Info("app settings changed", "app_id", appID, "provider", set.Provider.Kind, "by_key_id", principalOf(ctx).KeyID)
	writeJSON(w, http.StatusOK, renderApp(app, set))
}
