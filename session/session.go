// Package session runs the session saga of DESIGN §4.8: paired business
// and meeting login and logout with deadlines, device commands, platform
// callbacks and the reconciler. Every state change is a session.* (or
// meeting.*) event appended through the ingest service, conditional on the
// user's session version, so the saga's history is the user's event log
// and concurrent changes (several requests, several replicas) cannot
// interleave.
package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/storelog"
)

// Appender appends events durably (ingest.Service).
type Appender interface {
	Append(ctx context.Context, req *meetsync.AppendRequest) error
}

// ProviderFactory returns the meeting-platform provider for an app.
type ProviderFactory func(appID string, cfg meetsync.ProviderConfig) (meetsync.Provider, error)

// Config configures a Service.
type Config struct {
	Store       meetsync.Store
	Sessions    meetsync.SessionStore
	Invitations meetsync.InvitationStore
	// Purger, when set, deletes what each app's retention no longer keeps,
	// every PurgeEvery (default 10 min).
	Purger     meetsync.Purger
	PurgeEvery time.Duration
	Appender   Appender
	Providers  ProviderFactory
	Logger     *slog.Logger
	Now        func() time.Time
	// TickEvery is how often due users are looked at. Default 500 ms.
	TickEvery time.Duration
	// ReconcileEvery is how often the platform's view of active users is
	// compared with meetsync's. Default 1 min; negative disables it.
	ReconcileEvery time.Duration
	// Leader, when set, says whether this replica runs the background jobs
	// (one replica per cluster does). Nil: always.
	Leader func() bool
	// ProvisionAttempts is how many times a login tries the platform
	// before answering without credentials. Default 3.
	ProvisionAttempts int
	// Sealer encrypts the meeting tokens kept at rest and opens the
	// platform's app secret (sealed by the API). Nil: stored as they are.
	Sealer *meetsync.Sealer
}

// Service is the session engine.
type Service struct {
	cfg Config
	log *slog.Logger
	// storeLog logs the background loop's failures: one WARN per 10 s
	// for each job while the database is unavailable.
	storeLog *storelog.Log
	// Commands is notified when a device command is created.
	Commands meetsync.Signal

	mu        sync.Mutex
	providers map[string]cachedProvider
	backoff   map[string]backoffState // user key → retry throttle for failing platform calls

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

type cachedProvider struct {
	cfg meetsync.ProviderConfig
	p   meetsync.Provider
}

type backoffState struct {
	next  time.Time
	delay time.Duration
}

// New returns a Service; Start runs its background loop.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TickEvery <= 0 {
		cfg.TickEvery = 500 * time.Millisecond
	}
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = time.Minute
	}
	if cfg.PurgeEvery <= 0 {
		cfg.PurgeEvery = 10 * time.Minute
	}
	if cfg.ProvisionAttempts <= 0 {
		cfg.ProvisionAttempts = 3
	}
	return &Service{cfg: cfg, log: cfg.Logger, storeLog: storelog.New(cfg.Logger), providers: map[string]cachedProvider{}, backoff: map[string]backoffState{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// Provider returns the app's meeting-platform provider.
func (s *Service) Provider(ctx context.Context, appID string) (meetsync.Provider, *meetsync.AppSettings, error) {
	set, err := s.cfg.Sessions.AppSettingsGet(ctx, appID)
	if err != nil {
		return nil, nil, err
	}
	if set.Provider.AppSecret, err = s.cfg.Sealer.Open(set.Provider.AppSecret); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	c, ok := s.providers[appID]
	s.mu.Unlock()
	if ok && c.cfg == set.Provider {
		return c.p, set, nil
	}
	p, err := s.cfg.Providers(appID, set.Provider)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	s.providers[appID] = cachedProvider{set.Provider, p}
	s.mu.Unlock()
	return p, set, nil
}

// accountGet returns a user's meeting account with its token decrypted.
func (s *Service) accountGet(ctx context.Context, appID, userID string) (*meetsync.StoredAccount, error) {
	a, err := s.cfg.Sessions.AccountGet(ctx, appID, userID)
	if err != nil {
		return nil, err
	}
	if a.UserToken, err = s.cfg.Sealer.Open(a.UserToken); err != nil {
		return nil, err
	}
	return a, nil
}

// accountPut stores a meeting account with its token encrypted.
func (s *Service) accountPut(ctx context.Context, a *meetsync.StoredAccount) error {
	c := *a
	c.UserToken = s.cfg.Sealer.Seal(a.UserToken)
	return s.cfg.Sessions.AccountPut(ctx, &c)
}

// user returns a user's state (a new one if the user has no events).
func (s *Service) user(ctx context.Context, appID, userID string) (*meetsync.UserState, error) {
	u, err := s.cfg.Store.UserGet(ctx, appID, userID)
	if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
		return meetsync.NewUserState(appID, userID), nil
	}
	return u, err
}

// change appends events that move a user's session from the version it
// was read at. ECONFLICT means another change came first: the caller reads
// again and retries.
func (s *Service) change(ctx context.Context, u *meetsync.UserState, evs ...*meetsync.Event) error {
	req := &meetsync.AppendRequest{AppID: u.AppID, Events: evs,
		ExpectSession: &meetsync.SessionExpectation{UserID: u.UserID, Version: u.Session.Version}}
	return appendChange(ctx, s.cfg.Appender, req)
}

// appendChange appends a conditional request; a lost race on the session
// version is a staleVersion error (retry reads again and retries).
func appendChange(ctx context.Context, a Appender, req *meetsync.AppendRequest) error {
	err := a.Append(ctx, req)
	if err == nil {
		err = req.Err
	}
	if req.Err != nil && meetsync.ErrorCode(req.Err) == meetsync.ECONFLICT {
		return staleVersion{req.Err}
	}
	return err
}

// retry runs fn again while it fails because another session change came
// first (staleVersion), a few times.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for i := 0; i < 8; i++ {
		err = fn()
		var sv staleVersion
		if !errors.As(err, &sv) {
			return err
		}
		err = sv.err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(i+1) * 5 * time.Millisecond):
		}
	}
	return err
}

