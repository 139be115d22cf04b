package sim

import (
	"context"
	"sync"
	"time"

	"github.com/meetsync/meetsync"
)

// Listener hears what a NEMeeting SDK reports: onMeetingStatusChanged
// (status, its NEMeetingCode arg, the meeting number), onKickOut and
// onAuthInfoExpired.
//
// It is an alias of an unnamed interface type, not a defined type, so that
// SDK.SetListener has the same signature as a method declared elsewhere
// with an identical alias (package client's MeetingSDK): Go matches method
// signatures by type identity, and two defined interface types are never
// identical even when their methods are.
type Listener = interface {
	OnMeetingStatusChanged(status meetsync.MeetingStatus, arg meetsync.Reason, meetingNum string)
	OnKickOut()
	OnAuthInfoExpired()
}

type eventKind int

const (
	evStatus eventKind = iota
	evKickOut
	evAuthExpired
)

// sdkEvent is one listener call.
type sdkEvent struct {
	kind   eventKind
	status meetsync.MeetingStatus
	arg    meetsync.Reason
	num    string
}

// SDK is a simulated NEMeeting client SDK on one device, connected to a
// Platform. Its methods are safe for concurrent use.
//
// Listener calls are made in order on a goroutine of the SDK, never while
// a method of the SDK holds its locks, so a listener may call the SDK
// back (but not Flush). They follow the real SDK:
//
//   - JoinMeeting: CONNECTING, then INMEETING; or FAILED with the reason
//     (NOT_EXIST, WAITING_VERIFY_PASSWORD, JOIN_TIMEOUT when the platform
//     cannot be reached) and the method's error.
//   - LeaveMeeting, Logout in a meeting: DISCONNECTING then IDLE, arg BY_SELF.
//   - The host ends the meeting (CancelMeeting, EndMeeting): DISCONNECTING
//     then IDLE with CLOSED_BY_HOST (CLOSED_BY_SELF_AS_HOST on the device
//     that ended it); removed by the host: REMOVED_BY_HOST; the same
//     account joins the meeting on another device: LOGIN_ON_OTHER_DEVICE.
//   - The account's token is refreshed (meetsync's server-side logout):
//     leaves its meeting with AUTH_INFO_EXPIRED, then OnAuthInfoExpired;
//     the SDK is logged out. This is NEMeeting's onAuthInfoExpired ("the
//     account's credentials changed; log in again"), not onKickOut.
//   - The account logs in on another device (unless
//     Platform.SetMultiDevice(true)): leaves with LOGIN_ON_OTHER_DEVICE,
//     then OnKickOut. The account is banned: BY_SERVER, then OnKickOut.
//   - DropConnection in a meeting: CONNECTING; Restore: INMEETING again,
//     or whatever happened while the device was away (the meeting ended,
//     the token was refreshed), reported on Restore.
type SDK struct {
	p      *Platform
	id     uint64
	appKey string

	// Guarded by p.mu.
	app         *app
	initialized bool
	loggedIn    bool
	dropped     bool
	joining     bool
	account     string
	meetingNum  string
	status      meetsync.MeetingStatus
	held        []sdkEvent // platform events that happened while dropped
	dropGen     uint64
	timer       *time.Timer

	qmu        sync.Mutex
	listener   Listener
	queue      []sdkEvent
	delivering bool
	drained    chan struct{} // closed when the queue empties
}

// NewSDK returns an SDK for one device of an app. appKey is what Init is
// given (Platform.AppKey); "" lets the SDK take the app key from the
// account at Login (MeetingAccount.AppKey, as meetsync's login returns it).
func (p *Platform) NewSDK(appKey string) *SDK {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sdkSeq++
	return &SDK{p: p, id: p.sdkSeq, appKey: appKey, status: meetsync.StatusIdle}
}

// SetListener sets the listener (nil: none). Calls already queued go to
// the listener set when they are made.
func (s *SDK) SetListener(l Listener) {
	s.qmu.Lock()
	s.listener = l
	s.qmu.Unlock()
}

