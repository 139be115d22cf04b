package client

import (
	"context"
	"net/url"
	"strconv"
	"strings"

	"github.com/meetsync/meetsync"
)

// InviteRequest is the body of CreateInvitations.
type InviteRequest struct {
	MeetingNum string   `json:"meeting_num"`
	Inviter    string   `json:"inviter"`
	Invitees   []string `json:"invitees"`
	Subject    string   `json:"subject,omitempty"`
	Password   string   `json:"password,omitempty"`
	// ExpiresIn is how long the invitation stays open (default 2 min).
	ExpiresIn Duration `json:"expires_in,omitempty"`
}

// CreateInvitations invites users to a meeting, one invitation per
// invitee (POST /v1/invitations, app key).
func (c *Client) CreateInvitations(ctx context.Context, r InviteRequest) ([]meetsync.Invitation, error) {
	var out struct {
		Invitations []meetsync.Invitation `json:"invitations"`
	}
	if err := c.do(ctx, request{method: "POST", path: "/v1/invitations", body: r}, &out); err != nil {
		return nil, err
	}
	return out.Invitations, nil
}

// GetInvitation returns one invitation (app key).
func (c *Client) GetInvitation(ctx context.Context, id string) (*meetsync.Invitation, error) {
	var v meetsync.Invitation
	if err := c.do(ctx, request{method: "GET", path: "/v1/invitations/" + escape(id), idempotent: true}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// InvitationListParams filters ListInvitations.
type InvitationListParams struct {
	UserID string // as inviter or invitee
	State  string
	Cursor string
	Limit  int
}

// ListInvitations lists invitations, newest first: the app's with an app
// key, the user's own with a client token. It returns the next cursor ("" at the end).
func (c *Client) ListInvitations(ctx context.Context, p InvitationListParams) ([]meetsync.Invitation, string, error) {
	q := url.Values{}
	if p.UserID != "" {
		q.Set("user_id", p.UserID)
	}
	if p.State != "" {
		q.Set("state", p.State)
	}
	if p.Cursor != "" {
		q.Set("cursor", p.Cursor)
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	path := "/v1/invitations"
	if strings.HasPrefix(c.token, meetsync.ClientTokenPrefix) {
		path = "/v1/client/invitations"
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Invitations []meetsync.Invitation `json:"invitations"`
		Next        string                `json:"next"`
	}
	if err := c.do(ctx, request{method: "GET", path: path, idempotent: true}, &out); err != nil {
		return nil, "", err
	}
	return out.Invitations, out.Next, nil
}

// AnswerInvitation accepts, rejects or cancels an invitation (action
// "accept", "reject" or "cancel"): with an app key for any invitation, with
// a client token as its invitee (accept, reject) or inviter (cancel).
// Answering again with the same action is harmless; only an unanswered
// invitation (waiting_call, calling) takes another action: rejecting or
// cancelling an accepted one, accepting a rejected one, or anything on a
// canceled, expired or joined one is ECONFLICT. The invitee's other devices
// are told with an invitation_canceled command (docs/sessions.md).
func (c *Client) AnswerInvitation(ctx context.Context, id, action, reason string) (*meetsync.Invitation, error) {
	path := "/v1/invitations/"
	if strings.HasPrefix(c.token, meetsync.ClientTokenPrefix) {
		path = "/v1/client/invitations/"
	}
	var body any
	if reason != "" {
		body = map[string]string{"reason": reason}
	}
	var v meetsync.Invitation
	if err := c.do(ctx, request{method: "POST", path: path + escape(id) + "/" + escape(action), body: body, idempotent: true}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}
