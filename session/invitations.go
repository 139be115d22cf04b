package session

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/meetsync/meetsync"
)

// Invitation limits and defaults.
const (
	DefaultInviteExpiry = 2 * time.Minute
	MaxInviteExpiry     = 24 * time.Hour
	MaxInvitees         = 100
)

// InviteInput is the body of POST /v1/invitations.
type InviteInput struct {
	MeetingNum string            `json:"meeting_num"`
	Inviter    string            `json:"inviter"`
	Invitees   []string          `json:"invitees"`
	Subject    string            `json:"subject"`
	Password   string            `json:"password"`
	ExpiresIn  meetsync.Duration `json:"expires_in"`
}

// MaxMeetingNumLen is the longest meeting number an invitation takes.
const MaxMeetingNumLen = 64

// checkMeetingNum checks the meeting number of an invitation: the
// platform's number of the meeting, digits only (NetEase Meeting numbers,
// such as 123456789; the sim's are 9 digits).
func checkMeetingNum(num string) error {
	if num == "" {
		return meetsync.FieldErrorf("meeting_num", "meeting_num is required: the meeting's number, digits only (such as 123456789)")
	}
	if len(num) > MaxMeetingNumLen {
		return meetsync.FieldErrorf("meeting_num", "meeting_num must be at most %d digits", MaxMeetingNumLen)
	}
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return meetsync.FieldErrorf("meeting_num", "meeting_num %q is not a meeting number: digits only (such as 123456789)", num)
		}
	}
	return nil
}

// Actor is who acts on an invitation: the app (API key, any invitation)
// or a client token's user (only its own side of an invitation).
type Actor struct {
	AppID    string
	UserID   string // "" for the app
	DeviceID string // the client token's device ("" for the app)
}

// device is the invitee's device that answers inv ("" when the actor is
// the app or not the invitee).
func (a Actor) device(inv *meetsync.Invitation) string {
	if a.UserID == "" || a.UserID != inv.Invitee {
		return ""
	}
	return a.DeviceID
}

func (a Actor) source() string {
	if a.UserID != "" {
		return meetsync.SourceClient
	}
	return meetsync.SourceBusiness
}

