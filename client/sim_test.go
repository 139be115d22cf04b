package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
	"github.com/meetsync/meetsync/sim"
)

// The seed's flows end to end: a Coordinator driving the simulated
// NEMeeting SDK (sim.SDK) against the real server, whose session engine
// runs on the same simulated platform (so the platform's callbacks reach
// meetsync too). Each device reaches meetsync through a netSwitch, so a
// test can take its network away.

// simDevice is a device: the sim SDK, the Coordinator and its network.
type simDevice struct {
	*client.Coordinator
	sdk     *sim.SDK
	net     *netSwitch
	notices *notices
	invites chan client.Invitation
	dropped chan client.Invitation // canceled or expired
	user    string
}

// newSimDevice starts a Coordinator for user on device, with the sim SDK
// and APIBusiness (the business backend calls meetsync with the app key,
// on its own network). Every status change is sent (no debounce) unless
// an option says otherwise.
func newSimDevice(t *testing.T, s *server, user, device string, opts ...deviceOpt) *simDevice {
	t.Helper()
	d := &simDevice{sdk: s.Sim.NewSDK(""), net: newNetSwitch(), notices: &notices{}, invites: make(chan client.Invitation, 10),
		dropped: make(chan client.Invitation, 10), user: user}
	cfg := client.Config{
		Client: client.New(s.URL, client.WithHTTPClient(&http.Client{Transport: d.net}),
			client.WithRetry(client.Retry{Attempts: 2, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})),
		SDK:          d.sdk,
		Business:     &client.APIBusiness{Client: s.app(), UserID: user, DeviceID: device, DisplayName: "User " + user},
		QueueDir:     t.TempDir(),
		Debounce:     -1,
		LoginBackoff: 5 * time.Millisecond, LoginMaxBackoff: 20 * time.Millisecond,
		SendBackoff: 5 * time.Millisecond, SendMaxBackoff: 50 * time.Millisecond,
		OnNotice:             d.notices.add,
		OnInvitation:         func(inv client.Invitation) { d.invites <- inv },
		OnInvitationCanceled: func(inv client.Invitation) { d.dropped <- inv },
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := client.NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	d.Coordinator = c
	return d
}

// settle waits until the SDK made every listener call queued so far, then
// until meetsync stored everything the Coordinator queued.
func (d *simDevice) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.sdk.Flush(ctx); err != nil {
		t.Fatalf("SDK flush: %v", err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatalf("sync: %v (state %+v)", err, d.State())
	}
}

// credentials returns the meeting credentials meetsync gives the device now.
func (d *simDevice) credentials(t *testing.T, s *server) meetsync.MeetingAccount {
	t.Helper()
	acct, err := client.New(s.URL, client.WithClientToken(d.ClientToken())).ClientCredentials(ctxT(t), false)
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	return *acct
}

// meeting creates a meeting on the platform, hosted by an account that is
// not one of the test's users, and returns its number.
func (s *server) meeting(t *testing.T, subject string) string {
	t.Helper()
	ctx := ctxT(t)
	prov := s.Sim.Provider(s.AppID)
	host, err := prov.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "host-" + strings.ReplaceAll(subject, " ", "-"), DisplayName: "Host"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := prov.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: host.UserUUID, Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	return m.MeetingNum
}

// user returns a user's state.
func (s *server) user(t *testing.T, id string) *client.User {
	t.Helper()
	u, err := s.app().GetUser(context.Background(), id)
	if err != nil {
		t.Fatalf("get user %s: %v", id, err)
	}
	return u
}

// typesOf returns the types of events, leaving out the platform's
// membership events (their place among the device's reports depends on
// when the platform's callbacks arrive).
func typesOf(evs []*meetsync.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type != meetsync.TypeMeetingMemberJoined && ev.Type != meetsync.TypeMeetingMemberLeft {
			out = append(out, ev.Type)
		}
	}
	return out
}

