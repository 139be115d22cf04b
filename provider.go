package meetsync

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Provider kinds.
const (
	ProviderSim     = "sim"
	ProviderNetEase = "netease"
)

// Provider is the meeting-platform seam (DESIGN §5): what meetsync needs
// from NetEase Meeting or the built-in simulator. One Provider serves one
// app (it holds that app's platform credentials). Errors are *Error values:
// EUNAVAILABLE for a platform that cannot be reached or answered 5xx after
// the implementation's own retries (the caller may retry later),
// ENOTFOUND for an unknown account or meeting, EINVALID or EFORBIDDEN for
// a request the platform refused; never a secret in a message.
type Provider interface {
	// Kind returns ProviderSim or ProviderNetEase.
	Kind() string

	// EnsureAccount provisions the meeting account of a business user on
	// first use (NetEase add-user), or returns the existing account with
	// valid SDK credentials. It is idempotent: calling it again for the
	// same UserUUID never creates a second account.
	EnsureAccount(ctx context.Context, req AccountRequest) (*MeetingAccount, error)
	// RevokeToken invalidates the account's current SDK token (NetEase
	// refresh-user-token), which logs every device of that account out of
	// the platform, and returns the account with its replacement token.
	RevokeToken(ctx context.Context, userUUID string) (*MeetingAccount, error)
	// SetBanned bans (or unbans) an account: a banned account cannot log in.
	SetBanned(ctx context.Context, userUUID string, banned bool) error
	// LookupAccounts returns what the platform knows of these accounts
	// (NetEase batch-get-user), for reconciliation. Unknown accounts are
	// returned with Exists false.
	LookupAccounts(ctx context.Context, userUUIDs []string) ([]PlatformAccount, error)

	// CreateMeeting creates a meeting hosted by an account.
	CreateMeeting(ctx context.Context, req MeetingRequest) (*PlatformMeeting, error)
	// Meeting returns a meeting with its current members. ENOTFOUND.
	Meeting(ctx context.Context, meetingNum string) (*PlatformMeeting, error)
	// CancelMeeting cancels (ends) a meeting. ENOTFOUND.
	CancelMeeting(ctx context.Context, meetingNum string) error

	// VerifyCallback checks that a callback request really comes from the
	// platform (NetEase: CheckSum over AppSecret + MD5(body) + CurTime, the
	// MD5 header against the body, CurTime within the tolerance of now) and
	// translates it. EUNAUTHORIZED for a bad signature or stale time,
	// EINVALID for a body that cannot be parsed. A verified validation probe
	// (an empty body) returns a Callback with no events.
	VerifyCallback(header http.Header, body []byte, now time.Time) (*Callback, error)
}

// ProviderConfig is an app's meeting-platform setting (PATCH /v1/app).
// AppSecret is write-only: it is never returned by the API or logged.
type ProviderConfig struct {
	Kind      string `json:"kind"`
	AppKey    string `json:"app_key,omitempty"`
	AppSecret string `json:"app_secret,omitempty"`
	BaseURL   string `json:"base_url,omitempty"`
}

// AccountRequest asks for a business user's meeting account.
type AccountRequest struct {
	// UserUUID is the platform account id meetsync chose for the user
	// (see AccountUUID); it is stable for the user's lifetime.
	UserUUID    string
	DisplayName string
}

// MeetingAccount is a business user's account on the meeting platform with
// the credentials its SDK logs in with. UserToken is a secret.
type MeetingAccount struct {
	Provider  string `json:"provider"`
	AppKey    string `json:"app_key,omitempty"`
	UserUUID  string `json:"user_uuid"`
	UserToken string `json:"user_token"`
}

// PlatformAccount is what the platform knows of one account.
type PlatformAccount struct {
	UserUUID string `json:"user_uuid"`
	Exists   bool   `json:"exists"`
	Name     string `json:"name,omitempty"`
	Banned   bool   `json:"banned,omitempty"`
}

// MeetingRequest asks the platform for a meeting.
type MeetingRequest struct {
	HostUUID  string
	Subject   string
	Password  string
	StartTime time.Time
	EndTime   time.Time
}

// Meeting states as the platform reports them.
const (
	MeetingStateScheduled = "scheduled"
	MeetingStateStarted   = "started"
	MeetingStateEnded     = "ended"
	MeetingStateCanceled  = "canceled"
)

// PlatformMeeting is a meeting on the platform.
type PlatformMeeting struct {
	MeetingNum string    `json:"meeting_num"`
	MeetingID  string    `json:"meeting_id,omitempty"`
	Subject    string    `json:"subject,omitempty"`
	HostUUID   string    `json:"host_uuid,omitempty"`
	State      string    `json:"state"`
	Members    []string  `json:"members"` // user uuids currently in the meeting
	StartTime  time.Time `json:"start_time,omitzero"`
}

// ParseCallbackTime reads a callback's CurTime header: Unix milliseconds
// (what NetEase sends) or seconds; a number too large for seconds (from
// 1e11, the year 5138) is milliseconds. ok is false for anything else,
// and for a time after 9999-12-31.
func ParseCallbackTime(s string) (t time.Time, ok bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil || n <= 0 || n > 253402300799999:
		return time.Time{}, false
	case n >= 1e11:
		return time.UnixMilli(n), true
	}
	return time.Unix(n, 0), true
}

// CallbackSkew says how far t is from now, for a callback refused for its
// time. Beyond two days it counts days from the Unix seconds, where
// time.Sub would saturate at 292 years ("2562047h47m16.854775807s").
func CallbackSkew(now, t time.Time) string {
	secs := now.Unix() - t.Unix()
	if secs < 0 {
		secs = -secs
	}
	if secs < 2*24*3600 {
		return now.Sub(t).Abs().Round(time.Second).String()
	}
	return strconv.FormatInt(secs/(24*3600), 10) + " days"
}

// Callback is a verified platform callback, translated.
type Callback struct {
	// RequestID is the platform's id of the request; a repeat is processed once.
	RequestID string
	Events    []PlatformEvent
}

// PlatformEvent is one thing the platform reported, as a meetsync event
// of one of the meeting.* / invitation.* types (or meeting.platform_event
// for a type meetsync does not interpret).
type PlatformEvent struct {
	Type       string
	UserUUID   string // the account it concerns; "" for a meeting-level event
	MeetingNum string
	OccurredAt time.Time
	// Data is the event's data, including the platform's original payload
	// under "platform".
	Data json.RawMessage
}
