package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/meetsync/meetsync"
)

// MeetingSDK is the meeting SDK as the Coordinator drives it (NEMeeting, or
// the simulator's sim.SDK). Every method may fail; Login and Init are
// retried by the Coordinator.
type MeetingSDK interface {
	Init(ctx context.Context) error
	Login(ctx context.Context, acct meetsync.MeetingAccount) error
	Logout(ctx context.Context) error
	JoinMeeting(ctx context.Context, meetingNum string) error
	LeaveMeeting(ctx context.Context) error
	// SetListener registers the listener of the SDK's callbacks.
	SetListener(l MeetingListener)
}

// MeetingListener receives the meeting SDK's callbacks (NEMeeting's
// onMeetingStatusChanged, onKickOut, onAuthInfoExpired). The Coordinator
// is one.
//
// It is an alias of an interface type literal, not a defined type, so that
// an SDK written without importing this package (sim.SDK) can declare
// SetListener with an identical parameter type and satisfy MeetingSDK.
type MeetingListener = interface {
	OnMeetingStatusChanged(status meetsync.MeetingStatus, arg meetsync.Reason, meetingNum string)
	OnKickOut()
	OnAuthInfoExpired()
}

// BusinessSystem is the app's own backend as the client sees it.
type BusinessSystem interface {
	Init(ctx context.Context) error
	// Login logs the user into the business system; the business backend calls meetsync's
	// POST /v1/users/{id}/login and hands back its answer.
	Login(ctx context.Context) (*LoginResult, error)
	Logout(ctx context.Context) error // the backend calls meetsync's logout
}

// Errors of Coordinator.Login when the meeting login failed for good;
// the error also wraps the last failure.
var (
	// ErrRolledBack: by the rollback policy the business session was
	// logged out too. The user is logged out of both systems.
	ErrRolledBack = errors.New("meeting login failed: the business login was rolled back")
	// ErrDegraded: by the degrade policy the business session stays;
	// meetings are unavailable (State().Meeting is MeetingDegraded).
	ErrDegraded = errors.New("meeting login failed: logged in without meetings")
)

// Meeting-side states of State.Meeting besides the meetsync.Side* ones.
const (
	// MeetingDegraded: the meeting login failed and the degrade policy
	// kept the business session.
	MeetingDegraded = "degraded"
	// MeetingKickedOut: the SDK reported onKickOut (the account logged
	// in elsewhere, or the platform removed it).
	MeetingKickedOut = "kicked_out"
)

// State is what a Coordinator knows now.
type State struct {
	// Business is the business side: meetsync.SideLoggedOut, SidePending
	// (logging in), SideLoggedIn or SideLoggingOut.
	Business string
	// Meeting is the meeting side: meetsync.SideLoggedOut, SidePending,
	// SideLoggedIn, SideFailed, SideLoggingOut, MeetingDegraded or
	// MeetingKickedOut.
	Meeting string
	// BusinessReady and MeetingReady are the results of the last Init.
	BusinessReady, MeetingReady bool
	// UserID, DeviceID and SessionID are the session's (kept after a
	// logout until the next login).
	UserID, DeviceID, SessionID string
	// Status, Reason and MeetingNum are the last status the SDK reported.
	Status     meetsync.MeetingStatus
	Reason     meetsync.Reason
	MeetingNum string
	// Online is false while the last attempt to reach meetsync failed.
	Online bool
	// Queued is how many events wait in the offline queue.
	Queued int
	// LastSeq is the device's newest client_seq.
	LastSeq int64
	// Err is the most recent error (nil if none yet).
	Err error
}

// NoticeKind says what a Notice is about.
type NoticeKind string

// Notice kinds.
const (
	NoticeState        NoticeKind = "state"         // the State changed (see State())
	NoticeQueued       NoticeKind = "queued"        // an event entered the offline queue (Type, Seq)
	NoticeSent         NoticeKind = "sent"          // the server stored queued events (Count, Seq: the last)
	NoticeDropped      NoticeKind = "dropped"       // the server refused a queued event for good (Type, Seq, Err)
	NoticeOffline      NoticeKind = "offline"       // meetsync could not be reached; will retry (Err)
	NoticeLoginAttempt NoticeKind = "login_attempt" // a meeting-SDK login attempt ended (Attempt, Err: nil on success)
	NoticeCommand      NoticeKind = "command"       // a command arrived (Command)
	NoticeInvitation   NoticeKind = "invitation"    // an invitation arrived (Invitation)
	// NoticeInvitationCanceled: an invitation pushed before closed —
	// canceled, expired, answered on another device, or joined elsewhere
	// (Invitation: its ID, meeting number and Data, with state and reason).
	NoticeInvitationCanceled NoticeKind = "invitation_canceled"
	NoticeError              NoticeKind = "error" // something failed that the Coordinator works around (Err)
)

// Notice is one thing that happened in a Coordinator, for Config.OnNotice.
type Notice struct {
	Kind       NoticeKind
	Err        error
	Type       string // event type (queued, dropped)
	Seq        int64  // client_seq (queued, dropped, sent)
	Count      int    // events (sent)
	Attempt    int    // login attempt number (login_attempt)
	Command    *Command
	Invitation *Invitation
}

// Invitation is a meeting invitation pushed to the device. The fields are
// read from the command's data when present; Data holds all of it (also
// the meeting's password, if it has one).
//
// The app answers it with Coordinator.AcceptInvitation (then joins the
// meeting with its SDK: joining completes the invitation) or
// RejectInvitation.
type Invitation struct {
	CommandID  string          `json:"-"`
	ID         string          `json:"invitation_id,omitempty"`
	MeetingNum string          `json:"meeting_num,omitempty"`
	Inviter    string          `json:"inviter,omitempty"`
	Subject    string          `json:"subject,omitempty"`
	ExpiresAt  time.Time       `json:"expires_at,omitzero"`
	Data       json.RawMessage `json:"-"`
}