// statusTrail returns "status/reason@meeting" of a user's status events,
// checking that none is stale and that seq and client_seq increase.
func statusTrail(t *testing.T, evs []*meetsync.Event) []string {
	t.Helper()
	var out []string
	var lastSeq, lastClient int64
	for _, ev := range evs {
		st, r, num, ok := ev.StatusChange()
		if !ok {
			continue
		}
		if ev.Stale {
			t.Errorf("status event seq %d (client_seq %d, %s) is stale", ev.Seq, ev.ClientSeq, st)
		}
		if ev.Seq <= lastSeq || ev.ClientSeq <= lastClient {
			t.Errorf("status event seq %d client_seq %d after seq %d client_seq %d: not increasing", ev.Seq, ev.ClientSeq, lastSeq, lastClient)
		}
		lastSeq, lastClient = ev.Seq, ev.ClientSeq
		s := st.String()
		if r != meetsync.ReasonBySelf {
			s += "/" + r.String()
		}
		if num != "" {
			s += "@" + num
		}
		out = append(out, s)
	}
	return out
}

// dataOf decodes the data of the last event of a type.
func dataOf(t *testing.T, evs []*meetsync.Event, typ string) map[string]any {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			var m map[string]any
			if err := json.Unmarshal(evs[i].Data, &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no %s event in %v", typ, typesOf(evs))
	return nil
}

// hasEvent reports whether a user's feed has an event of typ whose data
// has key = value ("" key: any).
func (s *server) hasEvent(t *testing.T, user, typ, key, value string) bool {
	for _, ev := range s.events(t, user, typ) {
		var m map[string]any
		if key == "" || json.Unmarshal(ev.Data, &m) == nil && fmt.Sprint(m[key]) == value {
			return true
		}
	}
	return false
}

// loginWorks reports whether a fresh SDK logs in with acct.
func loginWorks(t *testing.T, s *server, acct meetsync.MeetingAccount) bool {
	t.Helper()
	sdk := s.Sim.NewSDK("")
	if err := sdk.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	err := sdk.Login(ctxT(t), acct)
	if err == nil {
		_ = sdk.Logout(ctxT(t))
	}
	return err == nil
}

// TestSimSeedFlow is the seed's whole flow on a device: init both
// systems, log in (business, then meeting), join a meeting, leave it, log
// out (business, then meeting), with the server's session, the user's
// state, the platform and the event log right at each step.
func TestSimSeedFlow(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := ctxT(t)
	num := s.meeting(t, "standup")
	// A debounce window no test waits for: settle (Sync) releases the held status.
	d := newSimDevice(t, s, "alice", "laptop", func(c *client.Config) { c.Debounce = time.Hour })

	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.State(); !st.BusinessReady || !st.MeetingReady {
		t.Fatalf("after init: %+v", st)
	}
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	st := d.State()
	if st.Business != meetsync.SideLoggedIn || st.Meeting != meetsync.SideLoggedIn || st.SessionID == "" || st.DeviceID != "laptop" {
		t.Fatalf("after login: %+v", st)
	}
	if in, uuid := d.sdk.LoggedIn(); !in || uuid != meetsync.AccountUUID(s.AppID, "alice") {
		t.Fatalf("SDK logged in %v as %q, want the account meetsync provisioned for alice", in, uuid)
	}
	u := s.user(t, "alice")
	if u.Session.ID != st.SessionID || u.Session.Business != meetsync.SideLoggedIn || u.Session.Meeting != meetsync.SideLoggedIn {
		t.Fatalf("server session after login: %+v", u.Session)
	}
	acct := d.credentials(t, s)

	// The meeting: the SDK's statuses reach the user's state; the platform says the same.
	if err := d.sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	d.settle(t)
	if u := s.user(t, "alice"); u.Meeting.Status != "in_meeting" || u.Meeting.MeetingNum != num || u.Meeting.DeviceID != "laptop" {
		t.Fatalf("user in the meeting: %+v", u.Meeting)
	}
	eventually(t, "the platform's member_joined callback", func() bool {
		return s.hasEvent(t, "alice", meetsync.TypeMeetingMemberJoined, "meeting_num", num)
	})
	if err := d.sdk.LeaveMeeting(ctx); err != nil {
		t.Fatal(err)
	}
	d.settle(t)
	if u := s.user(t, "alice"); u.Meeting.Status != "idle" {
		t.Fatalf("user after leaving: %+v", u.Meeting)
	}
	eventually(t, "the platform's member_left callback", func() bool {
		return s.hasEvent(t, "alice", meetsync.TypeMeetingMemberLeft, "meeting_num", num)
	})

	if err := d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.State(); st.Business != meetsync.SideLoggedOut || st.Meeting != meetsync.SideLoggedOut || st.Err != nil {
		t.Fatalf("after logout: %+v", st)
	}
	if in, _ := d.sdk.LoggedIn(); in {
		t.Fatal("the SDK is still logged in after the logout")
	}
	if b, m := s.sessionOf(t, "alice"); b != meetsync.SideLoggedOut || m != meetsync.SideLoggedOut {
		t.Fatalf("server session after logout: %s/%s", b, m)
	}
	if loginWorks(t, s, acct) {
		t.Fatal("the meeting token still logs in after the logout: not revoked at the platform")
	}

	evs := s.events(t, "alice")
	want := []string{"session.login_started", "client.initialized", "session.logged_in",
		"meeting.status_changed", "meeting.status_changed", "session.logout_started", "session.logged_out"}
	if got := typesOf(evs); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if got := statusTrail(t, evs); fmt.Sprint(got) != fmt.Sprintf("[in_meeting@%s idle@%s]", num, num) {
		t.Fatalf("statuses %v", got)
	}
	if lo := dataOf(t, evs, meetsync.TypeSessionLoggedOut); lo["forced"] != false || lo["platform_revoked"] != true {
		t.Fatalf("session.logged_out data %v", lo)
	}
}

// TestSimNetworkDrop: in a meeting, the device loses meetsync while the
// SDK keeps reporting (its connection drops and returns, the user leaves
// and joins another meeting); the events wait in the offline queue, go out
// in order when the network is back, and the user's final state is the
// newest, with no stale event moving it back.
func TestSimNetworkDrop(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := ctxT(t)
	a, b := s.meeting(t, "planning"), s.meeting(t, "review")
	d := newSimDevice(t, s, "bob", "phone")
	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.sdk.JoinMeeting(ctx, a); err != nil {
		t.Fatal(err)
	}
	d.settle(t)
	if u := s.user(t, "bob"); u.Meeting.Status != "in_meeting" || u.Meeting.MeetingNum != a {
		t.Fatalf("before the drop: %+v", u.Meeting)
	}

	// meetsync is out of reach; the SDK goes on.
	d.net.SetOff(true)
	d.sdk.DropConnection()                          // CONNECTING
	d.sdk.Restore()                                 // INMEETING
	if err := d.sdk.LeaveMeeting(ctx); err != nil { // DISCONNECTING, IDLE
		t.Fatal(err)
	}
	if err := d.sdk.JoinMeeting(ctx, b); err != nil { // CONNECTING, INMEETING
		t.Fatal(err)
	}
	if err := d.sdk.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the device to notice it is offline", func() bool { return !d.State().Online })
	if st := d.State(); st.Queued != 6 {
		t.Fatalf("queued %d, want 6 (%+v)", st.Queued, st)
	}
	// meetsync heard only the platform meanwhile: the member left meeting a
	// (dropped), came back, left, and joined b.
	eventually(t, "the platform's callbacks", func() bool {
		return s.hasEvent(t, "bob", meetsync.TypeMeetingMemberJoined, "meeting_num", b)
	})
	if u := s.user(t, "bob"); u.Meeting.Status != "in_meeting" || u.Meeting.MeetingNum != a {
		t.Fatalf("while offline the device's last word stands: %+v", u.Meeting)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := d.Sync(short) // it waits for the network: it cannot succeed
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync without a network: %v", err)
	}

	// The network is back: the queue is flushed in order.
	d.net.SetOff(false)
	d.settle(t)
	evs := s.events(t, "bob", meetsync.TypeMeetingStatusChanged)
	want := fmt.Sprintf("[connecting@%[1]s in_meeting@%[1]s connecting@%[1]s in_meeting@%[1]s disconnecting@%[1]s idle@%[1]s connecting@%[2]s in_meeting@%[2]s]", a, b)
	if got := statusTrail(t, evs); fmt.Sprint(got) != want {
		t.Fatalf("statuses %v,\nwant %s", got, want)
	}
	st := d.State()
	if !st.Online || st.Queued != 0 {
		t.Fatalf("state after the flush %+v", st)
	}
	u := s.user(t, "bob")
	if u.Meeting.Status != "in_meeting" || u.Meeting.MeetingNum != b || u.Meeting.DeviceID != "phone" ||
		len(u.Devices) != 1 || u.Devices[0].LastClientSeq != st.LastSeq || evs[len(evs)-1].ClientSeq != st.LastSeq {
		t.Fatalf("user after the flush %+v (device's last client_seq %d)", u, st.LastSeq)
	}
	if len(d.notices.of(client.NoticeOffline)) == 0 || len(d.notices.of(client.NoticeSent)) == 0 {
		t.Fatal("no offline or sent notices")
	}
	// The session was never disturbed.
	if b, m := s.sessionOf(t, "bob"); b != meetsync.SideLoggedIn || m != meetsync.SideLoggedIn {
		t.Fatalf("server session %s/%s", b, m)
	}
	if err := d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if u := s.user(t, "bob"); u.Session.Business != meetsync.SideLoggedOut || u.Meeting.Status != "idle" {
		t.Fatalf("after logging out in a meeting: session %+v, meeting %+v", u.Session, u.Meeting)
	}
}

// TestSimKickedOut: the account logs in on another device (one device per
// account, as NEMeeting): the first device's SDK leaves its meeting and
// hears onKickOut; meetsync records session.kicked_out and the meeting
// side logged out, the business side stays.
func TestSimKickedOut(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := ctxT(t)
	s.Sim.SetMultiDevice(false)
	num := s.meeting(t, "all hands")
	d := newSimDevice(t, s, "carol", "laptop")
	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	d.settle(t)

	other := s.Sim.NewSDK("")
	if err := other.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.Login(ctx, d.credentials(t, s)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the device to be kicked out", func() bool { return d.State().Meeting == client.MeetingKickedOut })
	d.settle(t)
	if in, _ := d.sdk.LoggedIn(); in {
		t.Fatal("the first SDK is still logged in")
	}
	if st := d.State(); st.Business != meetsync.SideLoggedIn {
		t.Fatalf("the business side changed: %+v", st)
	}
	evs := s.events(t, "carol")
	types := typesOf(evs)
	if types[len(types)-1] != meetsync.TypeSessionKickedOut {
		t.Fatalf("events %v: want session.kicked_out last", types)
	}
	reason := meetsync.ReasonLoginOnOtherDevice.String()
	want := fmt.Sprintf("[connecting@%[1]s in_meeting@%[1]s disconnecting/%[2]s@%[1]s idle/%[2]s@%[1]s]", num, reason)
	if got := statusTrail(t, evs); fmt.Sprint(got) != want {
		t.Fatalf("statuses %v, want %s", got, want)
	}
	u := s.user(t, "carol")
	if u.Session.Business != meetsync.SideLoggedIn || u.Session.Meeting != meetsync.SideLoggedOut {
		t.Fatalf("server session after the kick-out: %+v", u.Session)
	}
	if u.Meeting.Status != "idle" || u.Meeting.Reason != reason {
		t.Fatalf("user meeting after the kick-out: %+v", u.Meeting)
	}
	// The user logs out: both sides end.
	if err := d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if b, m := s.sessionOf(t, "carol"); b != meetsync.SideLoggedOut || m != meetsync.SideLoggedOut {
		t.Fatalf("server session after logout: %s/%s", b, m)
	}
}

// TestSimServerLogout: the business system logs the user out from its
// backend (POST /v1/users/{id}/logout) while the device is in a meeting:
// the platform revokes the token, the device's command stream gets a
// logout, the Coordinator logs the SDK out and acknowledges, and the
// session ends logged out, confirmed by the device (not forced).
//
// With a fast platform the SDK usually hears onAuthInfoExpired (the token
// is revoked) before the device gets the logout command: that is no auth
// expiry to recover from. With a slow platform (300 ms per call, as a
// platform across the internet may take) the device gets the command and
// acknowledges it while meetsync still waits for the revocation.
func TestSimServerLogout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		latency time.Duration
	}{{"fast platform", 0}, {"slow platform", 300 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testSimServerLogout(t, tc.latency)
		})
	}
}

