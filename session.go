package meetsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Session policies: what meetsync does with a session whose meeting side
// is not logged in by its deadline (DESIGN §4.8).
const (
	PolicyRollback = "rollback" // tell the business system to log the user out
	PolicyDegrade  = "degrade"  // keep the business session; meetings unavailable
)

// Session is the paired login state of a user (DESIGN §3 Session). It is
// part of UserState and moves only through session.* events, in the same
// transaction as the event, so its history is the user's event log.
type Session struct {
	ID       string `json:"id,omitempty"`
	Business string `json:"business"` // SideLoggedOut | SideLoggedIn
	Meeting  string `json:"meeting"`  // SideLoggedOut | SidePending | SideLoggedIn | SideFailed | SideLoggingOut
	Policy   string `json:"policy,omitempty"`
	// LoginDeadline is the app's login_deadline when the meeting side's
	// login began (a login, or a failure report that gave a pending side
	// its deadline): the time a meeting side that goes back to pending on
	// session.auth_expired has to log in again (UserState.Apply). Zero in
	// a session stored before it was kept: the default login_deadline.
	LoginDeadline Duration `json:"login_deadline,omitempty"`
	// Deadline is when meetsync acts on the session next: a pending login
	// or logout is resolved, a failed platform revocation retried.
	Deadline time.Time `json:"deadline,omitzero"`
	// CheckAt, after a logout, is when the reconciler checks that the
	// meeting side really stopped (a device or the platform still showing
	// the user in a meeting gets a forced logout again).
	CheckAt time.Time `json:"check_at,omitzero"`
	// Devices are the devices that received a client token in this session.
	Devices       []string  `json:"devices,omitempty"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	LoginAttempts int       `json:"login_attempts,omitempty"`
	// RevokePending is set while the platform revocation of a logout has not
	// succeeded yet (the platform was unreachable); it is retried.
	RevokePending bool `json:"revoke_pending,omitempty"`
	// Version increases with every session change; writers compare it
	// (AppendRequest.ExpectSession) so concurrent changes cannot interleave.
	Version int64 `json:"version"`
}

// Open reports whether the session has a business side logged in or is
// still being logged out.
func (s *Session) Open() bool {
	return s.Business == SideLoggedIn || s.Meeting == SideLoggingOut
}

// HasDevice reports whether id received a client token in this session.
func (s *Session) HasDevice(id string) bool {
	for _, d := range s.Devices {
		if d == id {
			return true
		}
	}
	return false
}

// SessionExpectation makes an AppendRequest conditional on the session
// version of one user: if it differs, the request fails with ECONFLICT and
// has no effect.
type SessionExpectation struct {
	UserID  string
	Version int64
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
//
// A value that is not a string, or not a duration of 0 or more, is a
// *json.UnmarshalTypeError: encoding/json then names the field it was in
// (the API's error says which field, and what a duration looks like).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[Duration]()}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return &json.UnmarshalTypeError{Value: strconv.Quote(s), Type: reflect.TypeFor[Duration]()}
	}
	*d = Duration(v)
	return nil
}

// jsonKind names the kind of a JSON value for an error message.
func jsonKind(b []byte) string {
	switch b = bytes.TrimSpace(b); {
	case len(b) == 0:
		return "nothing"
	case b[0] == '{':
		return "an object"
	case b[0] == '[':
		return "an array"
	case b[0] == 't' || b[0] == 'f':
		return "a boolean"
	case b[0] == 'n':
		return "null"
	}
	return "the number " + string(b)
}

// AppSettings are an app's settings (GET/PATCH /v1/app).
type AppSettings struct {
	Provider       ProviderConfig `json:"provider"`
	SessionPolicy  string         `json:"session_policy"`
	LoginDeadline  Duration       `json:"login_deadline"`
	LogoutDeadline Duration       `json:"logout_deadline"`
	ClientTokenTTL Duration       `json:"client_token_ttl"`
	// Retention is how long events and delivery attempts are kept (0:
	// forever); older ones are purged in the background, payloads included.
	Retention Duration `json:"retention"`
	// ReconcileGrace is how long the platform's word that a user left a
	// meeting waits before it overrides a device that still says it is in one.
	ReconcileGrace Duration `json:"reconcile_grace"`
	// StrictEventTypes makes ingest refuse events of custom types that are
	// not registered (PUT /v1/event-types/{name}). Off by default: an
	// unregistered custom type is accepted unchecked.
	StrictEventTypes bool      `json:"strict_event_types,omitempty"`
	UpdatedAt        time.Time `json:"updated_at,omitzero"`
}

// DefaultAppSettings are the settings of a new app.
func DefaultAppSettings() AppSettings {
	return AppSettings{
		Provider:       ProviderConfig{Kind: ProviderSim},
		SessionPolicy:  PolicyRollback,
		LoginDeadline:  Duration(60 * time.Second),
		LogoutDeadline: Duration(30 * time.Second),
		ClientTokenTTL: Duration(24 * time.Hour),
		ReconcileGrace: Duration(30 * time.Second),
	}
}

// Validate checks settings, naming the field at fault.
func (s *AppSettings) Validate() error {
	switch s.Provider.Kind {
	case ProviderSim:
	case ProviderNetEase:
		if s.Provider.AppKey == "" {
			return FieldErrorf("provider.app_key", "app_key is required for the netease provider")
		}
		if s.Provider.AppSecret == "" {
			return FieldErrorf("provider.app_secret", "app_secret is required for the netease provider")
		}
		if s.Provider.BaseURL != "" && !strings.HasPrefix(s.Provider.BaseURL, "https://") && !strings.HasPrefix(s.Provider.BaseURL, "http://") {
			return FieldErrorf("provider.base_url", "base_url must be an http(s) URL")
		}
	default:
		return FieldErrorf("provider.kind", "unknown provider %q (accepted: sim, netease)", s.Provider.Kind)
	}
	if r := time.Duration(s.Retention); r != 0 && (r < time.Hour || r > 10*365*24*time.Hour) {
		return FieldErrorf("retention", "retention must be 0 (keep forever) or between 1h and 87600h")
	}
	if s.SessionPolicy != PolicyRollback && s.SessionPolicy != PolicyDegrade {
		return FieldErrorf("session_policy", "session_policy must be \"rollback\" or \"degrade\"")
	}
	for _, c := range []struct {
		name     string
		v        Duration
		min, max time.Duration
	}{
		{"login_deadline", s.LoginDeadline, time.Second, 24 * time.Hour},
		{"logout_deadline", s.LogoutDeadline, time.Second, 24 * time.Hour},
		{"client_token_ttl", s.ClientTokenTTL, time.Minute, 30 * 24 * time.Hour},
		{"reconcile_grace", s.ReconcileGrace, 0, time.Hour},
	} {
		if time.Duration(c.v) < c.min || time.Duration(c.v) > c.max {
			return FieldErrorf(c.name, "%s must be between %s and %s", c.name, c.min, c.max)
		}
	}
	return nil
}

// Purger deletes what an app's retention no longer keeps.
type Purger interface {
	// PurgeBefore deletes up to limit of an app's oldest events received
	// before `before` (with their finished deliveries and attempts, and
	// idempotency records older than before), never an event whose
	// delivery is still pending or failed, nor any after it. It returns the
	// number of events deleted.
	PurgeBefore(ctx context.Context, appID string, before time.Time, limit int) (int, error)
}

// StoredAccount is the meeting account of a business user as meetsync keeps it.
type StoredAccount struct {
	AppID     string
	UserID    string
	Provider  string
	AppKey    string // the platform app key the account belongs to
	UserUUID  string
	UserToken string // a secret
	CreatedAt time.Time
	UpdatedAt time.Time
}

// AccountUUID is the platform account id meetsync uses for a business
// user: stable, opaque, unique per (app, user) even when several apps
// share one platform app key, and valid on every platform.
func AccountUUID(appID, userID string) string {
	h := sha256.Sum256([]byte(appID + "\x00" + userID))
	return "ms" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:15]))
}

// ClientToken is a per-user, per-device token (mct_…) issued at login. Only
// its hash is stored.
type ClientToken struct {
	ID        string
	AppID     string
	UserID    string
	DeviceID  string
	SessionID string
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// NewClientToken returns a fresh token and its secret (shown once).
func NewClientToken(appID, userID, deviceID, sessionID string, now time.Time, ttl time.Duration) (*ClientToken, string) {
	secret := ClientTokenPrefix + randomToken(32)
	return &ClientToken{ID: NewID("tok"), AppID: appID, UserID: userID, DeviceID: deviceID, SessionID: sessionID,
		Hash: HashSecret(secret), CreatedAt: now, ExpiresAt: now.Add(ttl)}, secret
}

// Command kinds pushed to devices.
const (
	CommandLogout             = "logout"
	CommandInvitation         = "invitation"
	CommandInvitationCanceled = "invitation_canceled"
)

// Command is an instruction pushed to one device of a user
// (GET /v1/client/commands), kept until the device acknowledges it.
type Command struct {
	ID        string          `json:"id"`
	AppID     string          `json:"-"`
	UserID    string          `json:"user_id"`
	DeviceID  string          `json:"device_id"`
	SessionID string          `json:"session_id,omitempty"`
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"created_at"`
	AckedAt   *time.Time      `json:"acked_at,omitempty"`
	AckOK     bool            `json:"ack_ok,omitempty"`
	AckError  string          `json:"ack_error,omitempty"`
}