// Init initialises the SDK (it asks the platform for the app's settings).
// EUNAVAILABLE when the platform or the device's network is down,
// EUNAUTHORIZED for an app key the platform does not know.
func (s *SDK) Init(ctx context.Context) error {
	if err := s.reachable(); err != nil {
		return err
	}
	if err := s.p.call(ctx, "sdk.Init"); err != nil {
		return err
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.appKey != "" {
		a, ok := s.p.byKey[s.appKey]
		if !ok {
			e := meetsync.Errorf(meetsync.EUNAUTHORIZED, "sim sdk: unknown app key")
			e.Field = "app_key"
			return e
		}
		s.app = a
	}
	s.initialized = true
	return nil
}

// Login logs the account in. EINVALID before Init or for missing
// credentials, EUNAVAILABLE when the platform or the network is down,
// EUNAUTHORIZED for an unknown account or a token that is not (or no
// longer) valid, EFORBIDDEN for a banned account. Logging in as another
// account first logs the current one out.
func (s *SDK) Login(ctx context.Context, acct meetsync.MeetingAccount) error {
	s.p.mu.Lock()
	initialized := s.initialized
	s.p.mu.Unlock()
	if !initialized {
		return meetsync.Errorf(meetsync.EINVALID, "sim sdk: call Init before Login")
	}
	switch {
	case acct.Provider != "" && acct.Provider != meetsync.ProviderSim:
		return meetsync.FieldErrorf("provider", "sim sdk: the account is for provider %q, not %q", acct.Provider, meetsync.ProviderSim)
	case acct.UserUUID == "":
		return meetsync.FieldErrorf("user_uuid", "sim sdk: the account's user_uuid is required")
	case acct.UserToken == "":
		return meetsync.FieldErrorf("user_token", "sim sdk: the account's user_token is required")
	}
	if err := s.reachable(); err != nil {
		return err
	}
	if err := s.p.call(ctx, "sdk.Login"); err != nil {
		return err
	}
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.dropped {
		return errNoNetwork()
	}
	key := s.appKey
	if key == "" {
		key = acct.AppKey
	} else if acct.AppKey != "" && acct.AppKey != key {
		return meetsync.Errorf(meetsync.EUNAUTHORIZED, "sim sdk: the account belongs to another app")
	}
	a, ok := p.byKey[key]
	if !ok {
		return meetsync.Errorf(meetsync.EUNAUTHORIZED, "sim sdk: unknown app key")
	}
	ac, ok := a.Accounts[acct.UserUUID]
	if !ok || ac.Token != acct.UserToken {
		return meetsync.Errorf(meetsync.EUNAUTHORIZED, "sim sdk: the meeting account or its token is not valid")
	}
	if ac.Banned {
		return meetsync.Errorf(meetsync.EFORBIDDEN, "sim sdk: meeting account %q is banned", acct.UserUUID)
	}
	if s.loggedIn && (s.app != a || s.account != acct.UserUUID) {
		s.logoutLocked()
	}
	if !p.multiDevice.Load() {
		for _, o := range p.sessionsLocked(a, acct.UserUUID) {
			if o != s {
				p.logoutSDKLocked(o, meetsync.ReasonLoginOnOtherDevice, evKickOut)
			}
		}
	}
	s.app, s.account, s.loggedIn = a, acct.UserUUID, true
	p.sessions[s] = struct{}{}
	return nil
}

// Logout leaves the current meeting (DISCONNECTING, IDLE with BY_SELF) and
// logs out. It is local and always succeeds; logging out when not logged
// in does nothing.
func (s *SDK) Logout(ctx context.Context) error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.loggedIn {
		s.logoutLocked()
	}
	return nil
}

func (s *SDK) logoutLocked() {
	if s.meetingNum != "" {
		s.leaveLocked()
	}
	s.stopTimerLocked()
	s.loggedIn = false
	delete(s.p.sessions, s)
}

// JoinMeeting joins a meeting that needs no password (see
// JoinMeetingWithPassword).
func (s *SDK) JoinMeeting(ctx context.Context, meetingNum string) error {
	return s.JoinMeetingWithPassword(ctx, meetingNum, "")
}