func invitationData(inv *meetsync.Invitation, extra map[string]any) map[string]any {
	d := map[string]any{"invitation_id": inv.ID, "group_id": inv.GroupID, "meeting_num": inv.MeetingNum, "inviter": inv.Inviter,
		"invitee": inv.Invitee, "state": inv.State, "expires_at": inv.ExpiresAt, "has_password": inv.Password != "", "source": inv.Source}
	if inv.Subject != "" {
		d["subject"] = inv.Subject
	}
	if inv.Reason != "" {
		d["reason"] = inv.Reason
	}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// invitationEvent is the invitee's event for an invitation change; the
// change is written with it. by is who made the change (the event's
// source; "" is system); the data's source stays the invitation's own,
// who created it (meetsync.Invitation.Source).
func invitationEvent(inv *meetsync.Invitation, typ, by string, extra map[string]any, now time.Time) *meetsync.Event {
	if by == "" {
		by = meetsync.SourceSystem
	}
	ev := meetsync.NewServerEvent(inv.AppID, inv.Invitee, typ, by, invitationData(inv, extra), now)
	c := *inv
	ev.Effects = &meetsync.EventEffects{Invitation: &c}
	return ev
}

// Invite creates one invitation per invitee: an invitation.created event
// for each (delivered to the business system's endpoints, so it can notify
// through its own channels) and an invitation command to each invitee's
// logged-in devices.
func (s *Service) Invite(ctx context.Context, a Actor, in InviteInput) ([]*meetsync.Invitation, error) {
	if err := checkMeetingNum(in.MeetingNum); err != nil {
		return nil, err
	}
	if a.UserID != "" {
		if in.Inviter != "" && in.Inviter != a.UserID {
			return nil, &meetsync.Error{Code: meetsync.EFORBIDDEN, Message: "a client token can only invite as its own user", Field: "inviter"}
		}
		in.Inviter = a.UserID
	}
	if err := meetsync.CheckUserID(in.Inviter, "inviter"); err != nil {
		return nil, err
	}
	if len(in.Invitees) == 0 || len(in.Invitees) > MaxInvitees {
		return nil, meetsync.FieldErrorf("invitees", "invitees must list 1 to %d user ids", MaxInvitees)
	}
	if len(in.Subject) > 256 {
		return nil, meetsync.FieldErrorf("subject", "subject must be at most 256 characters")
	}
	if len(in.Password) > 64 {
		return nil, meetsync.FieldErrorf("password", "password must be at most 64 characters")
	}
	exp := time.Duration(in.ExpiresIn)
	if exp == 0 {
		exp = DefaultInviteExpiry
	}
	if exp < time.Second || exp > MaxInviteExpiry {
		return nil, meetsync.FieldErrorf("expires_in", "expires_in must be between 1s and %s (left out or 0s: %s)", MaxInviteExpiry, DefaultInviteExpiry)
	}
	seen := map[string]bool{}
	users := make([]*meetsync.UserState, 0, len(in.Invitees))
	for i, id := range in.Invitees {
		field := "invitees[" + strconv.Itoa(i) + "]"
		if err := meetsync.CheckUserID(id, field); err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, meetsync.FieldErrorf(field, "invitee %s is listed twice", id)
		}
		if id == in.Inviter {
			return nil, meetsync.FieldErrorf(field, "the inviter cannot invite itself")
		}
		seen[id] = true
		u, err := s.cfg.Store.UserGet(ctx, a.AppID, id)
		if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
			return nil, &meetsync.Error{Code: meetsync.ENOTFOUND, Message: "unknown invitee " + id + ": meetsync has never seen this user of the app", Field: field}
		} else if err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	now := s.now()
	group := meetsync.NewID("grp")
	invs := make([]*meetsync.Invitation, 0, len(users))
	req := &meetsync.AppendRequest{AppID: a.AppID}
	for _, u := range users {
		inv := &meetsync.Invitation{ID: meetsync.NewID("inv"), AppID: a.AppID, GroupID: group, MeetingNum: in.MeetingNum, Inviter: in.Inviter,
			Invitee: u.UserID, Subject: in.Subject, Password: in.Password, State: meetsync.InviteWaitingCall, Source: a.source(),
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(exp), Version: 1}
		invs = append(invs, inv)
		req.Events = append(req.Events, invitationEvent(inv, meetsync.TypeInvitationCreated, inv.Source, nil, now))
	}
	if err := s.cfg.Appender.Append(ctx, req); err != nil {
		return nil, err
	}
	for i, inv := range invs {
		if err := s.pushInvitation(ctx, users[i], inv, now); err != nil {
			s.log.Warn("invitation command not pushed", "app", a.AppID, "invitation", inv.ID, "err", err)
		}
	}
	s.Wake()
	return invs, nil
}

// pushInvitation tells the invitee's logged-in devices.
func (s *Service) pushInvitation(ctx context.Context, u *meetsync.UserState, inv *meetsync.Invitation, now time.Time) error {
	if !u.Session.Open() || len(u.Session.Devices) == 0 {
		return nil
	}
	data := invitationData(inv, nil)
	if inv.Password != "" {
		data["password"] = inv.Password
	}
	return s.pushCommands(ctx, u, inv.ID, u.Session.Devices, meetsync.CommandInvitation, data, now)
}

// transition moves an invitation to state (read, check, write with its
// event, compare-and-set on its version; a lost race is read again).
// source is who makes the change: the event's source. The invitation's
// own Source (who created it) does not change, so the answer, a repeat
// of it and GET all show the invitation as stored. changed says whether
// this call wrote the change (not when check found nothing to do).
func (s *Service) transition(ctx context.Context, appID, id string, check func(inv *meetsync.Invitation, now time.Time) (state, typ string, err error), reason, source string) (out *meetsync.Invitation, changed bool, err error) {
	err = retry(ctx, func() error {
		inv, err := s.invitations().InvitationGet(ctx, appID, id)
		if err != nil {
			return err
		}
		now := s.now()
		state, typ, err := check(inv, now)
		if err != nil || state == "" {
			out, changed = inv, false
			return err
		}
		next := *inv
		next.State, next.Reason, next.UpdatedAt, next.Version = state, reason, now, inv.Version+1
		req := &meetsync.AppendRequest{AppID: appID, Events: []*meetsync.Event{invitationEvent(&next, typ, source, nil, now)}}
		if err := appendChange(ctx, s.cfg.Appender, req); err != nil {
			return err
		}
		out, changed = &next, true
		return nil
	})
	return out, changed, err
}

