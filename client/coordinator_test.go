package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
)

// fakeSDK is a meeting SDK for the tests: it records what it is asked,
// fails as told, and fires the listener's callbacks on demand.
type fakeSDK struct {
	mu        sync.Mutex
	listener  client.MeetingListener
	inits     int
	initErr   error
	loginErrs []error // consumed one per login; nil entries succeed
	loginErr  error   // after loginErrs: every login
	logins    []meetsync.MeetingAccount
	logouts   int
	logoutErr error
	loggedIn  bool
}

func (s *fakeSDK) Init(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inits++
	return s.initErr
}

func (s *fakeSDK) Login(ctx context.Context, acct meetsync.MeetingAccount) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logins = append(s.logins, acct)
	err := s.loginErr
	if len(s.loginErrs) > 0 {
		err, s.loginErrs = s.loginErrs[0], s.loginErrs[1:]
	}
	s.loggedIn = err == nil
	return err
}

func (s *fakeSDK) Logout(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logouts++
	s.loggedIn = false
	return s.logoutErr
}

func (s *fakeSDK) JoinMeeting(ctx context.Context, num string) error {
	s.status(meetsync.StatusConnecting, meetsync.ReasonBySelf, num)
	s.status(meetsync.StatusInMeeting, meetsync.ReasonBySelf, num)
	return nil
}

func (s *fakeSDK) LeaveMeeting(ctx context.Context) error {
	s.status(meetsync.StatusIdle, meetsync.ReasonBySelf, "")
	return nil
}

func (s *fakeSDK) SetListener(l client.MeetingListener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listener = l
}

func (s *fakeSDK) status(st meetsync.MeetingStatus, r meetsync.Reason, num string) {
	s.mu.Lock()
	l := s.listener
	s.mu.Unlock()
	l.OnMeetingStatusChanged(st, r, num)
}

func (s *fakeSDK) counts() (inits, logins, logouts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inits, len(s.logins), s.logouts
}

// business wraps a BusinessSystem with failures and counts.
type business struct {
	client.BusinessSystem
	mu                  sync.Mutex
	initErr, loginErr   error
	logoutErr           error
	inits, logins, outs int
}

func (b *business) Init(ctx context.Context) error {
	b.mu.Lock()
	b.inits++
	err := b.initErr
	b.mu.Unlock()
	if err != nil {
		return err
	}
	return b.BusinessSystem.Init(ctx)
}

func (b *business) Login(ctx context.Context) (*client.LoginResult, error) {
	b.mu.Lock()
	b.logins++
	err := b.loginErr
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return b.BusinessSystem.Login(ctx)
}

func (b *business) Logout(ctx context.Context) error {
	b.mu.Lock()
	b.outs++
	err := b.logoutErr
	b.mu.Unlock()
	if err != nil {
		return err
	}
	return b.BusinessSystem.Logout(ctx)
}

// notices records a Coordinator's notices.
type notices struct {
	mu  sync.Mutex
	all []client.Notice
}

func (n *notices) add(x client.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.all = append(n.all, x)
}

func (n *notices) of(kind client.NoticeKind) []client.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []client.Notice
	for _, x := range n.all {
		if x.Kind == kind {
			out = append(out, x)
		}
	}
	return out
}

// device is a Coordinator under test with its fakes.
type device struct {
	*client.Coordinator
	sdk     *fakeSDK
	biz     *business
	notices *notices
	dir     string
}

type deviceOpt func(*client.Config)