// JoinMeetingWithPassword joins a meeting: the listener hears CONNECTING,
// then INMEETING on success, FAILED with the reason otherwise. The account
// becomes a member of the platform meeting (MEETING_MEMBER_ENTRY; the
// first member starts a scheduled meeting: MEETING_STATE_CHANGE_EVENT).
// EUNAUTHORIZED when not logged in, ECONFLICT when already in (or joining)
// a meeting, EUNAVAILABLE when the platform or the network is down,
// ENOTFOUND for a meeting that does not exist or is over, EFORBIDDEN for a
// missing or wrong password.
func (s *SDK) JoinMeetingWithPassword(ctx context.Context, meetingNum, password string) error {
	if meetingNum == "" {
		return meetsync.FieldErrorf("meeting_num", "sim sdk: meeting number is required")
	}
	p := s.p
	p.mu.Lock()
	switch {
	case !s.loggedIn:
		p.mu.Unlock()
		return meetsync.Errorf(meetsync.EUNAUTHORIZED, "sim sdk: log in before joining a meeting")
	case s.meetingNum != "" || s.joining:
		num := s.meetingNum
		p.mu.Unlock()
		if num == "" {
			return meetsync.Errorf(meetsync.ECONFLICT, "sim sdk: a join is already in progress")
		}
		return meetsync.Errorf(meetsync.ECONFLICT, "sim sdk: already in meeting %s; leave it first", num)
	case s.dropped:
		p.mu.Unlock()
		return errNoNetwork()
	}
	s.joining = true
	s.emitLocked(sdkEvent{kind: evStatus, status: meetsync.StatusConnecting, num: meetingNum})
	p.mu.Unlock()

	callErr := p.call(ctx, "sdk.JoinMeeting")

	p.mu.Lock()
	defer p.mu.Unlock()
	s.joining = false
	fail := func(arg meetsync.Reason, err error) error {
		s.emitLocked(sdkEvent{kind: evStatus, status: meetsync.StatusFailed, arg: arg, num: meetingNum})
		return err
	}
	switch {
	case callErr != nil:
		return fail(meetsync.ReasonJoinTimeout, callErr)
	case s.dropped:
		return fail(meetsync.ReasonJoinTimeout, errNoNetwork())
	case !s.loggedIn:
		return fail(meetsync.ReasonAuthInfoExpired, meetsync.Errorf(meetsync.EUNAUTHORIZED, "sim sdk: logged out while joining"))
	}
	m, ok := s.app.Meetings[meetingNum]
	if !ok || m.over() {
		return fail(meetsync.ReasonNotExist, meetsync.Errorf(meetsync.ENOTFOUND, "sim sdk: no meeting %q in progress or scheduled", meetingNum))
	}
	if m.Password != "" && password != m.Password {
		return fail(meetsync.ReasonWaitingVerifyPassword, meetsync.Errorf(meetsync.EFORBIDDEN, "sim sdk: meeting %s needs its password", meetingNum))
	}
	p.joinLocked(s.app, m, s)
	s.meetingNum = meetingNum
	s.emitLocked(sdkEvent{kind: evStatus, status: meetsync.StatusInMeeting, num: meetingNum})
	return nil
}

// LeaveMeeting leaves the current meeting: DISCONNECTING then IDLE with
// BY_SELF, and MEETING_MEMBER_LEAVE on the platform. It is local and
// succeeds even when the platform or the network is down; leaving when
// not in a meeting does nothing. ECONFLICT while a join is in progress.
func (s *SDK) LeaveMeeting(ctx context.Context) error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.joining {
		return meetsync.Errorf(meetsync.ECONFLICT, "sim sdk: a join is in progress")
	}
	if s.meetingNum != "" {
		s.leaveLocked()
	}
	return nil
}

func (s *SDK) leaveLocked() {
	num := s.meetingNum
	s.emitLocked(sdkEvent{kind: evStatus, status: meetsync.StatusDisconnecting, arg: meetsync.ReasonBySelf, num: num})
	if m, ok := s.app.Meetings[num]; ok && m.members[s.account] == s {
		s.p.leaveLocked(s.app, m, s.account, "leave")
	}
	s.meetingNum = ""
	s.stopTimerLocked()
	s.emitLocked(sdkEvent{kind: evStatus, status: meetsync.StatusIdle, arg: meetsync.ReasonBySelf, num: num})
}

// EndMeeting ends the current meeting for everyone, as its host: this
// device hears CLOSED_BY_SELF_AS_HOST, the others CLOSED_BY_HOST.
// EINVALID when not in a meeting, EFORBIDDEN when not its host,
// EUNAVAILABLE when the platform or the network is down.
func (s *SDK) EndMeeting(ctx context.Context) error {
	if err := s.reachable(); err != nil {
		return err
	}
	s.p.mu.Lock()
	inMeeting := s.meetingNum != ""
	s.p.mu.Unlock()
	if !inMeeting {
		return meetsync.Errorf(meetsync.EINVALID, "sim sdk: not in a meeting")
	}
	if err := s.p.call(ctx, "sdk.EndMeeting"); err != nil {
		return err
	}
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.dropped {
		return errNoNetwork()
	}
	m, ok := s.app.Meetings[s.meetingNum]
	if !ok || s.meetingNum == "" {
		return meetsync.Errorf(meetsync.EINVALID, "sim sdk: not in a meeting")
	}
	if m.Host != s.account {
		return meetsync.Errorf(meetsync.EFORBIDDEN, "sim sdk: only the host can end meeting %s", m.Num)
	}
	p.endMeetingLocked(s.app, m, s)
	return p.saveLocked()
}