func (s *Service) invitations() meetsync.InvitationStore {
	return s.cfg.Invitations
}

// closedError explains why an invitation cannot change any more.
func closedError(inv *meetsync.Invitation, now time.Time) error {
	if inv.State == meetsync.InviteExpired || (meetsync.InviteOpen(inv.State) && !now.Before(inv.ExpiresAt)) {
		return meetsync.Errorf(meetsync.ECONFLICT, "invitation %s expired at %s", inv.ID, inv.ExpiresAt.Format(time.RFC3339))
	}
	return meetsync.Errorf(meetsync.ECONFLICT, "invitation %s is %s and cannot change any more", inv.ID, inv.State)
}

// Accept accepts an invitation (the app, or the invitee's client token)
// and tells the invitee's other devices (tellClosed).
func (s *Service) Accept(ctx context.Context, a Actor, id string) (*meetsync.Invitation, error) {
	inv, changed, err := s.transition(ctx, a.AppID, id, func(inv *meetsync.Invitation, now time.Time) (string, string, error) {
		if a.UserID != "" && a.UserID != inv.Invitee {
			return "", "", meetsync.Errorf(meetsync.EFORBIDDEN, "only the invitee can accept invitation %s", inv.ID)
		}
		if inv.State == meetsync.InviteAccepted {
			return "", "", nil // already accepted: idempotent
		}
		if !meetsync.InviteUnanswered(inv.State) || !now.Before(inv.ExpiresAt) {
			return "", "", closedError(inv, now)
		}
		return meetsync.InviteAccepted, meetsync.TypeInvitationAccepted, nil
	}, "", a.source())
	if err != nil {
		return nil, err
	}
	if changed {
		s.tellClosed(ctx, inv, a.device(inv))
	}
	return inv, nil
}

// Reject rejects an invitation; reason "no_answer" records that the
// device rang out (state no_answer). An invitation answered otherwise
// (accepted) or closed is ECONFLICT; rejecting again is harmless. The
// invitee's other devices are told (tellClosed).
func (s *Service) Reject(ctx context.Context, a Actor, id, reason string) (*meetsync.Invitation, error) {
	if len(reason) > 256 {
		return nil, meetsync.FieldErrorf("reason", "reason must be at most 256 characters")
	}
	inv, changed, err := s.transition(ctx, a.AppID, id, func(inv *meetsync.Invitation, now time.Time) (string, string, error) {
		if a.UserID != "" && a.UserID != inv.Invitee {
			return "", "", meetsync.Errorf(meetsync.EFORBIDDEN, "only the invitee can reject invitation %s", inv.ID)
		}
		if inv.State == meetsync.InviteRejected || inv.State == meetsync.InviteNoAnswer {
			return "", "", nil // already rejected: idempotent
		}
		if !meetsync.InviteUnanswered(inv.State) || !now.Before(inv.ExpiresAt) {
			return "", "", closedError(inv, now)
		}
		if reason == meetsync.InviteNoAnswer {
			return meetsync.InviteNoAnswer, meetsync.TypeInvitationRejected, nil
		}
		return meetsync.InviteRejected, meetsync.TypeInvitationRejected, nil
	}, reason, a.source())
	if err != nil {
		return nil, err
	}
	if changed {
		s.tellClosed(ctx, inv, a.device(inv))
	}
	return inv, nil
}

// Cancel cancels an invitation (the app, or the inviter's client token)
// and tells the invitee's devices (tellClosed). An invitation answered
// (accepted, rejected) or closed otherwise is ECONFLICT; canceling again
// is harmless.
func (s *Service) Cancel(ctx context.Context, a Actor, id, reason string) (*meetsync.Invitation, error) {
	if len(reason) > 256 {
		return nil, meetsync.FieldErrorf("reason", "reason must be at most 256 characters")
	}
	inv, changed, err := s.transition(ctx, a.AppID, id, func(inv *meetsync.Invitation, now time.Time) (string, string, error) {
		if a.UserID != "" && a.UserID != inv.Inviter {
			return "", "", meetsync.Errorf(meetsync.EFORBIDDEN, "only the inviter can cancel invitation %s", inv.ID)
		}
		if inv.State == meetsync.InviteCanceled {
			return "", "", nil // already canceled: idempotent
		}
		if !meetsync.InviteUnanswered(inv.State) {
			return "", "", closedError(inv, now)
		}
		return meetsync.InviteCanceled, meetsync.TypeInvitationCanceled, nil
	}, reason, a.source())
	if err != nil {
		return nil, err
	}
	if changed {
		s.tellClosed(ctx, inv)
	}
	return inv, nil
}

