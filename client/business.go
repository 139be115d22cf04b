package client

import (
	"context"

	"github.com/meetsync/meetsync"
)

// APIBusiness is a BusinessSystem backed directly by a Client with an app
// key: its Login is meetsync's POST /v1/users/{id}/login for UserID and
// DeviceID, its Logout meetsync's logout. It suits demos, tests, and apps
// whose backend is a thin proxy; a real app's backend logs its user in
// first and calls meetsync itself.
type APIBusiness struct {
	// Client has the app's API key.
	Client *Client
	// UserID is the business user who logs in.
	UserID string
	// DeviceID is this device (default "default").
	DeviceID string
	// DisplayName is the user's name on the meeting platform (optional).
	DisplayName string
	// LogoutReason is sent with the logout (optional).
	LogoutReason string
}

var _ BusinessSystem = (*APIBusiness)(nil)

// Init checks that meetsync answers and takes the key (GET /v1/app).
func (b *APIBusiness) Init(ctx context.Context) error {
	_, err := b.Client.GetApp(ctx)
	return err
}

// Login asks meetsync for the user's session (POST /v1/users/{id}/login).
func (b *APIBusiness) Login(ctx context.Context) (*LoginResult, error) {
	if b.UserID == "" {
		return nil, meetsync.FieldErrorf("UserID", "APIBusiness needs a UserID")
	}
	return b.Client.Login(ctx, b.UserID, LoginRequest{DeviceID: b.DeviceID, DisplayName: b.DisplayName})
}

// Logout ends the user's session (POST /v1/users/{id}/logout). A user
// without an open session (ENOTFOUND) is logged out already: nil.
func (b *APIBusiness) Logout(ctx context.Context) error {
	_, err := b.Client.Logout(ctx, b.UserID, LogoutRequest{Reason: b.LogoutReason})
	if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
		return nil
	}
	return err
}