func testSimServerLogout(t *testing.T, latency time.Duration) {
	s := setup(t)
	ctx := ctxT(t)
	num := s.meeting(t, "retro")
	d := newSimDevice(t, s, "dave", "laptop")
	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	d.settle(t)
	acct := d.credentials(t, s)

	s.Sim.SetLatency(latency)
	out, err := s.app().Logout(ctx, "dave", client.LogoutRequest{Reason: "admin"})
	if err != nil || out.State != meetsync.SideLoggingOut {
		t.Fatalf("logout %+v, %v", out, err)
	}
	eventually(t, "the device to log out", func() bool { return d.State().Business == meetsync.SideLoggedOut })
	s.sessionEnded(t, "dave")
	if st := d.State(); st.Meeting != meetsync.SideLoggedOut || st.Err != nil {
		t.Fatalf("device state %+v", st)
	}
	if in, _ := d.sdk.LoggedIn(); in {
		t.Fatal("the SDK is still logged in")
	}
	if cmds := d.notices.of(client.NoticeCommand); len(cmds) == 0 || cmds[0].Command.Type != client.CommandLogout {
		t.Fatalf("command notices %+v", cmds)
	}
	s.Sim.SetLatency(0)
	if loginWorks(t, s, acct) {
		t.Fatal("the meeting token still logs in after the logout")
	}
	evs := s.events(t, "dave")
	lo := dataOf(t, evs, meetsync.TypeSessionLoggedOut)
	if lo["forced"] != false || lo["platform_revoked"] != true || fmt.Sprint(lo["devices_confirmed"]) != "[laptop]" {
		t.Fatalf("session.logged_out data %v", lo)
	}
	// The token revoked for the logout is no auth expiry, and no new
	// credentials were fetched to log in again.
	for _, typ := range typesOf(evs) {
		if typ == meetsync.TypeSessionAuthExpired || typ == meetsync.TypeSessionLoginFailed {
			t.Fatalf("events %v: a revocation for a logout was taken for an auth expiry", typesOf(evs))
		}
	}
	if n := len(d.notices.of(client.NoticeLoginAttempt)); n != 1 {
		t.Fatalf("%d meeting login attempts, want the first only", n)
	}
	// The meeting the SDK left with the logout is the user's last status.
	if u := s.user(t, "dave"); u.Meeting.Status != "idle" {
		t.Fatalf("user meeting after the logout %+v (statuses %v)", u.Meeting, statusTrail(t, evs))
	}
}