// SessionStore keeps what sessions need besides the event log: app
// settings, meeting accounts, client tokens and device commands. Both
// stores implement it with the same semantics as Store.
type SessionStore interface {
	// AppSettingsGet returns an app's settings (defaults if never set). ENOTFOUND (app).
	AppSettingsGet(ctx context.Context, appID string) (*AppSettings, error)
	// AppSettingsPut replaces an app's settings. ENOTFOUND (app).
	AppSettingsPut(ctx context.Context, appID string, s *AppSettings) error

	// AccountGet returns a user's meeting account. ENOTFOUND.
	AccountGet(ctx context.Context, appID, userID string) (*StoredAccount, error)
	// AccountByUUID returns the account with a platform id. ENOTFOUND.
	AccountByUUID(ctx context.Context, appID, provider, userUUID string) (*StoredAccount, error)
	// AccountPut inserts or replaces a user's meeting account.
	AccountPut(ctx context.Context, a *StoredAccount) error

	// ClientTokenCreate stores a client token.
	ClientTokenCreate(ctx context.Context, t *ClientToken) error
	// ClientTokenGetByHash returns a token by hash, revoked or not. ENOTFOUND.
	ClientTokenGetByHash(ctx context.Context, hash []byte) (*ClientToken, error)
	// ClientTokensRevoke revokes a user's tokens of one session ("" = all).
	ClientTokensRevoke(ctx context.Context, appID, userID, sessionID string, at time.Time) (int, error)

	// CommandsCreate stores commands; a command whose id exists is left as it is.
	CommandsCreate(ctx context.Context, cmds []*Command) error
	// CommandList returns a device's commands, oldest first (pending only if asked).
	CommandList(ctx context.Context, appID, userID, deviceID string, pendingOnly bool) ([]*Command, error)
	// CommandsForSession returns every command of a session, oldest first.
	CommandsForSession(ctx context.Context, appID, userID, sessionID string) ([]*Command, error)
	// CommandAck records a device's acknowledgement. ENOTFOUND; acking twice keeps the first.
	CommandAck(ctx context.Context, appID, userID, deviceID, id string, ok bool, errText string, at time.Time) (*Command, error)

	// UsersDue returns users whose DueAt has passed (any app), earliest first.
	UsersDue(ctx context.Context, now time.Time, limit int) ([]*UserState, error)
}