// supersededNote is the ack error of an invitation command meetsync
// resolved because its invitation closed.
func supersededNote(inv *meetsync.Invitation) string {
	return "superseded: invitation " + inv.ID + " is " + inv.State
}

// tellClosed settles what the invitee's devices hold of an invitation
// that just closed (accepted, rejected, no_answer, canceled, expired,
// joined): its invitation commands still pending on any device are
// resolved (supersede), and every device of the invitee's open session
// but those in except (the one that answered; those in the meeting it
// joined) gets an invitation_canceled command (invitation_id, meeting_num,
// state, reason) to take it off the screen. Command ids are per
// invitation, device and kind, so a device is told once however often the
// invitation changes afterwards. Failures are logged: the change itself
// is committed.
func (s *Service) tellClosed(ctx context.Context, inv *meetsync.Invitation, except ...string) {
	s.supersede(ctx, inv)
	u, err := s.user(ctx, inv.AppID, inv.Invitee)
	if err != nil || !u.Session.Open() {
		return
	}
	devices := make([]string, 0, len(u.Session.Devices))
	for _, d := range u.Session.Devices {
		if !slices.Contains(except, d) {
			devices = append(devices, d)
		}
	}
	data := map[string]any{"invitation_id": inv.ID, "meeting_num": inv.MeetingNum, "state": inv.State}
	if inv.Reason != "" {
		data["reason"] = inv.Reason
	}
	if err := s.pushCommands(ctx, u, inv.ID, devices, meetsync.CommandInvitationCanceled, data, s.now()); err != nil {
		s.log.Warn("invitation_canceled command not pushed", "app", inv.AppID, "invitation", inv.ID, "err", err)
	}
}

// supersede resolves the invitation commands of a closed invitation still
// pending on any device of its invitee (acknowledged by meetsync, not ok,
// "superseded: …"), so no device is given them again.
func (s *Service) supersede(ctx context.Context, inv *meetsync.Invitation) {
	if _, err := s.invitations().InvitationCommandsSupersede(ctx, inv.AppID, inv.Invitee, inv.ID, supersededNote(inv), s.now()); err != nil {
		s.log.Warn("pending invitation commands not superseded", "app", inv.AppID, "invitation", inv.ID, "err", err)
	}
}

// markCalling records that a device of the invitee received the
// invitation (it acknowledged the invitation command: the change is the
// client's).
func (s *Service) markCalling(ctx context.Context, appID, id string) error {
	_, _, err := s.transition(ctx, appID, id, func(inv *meetsync.Invitation, now time.Time) (string, string, error) {
		if inv.State != meetsync.InviteWaitingCall || !now.Before(inv.ExpiresAt) {
			return "", "", nil
		}
		return meetsync.InviteCalling, meetsync.TypeInvitationCalling, nil
	}, "", meetsync.SourceClient)
	return err
}