// Config configures a Coordinator.
type Config struct {
	// Client is the API client: the server's base URL, HTTP client and
	// retry policy. Its credentials are not used: the Coordinator speaks
	// with the client token of each login. Required.
	Client *Client
	// SDK is the meeting SDK. Required.
	SDK MeetingSDK
	// Business is the app's business system. Required.
	Business BusinessSystem
	// QueueDir is the directory of the device's offline queue (one per
	// device and app install; it survives restarts). Required.
	QueueDir string
	// Queue configures the offline queue (defaults: see QueueConfig).
	Queue QueueConfig

	// Policy is what Login does when the meeting login failed after its
	// attempts: PolicyRollback (default; log the business side out too)
	// or PolicyDegrade (stay logged in, meetings unavailable).
	Policy string
	// LoginAttempts is the most meeting-SDK login attempts. Default 5.
	LoginAttempts int
	// LoginBackoff is the delay after the first failed attempt; it
	// doubles up to LoginMaxBackoff. Defaults 500 ms and 8 s. Attempts
	// stop at the session's deadline too.
	LoginBackoff, LoginMaxBackoff time.Duration

	// Debounce is how long a status change is held: a newer one within
	// the window replaces it (the newest wins; events never reorder).
	// Default 300 ms; negative turns debouncing off.
	Debounce time.Duration
	// MaxDebounce is the longest a status is held while changes keep
	// coming. Default 10 × Debounce.
	MaxDebounce time.Duration

	// SendBackoff is the delay before sending the queue again after
	// meetsync could not be reached; it doubles up to SendMaxBackoff.
	// Defaults 500 ms and 30 s.
	SendBackoff, SendMaxBackoff time.Duration
	// BatchSize is the most events sent in one request. Default 100.
	BatchSize int

	// OnInvitation is called with each invitation pushed to the device
	// (from the command stream's goroutine; it should return quickly).
	OnInvitation func(Invitation)
	// OnInvitationCanceled is called when an invitation pushed before
	// closed: canceled (by the inviter, the business system or on the
	// meeting platform), expired, answered on another device of the user
	// (or by the business system), or joined elsewhere. Take it off the
	// screen, whatever the reason. Only ID, MeetingNum and Data are set;
	// Data's "state" is the invitation's state now (canceled, expired,
	// accepted, rejected, no_answer, joined) and "reason" is there when the
	// change has one.
	OnInvitationCanceled func(Invitation)
	// OnNotice is called with everything that happens (from the
	// Coordinator's goroutines, never with a lock held; it should return
	// quickly and may call State).
	OnNotice func(Notice)
	// Logger logs the Coordinator's work (never a token). Default: none.
	Logger *slog.Logger
	// Now is the clock of the events' occurred_at. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Policy == "" {
		c.Policy = PolicyRollback
	}
	if c.LoginAttempts <= 0 {
		c.LoginAttempts = 5
	}
	if c.LoginBackoff <= 0 {
		c.LoginBackoff = 500 * time.Millisecond
	}
	if c.LoginMaxBackoff <= 0 {
		c.LoginMaxBackoff = 8 * time.Second
	}
	if c.Debounce == 0 {
		c.Debounce = 300 * time.Millisecond
	}
	if c.MaxDebounce <= 0 {
		c.MaxDebounce = 10 * c.Debounce
	}
	if c.SendBackoff <= 0 {
		c.SendBackoff = 500 * time.Millisecond
	}
	if c.SendMaxBackoff <= 0 {
		c.SendMaxBackoff = 30 * time.Second
	}
	if c.BatchSize <= 0 || c.BatchSize > meetsync.MaxBatchEvents {
		c.BatchSize = 100
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Client == nil:
		return meetsync.FieldErrorf("Client", "a Client is required")
	case c.SDK == nil:
		return meetsync.FieldErrorf("SDK", "a MeetingSDK is required")
	case c.Business == nil:
		return meetsync.FieldErrorf("Business", "a BusinessSystem is required")
	case c.QueueDir == "":
		return meetsync.FieldErrorf("QueueDir", "a directory for the offline queue is required")
	case c.Policy != PolicyRollback && c.Policy != PolicyDegrade:
		return meetsync.FieldErrorf("Policy", "policy must be %q or %q", PolicyRollback, PolicyDegrade)
	}
	return nil
}

// Coordinator keeps a business system and a meeting SDK in step on one
// device, through meetsync: the seed's init, login, logout and status
// sync (docs/client.md). It is the SDK's MeetingListener. Its methods are
// safe for concurrent use; Login and Logout (and the work of pushed
// commands) run one at a time.
type Coordinator struct {
	cfg   Config
	queue *Queue
	log   *slog.Logger

	// ops serialises Login, Logout, the logout command and the re-login
	// after onAuthInfoExpired.
	ops chan struct{}

	mu         sync.Mutex
	st         State
	api        *Client // with the session's client token; nil without one
	tokenUser  string  // the user of api's token
	tokenBad   bool    // the server refused the token: wait for a new login
	loggingOut bool
	sdkReady   bool
	// everLoggedIn: a login gave this process a user to send events for.
	everLoggedIn bool
	initReport   *InitReport     // waiting for a client token to be reported
	sessCtx      context.Context // ends with the session
	sessCancel   context.CancelFunc
	sessWG       sync.WaitGroup
	progress     chan struct{} // closed (and replaced) when the queue shrinks
	statusSig    chan struct{} // closed (and replaced) when the SDK reports a status
	handled      map[string]bool

	// Debouncing: the held status, when the first held change arrived,
	// the timer and its generation, and the last status queued.
	emitMu    sync.Mutex
	held      *statusChange
	heldSince time.Time
	timer     *time.Timer
	timerGen  uint64
	lastSent  *statusChange

	wake   chan struct{}
	done   chan struct{}
	loopWG sync.WaitGroup
	closed bool
}

type statusChange struct {
	status meetsync.MeetingStatus
	reason meetsync.Reason
	num    string
	at     time.Time
}

func (s *statusChange) same(o *statusChange) bool {
	return o != nil && s.status == o.status && s.reason == o.reason && s.num == o.num
}

var _ MeetingListener = (*Coordinator)(nil)