// DropConnection simulates the device losing its network. In a meeting the
// listener hears CONNECTING (the SDK is reconnecting) and the platform
// removes the member, at once or after Platform.SetMemberTimeout. Until
// Restore, calls that need the platform fail with EUNAVAILABLE and what
// the platform does to this device is reported only on Restore.
func (s *SDK) DropConnection() {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.dropped {
		return
	}
	s.dropped = true
	s.dropGen++
	if !s.loggedIn || s.meetingNum == "" {
		return
	}
	s.emitLocked(sdkEvent{kind: evStatus, status: meetsync.StatusConnecting, num: s.meetingNum})
	m, ok := s.app.Meetings[s.meetingNum]
	if !ok || m.members[s.account] != s {
		return
	}
	d := time.Duration(p.memberTimeout.Load())
	if d <= 0 {
		p.leaveLocked(s.app, m, s.account, "disconnected")
		return
	}
	gen := s.dropGen
	s.timer = time.AfterFunc(d, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed || !s.dropped || s.dropGen != gen || m.members[s.account] != s {
			return
		}
		p.leaveLocked(s.app, m, s.account, "disconnected")
	})
}

// Restore gives the device its network back: first what the platform did
// to it meanwhile is reported, then, if it is still logged in and its
// meeting goes on, it rejoins (MEETING_MEMBER_ENTRY if the platform had
// removed it) and the listener hears INMEETING.
func (s *SDK) Restore() {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if !s.dropped {
		return
	}
	s.dropped = false
	s.stopTimerLocked()
	held := s.held
	s.held = nil
	for _, ev := range held {
		s.emitLocked(ev)
	}
	if !s.loggedIn || s.meetingNum == "" {
		return
	}
	num := s.meetingNum
	m, ok := s.app.Meetings[num]
	if !ok || m.over() {
		s.meetingNum = ""
		s.disconnectedLocked(meetsync.ReasonClosedByHost, num)
		return
	}
	if m.members[s.account] != s {
		p.joinLocked(s.app, m, s)
	}
	s.emitLocked(sdkEvent{kind: evStatus, status: meetsync.StatusInMeeting, num: num})
}

// Status returns the last status the SDK reported and its current meeting
// number ("" when in none).
func (s *SDK) Status() (meetsync.MeetingStatus, string) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.status, s.meetingNum
}

// LoggedIn reports whether the SDK is logged in, and as which account.
func (s *SDK) LoggedIn() (bool, string) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.loggedIn, s.account
}

// Flush waits until every listener call queued so far has been made, or
// ctx ends. It must not be called from the listener.
func (s *SDK) Flush(ctx context.Context) error {
	s.qmu.Lock()
	ch := s.drained
	s.qmu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reachable fails with EUNAVAILABLE while the device has no network.
func (s *SDK) reachable() error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.dropped {
		return errNoNetwork()
	}
	return nil
}

func errNoNetwork() error {
	return meetsync.Errorf(meetsync.EUNAVAILABLE, "sim sdk: the device has no network connection")
}

// disconnectedLocked reports leaving a meeting for reason: DISCONNECTING
// then IDLE, both with the reason (held while the device is offline).
func (s *SDK) disconnectedLocked(reason meetsync.Reason, num string) {
	s.pushLocked(sdkEvent{kind: evStatus, status: meetsync.StatusDisconnecting, arg: reason, num: num})
	s.pushLocked(sdkEvent{kind: evStatus, status: meetsync.StatusIdle, arg: reason, num: num})
}

// pushLocked reports something the platform did to this device: at once,
// or on Restore when the device is offline.
func (s *SDK) pushLocked(ev sdkEvent) {
	if s.dropped {
		s.held = append(s.held, ev)
		return
	}
	s.emitLocked(ev)
}

// emitLocked queues a listener call, started by a delivery goroutine when
// none is running.
func (s *SDK) emitLocked(ev sdkEvent) {
	if ev.kind == evStatus {
		s.status = ev.status
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.queue = append(s.queue, ev)
	if !s.delivering {
		s.delivering = true
		s.drained = make(chan struct{})
		go s.deliver()
	}
}

func (s *SDK) deliver() {
	for {
		s.qmu.Lock()
		if len(s.queue) == 0 {
			s.delivering = false
			close(s.drained)
			s.drained = nil
			s.qmu.Unlock()
			return
		}
		ev := s.queue[0]
		s.queue[0] = sdkEvent{}
		s.queue = s.queue[1:]
		l := s.listener
		s.qmu.Unlock()
		if l == nil {
			continue
		}
		switch ev.kind {
		case evStatus:
			l.OnMeetingStatusChanged(ev.status, ev.arg, ev.num)
		case evKickOut:
			l.OnKickOut()
		case evAuthExpired:
			l.OnAuthInfoExpired()
		}
	}
}

func (s *SDK) stopTimerLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}
