package client

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/meetsync/meetsync"
)

// LoginRequest is the body of Login. Both fields are optional.
type LoginRequest struct {
	// DeviceID is the device that logs in (default "default").
	DeviceID    string `json:"device_id,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
}

// LoginResult is the answer of POST /v1/users/{user_id}/login: the session,
// the meeting credentials the device's SDK logs in with, and the client
// token the device uses for the /v1/client routes. It is secret (it holds
// the meeting token and the client token): never log it.
type LoginResult struct {
	SessionID string `json:"session_id"`
	// Business and MeetingSide are the session's sides
	// (meetsync.SideLoggedIn, SidePending…).
	Business    string `json:"business"`
	MeetingSide string `json:"meeting_side"`
	// Deadline is when an unfinished meeting login is resolved by the
	// app's session policy.
	Deadline time.Time `json:"deadline,omitzero"`
	// Meeting is nil when the platform could not be reached: the session
	// is pending, and the credentials can be fetched again
	// (ClientCredentials, or the same login call) until the deadline.
	Meeting     *meetsync.MeetingAccount `json:"meeting"`
	ClientToken string                   `json:"client_token"`
	ExpiresAt   time.Time                `json:"expires_at,omitzero"`

	// UserID and DeviceID are who logged in. The server's answer may leave
	// them out; Client.Login and APIBusiness fill them in. The Coordinator
	// keeps them with the events it queues, so that an event queued for
	// one user is never posted as another's.
	UserID   string `json:"user_id,omitempty"`
	DeviceID string `json:"device_id,omitempty"`
}

// Login tells meetsync that userID logged in to the business system and
// returns the meeting credentials and a client token for the device (POST
// /v1/users/{user_id}/login, app key). meetsync provisions the user's
// meeting account on first use. The call is idempotent while the session
// is open (a new client token each time), so it is retried after a
// failure. ECONFLICT while the user's session is logging out.
func (c *Client) Login(ctx context.Context, userID string, req LoginRequest) (*LoginResult, error) {
	var out LoginResult
	if err := c.do(ctx, request{method: "POST", path: "/v1/users/" + escape(userID) + "/login", body: req, idempotent: true}, &out); err != nil {
		return nil, err
	}
	if out.UserID == "" {
		out.UserID = userID
	}
	if out.DeviceID == "" {
		out.DeviceID = req.DeviceID
		if out.DeviceID == "" {
			out.DeviceID = "default"
		}
	}
	return &out, nil
}

// LogoutRequest is the body of Logout.
type LogoutRequest struct {
	Reason string `json:"reason,omitempty"`
}

// LogoutResult is the answer of Logout: the session is logging out until
// its devices confirm or Deadline passes.
type LogoutResult struct {
	SessionID string    `json:"session_id"`
	State     string    `json:"state"`
	Deadline  time.Time `json:"deadline,omitzero"`
}

// Logout tells meetsync that userID logged out of the business system
// (POST /v1/users/{user_id}/logout, app key): meetsync revokes the meeting
// credentials at the platform and pushes a logout command to the user's
// devices. ENOTFOUND when the user has no open session.
func (c *Client) Logout(ctx context.Context, userID string, req LogoutRequest) (*LogoutResult, error) {
	var out LogoutResult
	if err := c.do(ctx, request{method: "POST", path: "/v1/users/" + escape(userID) + "/logout", body: req}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Result is the outcome of one step on the device (an init, a meeting
// login, a command acted on): OK, or the SDK's error code and message.
type Result struct {
	OK      bool   `json:"ok"`
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// ResultOf returns the Result of an error: OK for nil, else the error's
// message and, if it has one (a Code() int method, as SDK errors do), its code.
func ResultOf(err error) Result {
	if err == nil {
		return Result{OK: true}
	}
	r := Result{Message: err.Error()}
	if len(r.Message) > 500 {
		r.Message = r.Message[:500]
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		r.Code = coded.Code()
	} else {
		r.Code = -1
	}
	return r
}

// InitReport is the body of ClientInit: how each system's init went.
type InitReport struct {
	Business Result `json:"business"`
	Meeting  Result `json:"meeting"`
}

// ClientInit reports the init results of the device (POST
// /v1/client/init, client token) and returns where the client.initialized
// event was stored (its id and the user's seq).
func (c *Client) ClientInit(ctx context.Context, r InitReport) (*EventResult, error) {
	var out struct {
		Event *EventResult `json:"event"`
	}
	if err := c.do(ctx, request{method: "POST", path: "/v1/client/init", body: r}, &out); err != nil {
		return nil, err
	}
	return out.Event, nil
}

// Session is a session as the client routes show it.
type Session struct {
	ID       string     `json:"id"`
	Business string     `json:"business"`
	Meeting  string     `json:"meeting"`
	Deadline *time.Time `json:"deadline,omitempty"`
	Policy   string     `json:"policy,omitempty"`
}

// ClientLogin reports the result of the meeting SDK's login on the device
// (POST /v1/client/login, client token) and returns the session. A
// success makes the session consistent; a failure is recorded and the
// device may try again until the deadline. Reporting the same result again
// is harmless, so the call is retried after a failure.
func (c *Client) ClientLogin(ctx context.Context, r Result) (*Session, error) {
	var out struct {
		Session *Session `json:"session"`
	}
	if err := c.do(ctx, request{method: "POST", path: "/v1/client/login", body: r, idempotent: true}, &out); err != nil {
		return nil, err
	}
	return out.Session, nil
}

// ClientCredentials returns the device's meeting credentials again (POST
// /v1/client/credentials, client token). refresh asks for a new token (after
// the SDK's onAuthInfoExpired); it is not retried, as each call makes
// another token.
func (c *Client) ClientCredentials(ctx context.Context, refresh bool) (*meetsync.MeetingAccount, error) {
	var out struct {
		Meeting *meetsync.MeetingAccount `json:"meeting"`
	}
	r := request{method: "POST", path: "/v1/client/credentials", body: map[string]bool{"refresh": refresh}, idempotent: !refresh}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	if out.Meeting == nil {
		return nil, meetsync.Errorf(meetsync.EUNAVAILABLE, "the meeting platform gave no credentials; try again")
	}
	return out.Meeting, nil
}

// Command types pushed to devices.
const (
	CommandLogout     = "logout"
	CommandInvitation = "invitation"
	// CommandInvitationCanceled: an invitation pushed before closed —
	// canceled, expired, answered on another device (or by the business
	// system), or joined elsewhere — and is to be taken off the screen;
	// data {"invitation_id","meeting_num","state","reason"}: state is the
	// invitation's state now (canceled, expired, accepted, rejected,
	// no_answer, joined), reason only when the change has one. The device
	// that answered, and one in the meeting joined, is not sent it
	// (docs/sessions.md).
	CommandInvitationCanceled = "invitation_canceled"
)

// Command is an instruction meetsync pushes to a device: CommandLogout,
// CommandInvitation or CommandInvitationCanceled. An unacknowledged
// command is sent again when the device reconnects.
type Command struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data,omitempty"`
	CreatedAt time.Time       `json:"created_at,omitzero"`
}

