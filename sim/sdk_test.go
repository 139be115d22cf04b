package sim_test

import (
	"context"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sim"
)

// meetingListener and meetingSDK are declared here as package client
// declares them (the listener as an alias), to check that *sim.SDK plugs in.
type meetingListener = interface {
	OnMeetingStatusChanged(status meetsync.MeetingStatus, arg meetsync.Reason, meetingNum string)
	OnKickOut()
	OnAuthInfoExpired()
}

type meetingSDK interface {
	Init(ctx context.Context) error
	Login(ctx context.Context, acct meetsync.MeetingAccount) error
	Logout(ctx context.Context) error
	JoinMeeting(ctx context.Context, meetingNum string) error
	LeaveMeeting(ctx context.Context) error
	SetListener(l meetingListener)
}

var _ meetingSDK = (*sim.SDK)(nil)

// meetingFor creates a meeting hosted by host.
func meetingFor(t *testing.T, pr meetsync.Provider, host string) string {
	t.Helper()
	m, err := pr.CreateMeeting(ctxT(t), meetsync.MeetingRequest{HostUUID: host})
	if err != nil {
		t.Fatal(err)
	}
	return m.MeetingNum
}

func members(t *testing.T, pr meetsync.Provider, num string) []string {
	t.Helper()
	m, err := pr.Meeting(ctxT(t), num)
	if err != nil {
		t.Fatal(err)
	}
	return m.Members
}

func TestSDKJoinLeave(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	num := meetingFor(t, pr, "alice")
	sdk, rec := device(t, p, acct)
	if in, who := sdk.LoggedIn(); !in || who != "alice" {
		t.Fatalf("LoggedIn = %v, %q", in, who)
	}
	if err := sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "join", rec.take(t, sdk), "connecting/by_self@"+num, "in_meeting/by_self@"+num)
	if st, n := sdk.Status(); st != meetsync.StatusInMeeting || n != num {
		t.Fatalf("Status = %v %q", st, n)
	}
	if m, _ := pr.Meeting(ctx, num); m.State != meetsync.MeetingStateStarted || len(m.Members) != 1 || m.Members[0] != "alice" {
		t.Fatalf("meeting %+v", m)
	}
	wantCode(t, sdk.JoinMeeting(ctx, num), meetsync.ECONFLICT)
	if err := sdk.LeaveMeeting(ctx); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "leave", rec.take(t, sdk), "disconnecting/by_self@"+num, "idle/by_self@"+num)
	if got := members(t, pr, num); len(got) != 0 {
		t.Fatalf("members after leave %v", got)
	}
	// Leaving again does nothing; the meeting goes on without members.
	if err := sdk.LeaveMeeting(ctx); err != nil {
		t.Fatal(err)
	}
	// Rejoin, then log out from inside the meeting.
	if err := sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	if err := sdk.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "join, logout", rec.take(t, sdk), "connecting/by_self@"+num, "in_meeting/by_self@"+num,
		"disconnecting/by_self@"+num, "idle/by_self@"+num)
	if in, _ := sdk.LoggedIn(); in {
		t.Fatal("still logged in")
	}
	wantCode(t, sdk.JoinMeeting(ctx, num), meetsync.EUNAUTHORIZED)
	if err := sdk.Logout(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSDKLoginErrors(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")

	sdk := p.NewSDK(p.AppKey(appID))
	wantCode(t, sdk.Login(ctx, *acct), meetsync.EINVALID) // before Init
	wantCode(t, p.NewSDK("unknown-key").Init(ctx), meetsync.EUNAUTHORIZED)
	if err := sdk.Init(ctx); err != nil {
		t.Fatal(err)
	}
	bad := *acct
	bad.UserToken = "not-the-token"
	wantCode(t, sdk.Login(ctx, bad), meetsync.EUNAUTHORIZED)
	bad = *acct
	bad.UserUUID = "ghost"
	wantCode(t, sdk.Login(ctx, bad), meetsync.EUNAUTHORIZED)
	bad = *acct
	bad.Provider = meetsync.ProviderNetEase
	wantCode(t, sdk.Login(ctx, bad), meetsync.EINVALID)
	bad = *acct
	bad.UserToken = ""
	wantCode(t, sdk.Login(ctx, bad), meetsync.EINVALID)
	bad = *acct
	bad.AppKey = p.AppKey("app_other")
	wantCode(t, sdk.Login(ctx, bad), meetsync.EUNAUTHORIZED)

	if err := pr.SetBanned(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	wantCode(t, sdk.Login(ctx, *acct), meetsync.EFORBIDDEN)
	if err := pr.SetBanned(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}

	// The platform is down: Init, Login and JoinMeeting fail EUNAVAILABLE.
	p.SetOutage(true)
	wantCode(t, p.NewSDK(p.AppKey(appID)).Init(ctx), meetsync.EUNAVAILABLE)
	wantCode(t, sdk.Login(ctx, *acct), meetsync.EUNAVAILABLE)
	p.SetOutage(false)
	if err := sdk.Login(ctx, *acct); err != nil {
		t.Fatal(err)
	}

	// An SDK created without an app key takes it from the account.
	keyless := p.NewSDK("")
	if err := keyless.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := keyless.Login(ctx, *acct); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.Calls["sdk.Login"] == 0 || st.Calls["sdk.Init"] == 0 {
		t.Fatalf("sdk calls not counted: %v", st.Calls)
	}
}

func TestSDKJoinFailures(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	sdk, rec := device(t, p, acct)

	wantCode(t, sdk.JoinMeeting(ctx, "999999999"), meetsync.ENOTFOUND)
	wantEvents(t, "unknown meeting", rec.take(t, sdk), "connecting/by_self@999999999", "failed/not_exist@999999999")
	wantCode(t, sdk.JoinMeeting(ctx, ""), meetsync.EINVALID)

	num := meetingFor(t, pr, "alice")
	p.SetOutage(true)
	wantCode(t, sdk.JoinMeeting(ctx, num), meetsync.EUNAVAILABLE)
	wantEvents(t, "platform down", rec.take(t, sdk), "connecting/by_self@"+num, "failed/join_timeout@"+num)
	p.SetOutage(false)

	locked, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "alice", Password: "4321"})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, sdk.JoinMeetingWithPassword(ctx, locked.MeetingNum, "0000"), meetsync.EFORBIDDEN)
	n := locked.MeetingNum
	wantEvents(t, "wrong password", rec.take(t, sdk), "connecting/by_self@"+n, "failed/waiting_verify_password@"+n)
	if err := sdk.JoinMeetingWithPassword(ctx, n, "4321"); err != nil {
		t.Fatal(err)
	}
	rec.take(t, sdk)

	if err := pr.CancelMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	if err := sdk.LeaveMeeting(ctx); err != nil {
		t.Fatal(err)
	}
	rec.take(t, sdk)
	wantCode(t, sdk.JoinMeeting(ctx, num), meetsync.ENOTFOUND) // canceled
	wantEvents(t, "canceled meeting", rec.take(t, sdk), "connecting/by_self@"+num, "failed/not_exist@"+num)
}

