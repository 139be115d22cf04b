package meetsync

import "time"

// Session sides (DESIGN §3 Session).
const (
	SideLoggedOut  = "logged_out"
	SideLoggedIn   = "logged_in"
	SidePending    = "pending"
	SideFailed     = "failed"
	SideLoggingOut = "logging_out"
)

// UserState is the current state of one user of an app: the newest
// meeting status across its devices and the last seq of its event log. It
// is updated in the same transaction as the event that changes it.
type UserState struct {
	AppID  string
	UserID string
	// LastSeq is the seq of the user's newest event (0: no events).
	LastSeq int64
	// Meeting status: the combination of the devices' states.
	Status     MeetingStatus
	Reason     Reason
	MeetingNum string
	DeviceID   string    // device whose report set Status ("" for server-side reports)
	Since      time.Time // effective time of the event that set Status
	StatusSeq  int64     // seq of that event
	// Session is the paired login state, maintained by the session engine.
	Session Session
	// Platform is what the meeting platform last said of this user's
	// meeting membership (from its callbacks).
	Platform PlatformPresence
	// Invites are the user's open invitations as an invitee.
	Invites []InviteRef
	// DueAt is when meetsync must look at this user again (a session
	// deadline, a reconciliation after a grace period); zero for never.
	DueAt     time.Time
	UpdatedAt time.Time
	// Devices holds the per-device state of this user, loaded with it.
	Devices []*DeviceState
}

// PlatformPresence is the platform's view of a user's meeting membership.
type PlatformPresence struct {
	MeetingNum string    `json:"meeting_num,omitempty"`
	InMeeting  bool      `json:"in_meeting"`
	Since      time.Time `json:"since,omitzero"`
	// CheckAt is the end of the grace period after the platform's word:
	// then a device that still says the user is in a meeting the platform
	// says they left is corrected, and a meeting the platform says they
	// joined that no device reported is reported (UnreportedMeeting).
	CheckAt time.Time `json:"check_at,omitzero"`
}

// PlatformDeviceID is the device a user's meeting status is reported on
// when only the platform knows of it: the user joined a meeting (the
// platform's member-joined callback) and no device of theirs reported it
// within the grace period — they joined from an app or a browser that does
// not report to meetsync. The platform's leave later corrects it as any
// device's status.
const PlatformDeviceID = "@platform"

// DeviceState is what one device of a user last reported.
type DeviceState struct {
	DeviceID      string
	LastClientSeq int64
	Status        MeetingStatus
	Reason        Reason
	MeetingNum    string
	Since         time.Time // effective time of its newest status
	StatusSeq     int64
	LastSeenAt    time.Time
	// Dirty is set by Apply when the row must be written back.
	Dirty bool
}

// NewUserState returns the state of a user that has no events yet.
func NewUserState(appID, userID string) *UserState {
	return &UserState{AppID: appID, UserID: userID, Status: StatusIdle, Session: Session{Business: SideLoggedOut, Meeting: SideLoggedOut}}
}

// Device returns the state of deviceID, or nil.
func (u *UserState) Device(deviceID string) *DeviceState {
	for _, d := range u.Devices {
		if d.DeviceID == deviceID {
			return d
		}
	}
	return nil
}

// NeedsDuplicateCheck reports whether ev could repeat an event already
// stored for its device: only an event whose client_seq is not above the
// device's highest can be one, so the store looks up the others not at all.
func (u *UserState) NeedsDuplicateCheck(ev *Event) bool {
	if ev.ClientSeq == 0 {
		return false
	}
	d := u.Device(ev.DeviceID)
	return d != nil && ev.ClientSeq <= d.LastClientSeq
}

// Apply assigns ev the user's next seq and moves the state by it. It is
// the one rule both stores run inside the append transaction:
//
//   - an event with a client_seq lower than one already applied for its
//     device is stale;
//   - a status event older (by EffectiveTime) than its device's current
//     status is stale;
//   - a stale event is stored but changes no state;
//   - the user's status is the most "in a meeting" status among its
//     devices, the newest one breaking ties.
//
// The status data of ev gets the previous user status as "from".
func (u *UserState) Apply(ev *Event) {
	// Stores keep microseconds: compare what will be read back.
	ev.OccurredAt, ev.ReceivedAt = ev.OccurredAt.Truncate(time.Microsecond), ev.ReceivedAt.Truncate(time.Microsecond)
	u.LastSeq++
	ev.Seq = u.LastSeq
	u.UpdatedAt = ev.ReceivedAt
	var dev *DeviceState
	if ev.DeviceID != "" || ev.Type == TypeMeetingStatusChanged {
		dev = u.Device(ev.DeviceID)
		if dev == nil {
			dev = &DeviceState{DeviceID: ev.DeviceID, Status: StatusIdle}
			u.Devices = append(u.Devices, dev)
		}
		dev.Dirty = true
		if ev.ReceivedAt.After(dev.LastSeenAt) {
			dev.LastSeenAt = ev.ReceivedAt
		}
	}
	if ev.ClientSeq != 0 {
		if ev.ClientSeq < dev.LastClientSeq {
			ev.Stale = true
		} else {
			dev.LastClientSeq = ev.ClientSeq
		}
	}
	u.applyEffects(ev)
	defer u.recomputeDue()
	st, reason, num, ok := ev.StatusChange()
	if !ok {
		return
	}
	from := u.Status
	ev.Data = appendFrom(ev.Data, from)
	if ev.Stale {
		return
	}
	t := ev.EffectiveTime()
	if t.Before(dev.Since) {
		ev.Stale = true
		return
	}
	dev.Status, dev.Reason, dev.MeetingNum, dev.Since, dev.StatusSeq = st, reason, num, t, ev.Seq
	u.combine()
}