// Commands follows the device's commands (GET /v1/client/commands,
// client token, Server-Sent Events) and calls fn with each one; fn should
// act on it and then AckCommand. It reconnects after a failure with backoff
// (unacknowledged commands come again) and returns when ctx ends
// (ctx.Err()), when fn returns an error (that error), or on an error a
// reconnection cannot fix (EUNAUTHORIZED once the session ended).
func (c *Client) Commands(ctx context.Context, fn func(Command) error, opts ...StreamOption) error {
	return c.stream(ctx, "/v1/client/commands", "", func(m sseMessage) error {
		if m.Event != "" && m.Event != "command" {
			return nil
		}
		var cmd Command
		if err := json.Unmarshal([]byte(m.Data), &cmd); err != nil {
			return meetsync.Errorf(meetsync.EINTERNAL, "command stream: cannot decode a command: %v", err)
		}
		if cmd.ID == "" {
			cmd.ID = m.ID
		}
		return fn(cmd)
	}, opts)
}

// PendingCommands returns the device's unacknowledged commands at once
// (GET /v1/client/commands with Accept: application/json, client token).
func (c *Client) PendingCommands(ctx context.Context) ([]Command, error) {
	var out struct {
		Commands []Command `json:"commands"`
	}
	if err := c.do(ctx, request{method: "GET", path: "/v1/client/commands", idempotent: true}, &out); err != nil {
		return nil, err
	}
	return out.Commands, nil
}

// AckCommand acknowledges a command (POST /v1/client/commands/{id}/ack,
// client token) with the outcome of acting on it; it is not sent again.
// A failed Result (ResultOf the SDK's error) is kept with the command: the
// ack of a failed logout answers the logout, and session.logged_out lists
// the device under devices_failed with the code and message, not under
// devices_confirmed. Acknowledging twice is harmless (the first ack stays),
// so the call is retried after a failure.
func (c *Client) AckCommand(ctx context.Context, id string, r Result) error {
	return c.do(ctx, request{method: "POST", path: "/v1/client/commands/" + escape(id) + "/ack", body: r, idempotent: true}, nil)
}