func TestSDKHostEndsMeeting(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	host, guest := account(t, pr, "host"), account(t, pr, "guest")
	hs, hrec := device(t, p, host)
	gs, grec := device(t, p, guest)

	// Ended from the host's device.
	num := meetingFor(t, pr, "host")
	for _, s := range []*sim.SDK{hs, gs} {
		if err := s.JoinMeeting(ctx, num); err != nil {
			t.Fatal(err)
		}
	}
	hrec.take(t, hs)
	grec.take(t, gs)
	wantCode(t, gs.EndMeeting(ctx), meetsync.EFORBIDDEN)
	if err := hs.EndMeeting(ctx); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "host", hrec.take(t, hs), "disconnecting/closed_by_self_as_host@"+num, "idle/closed_by_self_as_host@"+num)
	wantEvents(t, "guest", grec.take(t, gs), "disconnecting/closed_by_host@"+num, "idle/closed_by_host@"+num)
	if m, _ := pr.Meeting(ctx, num); m.State != meetsync.MeetingStateEnded || len(m.Members) != 0 {
		t.Fatalf("meeting %+v", m)
	}
	wantCode(t, hs.EndMeeting(ctx), meetsync.EINVALID)

	// Ended by the server (CancelMeeting): everyone hears CLOSED_BY_HOST.
	num = meetingFor(t, pr, "host")
	for _, s := range []*sim.SDK{hs, gs} {
		if err := s.JoinMeeting(ctx, num); err != nil {
			t.Fatal(err)
		}
	}
	hrec.take(t, hs)
	grec.take(t, gs)
	if err := pr.CancelMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		s   *sim.SDK
		rec *recorder
	}{{hs, hrec}, {gs, grec}} {
		wantEvents(t, "canceled", r.rec.take(t, r.s), "disconnecting/closed_by_host@"+num, "idle/closed_by_host@"+num)
	}
}