// NewCoordinator opens the offline queue, registers itself as the SDK's
// listener and starts sending what the queue holds once a login gives it a
// client token. Close it when done.
func NewCoordinator(cfg Config) (*Coordinator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	q, err := OpenQueueConfig(cfg.QueueDir, cfg.Queue)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg: cfg, queue: q, log: cfg.Logger,
		ops:       make(chan struct{}, 1),
		progress:  make(chan struct{}),
		statusSig: make(chan struct{}),
		handled:   map[string]bool{},
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		st: State{Business: meetsync.SideLoggedOut, Meeting: meetsync.SideLoggedOut, Online: true,
			Queued: q.Len(), LastSeq: q.LastSeq()},
	}
	cfg.SDK.SetListener(c)
	c.loopWG.Go(c.sendLoop)
	return c, nil
}

// State returns a snapshot of the Coordinator's state.
func (c *Coordinator) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// notify calls the notice hook. Never call it with c.mu held.
func (c *Coordinator) notify(n Notice) {
	if n.Err != nil {
		c.log.Warn("meetsync coordinator", "notice", string(n.Kind), "err", n.Err)
	}
	if c.cfg.OnNotice != nil {
		c.cfg.OnNotice(n)
	}
}

// update changes the state and tells the hook.
func (c *Coordinator) update(f func(*State)) {
	c.mu.Lock()
	f(&c.st)
	c.mu.Unlock()
	c.notify(Notice{Kind: NoticeState})
}

// fail records err as the last error and tells the hook.
func (c *Coordinator) fail(kind NoticeKind, err error) {
	c.mu.Lock()
	c.st.Err = err
	c.mu.Unlock()
	c.notify(Notice{Kind: kind, Err: err})
}

// lock takes the ops lock, or gives up when ctx ends.
func (c *Coordinator) lock(ctx context.Context) error {
	select {
	case c.ops <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Coordinator) unlock() { <-c.ops }

// session returns the client of the current session, or nil.
func (c *Coordinator) session() *Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.api
}

// ClientToken returns the client token (mct_…) of the current session, ""
// without one. It is a secret: never log it.
func (c *Coordinator) ClientToken() string {
	if api := c.session(); api != nil {
		return api.token
	}
	return ""
}

// AcceptInvitation accepts an invitation pushed to this device, as its
// invitee (POST /v1/client/invitations/{id}/accept).
func (c *Coordinator) AcceptInvitation(ctx context.Context, id string) (*meetsync.Invitation, error) {
	api := c.session()
	if api == nil {
		return nil, meetsync.Errorf(meetsync.EUNAUTHORIZED, "no session: log in first")
	}
	return api.AnswerInvitation(ctx, id, "accept", "")
}

// RejectInvitation rejects an invitation pushed to this device; reason
// "no_answer" records that it rang out.
func (c *Coordinator) RejectInvitation(ctx context.Context, id, reason string) (*meetsync.Invitation, error) {
	api := c.session()
	if api == nil {
		return nil, meetsync.Errorf(meetsync.EUNAUTHORIZED, "no session: log in first")
	}
	return api.AnswerInvitation(ctx, id, "reject", reason)
}

// Init initialises the business system and the meeting SDK concurrently
// and reports both results to meetsync (POST /v1/client/init) — at once
// when the device has a session, else right after the next login. It
// returns the failures of either side.
func (c *Coordinator) Init(ctx context.Context) error {
	var wg sync.WaitGroup
	var bErr, mErr error
	wg.Go(func() { bErr = c.cfg.Business.Init(ctx) })
	wg.Go(func() { mErr = c.cfg.SDK.Init(ctx) })
	wg.Wait()
	report := &InitReport{Business: ResultOf(bErr), Meeting: ResultOf(mErr)}
	c.mu.Lock()
	c.sdkReady = mErr == nil
	c.st.BusinessReady, c.st.MeetingReady = bErr == nil, mErr == nil
	api := c.api
	if api == nil {
		c.initReport = report
	}
	c.mu.Unlock()
	c.notify(Notice{Kind: NoticeState})
	if api != nil {
		c.reportInit(ctx, api, report)
	}
	var errs []error
	if bErr != nil {
		errs = append(errs, fmt.Errorf("business system init: %w", bErr))
	}
	if mErr != nil {
		errs = append(errs, fmt.Errorf("meeting SDK init: %w", mErr))
	}
	err := errors.Join(errs...)
	if err != nil {
		c.fail(NoticeError, err)
	}
	return err
}

func (c *Coordinator) reportInit(ctx context.Context, api *Client, r *InitReport) {
	if _, err := api.ClientInit(ctx, *r); err != nil {
		c.fail(NoticeError, fmt.Errorf("report init: %w", err))
	}
}