// TestSimAuthExpired: the platform stops taking the device's meeting
// token while it is in a meeting (no logout): the SDK leaves with
// AUTH_INFO_EXPIRED and hears onAuthInfoExpired; the Coordinator reports
// session.auth_expired, gets fresh credentials and logs the SDK in again.
func TestSimAuthExpired(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := ctxT(t)
	num := s.meeting(t, "sync")
	d := newSimDevice(t, s, "hana", "tablet")
	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	d.settle(t)
	old := d.credentials(t, s)
	if _, err := s.Sim.Provider(s.AppID).RevokeToken(ctx, old.UserUUID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the SDK to log in again", func() bool {
		in, _ := d.sdk.LoggedIn()
		return in && d.State().Meeting == meetsync.SideLoggedIn && len(d.notices.of(client.NoticeLoginAttempt)) == 2
	})
	d.settle(t)
	if fresh := d.credentials(t, s); fresh.UserToken == old.UserToken || fresh.UserUUID != old.UserUUID {
		t.Fatal("the SDK logged in again without a fresh token of the same account")
	}
	evs := s.events(t, "hana")
	types := typesOf(evs)
	if i := slices.Index(types, meetsync.TypeSessionAuthExpired); i < 0 || !slices.Contains(types[i:], meetsync.TypeSessionLoggedIn) {
		t.Fatalf("events %v: want session.auth_expired, then the new login reported", types)
	}
	reason := meetsync.ReasonAuthInfoExpired.String()
	want := fmt.Sprintf("[connecting@%[1]s in_meeting@%[1]s disconnecting/%[2]s@%[1]s idle/%[2]s@%[1]s]", num, reason)
	if got := statusTrail(t, evs); fmt.Sprint(got) != want {
		t.Fatalf("statuses %v, want %s", got, want)
	}
	if b, m := s.sessionOf(t, "hana"); b != meetsync.SideLoggedIn || m != meetsync.SideLoggedIn {
		t.Fatalf("server session %s/%s", b, m)
	}
	// The device goes on: it joins the meeting again.
	if err := d.sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	d.settle(t)
	if u := s.user(t, "hana"); u.Meeting.Status != "in_meeting" {
		t.Fatalf("user %+v", u.Meeting)
	}
}