func TestSDKRemovedByHost(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	c := newCollector(t, p, pr)
	ctx := ctxT(t)
	guest := account(t, pr, "guest")
	account(t, pr, "host")
	num := meetingFor(t, pr, "host")
	gs, rec := device(t, p, guest)
	if err := gs.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	rec.take(t, gs)
	if err := p.RemoveMember(ctx, appID, num, "guest"); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "removed", rec.take(t, gs), "disconnecting/removed_by_host@"+num, "idle/removed_by_host@"+num)
	wantEvents(t, "callbacks", types(c.wait(t, 3)), "meeting.started", "meeting.member_joined:guest", "meeting.member_left:guest")
}

// meetsync's server-side logout refreshes the token: the device leaves its
// meeting and hears onAuthInfoExpired; the old token no longer logs in.
func TestSDKTokenRefresh(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	c := newCollector(t, p, pr)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	num := meetingFor(t, pr, "alice")
	p.SetMultiDevice(true)
	sdk, rec := device(t, p, acct)
	idle, idleRec := device(t, p, acct) // a second device, not in a meeting
	if err := sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	rec.take(t, sdk)
	idleRec.take(t, idle)

	fresh, err := pr.RevokeToken(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if fresh.UserToken == acct.UserToken {
		t.Fatal("token not replaced")
	}
	wantEvents(t, "in a meeting", rec.take(t, sdk),
		"disconnecting/auth_info_expired@"+num, "idle/auth_info_expired@"+num, "auth_info_expired")
	wantEvents(t, "idle device", idleRec.take(t, idle), "auth_info_expired")
	for _, s := range []*sim.SDK{sdk, idle} {
		if in, _ := s.LoggedIn(); in {
			t.Fatal("a device is still logged in after the token was refreshed")
		}
	}
	wantCode(t, sdk.Login(ctx, *acct), meetsync.EUNAUTHORIZED)
	if err := sdk.Login(ctx, *fresh); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "callbacks", types(c.wait(t, 3)), "meeting.started", "meeting.member_joined:alice", "meeting.member_left:alice")
}

// A listener may call the SDK back: here it logs in again with a fresh
// token when it hears onAuthInfoExpired.
func TestSDKListenerReentry(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	sdk, _ := device(t, p, acct)
	relogin := &reloginListener{sdk: sdk, pr: pr, done: make(chan error, 1)}
	sdk.SetListener(relogin)
	if _, err := pr.RevokeToken(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-relogin.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("listener did not log in again")
	}
	if in, _ := sdk.LoggedIn(); !in {
		t.Fatal("not logged in again")
	}
}

type reloginListener struct {
	sdk  *sim.SDK
	pr   meetsync.Provider
	done chan error
}

func (r *reloginListener) OnMeetingStatusChanged(meetsync.MeetingStatus, meetsync.Reason, string) {}
func (r *reloginListener) OnKickOut()                                                             {}
func (r *reloginListener) OnAuthInfoExpired() {
	ctx := context.Background()
	acct, err := r.pr.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "alice"})
	if err == nil {
		err = r.sdk.Login(ctx, *acct)
	}
	r.done <- err
}

// A login on another device kicks the first out (NEMeeting's default);
// with multi-device on, both stay, but one account is in a meeting once.
func TestSDKKickOutByOtherDevice(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	num := meetingFor(t, pr, "alice")
	phone, prec := device(t, p, acct)
	if err := phone.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	prec.take(t, phone)
	desk, drec := device(t, p, acct)
	wantEvents(t, "phone", prec.take(t, phone),
		"disconnecting/login_on_other_device@"+num, "idle/login_on_other_device@"+num, "kick_out")
	wantEvents(t, "desk", drec.take(t, desk))
	if in, _ := phone.LoggedIn(); in {
		t.Fatal("phone still logged in")
	}
	if got := members(t, pr, num); len(got) != 0 {
		t.Fatalf("members %v", got)
	}

	p.SetMultiDevice(true)
	if err := phone.Login(ctx, *acct); err != nil {
		t.Fatal(err)
	}
	if err := phone.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	if err := desk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "phone moved out", prec.take(t, phone), "connecting/by_self@"+num, "in_meeting/by_self@"+num,
		"disconnecting/login_on_other_device@"+num, "idle/login_on_other_device@"+num)
	if in, _ := phone.LoggedIn(); !in {
		t.Fatal("phone logged out by a join on another device")
	}
	if got := members(t, pr, num); len(got) != 1 {
		t.Fatalf("members %v", got)
	}
	if st, n := phone.Status(); st != meetsync.StatusIdle || n != "" {
		t.Fatalf("phone status %v %q", st, n)
	}
}