// Login logs the user in: the business system first (its backend asks
// meetsync for the meeting credentials and a client token), then the
// meeting SDK, retried with backoff up to LoginAttempts times or the
// session's deadline, each result reported to meetsync (POST
// /v1/client/login). If the meeting login fails for good, the policy
// applies: rollback logs the business side out and returns an error
// wrapping ErrRolledBack; degrade keeps it and returns one wrapping
// ErrDegraded. A failed business login returns its error and tries nothing
// else. If ctx ends during the meeting login, the session stays pending
// (meetsync resolves it at its deadline) and ctx's error is returned.
func (c *Coordinator) Login(ctx context.Context) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return meetsync.Errorf(meetsync.EUNAVAILABLE, "the coordinator is closed")
	}
	if c.st.Business != meetsync.SideLoggedOut {
		b := c.st.Business
		c.mu.Unlock()
		return meetsync.Errorf(meetsync.ECONFLICT, "the business side is %s: log out first", b)
	}
	c.st.Business, c.st.Meeting = meetsync.SidePending, meetsync.SideLoggedOut
	c.mu.Unlock()
	c.notify(Notice{Kind: NoticeState})

	res, err := c.cfg.Business.Login(ctx)
	if err == nil && (res == nil || res.ClientToken == "") {
		err = meetsync.Errorf(meetsync.EINTERNAL, "the business system's login gave no meetsync client token")
		if res != nil {
			// The business side did log in: undo it.
			if lerr := c.cfg.Business.Logout(ctx); lerr != nil {
				err = errors.Join(err, fmt.Errorf("business logout: %w", lerr))
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("business login: %w", err)
		c.update(func(s *State) { s.Business, s.Err = meetsync.SideLoggedOut, err })
		return err
	}
	api := c.startSession(res)

	err = c.meetingLogin(ctx, api, res.Meeting, res.Deadline)
	if err == nil {
		c.update(func(s *State) { s.Meeting = meetsync.SideLoggedIn })
		return nil
	}
	if ctx.Err() != nil {
		c.update(func(s *State) { s.Err = err })
		return err
	}
	if c.cfg.Policy == PolicyDegrade {
		err = fmt.Errorf("%w: %w", ErrDegraded, err)
		c.update(func(s *State) { s.Meeting, s.Err = MeetingDegraded, err })
		return err
	}
	err = fmt.Errorf("%w: %w", ErrRolledBack, err)
	c.update(func(s *State) { s.Meeting, s.Business, s.Err = meetsync.SideFailed, meetsync.SideLoggingOut, err })
	c.syncQueue(ctx, 5*time.Second)
	c.mu.Lock()
	c.loggingOut = true
	c.mu.Unlock()
	if lerr := c.cfg.Business.Logout(ctx); lerr != nil {
		err = errors.Join(err, fmt.Errorf("rollback: business logout: %w", lerr))
		c.fail(NoticeError, err)
	}
	c.ackPendingLogout(ctx, api, Result{OK: true})
	c.endSession()
	c.update(func(s *State) { s.Business, s.Meeting = meetsync.SideLoggedOut, meetsync.SideLoggedOut })
	return err
}

// startSession takes the login's client token into use: the queue is sent
// with it, the command stream opens, and a waiting init report goes out.
// The ops lock must be held.
func (c *Coordinator) startSession(res *LoginResult) *Client {
	api := c.cfg.Client.WithToken(res.ClientToken)
	sctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.api, c.tokenUser, c.tokenBad, c.everLoggedIn = api, res.UserID, false, true
	c.sessCtx, c.sessCancel = sctx, cancel
	c.st.Business, c.st.Meeting = meetsync.SideLoggedIn, meetsync.SidePending
	c.st.UserID = res.UserID
	c.st.DeviceID, c.st.SessionID = res.DeviceID, res.SessionID
	report := c.initReport
	c.initReport = nil
	c.mu.Unlock()
	c.notify(Notice{Kind: NoticeState})
	c.kick()
	if report != nil {
		ctx, cancelInit := context.WithTimeout(sctx, 30*time.Second)
		c.reportInit(ctx, api, report)
		cancelInit()
	}
	sessionID := res.SessionID
	c.goSession(func(ctx context.Context) { c.commandLoop(ctx, api, sessionID) })
	return api
}

// goSession runs f in a goroutine of the current session, with the
// session's context; nothing is run once the session ended.
func (c *Coordinator) goSession(f func(ctx context.Context)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessCancel == nil || c.closed {
		return
	}
	ctx := c.sessCtx
	c.sessWG.Go(func() { f(ctx) })
}

// endSession stops the session's goroutines and forgets its token. The
// ops lock must be held; it must not be called from a session goroutine.
func (c *Coordinator) endSession() {
	c.detachSession()
	c.sessWG.Wait()
}

// detachSession forgets the session's token and cancels its context.
func (c *Coordinator) detachSession() {
	c.mu.Lock()
	cancel := c.sessCancel
	c.api, c.sessCtx, c.sessCancel, c.loggingOut = nil, nil, nil, false
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// meetingLogin logs the SDK in, with retries, reporting each result.
func (c *Coordinator) meetingLogin(ctx context.Context, api *Client, acct *meetsync.MeetingAccount, deadline time.Time) error {
	var last error
	for attempt := 1; attempt <= c.cfg.LoginAttempts; attempt++ {
		if attempt > 1 {
			d := backoff(c.cfg.LoginBackoff, c.cfg.LoginMaxBackoff, attempt-1)
			if !deadline.IsZero() && time.Now().Add(d).After(deadline) {
				break
			}
			if err := sleep(ctx, d); err != nil {
				return err
			}
		}
		err := c.loginOnce(ctx, api, &acct)
		c.notify(Notice{Kind: NoticeLoginAttempt, Attempt: attempt, Err: err})
		if err == nil {
			return nil
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return last
}

// loginOnce is one meeting login attempt: credentials if missing, SDK
// init if it failed before, SDK login. Its result, failed at whichever
// step, is reported to meetsync (a session.login_failed per failure).
func (c *Coordinator) loginOnce(ctx context.Context, api *Client, acct **meetsync.MeetingAccount) error {
	err := c.loginSteps(ctx, api, acct)
	if ctx.Err() == nil || err == nil {
		c.reportLogin(ctx, api, ResultOf(err))
	}
	return err
}

func (c *Coordinator) loginSteps(ctx context.Context, api *Client, acct **meetsync.MeetingAccount) error {
	if *acct == nil {
		a, err := api.ClientCredentials(ctx, false)
		if err != nil {
			return fmt.Errorf("get meeting credentials: %w", err)
		}
		*acct = a
	}
	c.mu.Lock()
	ready := c.sdkReady
	c.mu.Unlock()
	if !ready {
		if err := c.cfg.SDK.Init(ctx); err != nil {
			return fmt.Errorf("meeting SDK init: %w", err)
		}
		c.update(func(s *State) { s.MeetingReady = true })
		c.mu.Lock()
		c.sdkReady = true
		c.mu.Unlock()
	}
	if err := c.cfg.SDK.Login(ctx, **acct); err != nil {
		return fmt.Errorf("meeting SDK login: %w", err)
	}
	return nil
}

// reportLogin tells meetsync the result of a meeting login. A success that
// cannot be reported is reported again in the background until it is (or
// the session ends): without it meetsync would resolve the session by its
// policy at the deadline.
func (c *Coordinator) reportLogin(ctx context.Context, api *Client, r Result) {
	_, err := api.ClientLogin(ctx, r)
	if err == nil {
		c.setOnline(true)
		return
	}
	c.fail(NoticeError, fmt.Errorf("report meeting login: %w", err))
	if !r.OK || !retryable(err, true) {
		return
	}
	c.goSession(func(sctx context.Context) {
		for i := 1; ; i++ {
			if sleep(sctx, backoff(c.cfg.SendBackoff, c.cfg.SendMaxBackoff, i)) != nil {
				return
			}
			if _, err := api.ClientLogin(sctx, r); err == nil || !retryable(err, true) {
				return
			}
		}
	})
}

// Logout logs the user out: what the queue holds is sent first (briefly,
// best effort), then the business system logs out (its backend calls
// meetsync's logout, which revokes the meeting credentials and pushes a
// logout command to the user's devices), then the meeting SDK; the logout
// command is acknowledged with the SDK's result. A failed business logout
// returns its error and changes nothing; a failed SDK logout is returned
// but the user is logged out (the platform revoked the credentials).
func (c *Coordinator) Logout(ctx context.Context) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.unlock()
	c.mu.Lock()
	if c.st.Business == meetsync.SideLoggedOut {
		c.mu.Unlock()
		return nil
	}
	prevBusiness, prevMeeting := c.st.Business, c.st.Meeting
	api := c.api
	c.mu.Unlock()
	c.syncQueue(ctx, 5*time.Second)
	c.mu.Lock()
	c.loggingOut = true
	c.st.Business, c.st.Meeting = meetsync.SideLoggingOut, meetsync.SideLoggingOut
	c.mu.Unlock()
	c.notify(Notice{Kind: NoticeState})
	if err := c.cfg.Business.Logout(ctx); err != nil {
		err = fmt.Errorf("business logout: %w", err)
		c.mu.Lock()
		c.loggingOut = false
		c.st.Business, c.st.Meeting, c.st.Err = prevBusiness, prevMeeting, err
		c.mu.Unlock()
		c.notify(Notice{Kind: NoticeState})
		return err
	}
	c.flushHeld()
	sdkErr := c.cfg.SDK.Logout(ctx)
	c.settleSDK(ctx)
	if api != nil {
		c.ackPendingLogout(ctx, api, ResultOf(sdkErr))
	}
	c.endSession()
	var err error
	if sdkErr != nil {
		err = fmt.Errorf("meeting SDK logout: %w", sdkErr)
	}
	c.update(func(s *State) {
		s.Business, s.Meeting = meetsync.SideLoggedOut, meetsync.SideLoggedOut
		if err != nil {
			s.Err = err
		}
	})
	return err
}

// ackPendingLogout acknowledges the logout commands waiting for this
// device (the ones a logout of our own caused).
func (c *Coordinator) ackPendingLogout(ctx context.Context, api *Client, r Result) {
	cmds, err := api.PendingCommands(ctx)
	if err != nil {
		if meetsync.ErrorCode(err) != meetsync.EUNAUTHORIZED {
			c.fail(NoticeError, fmt.Errorf("read pending commands: %w", err))
		}
		return
	}
	for _, cmd := range cmds {
		if cmd.Type != CommandLogout {
			continue
		}
		if err := api.AckCommand(ctx, cmd.ID, r); err != nil {
			c.fail(NoticeError, fmt.Errorf("ack command %s: %w", cmd.ID, err))
		}
		c.mu.Lock()
		c.handled[cmd.ID] = true
		c.mu.Unlock()
	}
}

// errEndStream ends the command stream after a logout command.
var errEndStream = errors.New("session ended")

// commandLoop follows the command stream of session sessionID until the
// session ends.
func (c *Coordinator) commandLoop(ctx context.Context, api *Client, sessionID string) {
	err := api.Commands(ctx, func(cmd Command) error { return c.handleCommand(ctx, api, sessionID, cmd) },
		OnStreamError(func(err error) { c.setOnline(false); c.notify(Notice{Kind: NoticeOffline, Err: err}) }),
		OnStreamOpen(func() { c.setOnline(true) }))
	switch {
	case err == nil, errors.Is(err, errEndStream), ctx.Err() != nil:
	case meetsync.ErrorCode(err) == meetsync.EUNAUTHORIZED:
		// The session ended on the server.
		c.mu.Lock()
		if c.api == api {
			c.tokenBad = true
			c.signalLocked()
		}
		c.mu.Unlock()
		c.fail(NoticeError, fmt.Errorf("command stream: %w", err))
	default:
		c.fail(NoticeError, fmt.Errorf("command stream: %w", err))
	}
}

// handleCommand acts on one pushed command of session sessionID's stream
// and acknowledges it.
func (c *Coordinator) handleCommand(ctx context.Context, api *Client, sessionID string, cmd Command) error {
	c.notify(Notice{Kind: NoticeCommand, Command: &cmd})
	c.mu.Lock()
	done, loggingOut := c.handled[cmd.ID], c.loggingOut
	c.mu.Unlock()
	if done {
		// Sent again because the ack did not arrive: ack again.
		return c.ack(ctx, api, cmd, Result{OK: true})
	}
	switch cmd.Type {
	case CommandLogout:
		if other := logoutSession(cmd); other != "" && sessionID != "" && other != sessionID {
			// A logout of another (an earlier) session of this device:
			// not this session's. meetsync supersedes those when a new
			// session starts; should one come anyway, it is acknowledged
			// as not carried out, and the session goes on.
			return c.ack(ctx, api, cmd, Result{Code: -1,
				Message: fmt.Sprintf("logout of session %s not carried out: this device is in session %s", other, sessionID)})
		}
		if loggingOut {
			// Our own Logout is under way and acknowledges it.
			return nil
		}
		return c.remoteLogout(ctx, api, cmd)
	case CommandInvitation:
		inv := invitationOf(cmd)
		if c.cfg.OnInvitation != nil {
			c.cfg.OnInvitation(inv)
		}
		c.notify(Notice{Kind: NoticeInvitation, Invitation: &inv})
		return c.ack(ctx, api, cmd, Result{OK: true})
	case CommandInvitationCanceled:
		inv := invitationOf(cmd)
		if c.cfg.OnInvitationCanceled != nil {
			c.cfg.OnInvitationCanceled(inv)
		}
		c.notify(Notice{Kind: NoticeInvitationCanceled, Invitation: &inv})
		return c.ack(ctx, api, cmd, Result{OK: true})
	default:
		return c.ack(ctx, api, cmd, Result{Code: -1, Message: fmt.Sprintf("command type %q is not supported by this client", cmd.Type)})
	}
}

// logoutSession is the session a logout command ends (its data's
// session_id), "" if it names none.
func logoutSession(cmd Command) string {
	var d struct {
		SessionID string `json:"session_id"`
	}
	if len(cmd.Data) == 0 || json.Unmarshal(cmd.Data, &d) != nil {
		return ""
	}
	return d.SessionID
}

// invitationOf reads an invitation command's data.
func invitationOf(cmd Command) Invitation {
	inv := Invitation{CommandID: cmd.ID, Data: cmd.Data}
	if len(cmd.Data) > 0 {
		_ = json.Unmarshal(cmd.Data, &inv)
		if inv.ID == "" {
			var alt struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(cmd.Data, &alt)
			inv.ID = alt.ID
		}
	}
	return inv
}

func (c *Coordinator) ack(ctx context.Context, api *Client, cmd Command, r Result) error {
	c.mu.Lock()
	c.handled[cmd.ID] = true
	c.mu.Unlock()
	if err := api.AckCommand(ctx, cmd.ID, r); err != nil && ctx.Err() == nil {
		// It comes again on the next connection, and is acknowledged then.
		c.fail(NoticeError, fmt.Errorf("ack command %s: %w", cmd.ID, err))
	}
	return nil
}

// remoteLogout obeys a logout meetsync pushed (a logout from elsewhere, a
// rollback at the deadline): the queue is sent, the SDK logs out, the
// command is acknowledged and the session ends. The business system's
// backend already knows (it asked, or it is told by a session event).
func (c *Coordinator) remoteLogout(ctx context.Context, api *Client, cmd Command) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.unlock()
	if c.session() != api {
		return errEndStream // a newer session replaced this one
	}
	c.update(func(s *State) { s.Business, s.Meeting = meetsync.SideLoggingOut, meetsync.SideLoggingOut })
	c.syncQueue(ctx, 5*time.Second)
	c.flushHeld()
	sdkErr := c.cfg.SDK.Logout(ctx)
	c.settleSDK(ctx)
	_ = c.ack(ctx, api, cmd, ResultOf(sdkErr))
	// This runs in a goroutine of the session: end it without waiting.
	c.detachSession()
	c.update(func(s *State) {
		s.Business, s.Meeting = meetsync.SideLoggedOut, meetsync.SideLoggedOut
		if sdkErr != nil {
			s.Err = fmt.Errorf("meeting SDK logout: %w", sdkErr)
		}
	})
	return errEndStream
}

func (c *Coordinator) setOnline(on bool) {
	c.mu.Lock()
	changed := c.st.Online != on
	c.st.Online = on
	c.mu.Unlock()
	if changed {
		c.notify(Notice{Kind: NoticeState})
	}
}

// OnMeetingStatusChanged is the SDK's status callback: the change is held
// for the debounce window (a newer one replaces it), then queued as a
// meeting.status_changed event with the device's next client_seq.
func (c *Coordinator) OnMeetingStatusChanged(status meetsync.MeetingStatus, arg meetsync.Reason, meetingNum string) {
	ch := &statusChange{status: status, reason: arg, num: meetingNum, at: c.cfg.Now()}
	c.mu.Lock()
	c.st.Status, c.st.Reason, c.st.MeetingNum = status, arg, meetingNum
	close(c.statusSig)
	c.statusSig = make(chan struct{})
	c.mu.Unlock()
	c.notify(Notice{Kind: NoticeState})
	if c.cfg.Debounce < 0 {
		c.emitMu.Lock()
		defer c.emitMu.Unlock()
		c.enqueueStatus(ch)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.held == nil {
		c.heldSince = now
	}
	c.held = ch
	delay := c.cfg.Debounce
	if until := c.heldSince.Add(c.cfg.MaxDebounce).Sub(now); until < delay {
		delay = max(until, 0)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timerGen++
	gen := c.timerGen
	c.timer = time.AfterFunc(delay, func() { c.releaseHeld(gen) })
}

// releaseHeld queues the held status when its timer fires.
func (c *Coordinator) releaseHeld(gen uint64) {
	c.emitMu.Lock()
	defer c.emitMu.Unlock()
	c.mu.Lock()
	if gen != c.timerGen || c.held == nil {
		c.mu.Unlock()
		return
	}
	ch := c.held
	c.held = nil
	c.mu.Unlock()
	c.enqueueStatus(ch)
}

// flushHeld queues the held status now.
func (c *Coordinator) flushHeld() {
	c.emitMu.Lock()
	defer c.emitMu.Unlock()
	c.takeHeldLocked()
}

// takeHeldLocked queues the held status, if any. emitMu must be held.
func (c *Coordinator) takeHeldLocked() {
	c.mu.Lock()
	ch := c.held
	c.held = nil
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timerGen++
	c.mu.Unlock()
	if ch != nil {
		c.enqueueStatus(ch)
	}
}

// enqueueStatus queues a status change, unless it repeats the last one
// queued (the changes in between were coalesced away). emitMu must be held.
func (c *Coordinator) enqueueStatus(ch *statusChange) {
	if ch.same(c.lastSent) {
		return
	}
	data := map[string]any{"status": int(ch.status), "arg": int(ch.reason)}
	if ch.num != "" {
		data["meeting_num"] = ch.num
	}
	if c.enqueue(meetsync.TypeMeetingStatusChanged, data, ch.at) {
		c.lastSent = ch
	}
}

// OnKickOut is the SDK's onKickOut callback: a session.kicked_out event
// (after any held status, so nothing reorders); the meeting side is
// MeetingKickedOut. The Coordinator does not log in again by itself: the
// account is in use elsewhere.
func (c *Coordinator) OnKickOut() {
	c.emitOther(meetsync.TypeSessionKickedOut)
	c.update(func(s *State) { s.Meeting = MeetingKickedOut })
}

// OnAuthInfoExpired is the SDK's onAuthInfoExpired callback: the
// platform no longer takes the meeting token. In the background, unless
// the cause is a logout (this device's own, or meetsync's server-side
// logout, whose logout command is then waiting for the device: the
// platform token was revoked for it), a session.auth_expired event is
// queued and the SDK logs in again with fresh credentials (POST
// /v1/client/credentials with refresh), reported like the first login.
func (c *Coordinator) OnAuthInfoExpired() {
	c.mu.Lock()
	loggingOut, api := c.loggingOut, c.api
	c.mu.Unlock()
	if loggingOut || api == nil {
		// The platform revoked the token because this user is logging
		// out, or there is no session: expected, not an expiry.
		return
	}
	c.goSession(func(ctx context.Context) { c.authExpired(ctx, api) })
}

// authExpired handles an onAuthInfoExpired in a session goroutine.
func (c *Coordinator) authExpired(ctx context.Context, api *Client) {
	if err := c.lock(ctx); err != nil {
		return
	}
	defer c.unlock()
	c.mu.Lock()
	current, sessionID := c.api == api && !c.loggingOut, c.st.SessionID
	c.mu.Unlock()
	if !current {
		return // the session ended meanwhile: the revocation was its logout
	}
	// meetsync pushes the logout command before it revokes the token, so
	// a server-side logout shows here; the command stream carries it out.
	cmds, err := api.PendingCommands(ctx)
	if meetsync.ErrorCode(err) == meetsync.EUNAUTHORIZED {
		return // the session ended on the server
	}
	for _, cmd := range cmds {
		if other := logoutSession(cmd); cmd.Type == CommandLogout && (other == "" || sessionID == "" || other == sessionID) {
			return
		}
	}
	c.emitOther(meetsync.TypeSessionAuthExpired)
	c.update(func(s *State) { s.Meeting = meetsync.SidePending })
	// meetsync must store the expiry (meeting side pending) before the
	// new login is reported, or the report would come first and the
	// expiry would leave the session pending.
	c.syncQueue(ctx, 5*time.Second)
	c.relogin(ctx, api)
}

// relogin logs the SDK in again with fresh credentials. The ops lock must
// be held.
func (c *Coordinator) relogin(ctx context.Context, api *Client) {
	var last error
	for attempt := 1; attempt <= c.cfg.LoginAttempts; attempt++ {
		if attempt > 1 && sleep(ctx, backoff(c.cfg.LoginBackoff, c.cfg.LoginMaxBackoff, attempt-1)) != nil {
			return
		}
		acct, err := api.ClientCredentials(ctx, true)
		if err == nil {
			err = c.cfg.SDK.Login(ctx, *acct)
			c.reportLogin(ctx, api, ResultOf(err))
			if err != nil {
				err = fmt.Errorf("meeting SDK login: %w", err)
			}
		} else {
			err = fmt.Errorf("refresh meeting credentials: %w", err)
			c.reportLogin(ctx, api, ResultOf(err))
		}
		c.notify(Notice{Kind: NoticeLoginAttempt, Attempt: attempt, Err: err})
		if err == nil {
			c.update(func(s *State) { s.Meeting = meetsync.SideLoggedIn })
			return
		}
		last = err
	}
	c.update(func(s *State) { s.Meeting, s.Err = meetsync.SideFailed, last })
}

// emitOther queues an event of another type, after the held status.
func (c *Coordinator) emitOther(typ string) {
	c.emitMu.Lock()
	defer c.emitMu.Unlock()
	c.takeHeldLocked()
	c.enqueue(typ, map[string]any{}, c.cfg.Now())
}

// enqueue puts an event for the session's user in the offline queue and
// wakes the sender. It reports whether the event was queued.
func (c *Coordinator) enqueue(typ string, data any, at time.Time) bool {
	c.mu.Lock()
	user, ever := c.st.UserID, c.everLoggedIn
	c.mu.Unlock()
	if !ever {
		c.fail(NoticeError, meetsync.Errorf(meetsync.EINVALID, "%s before any login: not sent (no user to send it for)", typ))
		return false
	}
	b, err := json.Marshal(data)
	if err != nil {
		c.fail(NoticeError, err)
		return false
	}
	ev := meetsync.EventInput{Type: typ, UserID: user, OccurredAt: at.UTC().Format(time.RFC3339Nano), Data: b}
	seq, err := c.queue.Enqueue(ev)
	if err != nil {
		c.fail(NoticeError, fmt.Errorf("queue %s: %w", typ, err))
		return false
	}
	c.mu.Lock()
	c.st.Queued, c.st.LastSeq = c.queue.Len(), seq
	c.mu.Unlock()
	c.notify(Notice{Kind: NoticeQueued, Type: typ, Seq: seq})
	c.kick()
	return true
}

// kick wakes the sender.
func (c *Coordinator) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// sendLoop sends the queue whenever there is something to send and a
// session to send it with, backing off while meetsync cannot be reached.
func (c *Coordinator) sendLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.done
		cancel()
	}()
	failures := 0
	var retry <-chan time.Time
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		case <-retry:
		}
		retry = nil
		switch c.send(ctx) {
		case sendDone, sendWait:
			failures = 0
		case sendRetry:
			failures++
			retry = time.After(backoff(c.cfg.SendBackoff, c.cfg.SendMaxBackoff, failures))
		}
	}
}