// applyEffects applies what ev does to the session, the platform presence
// and the due time:
//
//   - an event made by meetsync's session engine carries the new session
//     (Effects.Session), which replaces the old one with the next version;
//   - session.kicked_out and session.auth_expired from a client (the SDK's
//     onKickOut / onAuthInfoExpired) take a logged-in meeting side to
//     logged_out / pending, unless stale; pending with a deadline, the
//     session's LoginDeadline from when meetsync received the event;
//   - a platform membership change (Effects.Member) sets Platform.
func (u *UserState) applyEffects(ev *Event) {
	fx := ev.Effects
	switch {
	case fx != nil && fx.Session != nil:
		s := *fx.Session
		s.Version = u.Session.Version + 1
		u.setSession(s)
	case ev.Stale:
	case ev.Type == TypeSessionKickedOut && u.Session.Meeting == SideLoggedIn:
		s := u.Session
		s.Meeting, s.Version = SideLoggedOut, s.Version+1
		u.setSession(s)
	case ev.Type == TypeSessionAuthExpired && u.Session.Meeting == SideLoggedIn:
		// Pending again, with a deadline as every pending side has: the
		// SDK is to log in again within the session's login deadline, or
		// its policy resolves it.
		s := u.Session
		wait := time.Duration(s.LoginDeadline)
		if wait <= 0 {
			wait = time.Duration(DefaultAppSettings().LoginDeadline)
		}
		s.Meeting, s.Deadline, s.Version = SidePending, ev.ReceivedAt.Add(wait), s.Version+1
		u.setSession(s)
	}
	if fx != nil && fx.Invitation != nil && fx.Invitation.Invitee == u.UserID {
		u.applyInvitation(fx.Invitation)
	}
	if fx != nil && fx.Member != nil {
		u.Platform = PlatformPresence{MeetingNum: fx.Member.MeetingNum, InMeeting: fx.Member.Joined, Since: ev.EffectiveTime(),
			CheckAt: fx.Member.CheckAt.Truncate(time.Microsecond)}
	}
}

// recomputeDue derives DueAt, the time the session engine must look at
// this user again: the session's deadline, the check after a business
// logout while a meeting still looked active, and the platform's report
// that the user left a meeting while a device still says it is in one.
func (u *UserState) recomputeDue() {
	var due time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	s := &u.Session
	earliest(s.Deadline)
	if s.Business == SideLoggedOut && (u.Status.Active() || u.Platform.InMeeting) {
		earliest(s.CheckAt)
	}
	if len(u.ContradictedDevices()) > 0 || u.UnreportedMeeting() {
		earliest(u.Platform.CheckAt)
	}
	for _, r := range u.Invites {
		earliest(r.ExpiresAt)
	}
	if u.JoinedInvitedMeeting() {
		earliest(u.UpdatedAt)
	}
	u.DueAt = due
}

// ContradictedDevices returns the devices whose last report says the user
// is in a meeting although the platform said later that the user left
// (or is not a member): the ones the reconciler corrects once the grace
// period (Platform.CheckAt) is over. A device that reported after the
// platform's word is believed.
func (u *UserState) ContradictedDevices() []*DeviceState {
	if u.Platform.InMeeting || u.Platform.CheckAt.IsZero() {
		return nil
	}
	var out []*DeviceState
	for _, d := range u.Devices {
		if d.Status.Active() && !u.Platform.reportedBefore(d) {
			out = append(out, d)
		}
	}
	return out
}

// reportedBefore says whether the platform's word came before device d's
// last status, so the device is believed. The platform stamps its
// callbacks in milliseconds: a device status of the same millisecond is
// not after it (the platform's word wins a tie).
func (p PlatformPresence) reportedBefore(d *DeviceState) bool {
	return d.Since.Truncate(time.Millisecond).After(p.Since)
}

// UnreportedMeeting says whether the platform says the user joined a
// meeting that none of their devices reports: no device is in a meeting,
// and none reported after the platform's word (a device that did, saying
// idle, is believed: the user left and the platform's leave is late). The
// reconciler reports the meeting on PlatformDeviceID once the grace period
// (Platform.CheckAt) is over.
func (u *UserState) UnreportedMeeting() bool {
	p := u.Platform
	if !p.InMeeting || p.MeetingNum == "" || p.CheckAt.IsZero() {
		return false
	}
	for _, d := range u.Devices {
		if d.Status.Active() || p.reportedBefore(d) {
			return false
		}
	}
	return true
}

func (u *UserState) setSession(s Session) {
	s.Deadline, s.CheckAt = s.Deadline.Truncate(time.Microsecond), s.CheckAt.Truncate(time.Microsecond)
	s.StartedAt = s.StartedAt.Truncate(time.Microsecond)
	u.Session = s
}

// combine derives the user's status from its devices.
func (u *UserState) combine() {
	var best *DeviceState
	for _, d := range u.Devices {
		if d.StatusSeq == 0 {
			continue
		}
		if best == nil || d.Status.rank() > best.Status.rank() ||
			(d.Status.rank() == best.Status.rank() && d.StatusSeq > best.StatusSeq) {
			best = d
		}
	}
	if best == nil {
		return
	}
	u.Status, u.Reason, u.MeetingNum, u.DeviceID, u.Since, u.StatusSeq =
		best.Status, best.Reason, best.MeetingNum, best.DeviceID, best.Since, best.StatusSeq
}