// staleVersion is the failure of a change whose session version was overtaken.
type staleVersion struct{ err error }

func (e staleVersion) Error() string { return e.err.Error() }

func conflict(format string, args ...any) error {
	return meetsync.Errorf(meetsync.ECONFLICT, format, args...)
}

func sessionEvent(u *meetsync.UserState, typ string, next meetsync.Session, data map[string]any, now time.Time) *meetsync.Event {
	if data == nil {
		data = map[string]any{}
	}
	data["session_id"] = next.ID
	data["business"] = next.Business
	data["meeting"] = next.Meeting
	if !next.Deadline.IsZero() {
		data["deadline"] = next.Deadline
	}
	ev := meetsync.NewServerEvent(u.AppID, u.UserID, typ, meetsync.SourceSystem, data, now)
	ev.Effects = &meetsync.EventEffects{Session: &next}
	return ev
}

// commandID is deterministic, so a repeated logout creates each device's
// command once.
func commandID(sessionID, deviceID, kind string) string {
	h := sha256.Sum256([]byte(sessionID + "\x00" + deviceID + "\x00" + kind))
	return "cmd_" + hex.EncodeToString(h[:13])
}

// pushCommands creates a command for each device and wakes their streams;
// ref (a session or invitation id) makes the command ids deterministic.
func (s *Service) pushCommands(ctx context.Context, u *meetsync.UserState, ref string, devices []string, kind string, data map[string]any, now time.Time) error {
	if len(devices) == 0 {
		return nil
	}
	cmds := make([]*meetsync.Command, 0, len(devices))
	for _, d := range devices {
		cmds = append(cmds, &meetsync.Command{ID: commandID(ref, d, kind), AppID: u.AppID, UserID: u.UserID, DeviceID: d,
			SessionID: u.Session.ID, Type: kind, Data: mustJSON(data), CreatedAt: now})
	}
	if err := s.cfg.Sessions.CommandsCreate(ctx, cmds); err != nil {
		return err
	}
	// The session may have ended and a device started a new one since u
	// was read (a rollback's logout is pushed after the rollback): that
	// device's new session must not get these. (A login that comes later
	// supersedes them itself.)
	if cur, err := s.user(ctx, u.AppID, u.UserID); err != nil {
		return err
	} else if cur.Session.Open() && cur.Session.ID != u.Session.ID {
		for _, d := range devices {
			if cur.Session.HasDevice(d) {
				if err := s.supersedeOlder(ctx, u.AppID, u.UserID, d, cur.Session.ID, now); err != nil {
					return err
				}
			}
		}
	}
	s.Commands.Notify()
	return nil
}

// supersedeOlder resolves the commands still pending on a device from its
// earlier sessions once it is in session sessionID: a client token sees
// only its own session's commands. Each is marked acknowledged by
// meetsync, ack_ok false, ack_error "superseded: …", as a closed
// invitation's commands are; a device's late ack of one changes nothing.
// (The earlier session has ended: a login waits for a logout to complete,
// so no logout waits for these acks.)
func (s *Service) supersedeOlder(ctx context.Context, appID, userID, deviceID, sessionID string, now time.Time) error {
	note := "superseded: device " + deviceID + " started session " + sessionID
	for {
		cmds, err := s.cfg.Sessions.CommandList(ctx, appID, userID, deviceID, true)
		if err != nil {
			return err
		}
		n := 0
		for _, c := range cmds {
			if c.SessionID == sessionID {
				continue
			}
			if _, err := s.cfg.Sessions.CommandAck(ctx, appID, userID, deviceID, c.ID, false, note, now); err != nil {
				return err
			}
			n++
		}
		if n == 0 || len(cmds) < commandListLimit {
			return nil
		}
	}
}

// commandListLimit is how many commands SessionStore.CommandList returns
// at most.
const commandListLimit = 1000

// withBackoff runs a platform call for a user unless a recent failure asks
// to wait; failures double the wait up to max.
func (s *Service) throttled(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.backoff[key]
	return ok && now.Before(b.next)
}

func (s *Service) recordPlatform(key string, err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.backoff, key)
		return
	}
	b := s.backoff[key]
	b.delay = min(max(2*b.delay, time.Second), 5*time.Minute)
	b.next = now.Add(b.delay)
	s.backoff[key] = b
}

func userKey(appID, userID string) string { return appID + "\x00" + userID }

func addDevice(devs []string, d string) []string {
	if slices.Contains(devs, d) {
		return devs
	}
	return append(slices.Clone(devs), d)
}