// TestSimPlatformDownAtLogin: the platform is down for the whole login;
// the Coordinator retries, then its policy decides: rollback logs the
// business side out too; degrade keeps it, and meetsync resolves the
// session by the app's policy at its deadline.
func TestSimPlatformDownAtLogin(t *testing.T) {
	t.Parallel()
	t.Run("rollback", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := ctxT(t)
		// A first login: meetsync cannot even provision the meeting account.
		s.Sim.SetOutage(true)
		d := newSimDevice(t, s, "erin", "laptop", func(c *client.Config) { c.LoginAttempts = 3 })
		if err := d.Init(ctx); meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE {
			t.Fatalf("init during the outage: %v, want the SDK's unavailable", err)
		}
		err := d.Login(ctx)
		if !errors.Is(err, client.ErrRolledBack) || meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE {
			t.Fatalf("login: %v, want ErrRolledBack wrapping unavailable", err)
		}
		if n := len(d.notices.of(client.NoticeLoginAttempt)); n != 3 {
			t.Fatalf("%d login attempts, want 3", n)
		}
		if st := d.State(); st.Business != meetsync.SideLoggedOut || st.Meeting != meetsync.SideLoggedOut {
			t.Fatalf("state %+v", st)
		}
		if in, _ := d.sdk.LoggedIn(); in {
			t.Fatal("the SDK logged in")
		}
		if b, m := s.sessionOf(t, "erin"); b != meetsync.SideLoggedOut || m != meetsync.SideLoggedOut {
			t.Fatalf("server session %s/%s", b, m)
		}
		evs := s.events(t, "erin")
		got := typesOf(evs)
		failed := 0
		for _, typ := range got {
			if typ == meetsync.TypeSessionLoginFailed {
				failed++
			}
		}
		if failed != 3 || got[0] != meetsync.TypeSessionLoginStarted || !slices.Equal(got[len(got)-2:], []string{meetsync.TypeSessionLogoutStarted, meetsync.TypeSessionLoggedOut}) {
			t.Fatalf("events %v: want the login, each failed attempt reported, then the logout", got)
		}
		if d := dataOf(t, evs, meetsync.TypeSessionLoginStarted); d["meeting_credentials"] != false {
			t.Fatalf("login_started %v: want no credentials", d)
		}
		if lo := dataOf(t, evs, meetsync.TypeSessionLoggedOut); lo["forced"] != false {
			t.Fatalf("logged_out %v", lo)
		}
		// The platform is back: the user logs in.
		s.Sim.SetOutage(false)
		if err := d.Login(ctx); err != nil {
			t.Fatal(err)
		}
		if b, m := s.sessionOf(t, "erin"); b != meetsync.SideLoggedIn || m != meetsync.SideLoggedIn {
			t.Fatalf("server session after the outage %s/%s", b, m)
		}
	})
	t.Run("degrade", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := ctxT(t)
		if _, err := s.app().UpdateApp(ctx, client.AppParams{SessionPolicy: client.Ptr(client.PolicyDegrade)}); err != nil {
			t.Fatal(err)
		}
		// The account exists (the user logged in before): the login hands
		// out its credentials, but the SDK cannot reach the platform.
		if _, err := s.app().Login(ctx, "finn", client.LoginRequest{DeviceID: "old"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.app().Logout(ctx, "finn", client.LogoutRequest{}); err != nil {
			t.Fatal(err)
		}
		s.advance(t, 31*time.Second) // the old device never confirms: the logout is forced
		if b, _ := s.sessionOf(t, "finn"); b != meetsync.SideLoggedOut {
			t.Fatalf("old session %s", b)
		}
		d := newSimDevice(t, s, "finn", "laptop", func(c *client.Config) { c.LoginAttempts = 3; c.Policy = client.PolicyDegrade })
		if err := d.Init(ctx); err != nil {
			t.Fatal(err)
		}
		s.Sim.SetOutage(true)
		err := d.Login(ctx)
		if !errors.Is(err, client.ErrDegraded) || meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE {
			t.Fatalf("login: %v, want ErrDegraded wrapping unavailable", err)
		}
		if st := d.State(); st.Business != meetsync.SideLoggedIn || st.Meeting != client.MeetingDegraded {
			t.Fatalf("state %+v", st)
		}
		if b, m := s.sessionOf(t, "finn"); b != meetsync.SideLoggedIn || m != meetsync.SidePending {
			t.Fatalf("server session before its deadline %s/%s", b, m)
		}
		// The deadline passes: meetsync degrades the session too.
		s.advance(t, 61*time.Second)
		if b, m := s.sessionOf(t, "finn"); b != meetsync.SideLoggedIn || m != meetsync.SideFailed {
			t.Fatalf("server session after its deadline %s/%s", b, m)
		}
		evs := s.events(t, "finn")
		if d := dataOf(t, evs, meetsync.TypeSessionDegraded); d["policy"] != client.PolicyDegrade {
			t.Fatalf("session.degraded %v", d)
		}
		if d := dataOf(t, evs, meetsync.TypeSessionLoginFailed); d["attempt"] != 3.0 {
			t.Fatalf("the last session.login_failed %v: want attempt 3", d)
		}
		// The platform comes back; the user logs out, then in with meetings.
		s.Sim.SetOutage(false)
		if err := d.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		if b, m := s.sessionOf(t, "finn"); b != meetsync.SideLoggedOut || m != meetsync.SideLoggedOut {
			t.Fatalf("server session after logout %s/%s", b, m)
		}
		if err := d.Login(ctx); err != nil {
			t.Fatal(err)
		}
		if st := d.State(); st.Meeting != meetsync.SideLoggedIn {
			t.Fatalf("state %+v", st)
		}
	})
}