type sendOutcome int

const (
	sendDone  sendOutcome = iota // the queue is empty
	sendWait                     // no usable session: wait for a login
	sendRetry                    // meetsync could not be reached: back off
)

// send sends the queue until it is empty or a send fails.
func (c *Coordinator) send(ctx context.Context) sendOutcome {
	for {
		c.mu.Lock()
		api, user, bad := c.api, c.tokenUser, c.tokenBad
		c.mu.Unlock()
		batch := c.queue.Peek(c.cfg.BatchSize)
		if len(batch) == 0 {
			return sendDone
		}
		if api == nil || bad {
			return sendWait
		}
		// Events queued for another user cannot be sent with this
		// session's token: they are dropped (the server would refuse them).
		n := 0
		for n < len(batch) && (batch[n].UserID == "" || user == "" || batch[n].UserID == user) {
			n++
		}
		if n == 0 {
			ev := batch[0]
			c.drop(ev, meetsync.Errorf(meetsync.EFORBIDDEN, "queued for user %q, but the session is of user %q", ev.UserID, user))
			continue
		}
		batch = batch[:n]
		_, err := api.ClientEvents(ctx, batch)
		if err == nil {
			c.acked(batch)
			continue
		}
		if ctx.Err() != nil {
			return sendRetry
		}
		switch code := meetsync.ErrorCode(err); code {
		case meetsync.EUNAVAILABLE, meetsync.EINTERNAL, meetsync.ERATELIMIT, meetsync.ENOTFOUND:
			// Not reachable, or not able to take them now (ENOTFOUND: a
			// server without the client routes yet): keep them.
			c.setOnline(false)
			c.notify(Notice{Kind: NoticeOffline, Err: err})
			return sendRetry
		case meetsync.EUNAUTHORIZED:
			c.mu.Lock()
			if c.api == api {
				c.tokenBad = true
				c.signalLocked()
			}
			c.mu.Unlock()
			c.fail(NoticeError, fmt.Errorf("send events: %w (waiting for a new login)", err))
			return sendWait
		}
		// Refused for good (invalid, forbidden, too large): find which.
		if len(batch) == 1 {
			c.drop(batch[0], err)
			continue
		}
		for _, ev := range batch {
			_, err := api.ClientEvents(ctx, []meetsync.EventInput{ev})
			switch meetsync.ErrorCode(err) {
			case "":
				c.acked([]meetsync.EventInput{ev})
				continue
			case meetsync.EINVALID, meetsync.EFORBIDDEN, meetsync.ETOOLARGE, meetsync.ECONFLICT:
				c.drop(ev, err)
				continue
			}
			c.setOnline(false)
			c.notify(Notice{Kind: NoticeOffline, Err: err})
			return sendRetry
		}
	}
}