// settleInvitations expires a user's overdue invitations and completes
// those whose meeting the user joined.
func (s *Service) settleInvitations(ctx context.Context, u *meetsync.UserState, now time.Time) error {
	joined := map[string]bool{}
	if u.JoinedInvitedMeeting() {
		if u.Status.Active() {
			joined[u.MeetingNum] = true
		}
		if u.Platform.InMeeting {
			joined[u.Platform.MeetingNum] = true
		}
	}
	for _, r := range u.Invites {
		var err error
		switch {
		case joined[r.MeetingNum]:
			var prev string
			inv, changed, terr := s.transition(ctx, u.AppID, r.ID, func(inv *meetsync.Invitation, now time.Time) (string, string, error) {
				if !meetsync.InviteOpen(inv.State) {
					return "", "", nil
				}
				prev = inv.State
				return meetsync.InviteJoined, meetsync.TypeInvitationJoined, nil
			}, "", meetsync.SourceSystem)
			switch err = terr; {
			case err != nil || !changed:
			case prev == meetsync.InviteAccepted:
				// The other devices were told at the acceptance; the one
				// that accepted is in the meeting.
				s.supersede(ctx, inv)
			default:
				// Joined without an answer: the devices in the meeting
				// know; the others stop ringing.
				var in []string
				for _, d := range u.Devices {
					if d.Status.Active() && d.MeetingNum == r.MeetingNum {
						in = append(in, d.DeviceID)
					}
				}
				s.tellClosed(ctx, inv, in...)
			}
		case !now.Before(r.ExpiresAt):
			// The event is invitation.expired; the devices get the same
			// invitation_canceled command as for a cancellation, with
			// state "expired" (docs/sessions.md).
			inv, changed, terr := s.transition(ctx, u.AppID, r.ID, func(inv *meetsync.Invitation, now time.Time) (string, string, error) {
				if !meetsync.InviteOpen(inv.State) || now.Before(inv.ExpiresAt) {
					return "", "", nil
				}
				return meetsync.InviteExpired, meetsync.TypeInvitationExpired, nil
			}, "", meetsync.SourceSystem)
			if err = terr; err == nil && changed {
				s.tellClosed(ctx, inv)
			}
		}
		if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
			err = nil // a reference to a row that is gone
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// platformInvitation turns the platform's invite callbacks into
// invitation events: MEETING_MEMBER_INVITE creates an invitation (source
// platform; HandleCallback pushes its invitation command to the invitee's
// devices, as Invite does), MEETING_MEMBER_INVITE_CANCEL cancels the
// invitee's unanswered invitations to that meeting (an accepted one is
// answered and stays, as Cancel would leave it; HandleCallback tells the
// devices of those it cancels). Events made by the platform have source
// platform; a canceled invitation keeps its own source (who created it).
// ok is false for an invite of an account meetsync does not know,
// or a cancel that finds nothing to cancel (stored as a plain platform
// event instead).
func (s *Service) platformInvitation(ctx context.Context, appID, kind string, pe meetsync.PlatformEvent, userID string, now time.Time) ([]*meetsync.Event, bool, error) {
	if userID == meetsync.SystemUserID || pe.MeetingNum == "" {
		return nil, false, nil
	}
	var d struct {
		InviterUUID string `json:"inviter_uuid"`
	}
	_ = json.Unmarshal(pe.Data, &d)
	inviter := meetsync.SystemUserID
	if d.InviterUUID != "" {
		if a, err := s.cfg.Sessions.AccountByUUID(ctx, appID, kind, d.InviterUUID); err == nil {
			inviter = a.UserID
		}
	}
	switch pe.Type {
	case meetsync.TypeInvitationCreated:
		inv := &meetsync.Invitation{ID: meetsync.NewID("inv"), AppID: appID, GroupID: meetsync.NewID("grp"), MeetingNum: pe.MeetingNum,
			Inviter: inviter, Invitee: userID, State: meetsync.InviteWaitingCall, Source: meetsync.SourcePlatform,
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(DefaultInviteExpiry), Version: 1}
		return []*meetsync.Event{invitationEvent(inv, meetsync.TypeInvitationCreated, meetsync.SourcePlatform, map[string]any{"platform": pe.Data}, now)}, true, nil
	case meetsync.TypeInvitationCanceled:
		open, err := s.invitations().InvitationsOpenFor(ctx, appID, userID, pe.MeetingNum)
		if err != nil {
			return nil, false, err
		}
		var evs []*meetsync.Event
		for _, inv := range open {
			if !meetsync.InviteUnanswered(inv.State) {
				continue // answered: final (Cancel is ECONFLICT)
			}
			next := *inv
			next.State, next.UpdatedAt, next.Version = meetsync.InviteCanceled, now, inv.Version+1
			evs = append(evs, invitationEvent(&next, meetsync.TypeInvitationCanceled, meetsync.SourcePlatform, map[string]any{"platform": pe.Data}, now))
		}
		return evs, len(evs) > 0, nil
	}
	return nil, false, nil
}