// TestSimPlatformBackDuringLogin: the platform is down when the login
// starts and back during the Coordinator's retries: the SDK logs in.
func TestSimPlatformBackDuringLogin(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.Sim.SetOutage(true)
	d := newSimDevice(t, s, "gus", "laptop", func(c *client.Config) {
		c.LoginAttempts = 50
		c.OnNotice = func(n client.Notice) {
			if n.Kind == client.NoticeLoginAttempt && n.Attempt == 2 {
				s.Sim.SetOutage(false)
			}
		}
	})
	if err := d.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if in, _ := d.sdk.LoggedIn(); !in {
		t.Fatal("the SDK is not logged in")
	}
	if b, m := s.sessionOf(t, "gus"); b != meetsync.SideLoggedIn || m != meetsync.SideLoggedIn {
		t.Fatalf("server session %s/%s", b, m)
	}
}

// TestSimInvitation: the business system invites a logged-in user; the
// invitation reaches the device's OnInvitation; one is accepted and
// completed by joining the meeting (joined), another rejected; the device
// cannot answer someone else's invitation.
func TestSimInvitation(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := ctxT(t)
	num := s.meeting(t, "design review")
	d := newSimDevice(t, s, "noah", "laptop")
	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	next := func() client.Invitation {
		t.Helper()
		select {
		case inv := <-d.invites:
			return inv
		case <-time.After(wait):
			t.Fatal("no invitation reached the device")
		}
		return client.Invitation{}
	}
	state := func(id string) string {
		inv, err := s.app().GetInvitation(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return inv.State
	}

	created, err := s.app().CreateInvitations(ctx, client.InviteRequest{MeetingNum: num, Inviter: "olga", Invitees: []string{"noah"},
		Subject: "design review", ExpiresIn: client.Duration(10 * time.Minute)})
	if err != nil || len(created) != 1 {
		t.Fatalf("invite %+v, %v", created, err)
	}
	inv := next()
	if inv.ID != created[0].ID || inv.MeetingNum != num || inv.Inviter != "olga" || inv.Subject != "design review" || inv.CommandID == "" || inv.ExpiresAt.IsZero() {
		t.Fatalf("invitation on the device %+v, created %+v", inv, created[0])
	}
	// The device acknowledges the command: the invitation is ringing.
	eventually(t, "the invitation to be calling", func() bool { return state(inv.ID) == meetsync.InviteCalling })
	acc, err := d.AcceptInvitation(ctx, inv.ID)
	if err != nil || acc.State != meetsync.InviteAccepted || acc.Source != meetsync.SourceBusiness {
		t.Fatalf("accept %+v, %v", acc, err)
	}
	if again, err := d.AcceptInvitation(ctx, inv.ID); err != nil || again.State != meetsync.InviteAccepted {
		t.Fatalf("accepting again %+v, %v: want harmless", again, err)
	}
	// Joining the meeting completes it.
	if err := d.sdk.JoinMeeting(ctx, num); err != nil {
		t.Fatal(err)
	}
	d.settle(t)
	eventually(t, "the invitation to be joined", func() bool {
		s.runDue(t)
		return state(inv.ID) == meetsync.InviteJoined
	})

	// A second invitation, rejected.
	created, err = s.app().CreateInvitations(ctx, client.InviteRequest{MeetingNum: s.meeting(t, "lunch"), Inviter: "olga", Invitees: []string{"noah"}})
	if err != nil {
		t.Fatal(err)
	}
	inv2 := next()
	if inv2.ID != created[0].ID {
		t.Fatalf("second invitation %+v, created %+v", inv2, created[0])
	}
	eventually(t, "the second invitation to be calling", func() bool { return state(inv2.ID) == meetsync.InviteCalling })
	rej, err := d.RejectInvitation(ctx, inv2.ID, "busy")
	if err != nil || rej.State != meetsync.InviteRejected || rej.Reason != "busy" {
		t.Fatalf("reject %+v, %v", rej, err)
	}
	if _, err := d.AcceptInvitation(ctx, inv2.ID); meetsync.ErrorCode(err) != meetsync.ECONFLICT {
		t.Fatalf("accepting a rejected invitation: %v, want conflict", err)
	}
	// A third one, canceled by the business system, then a fourth that
	// expires: the device is told to take each off the screen.
	for _, cancel := range []bool{true, false} {
		exp := 10 * time.Minute
		if !cancel {
			exp = time.Minute
		}
		other := s.meeting(t, fmt.Sprint("later ", cancel))
		created, err = s.app().CreateInvitations(ctx, client.InviteRequest{MeetingNum: other, Inviter: "olga", Invitees: []string{"noah"}, ExpiresIn: client.Duration(exp)})
		if err != nil {
			t.Fatal(err)
		}
		if got := next(); got.ID != created[0].ID {
			t.Fatalf("invitation %+v, created %+v", got, created[0])
		}
		eventually(t, "the invitation to be calling", func() bool { return state(created[0].ID) == meetsync.InviteCalling })
		if cancel {
			if _, err := s.app().AnswerInvitation(ctx, created[0].ID, "cancel", "meeting moved"); err != nil {
				t.Fatal(err)
			}
		} else {
			s.advance(t, exp+time.Second)
		}
		select {
		case got := <-d.dropped:
			if got.ID != created[0].ID || got.MeetingNum != other {
				t.Fatalf("canceled invitation %+v, want %s", got, created[0].ID)
			}
		case <-time.After(wait):
			t.Fatalf("the device was not told that invitation %s ended (cancel %v)", created[0].ID, cancel)
		}
		want := meetsync.InviteCanceled
		if !cancel {
			want = meetsync.InviteExpired
		}
		if st := state(created[0].ID); st != want {
			t.Fatalf("invitation %s, want %s", st, want)
		}
	}
	// Someone else's invitation: forbidden with the device's token, and unchanged.
	if _, err := s.app().Login(ctx, "pia", client.LoginRequest{DeviceID: "p1"}); err != nil {
		t.Fatal(err)
	}
	theirs, err := s.app().CreateInvitations(ctx, client.InviteRequest{MeetingNum: num, Inviter: "noah", Invitees: []string{"pia"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.AcceptInvitation(ctx, theirs[0].ID); meetsync.ErrorCode(err) != meetsync.EFORBIDDEN {
		t.Fatalf("accepting pia's invitation with noah's token: %v, want forbidden", err)
	}
	if st := state(theirs[0].ID); st != meetsync.InviteWaitingCall {
		t.Fatalf("pia's invitation is %s", st)
	}

	// The invitee's invitation events, each invitation numbered in order of creation.
	var trail []string
	label := map[string]int{}
	for _, ev := range s.events(t, "noah", "invitation.*") {
		var m struct {
			ID string `json:"invitation_id"`
		}
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			t.Fatal(err)
		}
		if label[m.ID] == 0 {
			label[m.ID] = len(label) + 1
		}
		trail = append(trail, fmt.Sprintf("%d:%s", label[m.ID], strings.TrimPrefix(ev.Type, "invitation.")))
	}
	want := "[1:created 1:calling 1:accepted 1:joined 2:created 2:calling 2:rejected 3:created 3:calling 3:canceled 4:created 4:calling 4:expired]"
	if fmt.Sprint(trail) != want {
		t.Fatalf("invitation events %v,\nwant %s", trail, want)
	}
	// Without a session the Coordinator cannot answer.
	if err := d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RejectInvitation(ctx, theirs[0].ID, ""); meetsync.ErrorCode(err) != meetsync.EUNAUTHORIZED {
		t.Fatalf("answering without a session: %v, want unauthorized", err)
	}
}