// acked removes events the server stored.
func (c *Coordinator) acked(batch []meetsync.EventInput) {
	last := *batch[len(batch)-1].ClientSeq
	if err := c.queue.Ack(last); err != nil {
		c.fail(NoticeError, fmt.Errorf("queue ack: %w", err))
	}
	c.mu.Lock()
	c.st.Queued, c.st.Online = c.queue.Len(), true
	c.signalLocked()
	c.mu.Unlock()
	c.notify(Notice{Kind: NoticeSent, Count: len(batch), Seq: last})
}

// signalLocked wakes the Syncs waiting for the queue. c.mu must be held.
func (c *Coordinator) signalLocked() {
	close(c.progress)
	c.progress = make(chan struct{})
}

// drop removes an event the server refused for good.
func (c *Coordinator) drop(ev meetsync.EventInput, err error) {
	if aerr := c.queue.Ack(*ev.ClientSeq); aerr != nil {
		c.fail(NoticeError, fmt.Errorf("queue ack: %w", aerr))
	}
	c.mu.Lock()
	c.st.Queued, c.st.Err = c.queue.Len(), err
	c.signalLocked()
	c.mu.Unlock()
	c.notify(Notice{Kind: NoticeDropped, Type: ev.Type, Seq: *ev.ClientSeq, Err: err})
}

