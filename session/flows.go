package session

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/meetsync/meetsync"
)

// LoginInput is the body of POST /v1/users/{id}/login.
type LoginInput struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name"`
}

// LoginResult is the answer of a login.
type LoginResult struct {
	UserID      string                   `json:"user_id"`
	DeviceID    string                   `json:"device_id"`
	SessionID   string                   `json:"session_id"`
	Business    string                   `json:"business"`
	MeetingSide string                   `json:"meeting_side"`
	Deadline    *time.Time               `json:"deadline,omitempty"`
	Meeting     *meetsync.MeetingAccount `json:"meeting"`
	// MeetingError says why Meeting is null (the platform was unreachable).
	MeetingError string    `json:"meeting_error,omitempty"`
	ClientToken  string    `json:"client_token"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// DefaultDeviceID is the device of a login that names none.
const DefaultDeviceID = "default"

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Login records that the business side of a user logged in, provisions the
// user's meeting account on first use and returns its credentials with a
// client token for the device. While the session is open it is idempotent:
// the same session comes back (with a new token for the device).
func (s *Service) Login(ctx context.Context, appID, userID string, in LoginInput) (*LoginResult, error) {
	if err := meetsync.CheckUserID(userID, "user_id"); err != nil {
		return nil, err
	}
	if in.DeviceID == "" {
		in.DeviceID = DefaultDeviceID
	}
	if err := meetsync.CheckDeviceID(in.DeviceID, "device_id"); err != nil {
		return nil, err
	}
	if len(in.DisplayName) > 128 {
		return nil, meetsync.FieldErrorf("display_name", "display_name must be at most 128 characters")
	}
	prov, set, err := s.Provider(ctx, appID)
	if err != nil {
		return nil, err
	}
	acct, provErr := s.account(ctx, prov, appID, userID, in.DisplayName)
	if provErr != nil && meetsync.ErrorCode(provErr) != meetsync.EUNAVAILABLE {
		return nil, provErr
	}
	var sess meetsync.Session
	err = retry(ctx, func() error {
		u, err := s.user(ctx, appID, userID)
		if err != nil {
			return err
		}
		now := s.now()
		cur := u.Session
		if cur.Meeting == meetsync.SideLoggingOut {
			return conflict("user %s is being logged out; log in again after the logout completes", userID)
		}
		next := cur
		changed := false
		if cur.Business != meetsync.SideLoggedIn {
			next = meetsync.Session{ID: meetsync.NewID("ses"), Business: meetsync.SideLoggedIn, Meeting: meetsync.SidePending,
				Policy: set.SessionPolicy, LoginDeadline: set.LoginDeadline, Deadline: now.Add(time.Duration(set.LoginDeadline)), StartedAt: now}
			changed = true
		} else if cur.Meeting != meetsync.SideLoggedIn && (cur.Meeting != meetsync.SidePending || cur.Deadline.IsZero()) {
			// Failed (degraded), kicked out, or pending without a deadline
			// (a session.auth_expired stored before it gave one): a new
			// business login is a new attempt at the meeting side, with its
			// deadline. A pending meeting side always has one.
			next.Meeting, next.Deadline, next.Policy = meetsync.SidePending, now.Add(time.Duration(set.LoginDeadline)), set.SessionPolicy
			next.LoginDeadline = set.LoginDeadline
			changed = true
		}
		if !next.HasDevice(in.DeviceID) {
			next.Devices = addDevice(next.Devices, in.DeviceID)
			changed = true
		}
		sess = next
		if !changed {
			return nil
		}
		data := map[string]any{"device_id": in.DeviceID, "provider": prov.Kind(), "meeting_credentials": acct != nil}
		if provErr != nil {
			data["meeting_error"] = meetsync.ErrorMessage(provErr)
		}
		if err := s.change(ctx, u, sessionEvent(u, meetsync.TypeSessionLoginStarted, next, data, now)); err != nil {
			return err
		}
		sess.Version = cur.Version + 1
		return nil
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	// The device's new token sees only this session's commands: what its
	// earlier sessions left pending (an unacknowledged logout of a forced
	// logout or a rollback) is superseded before the token exists.
	if err := s.supersedeOlder(ctx, appID, userID, in.DeviceID, sess.ID, now); err != nil {
		return nil, err
	}
	tok, secret := meetsync.NewClientToken(appID, userID, in.DeviceID, sess.ID, now, time.Duration(set.ClientTokenTTL))
	if err := s.cfg.Sessions.ClientTokenCreate(ctx, tok); err != nil {
		return nil, err
	}
	res := &LoginResult{UserID: userID, DeviceID: in.DeviceID, SessionID: sess.ID, Business: sess.Business, MeetingSide: sess.Meeting, ClientToken: secret, ExpiresAt: tok.ExpiresAt}
	if !sess.Deadline.IsZero() {
		d := sess.Deadline
		res.Deadline = &d
	}
	if acct != nil {
		res.Meeting = &meetsync.MeetingAccount{Provider: prov.Kind(), AppKey: acct.AppKey, UserUUID: acct.UserUUID, UserToken: acct.UserToken}
	} else {
		res.MeetingError = meetsync.ErrorMessage(provErr)
	}
	return res, nil
}

// account returns the user's meeting account, provisioning it at the
// platform on first use (a few attempts with backoff).
func (s *Service) account(ctx context.Context, prov meetsync.Provider, appID, userID, name string) (*meetsync.StoredAccount, error) {
	a, err := s.accountGet(ctx, appID, userID)
	if err == nil && a.Provider == prov.Kind() {
		return a, nil
	} else if err != nil && meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		return nil, err
	}
	if name == "" {
		name = userID
	}
	var acct *meetsync.MeetingAccount
	delay := 100 * time.Millisecond
	for i := 0; ; i++ {
		acct, err = prov.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: meetsync.AccountUUID(appID, userID), DisplayName: name})
		if err == nil || meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE || i+1 >= s.cfg.ProvisionAttempts {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay *= 3
	}
	if err != nil {
		s.log.Warn("meeting account provisioning failed", "app", appID, "user", userID, "provider", prov.Kind(), "err", meetsync.ErrorMessage(err))
		return nil, err
	}
	now := s.now()
	sa := &meetsync.StoredAccount{AppID: appID, UserID: userID, Provider: prov.Kind(), AppKey: acct.AppKey, UserUUID: acct.UserUUID, UserToken: acct.UserToken, CreatedAt: now, UpdatedAt: now}
	if err := s.accountPut(ctx, sa); err != nil {
		return nil, err
	}
	return sa, nil
}

// ClientAuth is an authenticated client token.
type ClientAuth struct {
	AppID, UserID, DeviceID, SessionID string
	// Ended: the token was revoked when its session ended, less than
	// EndedCommandsGrace ago. Only the command routes accept it, for the
	// commands of its own session (the logout a rollback or a logout sent).
	Ended bool
}

// EndedCommandsGrace is how long a device whose session ended (rolled back,
// logged out) may still fetch and acknowledge that session's commands with
// its revoked token: the logout command is how it learns to log the
// meeting SDK out.
const EndedCommandsGrace = time.Hour

// InitResult is one system's init result as a client reports it.
type InitResult struct {
	OK      bool   `json:"ok"`
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// InitInput is the body of POST /v1/client/init.
type InitInput struct {
	Business *InitResult `json:"business"`
	Meeting  *InitResult `json:"meeting"`
}

// ClientInit records a client's init results as a client.initialized event.
func (s *Service) ClientInit(ctx context.Context, c ClientAuth, in InitInput) (*meetsync.EventResult, error) {
	if in.Business == nil {
		return nil, meetsync.FieldErrorf("business", "business is required: the business system's init result {\"ok\":true}")
	}
	if in.Meeting == nil {
		return nil, meetsync.FieldErrorf("meeting", "meeting is required: the meeting SDK's init result {\"ok\":true}")
	}
	ev := meetsync.NewServerEvent(c.AppID, c.UserID, meetsync.TypeClientInitialized, meetsync.SourceClient,
		map[string]any{"business": in.Business, "meeting": in.Meeting, "session_id": c.SessionID, "device_id": c.DeviceID}, s.now())
	ev.DeviceID = c.DeviceID
	req := &meetsync.AppendRequest{AppID: c.AppID, Events: []*meetsync.Event{ev}}
	if err := s.cfg.Appender.Append(ctx, req); err != nil {
		return nil, err
	}
	return &req.Results[0], nil
}

// LoginReport is the body of POST /v1/client/login: the meeting SDK's login result.
type LoginReport struct {
	OK      *bool  `json:"ok"`
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// ClientLogin records the meeting login result of a device: success makes
// the session consistent (session.logged_in). A failure is
// session.login_failed; it moves the session only where a failed attempt
// means something:
//
//   - meeting side pending: it stays pending until its deadline (the
//     client may retry); one without a deadline (a session.auth_expired
//     stored before that gave the side a deadline too) gets the app's
//     login_deadline now, so session_policy resolves it;
//   - meeting side logged_in (another report, or another device, said it
//     logged in), failed (degraded) or logged_out (kicked out): recorded
//     only, with retrying false; the meeting side stays as it is. A
//     failure report carries no order (no client_seq): it cannot tell a
//     new failure from a late one, and a late report never moves the state
//     back (DESIGN §4.3). The SDK losing its login is reported by
//     session.kicked_out and session.auth_expired.
//
// So a pending meeting side always has a deadline.
func (s *Service) ClientLogin(ctx context.Context, c ClientAuth, in LoginReport) (*meetsync.Session, error) {
	if in.OK == nil {
		return nil, meetsync.FieldErrorf("ok", "ok is required: true if the meeting SDK logged in")
	}
	var out meetsync.Session
	err := retry(ctx, func() error {
		u, err := s.user(ctx, c.AppID, c.UserID)
		if err != nil {
			return err
		}
		cur := u.Session
		if cur.ID != c.SessionID || cur.Business != meetsync.SideLoggedIn {
			return conflict("session %s is no longer open", c.SessionID)
		}
		now := s.now()
		next := cur
		var ev *meetsync.Event
		if *in.OK {
			if cur.Meeting == meetsync.SideLoggedIn {
				out = cur
				return nil
			}
			next.Meeting, next.Deadline = meetsync.SideLoggedIn, time.Time{}
			ev = sessionEvent(u, meetsync.TypeSessionLoggedIn, next, map[string]any{"device_id": c.DeviceID}, now)
		} else {
			next.LoginAttempts++
			if next.Meeting == meetsync.SidePending && next.Deadline.IsZero() {
				set, err := s.cfg.Sessions.AppSettingsGet(ctx, c.AppID)
				if err != nil {
					return err
				}
				// (At the precision it is stored with, so the answer is the stored value.)
				next.Deadline, next.Policy = now.Add(time.Duration(set.LoginDeadline)).Truncate(time.Microsecond), set.SessionPolicy
				next.LoginDeadline = set.LoginDeadline
			}
			ev = sessionEvent(u, meetsync.TypeSessionLoginFailed, next, map[string]any{"device_id": c.DeviceID,
				"attempt": next.LoginAttempts, "code": in.Code, "message": in.Message,
				"retrying": next.Meeting == meetsync.SidePending}, now)
		}
		ev.DeviceID = c.DeviceID
		if err := s.change(ctx, u, ev); err != nil {
			return err
		}
		next.Version = cur.Version + 1
		out = next
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Credentials returns the meeting credentials of a client's user; refresh
// asks the platform for a new token (after onAuthInfoExpired).
func (s *Service) Credentials(ctx context.Context, c ClientAuth, refresh bool) (*meetsync.MeetingAccount, error) {
	u, err := s.user(ctx, c.AppID, c.UserID)
	if err != nil {
		return nil, err
	}
	if u.Session.ID != c.SessionID || u.Session.Business != meetsync.SideLoggedIn {
		// A session that ended or is logging out gets no credentials: they
		// would undo the logout's revocation at the platform.
		return nil, conflict("session %s is no longer open", c.SessionID)
	}
	prov, _, err := s.Provider(ctx, c.AppID)
	if err != nil {
		return nil, err
	}
	a, err := s.account(ctx, prov, c.AppID, c.UserID, "")
	if err != nil {
		return nil, err
	}
	if refresh {
		na, err := prov.RevokeToken(ctx, a.UserUUID)
		if err != nil {
			return nil, err
		}
		a.UserToken, a.UpdatedAt = na.UserToken, s.now()
		if na.AppKey != "" {
			a.AppKey = na.AppKey
		}
		if err := s.accountPut(ctx, a); err != nil {
			return nil, err
		}
	}
	return &meetsync.MeetingAccount{Provider: prov.Kind(), AppKey: a.AppKey, UserUUID: a.UserUUID, UserToken: a.UserToken}, nil
}

// LogoutResult is the answer of a logout.
type LogoutResult struct {
	SessionID       string    `json:"session_id"`
	State           string    `json:"state"`
	Deadline        time.Time `json:"deadline,omitzero"`
	PlatformRevoked bool      `json:"platform_revoked"`
}

// Logout logs a user out of both systems: the business side at once, the
// meeting side by revoking the platform credentials and telling each
// device of the session to log out; the session ends when every device
// confirmed or the logout deadline passed. ENOTFOUND if no session is open.
//
// The logout commands are pushed for the session as read, before it
// changes (a device's ack may come at once), and the change is
// conditional on the session version they were pushed for: a change in
// between (a device logged in, a report) makes the logout read the session
// again and push for what it is now, so every device it waits for was
// told; if the session it read ended and another began meanwhile, the
// logout is ECONFLICT and leaves the new one alone.
func (s *Service) Logout(ctx context.Context, appID, userID, reason string) (*LogoutResult, error) {
	if err := meetsync.CheckUserID(userID, "user_id"); err != nil {
		return nil, err
	}
	if len(reason) > 256 {
		return nil, meetsync.FieldErrorf("reason", "reason must be at most 256 characters")
	}
	prov, set, err := s.Provider(ctx, appID)
	if err != nil {
		return nil, err
	}
	var (
		res        *LogoutResult
		sessionID  string   // the session this logout is for (the first read)
		revokedFor []string // the devices of the session when the platform token was last revoked
		revoked    bool
		revokeErr  error
		now        time.Time
	)
	err = retry(ctx, func() error {
		u, err := s.user(ctx, appID, userID)
		if err != nil {
			return err
		}
		cur := u.Session
		if !cur.Open() {
			return meetsync.Errorf(meetsync.ENOTFOUND, "user %s has no open session", userID)
		}
		if sessionID == "" {
			sessionID = cur.ID
		} else if cur.ID != sessionID {
			return conflict("the session of user %s changed during the logout (%s ended, %s began); log out again to end the new one", userID, sessionID, cur.ID)
		}
		if cur.Meeting == meetsync.SideLoggingOut {
			res = &LogoutResult{SessionID: cur.ID, State: cur.Meeting, Deadline: cur.Deadline, PlatformRevoked: !cur.RevokePending}
			return nil
		}
		now = s.now()
		if err := s.pushCommands(ctx, u, cur.ID, cur.Devices, meetsync.CommandLogout,
			map[string]any{"session_id": cur.ID, "reason": reason}, now); err != nil {
			return err
		}
		// Revoke once, and again if a device joined the session since (it
		// may hold credentials issued after the revocation).
		if !revoked || slices.ContainsFunc(cur.Devices, func(d string) bool { return !slices.Contains(revokedFor, d) }) {
			revokeErr, revoked, revokedFor = s.revoke(ctx, prov, appID, userID), true, cur.Devices
		}
		now = s.now()
		next := cur
		next.Business, next.Meeting = meetsync.SideLoggedOut, meetsync.SideLoggingOut
		next.Deadline = now.Add(time.Duration(set.LogoutDeadline))
		next.RevokePending = revokeErr != nil
		data := map[string]any{"reason": reason, "devices": cur.Devices, "platform_revoked": revokeErr == nil}
		if revokeErr != nil {
			data["platform_error"] = meetsync.ErrorMessage(revokeErr)
		}
		evs := []*meetsync.Event{sessionEvent(u, meetsync.TypeSessionLogoutStarted, next, data, now)}
		if len(cur.Devices) == 0 {
			// No device to wait for: the logout is complete at once.
			done := s.loggedOut(next, set, now)
			evs = append(evs, sessionEvent(u, meetsync.TypeSessionLoggedOut, done,
				map[string]any{"forced": false, "devices_confirmed": []string{}, "platform_revoked": revokeErr == nil}, now))
			next = done
		}
		// Conditional on u's session version: the one the commands were
		// pushed for.
		if err := s.change(ctx, u, evs...); err != nil {
			return err
		}
		res = &LogoutResult{SessionID: next.ID, State: next.Meeting, Deadline: next.Deadline, PlatformRevoked: revokeErr == nil}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if now.IsZero() {
		now = s.now()
	}
	if res.State == meetsync.SideLoggedOut {
		if _, err := s.cfg.Sessions.ClientTokensRevoke(ctx, appID, userID, res.SessionID, now); err != nil {
			return nil, err
		}
	} else if err := s.finishLogout(ctx, appID, userID, res.SessionID, false); err != nil {
		// The devices may have acknowledged their commands (pushed before
		// the session changed) already: if all did, the logout is complete.
		return nil, err
	}
	s.Wake()
	return res, nil
}

// loggedOut is the session after its logout completed.
func (s *Service) loggedOut(cur meetsync.Session, set *meetsync.AppSettings, now time.Time) meetsync.Session {
	next := cur
	next.Business, next.Meeting, next.Deadline = meetsync.SideLoggedOut, meetsync.SideLoggedOut, time.Time{}
	if next.RevokePending {
		next.Deadline = now // retry the platform revocation
	}
	next.CheckAt = now.Add(time.Duration(set.ReconcileGrace))
	return next
}

// revoke invalidates the user's meeting token at the platform (a
// server-side logout of every device of the account) and keeps the new one.
func (s *Service) revoke(ctx context.Context, prov meetsync.Provider, appID, userID string) error {
	a, err := s.accountGet(ctx, appID, userID)
	if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
		return nil // never provisioned: nothing to revoke
	} else if err != nil {
		return err
	}
	na, err := prov.RevokeToken(ctx, a.UserUUID)
	s.recordPlatform(userKey(appID, userID), err, s.now())
	if err != nil {
		s.log.Warn("meeting token revocation failed", "app", appID, "user", userID, "err", meetsync.ErrorMessage(err))
		return err
	}
	a.UserToken, a.UpdatedAt = na.UserToken, s.now()
	if na.AppKey != "" {
		a.AppKey = na.AppKey
	}
	return s.accountPut(ctx, a)
}

// AckCommand records a device's acknowledgement of a command; the last
// logout ack of a session completes its logout.
func (s *Service) AckCommand(ctx context.Context, c ClientAuth, id string, in AckInput) error {
	ok, errText, err := in.outcome() // AckInput: commands.go
	if err != nil {
		return err
	}
	cmd, err := s.cfg.Sessions.CommandAck(ctx, c.AppID, c.UserID, c.DeviceID, id, ok, errText, s.now())
	if err != nil {
		return err
	}
	switch cmd.Type {
	case meetsync.CommandLogout:
		return s.finishLogout(ctx, c.AppID, c.UserID, cmd.SessionID, false)
	case meetsync.CommandInvitation:
		if id := meetsync.CommandInvitationID(cmd.Data); id != "" && ok {
			return s.markCalling(ctx, c.AppID, id)
		}
	}
	return nil
}

// finishLogout ends a logging-out session when every device confirmed, or
// when force is set (the deadline passed).
func (s *Service) finishLogout(ctx context.Context, appID, userID, sessionID string, force bool) error {
	_, set, err := s.Provider(ctx, appID)
	if err != nil {
		return err
	}
	var ended bool
	err = retry(ctx, func() error {
		u, err := s.user(ctx, appID, userID)
		if err != nil {
			return err
		}
		cur := u.Session
		if cur.ID != sessionID || cur.Meeting != meetsync.SideLoggingOut {
			return nil
		}
		cmds, err := s.cfg.Sessions.CommandsForSession(ctx, appID, userID, sessionID)
		if err != nil {
			return err
		}
		confirmed, failed, unconfirmed := logoutAnswers(cur.Devices, cmds)
		if len(unconfirmed) > 0 && !force {
			return nil
		}
		now := s.now()
		next := s.loggedOut(cur, set, now)
		data := map[string]any{"forced": len(unconfirmed) > 0, "devices_confirmed": confirmed, "platform_revoked": !cur.RevokePending}
		if len(unconfirmed) > 0 {
			data["devices_unconfirmed"] = unconfirmed
		}
		if len(failed) > 0 {
			data["devices_failed"] = failed
		}
		if err := s.change(ctx, u, sessionEvent(u, meetsync.TypeSessionLoggedOut, next, data, now)); err != nil {
			return err
		}
		ended = true
		return nil
	})
	if err != nil || !ended {
		return err
	}
	_, err = s.cfg.Sessions.ClientTokensRevoke(ctx, appID, userID, sessionID, s.now())
	return err
}