// NewServerEvent returns an event made by meetsync itself (sessions,
// platform callbacks, the reconciler), ready to append.
func NewServerEvent(appID, userID, typ, source string, data any, now time.Time) *Event {
	var raw json.RawMessage
	switch d := data.(type) {
	case nil:
		raw = json.RawMessage("{}")
	case json.RawMessage:
		raw = d
	default:
		raw = mustJSON(d)
	}
	return &Event{ID: NewID("evt"), Type: typ, AppID: appID, UserID: userID, OccurredAt: now, ReceivedAt: now, Source: source, Data: raw}
}

// NewStatusEvent returns a meeting.status_changed event made by meetsync
// (the reconciler) for one device of a user.
func NewStatusEvent(appID, userID, deviceID string, st MeetingStatus, reason Reason, meetingNum, source string, now time.Time) *Event {
	sd := &statusData{Status: st, Reason: reason, MeetingNum: meetingNum}
	data := map[string]any{"status": st.Name(), "status_code": int(st), "reason": reason.Name(), "reason_code": int(reason), "device_id": deviceID}
	if meetingNum != "" {
		data["meeting_num"] = meetingNum
	}
	ev := NewServerEvent(appID, userID, TypeMeetingStatusChanged, source, data, now)
	ev.DeviceID, ev.status = deviceID, sd
	return ev
}

// CheckUserID validates a business user id given in a path or body.
func CheckUserID(id, field string) error {
	if !validIdent(id, true) {
		return checkIdent(id, field, true)
	}
	if strings.HasPrefix(id, "@") {
		return FieldErrorf(field, "user ids starting with '@' are reserved for meetsync")
	}
	return nil
}

// CheckDeviceID validates a device id.
func CheckDeviceID(id, field string) error {
	if !validIdent(id, true) {
		return checkIdent(id, field, true)
	}
	return nil
}
