package meetsync

import (
	"context"
	"encoding/json"
	"time"
)

// Invitation states. They follow NEMeeting's invite status
// (NEMeetingInviteStatus: WAITING_CALL, CALLING, REJECTED, NO_ANSWER,
// CANCELED, WAITING_JOINED …), in snake case, plus accepted, joined and
// expired.
const (
	InviteWaitingCall = "waiting_call" // created; not yet shown on a device of the invitee
	InviteCalling     = "calling"      // a device of the invitee received it
	InviteAccepted    = "accepted"     // accepted; waiting for the invitee to join (WAITING_JOINED)
	InviteJoined      = "joined"       // the invitee joined the meeting: complete
	InviteRejected    = "rejected"
	InviteNoAnswer    = "no_answer" // the invitee's device rang out without an answer
	InviteCanceled    = "canceled"
	InviteExpired     = "expired"
)

// InviteStates lists every state, open ones first.
var InviteStates = []string{InviteWaitingCall, InviteCalling, InviteAccepted, InviteJoined, InviteRejected, InviteNoAnswer, InviteCanceled, InviteExpired}

// InviteOpen reports whether an invitation in state s can still change.
// Only an unanswered one (InviteUnanswered) takes an answer or a
// cancellation; an accepted one is answered and only completes (joined,
// when the invitee enters the meeting) or lapses (expired, when the
// invitee never does). The other states are final.
func InviteOpen(s string) bool {
	return InviteUnanswered(s) || s == InviteAccepted
}

// InviteUnanswered reports whether an invitation in state s still waits
// for its answer (waiting_call, calling): the only states accept, reject
// and cancel move on from.
func InviteUnanswered(s string) bool {
	return s == InviteWaitingCall || s == InviteCalling
}

// ValidInviteState reports whether s is a state name.
func ValidInviteState(s string) bool {
	for _, v := range InviteStates {
		if v == s {
			return true
		}
	}
	return false
}

// Built-in invitation event types besides those in event.go.
const (
	TypeInvitationCalling = "invitation.calling"
	TypeInvitationJoined  = "invitation.joined"
)

// Invitation is an invitation of one invitee to a meeting (DESIGN §3).
// One POST /v1/invitations creates one per invitee, sharing a GroupID.
// Its changes are written in the transaction of the invitation.* event
// that reports them (EventEffects.Invitation), compare-and-set on Version.
// Source is who created the invitation: business (the app key), client (a
// client token) or platform (the meeting platform's invite callback); it
// never changes. Who made each change is the source of the invitation.*
// event that reports it.
type Invitation struct {
	ID         string    `json:"id"`
	AppID      string    `json:"-"`
	GroupID    string    `json:"group_id"`
	MeetingNum string    `json:"meeting_num"`
	Inviter    string    `json:"inviter"`
	Invitee    string    `json:"invitee"`
	Subject    string    `json:"subject,omitempty"`
	Password   string    `json:"-"` // given to the invitee's devices only
	State      string    `json:"state"`
	Reason     string    `json:"reason,omitempty"`
	Source     string    `json:"source"` // who created it: business, client or platform
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Version increases with every change (1 for a new invitation).
	Version int64 `json:"version"`
}

// InviteRef is an open invitation as its invitee's state keeps it: enough
// to know when to look at it (it expires, or the invitee joined its meeting).
type InviteRef struct {
	ID         string    `json:"id"`
	MeetingNum string    `json:"meeting_num"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// InvitationListParams selects invitations.
type InvitationListParams struct {
	AppID  string
	UserID string // as inviter or invitee ("" = all)
	State  string // "" = all
	After  string // invitation id cursor (ids sort by creation time)
	Limit  int
}

// InvitationStore reads invitations; they are written by EventsAppend
// through EventEffects.Invitation.
type InvitationStore interface {
	// InvitationGet returns an invitation of the app. ENOTFOUND.
	InvitationGet(ctx context.Context, appID, id string) (*Invitation, error)
	// InvitationList returns invitations, newest first.
	InvitationList(ctx context.Context, p InvitationListParams) ([]*Invitation, error)
	// InvitationsOpenFor returns the open invitations of an invitee to a meeting.
	InvitationsOpenFor(ctx context.Context, appID, invitee, meetingNum string) ([]*Invitation, error)
	// InvitationCommandsSupersede resolves an invitation's CommandInvitation
	// commands still pending on its invitee's devices (any device, any
	// session), once the invitation closed: each is marked acknowledged at
	// at, not ok, with note as its ack error, so no device is given it
	// again. A command acknowledged before keeps its acknowledgement. It
	// returns the commands it resolved, oldest first.
	InvitationCommandsSupersede(ctx context.Context, appID, invitee, invitationID, note string, at time.Time) ([]*Command, error)
}

// invitedMeeting reports whether the user has an open invitation to num.
func (u *UserState) invitedTo(num string) bool {
	if num == "" {
		return false
	}
	for _, r := range u.Invites {
		if r.MeetingNum == num {
			return true
		}
	}
	return false
}

// JoinedInvitedMeeting reports whether the user is in a meeting it has an
// open invitation to (by its devices' status or the platform's word).
func (u *UserState) JoinedInvitedMeeting() bool {
	return (u.Status.rank() == 2 && u.invitedTo(u.MeetingNum)) || (u.Platform.InMeeting && u.invitedTo(u.Platform.MeetingNum))
}

// applyInvitation keeps the invitee's open invitations in step with an
// invitation change.
func (u *UserState) applyInvitation(inv *Invitation) {
	out := u.Invites[:0:0]
	for _, r := range u.Invites {
		if r.ID != inv.ID {
			out = append(out, r)
		}
	}
	if InviteOpen(inv.State) {
		out = append(out, InviteRef{ID: inv.ID, MeetingNum: inv.MeetingNum, ExpiresAt: inv.ExpiresAt.Truncate(time.Microsecond)})
	}
	u.Invites = out
}

// CommandInvitationID is the invitation a CommandInvitation's data names
// ("" if none).
func CommandInvitationID(data []byte) string {
	var d struct {
		ID string `json:"invitation_id"`
	}
	if json.Unmarshal(data, &d) != nil {
		return ""
	}
	return d.ID
}
