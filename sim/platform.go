package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meetsync/meetsync"
)

// Defaults of the run-time knobs.
const (
	// DefaultCallbackAttempts is how many times a callback is offered to
	// the sink before it is dropped (SetCallbackRetry).
	DefaultCallbackAttempts = 8
	// DefaultCallbackBackoff is the wait after the first failed attempt;
	// it doubles after each further failure, up to MaxCallbackBackoff.
	DefaultCallbackBackoff = 100 * time.Millisecond
	// MaxCallbackBackoff caps the wait between two attempts.
	MaxCallbackBackoff = 5 * time.Second
	// CallbackTolerance is how far a callback's CurTime may be from now
	// for VerifyCallback to accept it.
	CallbackTolerance = 5 * time.Minute
)

// stateVersion is the version of the JSON state file.
const stateVersion = 1

// firstMeetingNum is the first meeting number the platform hands out.
const firstMeetingNum = 100000001

// Platform is the simulated meeting platform. It is safe for concurrent
// use; every knob may be changed while it runs. Close it when done.
type Platform struct {
	// Now returns the current time. It defaults to time.Now; set it before
	// the Platform is used (tests).
	Now func() time.Time

	path string

	mu       sync.Mutex
	st       state
	byKey    map[string]*app   // app key → app
	sessions map[*SDK]struct{} // logged-in SDKs
	sdkSeq   uint64            // ids of SDKs, for a stable order
	closed   bool

	latency       atomic.Int64 // time.Duration
	memberTimeout atomic.Int64 // time.Duration
	outage        atomic.Bool
	multiDevice   atomic.Bool

	rateMu sync.Mutex
	rate   float64
	rng    *mrand.Rand

	statsMu sync.Mutex
	stats   Stats

	cb callbacks

	outageMu  sync.Mutex
	outageOff chan struct{} // closed when an outage ends; nil when there is none

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// state is what the platform persists.
type state struct {
	Version     int             `json:"version"`
	NextMeeting int64           `json:"next_meeting"`
	Apps        map[string]*app `json:"apps"`
}

// app is the platform's view of one meetsync app (NetEase: one AppKey).
type app struct {
	ID       string              `json:"id"`
	Key      string              `json:"key"`
	Secret   string              `json:"secret"`
	Accounts map[string]*account `json:"accounts"`
	Meetings map[string]*meeting `json:"meetings"`
}

type account struct {
	UUID      string    `json:"uuid"`
	Name      string    `json:"name"`
	Token     string    `json:"token"`
	Banned    bool      `json:"banned,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

type meeting struct {
	Num       string    `json:"num"`
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Host      string    `json:"host"`
	Password  string    `json:"password,omitempty"`
	State     string    `json:"state"`
	StartTime time.Time `json:"start_time,omitzero"`
	EndTime   time.Time `json:"end_time,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`

	// Members and invitations live only in this process: a member is a
	// connected SDK, and those do not survive a restart.
	members map[string]*SDK   // user uuid → the device in the meeting
	invites map[string]string // invitee uuid → inviter uuid
}

// Stats counts what the platform did since it was created.
type Stats struct {
	// Calls counts calls per method: the Provider's ("EnsureAccount",
	// "CreateMeeting", …), the platform's own ("Invite", "RemoveMember",
	// …) and the SDKs' ("sdk.Init", "sdk.Login", "sdk.JoinMeeting",
	// "sdk.EndMeeting").
	Calls map[string]int64
	// Failed counts calls that failed because of SetOutage or SetErrorRate.
	Failed int64
	// CallbacksQueued counts callbacks the platform generated for a sink.
	CallbacksQueued int64
	// CallbacksSent counts callbacks the sink accepted.
	CallbacksSent int64
	// CallbackErrors counts attempts the sink refused (returned an error).
	CallbackErrors int64
	// CallbacksDropped counts callbacks given up after their last attempt,
	// or discarded because no sink was set.
	CallbacksDropped int64
	// CallbacksHeld counts the times a callback's delivery had to wait
	// for an outage to end.
	CallbacksHeld int64
}

// New returns a Platform that keeps its state in memory only (tests).
func New() *Platform {
	p, _ := open("")
	return p
}

// Open returns a Platform that keeps its state in the JSON file at path,
// creating the file if it does not exist. The file is rewritten atomically
// (temporary file, fsync, rename) on every change, so a restarted process
// finds the apps, accounts, tokens and meetings it created. Meeting members
// and pending invitations are not kept: they are connected devices of the
// process that ended.
func Open(path string) (*Platform, error) {
	if path == "" {
		return nil, meetsync.FieldErrorf("path", "sim: a state file path is required (use sim.New for an in-memory platform)")
	}
	return open(path)
}

func open(path string) (*Platform, error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Platform{
		Now:      time.Now,
		path:     path,
		st:       state{Version: stateVersion, NextMeeting: firstMeetingNum, Apps: map[string]*app{}},
		byKey:    map[string]*app{},
		sessions: map[*SDK]struct{}{},
		rng:      mrand.New(mrand.NewPCG(1, 2)),
		stats:    Stats{Calls: map[string]int64{}},
		ctx:      ctx,
		cancel:   cancel,
	}
	p.cb.attempts = DefaultCallbackAttempts
	p.cb.backoff = DefaultCallbackBackoff
	p.cb.queues = map[string]*cbQueue{}
	if path == "" {
		return p, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := p.saveLocked(); err != nil {
			cancel()
			return nil, err
		}
		return p, nil
	case err != nil:
		cancel()
		return nil, fmt.Errorf("sim: read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		cancel()
		return nil, fmt.Errorf("sim: state file %s is not valid: %w", path, err)
	}
	if st.Version != stateVersion {
		cancel()
		return nil, fmt.Errorf("sim: state file %s has version %d, want %d", path, st.Version, stateVersion)
	}
	if st.Apps == nil {
		st.Apps = map[string]*app{}
	}
	if st.NextMeeting < firstMeetingNum {
		st.NextMeeting = firstMeetingNum
	}
	for id, a := range st.Apps {
		a.ID = id
		if a.Accounts == nil {
			a.Accounts = map[string]*account{}
		}
		if a.Meetings == nil {
			a.Meetings = map[string]*meeting{}
		}
		for _, m := range a.Meetings {
			m.members, m.invites = map[string]*SDK{}, map[string]string{}
		}
		p.byKey[a.Key] = a
	}
	p.st = st
	return p, nil
}

// Close stops callback delivery (callbacks still queued are dropped) and
// makes every later call fail with EUNAVAILABLE. It waits for the delivery
// goroutines to return. Closing twice is harmless.
func (p *Platform) Close() error {
	p.mu.Lock()
	p.closed = true
	for s := range p.sessions {
		s.stopTimerLocked()
	}
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	return nil
}

// SetLatency makes every platform call take at least d (0: no delay). A
// call whose context ends first fails with EUNAVAILABLE.
func (p *Platform) SetLatency(d time.Duration) { p.latency.Store(int64(max(d, 0))) }

// SetErrorRate makes a fraction rate (0 to 1, clamped) of platform calls
// fail with EUNAVAILABLE, chosen by a pseudo-random sequence started from
// seed so a test run can be repeated. 0 turns injected errors off.
func (p *Platform) SetErrorRate(rate float64, seed uint64) {
	rate = min(max(rate, 0), 1)
	p.rateMu.Lock()
	p.rate = rate
	p.rng = mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p.rateMu.Unlock()
}

// SetOutage turns a full outage on or off: while it is on, every platform
// call fails with EUNAVAILABLE and callbacks wait (they are delivered, in
// order, when the outage ends).
func (p *Platform) SetOutage(on bool) {
	p.outageMu.Lock()
	defer p.outageMu.Unlock()
	if p.outage.Swap(on) == on {
		return
	}
	if on {
		p.outageOff = make(chan struct{})
	} else if p.outageOff != nil {
		close(p.outageOff)
		p.outageOff = nil
	}
}

// SetMemberTimeout sets how long the platform keeps a member whose device
// lost its connection (SDK.DropConnection) before it removes it from the
// meeting and reports MEETING_MEMBER_LEAVE. 0 (the default) removes it at
// once; a device that reconnects within the timeout stays a member and no
// leave/entry callbacks are sent.
func (p *Platform) SetMemberTimeout(d time.Duration) { p.memberTimeout.Store(int64(max(d, 0))) }

// SetMultiDevice chooses whether one account may be logged in on several
// SDKs at once. The default (false) is NEMeeting's: a login on another
// device kicks the earlier device out (its listener hears OnKickOut).
func (p *Platform) SetMultiDevice(allow bool) { p.multiDevice.Store(allow) }

// Stats returns the platform's counters.
func (p *Platform) Stats() Stats {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	s := p.stats
	s.Calls = make(map[string]int64, len(p.stats.Calls))
	for k, v := range p.stats.Calls {
		s.Calls[k] = v
	}
	return s
}

func (p *Platform) count(f func(*Stats)) {
	p.statsMu.Lock()
	f(&p.stats)
	p.statsMu.Unlock()
}

// call is the gate every platform call goes through: it counts the call,
// waits out the latency, and fails it during an outage, for an injected
// error, after Close, or when ctx ends.
func (p *Platform) call(ctx context.Context, method string) error {
	p.count(func(s *Stats) { s.Calls[method]++ })
	if d := time.Duration(p.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		case <-p.ctx.Done():
			t.Stop()
		}
	}
	if err := ctx.Err(); err != nil {
		return meetsync.Errorf(meetsync.EUNAVAILABLE, "sim: %s: %v", method, err)
	}
	if p.ctx.Err() != nil {
		return meetsync.Errorf(meetsync.EUNAVAILABLE, "sim: %s: the platform is closed", method)
	}
	if p.outage.Load() {
		p.count(func(s *Stats) { s.Failed++ })
		return meetsync.Errorf(meetsync.EUNAVAILABLE, "sim: %s: the platform is down (outage)", method)
	}
	p.rateMu.Lock()
	fail := p.rate > 0 && p.rng.Float64() < p.rate
	p.rateMu.Unlock()
	if fail {
		p.count(func(s *Stats) { s.Failed++ })
		return meetsync.Errorf(meetsync.EUNAVAILABLE, "sim: %s: the platform did not answer (injected error)", method)
	}
	return nil
}

// appLocked returns the app with this id, creating it (with a new app key
// and secret) on first use. The new app is persisted with the next change.
func (p *Platform) appLocked(appID string) *app {
	if a, ok := p.st.Apps[appID]; ok {
		return a
	}
	a := &app{ID: appID, Key: randomHex(16), Secret: randomHex(32),
		Accounts: map[string]*account{}, Meetings: map[string]*meeting{}}
	p.st.Apps[appID] = a
	p.byKey[a.Key] = a
	return a
}

// AppKey returns the platform app key of a meetsync app (what an SDK is
// initialised with), creating the app on first use.
func (p *Platform) AppKey(appID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.appLocked(appID).Key
}

// saveLocked writes the state file (nothing for an in-memory platform).
func (p *Platform) saveLocked() error {
	if p.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(&p.st, "", "  ")
	if err != nil {
		return fmt.Errorf("sim: encode state: %w", err)
	}
	if err := writeFileAtomic(p.path, b); err != nil {
		return fmt.Errorf("sim: save state: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, written and fsynced, renamed over path, then the directory
// fsynced so the rename survives a crash.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // not supported everywhere; the rename is done either way
		d.Close()
	}
	return nil
}

// AppView is what the platform holds for one app, for the demo and tests.
type AppView struct {
	AppID    string
	AppKey   string
	Accounts []meetsync.PlatformAccount // sorted by user uuid
	Meetings []meetsync.PlatformMeeting // sorted by meeting number
}

// View returns what the platform holds for one app (not a platform call:
// no latency, outage or counters).
func (p *Platform) View(appID string) AppView {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(appID)
	v := AppView{AppID: appID, AppKey: a.Key}
	for _, acct := range a.Accounts {
		v.Accounts = append(v.Accounts, meetsync.PlatformAccount{UserUUID: acct.UUID, Exists: true, Name: acct.Name, Banned: acct.Banned})
	}
	sort.Slice(v.Accounts, func(i, j int) bool { return v.Accounts[i].UserUUID < v.Accounts[j].UserUUID })
	for _, m := range a.Meetings {
		v.Meetings = append(v.Meetings, m.view())
	}
	sort.Slice(v.Meetings, func(i, j int) bool { return v.Meetings[i].MeetingNum < v.Meetings[j].MeetingNum })
	return v
}

func (m *meeting) view() meetsync.PlatformMeeting {
	pm := meetsync.PlatformMeeting{MeetingNum: m.Num, MeetingID: m.ID, Subject: m.Subject, HostUUID: m.Host,
		State: m.State, Members: make([]string, 0, len(m.members)), StartTime: m.StartTime}
	if !m.StartedAt.IsZero() {
		pm.StartTime = m.StartedAt
	}
	for u := range m.members {
		pm.Members = append(pm.Members, u)
	}
	sort.Strings(pm.Members)
	return pm
}

// over reports whether the meeting has ended or was canceled.
func (m *meeting) over() bool {
	return m.State == meetsync.MeetingStateEnded || m.State == meetsync.MeetingStateCanceled
}

// newMeetingLocked creates a meeting in app a.
func (p *Platform) newMeetingLocked(a *app, req meetsync.MeetingRequest, subject string) *meeting {
	n := p.st.NextMeeting
	p.st.NextMeeting++
	m := &meeting{Num: strconv.FormatInt(n, 10), ID: strconv.FormatInt(n*10+7, 10), Subject: subject,
		Host: req.HostUUID, Password: req.Password, State: meetsync.MeetingStateScheduled,
		StartTime: req.StartTime, EndTime: req.EndTime, CreatedAt: p.Now().UTC(),
		members: map[string]*SDK{}, invites: map[string]string{}}
	a.Meetings[m.Num] = m
	return m
}

// joinLocked makes s (logged in as its account) a member of m, starting
// the meeting if it was scheduled. Another device of the same account that
// was in the meeting is moved out of it (LOGIN_ON_OTHER_DEVICE).
func (p *Platform) joinLocked(a *app, m *meeting, s *SDK) {
	uuid := s.account
	if o, ok := m.members[uuid]; ok {
		m.members[uuid] = s
		if o != s {
			o.meetingNum = ""
			o.stopTimerLocked()
			o.disconnectedLocked(meetsync.ReasonLoginOnOtherDevice, m.Num)
		}
		return
	}
	if m.State == meetsync.MeetingStateScheduled {
		m.State = meetsync.MeetingStateStarted
		m.StartedAt = p.Now().UTC()
		p.queueCallbackLocked(a, EventStateChange, stateData(m))
	}
	m.members[uuid] = s
	delete(m.invites, uuid)
	p.queueCallbackLocked(a, EventMemberEntry, memberData(a, m, uuid, ""))
}

// leaveLocked removes uuid from m's members and reports it.
func (p *Platform) leaveLocked(a *app, m *meeting, uuid, reason string) {
	if _, ok := m.members[uuid]; !ok {
		return
	}
	delete(m.members, uuid)
	p.queueCallbackLocked(a, EventMemberLeave, memberData(a, m, uuid, reason))
}

// endMeetingLocked ends a started meeting (or cancels a scheduled one):
// every member leaves (their SDKs hear IDLE with CLOSED_BY_HOST, or
// CLOSED_BY_SELF_AS_HOST for closer), then the state change is reported.
// An ended or canceled meeting is left as it is.
func (p *Platform) endMeetingLocked(a *app, m *meeting, closer *SDK) {
	if m.over() {
		return
	}
	uuids := make([]string, 0, len(m.members))
	for u := range m.members {
		uuids = append(uuids, u)
	}
	sort.Strings(uuids)
	for _, u := range uuids {
		s := m.members[u]
		p.leaveLocked(a, m, u, "closed")
		reason := meetsync.ReasonClosedByHost
		if s == closer {
			reason = meetsync.ReasonClosedBySelfAsHost
		}
		s.meetingNum = ""
		s.stopTimerLocked()
		s.disconnectedLocked(reason, m.Num)
	}
	if m.State == meetsync.MeetingStateStarted {
		m.State = meetsync.MeetingStateEnded
	} else {
		m.State = meetsync.MeetingStateCanceled
	}
	m.EndedAt = p.Now().UTC()
	clear(m.invites)
	p.queueCallbackLocked(a, EventStateChange, stateData(m))
}

// logoutSDKLocked logs an SDK out on the platform's initiative (token
// refreshed, account banned, login on another device): out of its meeting
// with IDLE and reason, then the listener's kick (OnKickOut or
// OnAuthInfoExpired).
func (p *Platform) logoutSDKLocked(s *SDK, reason meetsync.Reason, kick eventKind) {
	if s.meetingNum != "" {
		num := s.meetingNum
		if m, ok := s.app.Meetings[num]; ok && m.members[s.account] == s {
			p.leaveLocked(s.app, m, s.account, "kicked")
		}
		s.meetingNum = ""
		s.disconnectedLocked(reason, num)
	}
	s.stopTimerLocked()
	s.loggedIn = false
	delete(p.sessions, s)
	s.pushLocked(sdkEvent{kind: kick})
}

// sessionsLocked returns the logged-in SDKs of an account, in a stable order.
func (p *Platform) sessionsLocked(a *app, uuid string) []*SDK {
	var out []*SDK
	for s := range p.sessions {
		if s.app == a && s.account == uuid {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// Invite invites an account into a meeting on the platform (what a host
// does in the meeting app) and reports MEETING_MEMBER_INVITE. inviterUUID
// may be "" (the host). ENOTFOUND for an unknown meeting or invitee,
// ECONFLICT when the meeting is over or the invitee is already in it.
func (p *Platform) Invite(ctx context.Context, appID, meetingNum, inviterUUID, inviteeUUID string) error {
	if meetingNum == "" {
		return meetsync.FieldErrorf("meeting_num", "meeting number is required")
	}
	if inviteeUUID == "" {
		return meetsync.FieldErrorf("invitee_uuid", "invitee account is required")
	}
	if err := p.call(ctx, "Invite"); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(appID)
	m, err := findMeeting(a, meetingNum)
	if err != nil {
		return err
	}
	if m.over() {
		return meetsync.Errorf(meetsync.ECONFLICT, "meeting %s is %s", meetingNum, m.State)
	}
	if _, ok := a.Accounts[inviteeUUID]; !ok {
		return meetsync.Errorf(meetsync.ENOTFOUND, "no meeting account %q", inviteeUUID)
	}
	if _, ok := m.members[inviteeUUID]; ok {
		return meetsync.Errorf(meetsync.ECONFLICT, "account %q is already in meeting %s", inviteeUUID, meetingNum)
	}
	if inviterUUID == "" {
		inviterUUID = m.Host
	}
	m.invites[inviteeUUID] = inviterUUID
	p.queueCallbackLocked(a, EventInvite, inviteData(m, inviteeUUID, inviterUUID))
	return nil
}

// CancelInvite withdraws a pending invitation and reports
// MEETING_MEMBER_INVITE_CANCEL. ENOTFOUND when there is none.
func (p *Platform) CancelInvite(ctx context.Context, appID, meetingNum, inviteeUUID string) error {
	if err := p.call(ctx, "CancelInvite"); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(appID)
	m, err := findMeeting(a, meetingNum)
	if err != nil {
		return err
	}
	inviter, ok := m.invites[inviteeUUID]
	if !ok {
		return meetsync.Errorf(meetsync.ENOTFOUND, "no pending invitation of %q to meeting %s", inviteeUUID, meetingNum)
	}
	delete(m.invites, inviteeUUID)
	p.queueCallbackLocked(a, EventInviteCancel, inviteData(m, inviteeUUID, inviter))
	return nil
}

// RemoveMember removes an account from a meeting, as its host would: the
// device hears DISCONNECTING and IDLE with REMOVED_BY_HOST and
// MEETING_MEMBER_LEAVE is reported. ENOTFOUND for an unknown meeting or an account not in it.
func (p *Platform) RemoveMember(ctx context.Context, appID, meetingNum, userUUID string) error {
	if err := p.call(ctx, "RemoveMember"); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(appID)
	m, err := findMeeting(a, meetingNum)
	if err != nil {
		return err
	}
	s, ok := m.members[userUUID]
	if !ok {
		return meetsync.Errorf(meetsync.ENOTFOUND, "account %q is not in meeting %s", userUUID, meetingNum)
	}
	p.leaveLocked(a, m, userUUID, "removed")
	s.meetingNum = ""
	s.stopTimerLocked()
	s.disconnectedLocked(meetsync.ReasonRemovedByHost, meetingNum)
	return nil
}

func findMeeting(a *app, num string) (*meeting, error) {
	m, ok := a.Meetings[num]
	if !ok {
		return nil, meetsync.Errorf(meetsync.ENOTFOUND, "no meeting %q", num)
	}
	return m, nil
}

// randomHex returns n random bytes as lowercase hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
