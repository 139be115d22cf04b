package client

import (
	"context"
	"net/url"
	"strconv"
	"time"
)

// User is a user's current state (GET /v1/users/{id}).
type User struct {
	UserID  string      `json:"user_id"`
	Session UserSession `json:"session"`
	// Meeting is the user's meeting status: the most "in a meeting"
	// status among its devices, the newest winning ties.
	Meeting   Meeting   `json:"meeting"`
	LastSeq   int64     `json:"last_seq"`
	UpdatedAt time.Time `json:"updated_at"`
	Devices   []Device  `json:"devices,omitempty"`
}

// UserSession is the user's session: the business side and the meeting
// side (meetsync.SideLoggedOut, SidePending, SideLoggedIn, SideFailed,
// SideLoggingOut). ID, Deadline and Policy are set while a session is open.
type UserSession struct {
	ID       string     `json:"id,omitempty"`
	Business string     `json:"business"`
	Meeting  string     `json:"meeting"`
	Deadline *time.Time `json:"deadline,omitempty"`
	Policy   string     `json:"policy,omitempty"`
}

// Meeting is a meeting status with its reason, as the API shows it.
type Meeting struct {
	Status     string     `json:"status"`      // in_meeting
	Code       int        `json:"code"`        // meetsync.MeetingStatus
	SDKName    string     `json:"sdk_name"`    // MEETING_STATUS_INMEETING
	Reason     string     `json:"reason"`      // by_self
	ReasonCode int        `json:"reason_code"` // meetsync.Reason
	MeetingNum string     `json:"meeting_num,omitempty"`
	DeviceID   string     `json:"device_id,omitempty"`
	Since      *time.Time `json:"since,omitempty"`
}

// Device is what one device of a user last reported.
type Device struct {
	DeviceID      string    `json:"device_id"`
	LastClientSeq int64     `json:"last_client_seq"`
	Meeting       Meeting   `json:"meeting"`
	LastSeenAt    time.Time `json:"last_seen_at"`
}

// GetUser returns a user's state (GET /v1/users/{id}, app key). ENOTFOUND
// for a user meetsync has never heard of.
func (c *Client) GetUser(ctx context.Context, userID string) (*User, error) {
	var u User
	if err := c.do(ctx, request{method: "GET", path: "/v1/users/" + escape(userID), idempotent: true}, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// UserListParams selects a page of users.
type UserListParams struct {
	// Status keeps the users with this meeting status (in_meeting, 3, …).
	Status string
	// Limit is the most users of the page (1–1000, default 100).
	Limit int
	// Cursor is the Next of the previous page.
	Cursor string
}

// UserPage is one page of users, ordered by user id. Next is empty on the
// last page.
type UserPage struct {
	Users []User `json:"users"`
	Next  string `json:"next,omitempty"`
}

// ListUsers lists users (GET /v1/users, app key).
func (c *Client) ListUsers(ctx context.Context, p UserListParams) (*UserPage, error) {
	q := url.Values{}
	if p.Status != "" {
		q.Set("status", p.Status)
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Cursor != "" {
		q.Set("cursor", p.Cursor)
	}
	path := "/v1/users"
	if s := q.Encode(); s != "" {
		path += "?" + s
	}
	var out UserPage
	if err := c.do(ctx, request{method: "GET", path: path, idempotent: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