// newDevice starts a Coordinator for user on device d1, whose API client
// talks to url (the server, or a proxy in front of it).
func newDevice(t *testing.T, s *server, url, user, dir string, opts ...deviceOpt) *device {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	d := &device{sdk: &fakeSDK{}, notices: &notices{}, dir: dir}
	d.biz = &business{BusinessSystem: &client.APIBusiness{Client: s.app(), UserID: user, DeviceID: "d1", DisplayName: "User " + user}}
	cfg := client.Config{
		Client:   client.New(url, client.WithRetry(client.Retry{Attempts: 2, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})),
		SDK:      d.sdk,
		Business: d.biz,
		QueueDir: dir,
		// Long enough that no test depends on a timer firing: Sync or
		// another event releases a held status.
		Debounce:     time.Hour,
		LoginBackoff: time.Millisecond, LoginMaxBackoff: 5 * time.Millisecond,
		SendBackoff: 5 * time.Millisecond, SendMaxBackoff: 50 * time.Millisecond,
		OnNotice: d.notices.add,
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

func (d *device) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.Sync(ctx); err != nil {
		t.Fatalf("sync: %v (state %+v)", err, d.State())
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// statuses returns the statuses of a user's meeting.status_changed events
// and checks that their client_seq increases.
func statuses(t *testing.T, evs []*meetsync.Event) []meetsync.MeetingStatus {
	t.Helper()
	var out []meetsync.MeetingStatus
	var last int64
	for _, ev := range evs {
		if ev.ClientSeq <= last {
			t.Fatalf("client_seq %d after %d: not increasing", ev.ClientSeq, last)
		}
		last = ev.ClientSeq
		if st, _, _, ok := ev.StatusChange(); ok {
			out = append(out, st)
		}
	}
	return out
}

func TestCoordinatorInitLoginLogout(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "alice", "")
	ctx := ctxT(t)

	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.State(); !st.BusinessReady || !st.MeetingReady || st.Business != meetsync.SideLoggedOut {
		t.Fatalf("after init: %+v", st)
	}
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	st := d.State()
	if st.Business != meetsync.SideLoggedIn || st.Meeting != meetsync.SideLoggedIn || st.UserID != "alice" || st.DeviceID != "d1" || st.SessionID == "" {
		t.Fatalf("after login: %+v", st)
	}
	if _, logins, _ := d.sdk.counts(); logins != 1 || d.sdk.logins[0].UserToken == "" {
		t.Fatalf("SDK logins: %+v", d.sdk.logins)
	}
	if b, m := s.sessionOf(t, "alice"); b != meetsync.SideLoggedIn || m != meetsync.SideLoggedIn {
		t.Fatalf("server session: %s/%s", b, m)
	}
	// The init before the login was reported right after it.
	inits := s.events(t, "alice", meetsync.TypeClientInitialized)
	if len(inits) != 1 || inits[0].DeviceID != "d1" {
		t.Fatalf("client.initialized events: %v", inits)
	}
	var report client.InitReport
	if err := json.Unmarshal(inits[0].Data, &report); err != nil || !report.Business.OK || !report.Meeting.OK {
		t.Fatalf("init report %s: %v", inits[0].Data, err)
	}
	if err := d.Login(ctx); meetsync.ErrorCode(err) != meetsync.ECONFLICT {
		t.Fatalf("a second login: %v, want conflict", err)
	}

	// The seed's status sync: the SDK's changes reach the user's state.
	if err := d.sdk.JoinMeeting(ctx, "123456"); err != nil {
		t.Fatal(err)
	}
	d.sync(t)
	u, err := s.app().GetUser(ctx, "alice")
	if err != nil || u.Meeting.Status != "in_meeting" || u.Meeting.MeetingNum != "123456" || u.Meeting.DeviceID != "d1" {
		t.Fatalf("user after joining: %+v, %v", u, err)
	}

	if err := d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.State(); st.Business != meetsync.SideLoggedOut || st.Meeting != meetsync.SideLoggedOut {
		t.Fatalf("after logout: %+v", st)
	}
	if _, _, logouts := d.sdk.counts(); logouts != 1 {
		t.Fatalf("SDK logouts: %d", logouts)
	}
	s.sessionEnded(t, "alice")
	if err := d.Logout(ctx); err != nil {
		t.Fatalf("a second logout: %v", err)
	}
	// Logged in again, the device numbers on.
	last := d.State().LastSeq
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	d.sdk.status(meetsync.StatusIdle, meetsync.ReasonBySelf, "")
	d.sync(t)
	if st := d.State(); st.LastSeq <= last {
		t.Fatalf("client_seq %d after %d", st.LastSeq, last)
	}
}

func TestCoordinatorInitFailures(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "bob", "")
	ctx := ctxT(t)
	d.sdk.initErr = errors.New("no camera")
	d.biz.initErr = errors.New("backend down")
	err := d.Init(ctx)
	if err == nil || !errors.Is(err, d.sdk.initErr) || !errors.Is(err, d.biz.initErr) {
		t.Fatalf("init: %v, want both failures", err)
	}
	if st := d.State(); st.BusinessReady || st.MeetingReady {
		t.Fatalf("state %+v", st)
	}
	// The meeting SDK's init is tried again by the login.
	d.sdk.mu.Lock()
	d.sdk.initErr = nil
	d.sdk.mu.Unlock()
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if inits, _, _ := d.sdk.counts(); inits != 2 {
		t.Fatalf("SDK inits: %d, want 2", inits)
	}
	evs := s.events(t, "bob", meetsync.TypeClientInitialized)
	if len(evs) != 1 {
		t.Fatalf("client.initialized events: %d", len(evs))
	}
	var report client.InitReport
	if err := json.Unmarshal(evs[0].Data, &report); err != nil || report.Business.OK || report.Meeting.OK || report.Meeting.Message != "no camera" {
		t.Fatalf("init report %s", evs[0].Data)
	}
}

func TestCoordinatorLoginRetries(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "carol", "")
	ctx := ctxT(t)
	d.sdk.loginErrs = []error{errors.New("network"), errors.New("timeout")}
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	attempts := d.notices.of(client.NoticeLoginAttempt)
	if len(attempts) != 3 || attempts[0].Err == nil || attempts[1].Err == nil || attempts[2].Err != nil || attempts[2].Attempt != 3 {
		t.Fatalf("login attempts: %+v", attempts)
	}
	if st := d.State(); st.Meeting != meetsync.SideLoggedIn {
		t.Fatalf("state %+v", st)
	}
	// Each attempt was reported: two failures (with the step and the SDK's message), then the success.
	var reported []string
	for _, ev := range s.events(t, "carol", meetsync.TypeSessionLoginFailed, meetsync.TypeSessionLoggedIn) {
		var d struct {
			Attempt int    `json:"attempt"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		reported = append(reported, fmt.Sprintf("%s/%d/%s", ev.Type, d.Attempt, d.Message))
	}
	if want := "[session.login_failed/1/meeting SDK login: network session.login_failed/2/meeting SDK login: timeout session.logged_in/0/]"; fmt.Sprint(reported) != want {
		t.Fatalf("reported results %v, want %s", reported, want)
	}
	if b, m := s.sessionOf(t, "carol"); b != meetsync.SideLoggedIn || m != meetsync.SideLoggedIn {
		t.Fatalf("server session: %s/%s", b, m)
	}
}

func TestCoordinatorRollback(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "dave", "", func(c *client.Config) { c.LoginAttempts = 3 })
	ctx := ctxT(t)
	sdkErr := errors.New("platform refuses")
	d.sdk.loginErr = sdkErr
	err := d.Login(ctx)
	if !errors.Is(err, client.ErrRolledBack) || !errors.Is(err, sdkErr) {
		t.Fatalf("login: %v, want ErrRolledBack wrapping the SDK error", err)
	}
	if _, logins, _ := d.sdk.counts(); logins != 3 {
		t.Fatalf("SDK logins: %d, want 3", logins)
	}
	st := d.State()
	if st.Business != meetsync.SideLoggedOut || st.Meeting != meetsync.SideLoggedOut || !errors.Is(st.Err, client.ErrRolledBack) {
		t.Fatalf("state %+v", st)
	}
	if d.biz.outs != 1 {
		t.Fatalf("business logouts: %d", d.biz.outs)
	}
	s.sessionEnded(t, "dave")
	// The user may log in again.
	d.sdk.mu.Lock()
	d.sdk.loginErr = nil
	d.sdk.mu.Unlock()
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCoordinatorDegrade(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "erin", "", func(c *client.Config) { c.LoginAttempts = 2; c.Policy = client.PolicyDegrade })
	ctx := ctxT(t)
	d.sdk.loginErr = errors.New("platform refuses")
	if err := d.Login(ctx); !errors.Is(err, client.ErrDegraded) {
		t.Fatalf("login: %v, want ErrDegraded", err)
	}
	if st := d.State(); st.Business != meetsync.SideLoggedIn || st.Meeting != client.MeetingDegraded {
		t.Fatalf("state %+v", st)
	}
	if d.biz.outs != 0 {
		t.Fatal("the degrade policy logged the business side out")
	}
	if b, _ := s.sessionOf(t, "erin"); b != meetsync.SideLoggedIn {
		t.Fatalf("server business side %s", b)
	}
	if err := d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.State(); st.Business != meetsync.SideLoggedOut {
		t.Fatalf("state after logout %+v", st)
	}
}

func TestCoordinatorBusinessFailures(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "frank", "")
	ctx := ctxT(t)
	d.biz.loginErr = errors.New("wrong password")
	if err := d.Login(ctx); !errors.Is(err, d.biz.loginErr) {
		t.Fatalf("login: %v", err)
	}
	if _, logins, _ := d.sdk.counts(); logins != 0 {
		t.Fatal("the meeting SDK logged in after a failed business login")
	}
	if st := d.State(); st.Business != meetsync.SideLoggedOut {
		t.Fatalf("state %+v", st)
	}
	d.biz.mu.Lock()
	d.biz.loginErr = nil
	d.biz.logoutErr = errors.New("backend down")
	d.biz.mu.Unlock()
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	// A failed business logout changes nothing: the meeting stays logged in.
	if err := d.Logout(ctx); !errors.Is(err, d.biz.logoutErr) {
		t.Fatalf("logout: %v", err)
	}
	if st := d.State(); st.Business != meetsync.SideLoggedIn || st.Meeting != meetsync.SideLoggedIn {
		t.Fatalf("state %+v", st)
	}
	if _, _, logouts := d.sdk.counts(); logouts != 0 {
		t.Fatal("the SDK logged out after a failed business logout")
	}
	d.biz.mu.Lock()
	d.biz.logoutErr = nil
	d.biz.mu.Unlock()
	if err := d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCoordinatorDebounce(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "gina", "")
	ctx := ctxT(t)
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	// A burst: only the newest is sent.
	for _, st := range []meetsync.MeetingStatus{meetsync.StatusConnecting, meetsync.StatusWaiting, meetsync.StatusConnecting, meetsync.StatusInMeeting} {
		d.sdk.status(st, meetsync.ReasonBySelf, "777")
	}
	d.sync(t)
	if got := statuses(t, s.events(t, "gina", meetsync.TypeMeetingStatusChanged)); fmt.Sprint(got) != "[in_meeting]" {
		t.Fatalf("after a burst: %v", got)
	}
	// A flap back to the status already sent sends nothing.
	d.sdk.status(meetsync.StatusDisconnecting, meetsync.ReasonBySelf, "777")
	d.sdk.status(meetsync.StatusInMeeting, meetsync.ReasonBySelf, "777")
	d.sync(t)
	if got := statuses(t, s.events(t, "gina", meetsync.TypeMeetingStatusChanged)); fmt.Sprint(got) != "[in_meeting]" {
		t.Fatalf("after a flap: %v", got)
	}
	// Another event never overtakes a held status.
	d.sdk.status(meetsync.StatusIdle, meetsync.ReasonRemovedByHost, "")
	d.OnKickOut()
	d.sync(t)
	evs := s.events(t, "gina", meetsync.TypeMeetingStatusChanged, meetsync.TypeSessionKickedOut)
	if len(evs) != 3 || evs[1].Type != meetsync.TypeMeetingStatusChanged || evs[2].Type != meetsync.TypeSessionKickedOut {
		t.Fatalf("events: %v", evs)
	}
	if _, r, _, _ := evs[1].StatusChange(); r != meetsync.ReasonRemovedByHost {
		t.Fatalf("reason %v", r)
	}
	statuses(t, evs)
	if st := d.State(); st.Meeting != client.MeetingKickedOut {
		t.Fatalf("state after a kick out: %+v", st)
	}
}

func TestCoordinatorDebounceTimer(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "hank", "", func(c *client.Config) { c.Debounce = 20 * time.Millisecond })
	ctx := ctxT(t)
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	d.sdk.status(meetsync.StatusConnecting, 0, "1")
	d.sdk.status(meetsync.StatusInMeeting, 0, "1")
	// The window passes by itself: no Sync.
	eventually(t, "the held status to be sent", func() bool {
		u, err := s.app().GetUser(ctx, "hank")
		return err == nil && u.Meeting.Status == "in_meeting"
	})
}

func TestCoordinatorOfflineQueue(t *testing.T) {
	t.Parallel()
	s := setup(t)
	p := newProxy(t, s.URL)
	d := newDevice(t, s, p.URL(), "ivy", "", func(c *client.Config) { c.Debounce = -1 })
	ctx := ctxT(t)
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	d.sdk.status(meetsync.StatusConnecting, 0, "42")
	d.sdk.status(meetsync.StatusInMeeting, 0, "42")
	d.sync(t)

	// The network drops in the meeting: the changes wait on disk.
	p.SetDown(true)
	d.sdk.status(meetsync.StatusDisconnecting, meetsync.ReasonJoinChannelError, "42")
	d.sdk.status(meetsync.StatusConnecting, 0, "42")
	d.sdk.status(meetsync.StatusInMeeting, 0, "42")
	d.sdk.status(meetsync.StatusIdle, 0, "")
	eventually(t, "the device to notice it is offline", func() bool { return !d.State().Online })
	if st := d.State(); st.Queued != 4 {
		t.Fatalf("queued %d, want 4 (%+v)", st.Queued, st)
	}
	if u, err := s.app().GetUser(ctx, "ivy"); err != nil || u.Meeting.Status != "in_meeting" {
		t.Fatalf("user while offline: %+v, %v", u, err)
	}
	// Back online: flushed in order; the final state is the newest.
	p.SetDown(false)
	d.sync(t)
	got := statuses(t, s.events(t, "ivy", meetsync.TypeMeetingStatusChanged))
	if fmt.Sprint(got) != "[connecting in_meeting disconnecting connecting in_meeting idle]" {
		t.Fatalf("statuses %v", got)
	}
	u, err := s.app().GetUser(ctx, "ivy")
	if err != nil || u.Meeting.Status != "idle" || u.Devices[0].LastClientSeq != d.State().LastSeq {
		t.Fatalf("user after the flush: %+v, %v", u, err)
	}
	if st := d.State(); !st.Online || st.Queued != 0 {
		t.Fatalf("state %+v", st)
	}
	if len(d.notices.of(client.NoticeOffline)) == 0 || len(d.notices.of(client.NoticeSent)) == 0 {
		t.Fatal("no offline or sent notices")
	}
}

func TestCoordinatorRestartKeepsQueue(t *testing.T) {
	t.Parallel()
	s := setup(t)
	p := newProxy(t, s.URL)
	dir := t.TempDir()
	ctx := ctxT(t)
	d1 := newDevice(t, s, p.URL(), "jack", dir, func(c *client.Config) { c.Debounce = -1 })
	if err := d1.Login(ctx); err != nil {
		t.Fatal(err)
	}
	p.SetDown(true)
	d1.sdk.status(meetsync.StatusConnecting, 0, "9")
	d1.sdk.status(meetsync.StatusInMeeting, 0, "9")
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	if u, err := s.app().GetUser(ctx, "jack"); err == nil && u.LastSeq > 0 && u.Meeting.Status != "idle" {
		t.Fatalf("the events were sent while offline: %+v", u)
	}

	// The app starts again: what the queue held goes out after the login.
	p.SetDown(false)
	d2 := newDevice(t, s, p.URL(), "jack", dir, func(c *client.Config) { c.Debounce = -1 })
	if st := d2.State(); st.Queued != 2 || st.LastSeq != 2 {
		t.Fatalf("reopened state %+v", st)
	}
	if err := d2.Login(ctx); err != nil {
		t.Fatal(err)
	}
	d2.sdk.status(meetsync.StatusIdle, 0, "")
	d2.sync(t)
	got := statuses(t, s.events(t, "jack", meetsync.TypeMeetingStatusChanged))
	if fmt.Sprint(got) != "[connecting in_meeting idle]" {
		t.Fatalf("statuses %v", got)
	}
}

func TestCoordinatorRemoteLogout(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "kate", "")
	ctx := ctxT(t)
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	// The business backend logs the user out from elsewhere (an admin, a
	// web session): meetsync pushes a logout to the device.
	if _, err := s.app().Logout(ctx, "kate", client.LogoutRequest{Reason: "admin"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the device to log out", func() bool { return d.State().Business == meetsync.SideLoggedOut })
	if _, _, logouts := d.sdk.counts(); logouts != 1 {
		t.Fatalf("SDK logouts %d", logouts)
	}
	if cmds := d.notices.of(client.NoticeCommand); len(cmds) == 0 || cmds[0].Command.Type != client.CommandLogout {
		t.Fatalf("command notices %+v", cmds)
	}
	s.sessionEnded(t, "kate")
	// A status after the logout waits for the next session.
	d.sdk.status(meetsync.StatusIdle, 0, "")
	d.Coordinator.OnKickOut()
	if err := d.Sync(ctx); meetsync.ErrorCode(err) != meetsync.EUNAUTHORIZED {
		t.Fatalf("sync without a session: %v, want unauthorized", err)
	}
	if err := d.Login(ctx); err != nil {
		t.Fatalf("login after a remote logout: %v", err)
	}
	d.sync(t)
	if evs := s.events(t, "kate", meetsync.TypeSessionKickedOut); len(evs) != 1 {
		t.Fatalf("kicked_out events %v", evs)
	}
}

// TestCoordinatorForeignEventsDropped: events queued for one user are not
// sent with another user's session (they are dropped, and said so).
func TestCoordinatorForeignEventsDropped(t *testing.T) {
	t.Parallel()
	s := setup(t)
	p := newProxy(t, s.URL)
	dir := t.TempDir()
	ctx := ctxT(t)
	a := newDevice(t, s, p.URL(), "olga", dir, func(c *client.Config) { c.Debounce = -1 })
	if err := a.Login(ctx); err != nil {
		t.Fatal(err)
	}
	p.SetDown(true)
	a.sdk.status(meetsync.StatusInMeeting, 0, "1")
	a.Close()
	p.SetDown(false)

	b := newDevice(t, s, p.URL(), "pete", dir, func(c *client.Config) { c.Debounce = -1 })
	if err := b.Login(ctx); err != nil {
		t.Fatal(err)
	}
	b.sdk.status(meetsync.StatusConnecting, 0, "2")
	b.sync(t)
	if evs := s.events(t, "olga", meetsync.TypeMeetingStatusChanged); len(evs) != 0 {
		t.Fatalf("olga's event was sent with pete's session: %v", evs)
	}
	if got := statuses(t, s.events(t, "pete", meetsync.TypeMeetingStatusChanged)); fmt.Sprint(got) != "[connecting]" {
		t.Fatalf("pete's statuses %v", got)
	}
	dropped := b.notices.of(client.NoticeDropped)
	if len(dropped) != 1 || dropped[0].Seq != 1 || meetsync.ErrorCode(dropped[0].Err) != meetsync.EFORBIDDEN {
		t.Fatalf("dropped notices %+v", dropped)
	}
}

func TestCoordinatorAuthExpired(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "liam", "")
	ctx := ctxT(t)
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	first := d.sdk.logins[0]
	d.OnAuthInfoExpired()
	eventually(t, "the SDK to log in again", func() bool {
		_, logins, _ := d.sdk.counts()
		return logins == 2 && d.State().Meeting == meetsync.SideLoggedIn
	})
	d.sdk.mu.Lock()
	second := d.sdk.logins[1]
	d.sdk.mu.Unlock()
	if second.UserToken == first.UserToken || second.UserUUID != first.UserUUID {
		t.Fatalf("relogin with %+v after %+v: want a fresh token of the same account", second, first)
	}
	d.sync(t)
	if evs := s.events(t, "liam", meetsync.TypeSessionAuthExpired); len(evs) != 1 || evs[0].DeviceID != "d1" {
		t.Fatalf("auth_expired events %v", evs)
	}
}

// TestCoordinatorPlatformDownAtLogin: the platform is down when the user
// logs in for the first time, so the login answers no meeting
// credentials; the Coordinator fetches them again before each attempt and
// logs the SDK in once the platform is back (after the third attempt).
func TestCoordinatorPlatformDownAtLogin(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.Sim.SetOutage(true)
	rec := &notices{}
	d := newDevice(t, s, s.URL, "mia", "", func(c *client.Config) {
		c.LoginAttempts = 50
		c.OnNotice = func(n client.Notice) {
			rec.add(n)
			if n.Kind == client.NoticeLoginAttempt && n.Attempt == 3 {
				s.Sim.SetOutage(false)
			}
		}
	})
	d.notices = rec
	if err := d.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	attempts := d.notices.of(client.NoticeLoginAttempt)
	if len(attempts) < 4 || attempts[0].Err == nil || attempts[len(attempts)-1].Err != nil {
		t.Fatalf("attempts %+v", attempts)
	}
	if meetsync.ErrorCode(attempts[0].Err) != meetsync.EUNAVAILABLE {
		t.Fatalf("first attempt failed with %v, want unavailable (no credentials)", attempts[0].Err)
	}
	if _, logins, _ := d.sdk.counts(); logins != 1 {
		t.Fatalf("SDK logins %d: it must wait for credentials", logins)
	}
	if acct := d.sdk.logins[0]; acct.Provider != meetsync.ProviderSim || acct.UserUUID == "" || acct.UserToken == "" {
		t.Fatalf("SDK logged in with %+v", acct)
	}
	if b, m := s.sessionOf(t, "mia"); b != meetsync.SideLoggedIn || m != meetsync.SideLoggedIn {
		t.Fatalf("server session: %s/%s", b, m)
	}
}

func TestCoordinatorConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   client.Config
		field string
	}{
		{client.Config{}, "Client"},
		{client.Config{Client: client.New("http://x")}, "SDK"},
		{client.Config{Client: client.New("http://x"), SDK: &fakeSDK{}}, "Business"},
		{client.Config{Client: client.New("http://x"), SDK: &fakeSDK{}, Business: &client.APIBusiness{}}, "QueueDir"},
		{client.Config{Client: client.New("http://x"), SDK: &fakeSDK{}, Business: &client.APIBusiness{}, QueueDir: t.TempDir(), Policy: "maybe"}, "Policy"},
	} {
		_, err := client.NewCoordinator(tc.cfg)
		if meetsync.ErrorCode(err) != meetsync.EINVALID || meetsync.ErrorField(err) != tc.field {
			t.Errorf("config %+v: %v, want invalid %s", tc.cfg, err, tc.field)
		}
	}
}

// anonymous is a business system whose login answer does not say who logged in.
type anonymous struct{ client.BusinessSystem }

func (a anonymous) Login(ctx context.Context) (*client.LoginResult, error) {
	res, err := a.BusinessSystem.Login(ctx)
	if res != nil {
		res.UserID, res.DeviceID = "", ""
	}
	return res, err
}

func TestCoordinatorLoginResultWithoutUser(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "quinn", "", func(c *client.Config) {
		c.Business = anonymous{c.Business}
		c.Debounce = -1
	})
	ctx := ctxT(t)
	// Before any login there is no one to send a status for.
	d.sdk.status(meetsync.StatusIdle, 0, "")
	if st := d.State(); st.Queued != 0 || st.Err == nil {
		t.Fatalf("a status before any login: %+v", st)
	}
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	d.sdk.status(meetsync.StatusInMeeting, 0, "5")
	d.sync(t)
	// The server took the user and device from the token.
	evs := s.events(t, "quinn", meetsync.TypeMeetingStatusChanged)
	if len(evs) != 1 || evs[0].DeviceID != "d1" {
		t.Fatalf("events %v", evs)
	}
}

// TestCoordinatorCommandsReconnect: a logout pushed while the device is
// offline reaches it when the network returns (the command stream
// reconnects and unacknowledged commands come again).
func TestCoordinatorCommandsReconnect(t *testing.T) {
	t.Parallel()
	s := setup(t)
	p := newProxy(t, s.URL)
	d := newDevice(t, s, p.URL(), "rose", "")
	ctx := ctxT(t)
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	p.SetDown(true)
	eventually(t, "the device to notice it is offline", func() bool { return !d.State().Online })
	if _, err := s.app().Logout(ctx, "rose", client.LogoutRequest{}); err != nil {
		t.Fatal(err)
	}
	p.SetDown(false)
	eventually(t, "the device to log out", func() bool { return d.State().Business == meetsync.SideLoggedOut })
	if _, _, logouts := d.sdk.counts(); logouts != 1 {
		t.Fatalf("SDK logouts %d", logouts)
	}
	s.sessionEnded(t, "rose")
}