func TestSDKBanKicksOut(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	num := meetingFor(t, pr, "alice")
	sdk, rec := device(t, p, acct)
	if err := sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	rec.take(t, sdk)
	if err := pr.SetBanned(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "banned", rec.take(t, sdk), "disconnecting/by_server@"+num, "idle/by_server@"+num, "kick_out")
}

// A dropped connection: CONNECTING, the platform removes the member at
// once (default), and Restore rejoins.
func TestSDKDropAndRestore(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	c := newCollector(t, p, pr)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	num := meetingFor(t, pr, "alice")
	sdk, rec := device(t, p, acct)
	if err := sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	rec.take(t, sdk)
	sdk.DropConnection()
	sdk.DropConnection() // already dropped: nothing more
	wantEvents(t, "dropped", rec.take(t, sdk), "connecting/by_self@"+num)
	if got := members(t, pr, num); len(got) != 0 {
		t.Fatalf("members while dropped %v", got)
	}
	if st, n := sdk.Status(); st != meetsync.StatusConnecting || n != num {
		t.Fatalf("status while dropped %v %q", st, n)
	}
	wantCode(t, sdk.Init(ctx), meetsync.EUNAVAILABLE)
	wantCode(t, sdk.Login(ctx, *acct), meetsync.EUNAVAILABLE)
	wantCode(t, sdk.EndMeeting(ctx), meetsync.EUNAVAILABLE)

	sdk.Restore()
	sdk.Restore() // already restored: nothing more
	wantEvents(t, "restored", rec.take(t, sdk), "in_meeting/by_self@"+num)
	if got := members(t, pr, num); len(got) != 1 {
		t.Fatalf("members after restore %v", got)
	}
	wantEvents(t, "callbacks", types(c.wait(t, 4)), "meeting.started", "meeting.member_joined:alice",
		"meeting.member_left:alice", "meeting.member_joined:alice")

	// Not in a meeting, a drop is silent.
	if err := sdk.LeaveMeeting(ctx); err != nil {
		t.Fatal(err)
	}
	rec.take(t, sdk)
	sdk.DropConnection()
	wantCode(t, sdk.JoinMeeting(ctx, num), meetsync.EUNAVAILABLE)
	sdk.Restore()
	wantEvents(t, "idle drop", rec.take(t, sdk))
}

// With a member timeout, a short drop keeps the membership (no callbacks);
// a long one loses it.
func TestSDKMemberTimeout(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	c := newCollector(t, p, pr)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	num := meetingFor(t, pr, "alice")
	sdk, rec := device(t, p, acct)
	if err := sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	c.wait(t, 2)
	rec.take(t, sdk)

	p.SetMemberTimeout(time.Hour)
	sdk.DropConnection()
	if got := members(t, pr, num); len(got) != 1 {
		t.Fatalf("members during a short drop %v", got)
	}
	sdk.Restore()
	wantEvents(t, "short drop", rec.take(t, sdk), "connecting/by_self@"+num, "in_meeting/by_self@"+num)

	p.SetMemberTimeout(time.Millisecond)
	sdk.DropConnection()
	got := c.wait(t, 3) // the timeout removes the member
	wantEvents(t, "timed out", types(got), "meeting.started", "meeting.member_joined:alice", "meeting.member_left:alice")
	if st := p.Stats(); st.CallbacksQueued != 3 {
		t.Fatalf("the short drop raised callbacks: %+v", st)
	}
	sdk.Restore()
	wantEvents(t, "long drop", rec.take(t, sdk), "connecting/by_self@"+num, "in_meeting/by_self@"+num)
	c.wait(t, 4)
}

// What the platform does to an offline device is reported on Restore.
func TestSDKEventsWhileDropped(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	sdk, rec := device(t, p, acct)

	// The meeting ends while the device is away.
	num := meetingFor(t, pr, "alice")
	if err := sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	rec.take(t, sdk)
	sdk.DropConnection()
	if err := pr.CancelMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "while away", rec.take(t, sdk), "connecting/by_self@"+num)
	sdk.Restore()
	wantEvents(t, "on restore", rec.take(t, sdk), "disconnecting/closed_by_host@"+num, "idle/closed_by_host@"+num)

	// The token is refreshed while the device is away.
	num = meetingFor(t, pr, "alice")
	if err := sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	rec.take(t, sdk)
	sdk.DropConnection()
	if _, err := pr.RevokeToken(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "while away", rec.take(t, sdk), "connecting/by_self@"+num)
	sdk.Restore()
	wantEvents(t, "on restore", rec.take(t, sdk),
		"disconnecting/auth_info_expired@"+num, "idle/auth_info_expired@"+num, "auth_info_expired")
	if in, _ := sdk.LoggedIn(); in {
		t.Fatal("still logged in")
	}
}