// Sync queues the held (debounced) status now and waits until meetsync
// has stored everything in the queue, or ctx ends. Events wait for a
// session to be sent with: without one (before a login, or once the
// server refused the token) Sync fails with EUNAUTHORIZED if anything is
// queued.
func (c *Coordinator) Sync(ctx context.Context) error {
	c.flushHeld()
	for {
		c.mu.Lock()
		progress, usable := c.progress, c.api != nil && !c.tokenBad
		c.mu.Unlock()
		if c.queue.Len() == 0 {
			return nil
		}
		if !usable {
			return meetsync.Errorf(meetsync.EUNAUTHORIZED, "%d events wait for a session to be sent with: log in", c.queue.Len())
		}
		c.kick()
		select {
		case <-progress:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return meetsync.Errorf(meetsync.EUNAVAILABLE, "the coordinator is closed")
		}
	}
}

// syncQueue is Sync bounded by d, best effort.
func (c *Coordinator) syncQueue(ctx context.Context, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_ = c.Sync(ctx)
}

// settleWait is how long a logout waits for the meeting SDK to report that
// it left its meeting.
const settleWait = 3 * time.Second

// settleSDK runs after the meeting SDK's logout and before the logout is
// acknowledged (which ends the session and its client token): an SDK in a
// meeting reports leaving it through its listener, asynchronously (as
// NEMeeting does), so it waits up to settleWait for a status that is not
// in a meeting, then sends what the queue holds (best effort, up to 5 s).
// The session then ends with the user's last status, not a stale
// "in meeting".
func (c *Coordinator) settleSDK(ctx context.Context) {
	wctx, cancel := context.WithTimeout(ctx, settleWait)
	defer cancel()
	for {
		c.mu.Lock()
		active, sig := c.st.Status.Active(), c.statusSig
		c.mu.Unlock()
		if !active {
			break
		}
		select {
		case <-sig:
			continue
		case <-wctx.Done():
		}
		break
	}
	c.syncQueue(ctx, 5*time.Second)
}

// Close stops the Coordinator: a held status is queued, the sender and the
// command stream stop, and the queue is closed with what it still holds
// (sent after the next start and login). It does not log out.
func (c *Coordinator) Close() error {
	c.flushHeld()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.done)
	c.detachSession()
	c.sessWG.Wait()
	c.loopWG.Wait()
	c.emitMu.Lock()
	defer c.emitMu.Unlock()
	return c.queue.Close()
}

// backoff returns the delay before retry n (from 1): base doubled n-1
// times, capped, with jitter.
func backoff(base, maxDelay time.Duration, n int) time.Duration {
	return Retry{Backoff: base, MaxBackoff: maxDelay}.delay(n)
}
