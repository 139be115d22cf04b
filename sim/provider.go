package sim

import (
	"context"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/meetsync/meetsync"
)

// Limits on the inputs the platform accepts.
const (
	maxUUIDLen     = 128
	maxNameLen     = 64 // characters
	maxSubjectLen  = 128
	maxPasswordLen = 20
)

// provider is the meetsync.Provider of one app on the platform.
type provider struct {
	p     *Platform
	appID string
}

var _ meetsync.Provider = (*provider)(nil)

// Provider returns the meetsync.Provider of one meetsync app: its view of
// the platform (its own accounts and meetings only) and the verifier of
// the callbacks the platform sends for it. The app is created on first use
// with its own app key and callback secret.
func (p *Platform) Provider(appID string) meetsync.Provider {
	p.mu.Lock()
	p.appLocked(appID)
	p.mu.Unlock()
	return &provider{p: p, appID: appID}
}

// Kind returns meetsync.ProviderSim.
func (v *provider) Kind() string { return meetsync.ProviderSim }

// EnsureAccount provisions the account (NetEase add-user) or returns the
// existing one with its current token; a new DisplayName renames it.
// EINVALID for a bad UserUUID or DisplayName.
func (v *provider) EnsureAccount(ctx context.Context, req meetsync.AccountRequest) (*meetsync.MeetingAccount, error) {
	if err := checkUUID(req.UserUUID, "user_uuid"); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(req.DisplayName) > maxNameLen || strings.ContainsFunc(req.DisplayName, unicode.IsControl) {
		return nil, meetsync.FieldErrorf("display_name", "display name must be at most %d characters with no control characters", maxNameLen)
	}
	if err := v.p.call(ctx, "EnsureAccount"); err != nil {
		return nil, err
	}
	p := v.p
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(v.appID)
	acct, ok := a.Accounts[req.UserUUID]
	switch {
	case !ok:
		name := req.DisplayName
		if name == "" {
			name = req.UserUUID
		}
		acct = &account{UUID: req.UserUUID, Name: name, Token: randomHex(16), CreatedAt: p.Now().UTC()}
		a.Accounts[acct.UUID] = acct
	case req.DisplayName != "" && req.DisplayName != acct.Name:
		acct.Name = req.DisplayName
	default:
		return meetingAccount(a, acct), nil
	}
	if err := p.saveLocked(); err != nil {
		return nil, err
	}
	return meetingAccount(a, acct), nil
}

func meetingAccount(a *app, acct *account) *meetsync.MeetingAccount {
	return &meetsync.MeetingAccount{Provider: meetsync.ProviderSim, AppKey: a.Key, UserUUID: acct.UUID, UserToken: acct.Token}
}

// RevokeToken replaces the account's token (NetEase refresh-user-token).
// Every SDK logged in with the old token is logged out: if it is in a
// meeting it leaves it (DISCONNECTING and IDLE with AUTH_INFO_EXPIRED,
// MEETING_MEMBER_LEAVE on the platform), then its listener hears
// OnAuthInfoExpired. ENOTFOUND for an unknown account.
func (v *provider) RevokeToken(ctx context.Context, userUUID string) (*meetsync.MeetingAccount, error) {
	if err := checkUUID(userUUID, "user_uuid"); err != nil {
		return nil, err
	}
	if err := v.p.call(ctx, "RevokeToken"); err != nil {
		return nil, err
	}
	p := v.p
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(v.appID)
	acct, ok := a.Accounts[userUUID]
	if !ok {
		return nil, meetsync.Errorf(meetsync.ENOTFOUND, "no meeting account %q", userUUID)
	}
	acct.Token = randomHex(16)
	for _, s := range p.sessionsLocked(a, userUUID) {
		p.logoutSDKLocked(s, meetsync.ReasonAuthInfoExpired, evAuthExpired)
	}
	if err := p.saveLocked(); err != nil {
		return nil, err
	}
	return meetingAccount(a, acct), nil
}

// SetBanned bans or unbans an account (NetEase ban-user / unban-user). A
// banned account cannot log in, and its logged-in SDKs are kicked out
// (DISCONNECTING and IDLE with BY_SERVER if in a meeting, then OnKickOut).
// ENOTFOUND.
func (v *provider) SetBanned(ctx context.Context, userUUID string, banned bool) error {
	if err := checkUUID(userUUID, "user_uuid"); err != nil {
		return err
	}
	if err := v.p.call(ctx, "SetBanned"); err != nil {
		return err
	}
	p := v.p
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(v.appID)
	acct, ok := a.Accounts[userUUID]
	if !ok {
		return meetsync.Errorf(meetsync.ENOTFOUND, "no meeting account %q", userUUID)
	}
	if acct.Banned == banned {
		return nil
	}
	acct.Banned = banned
	if banned {
		for _, s := range p.sessionsLocked(a, userUUID) {
			p.logoutSDKLocked(s, meetsync.ReasonByServer, evKickOut)
		}
	}
	return p.saveLocked()
}

// LookupAccounts returns what the platform knows of these accounts
// (NetEase batch-get-user), in the order asked; unknown ones have Exists
// false.
func (v *provider) LookupAccounts(ctx context.Context, userUUIDs []string) ([]meetsync.PlatformAccount, error) {
	if err := v.p.call(ctx, "LookupAccounts"); err != nil {
		return nil, err
	}
	p := v.p
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(v.appID)
	out := make([]meetsync.PlatformAccount, len(userUUIDs))
	for i, u := range userUUIDs {
		out[i] = meetsync.PlatformAccount{UserUUID: u}
		if acct, ok := a.Accounts[u]; ok {
			out[i].Exists, out[i].Name, out[i].Banned = true, acct.Name, acct.Banned
		}
	}
	return out, nil
}

// CreateMeeting creates a scheduled meeting; it starts when its first
// member joins. EINVALID for bad fields, ENOTFOUND for an unknown host,
// EFORBIDDEN for a banned one.
func (v *provider) CreateMeeting(ctx context.Context, req meetsync.MeetingRequest) (*meetsync.PlatformMeeting, error) {
	if err := checkUUID(req.HostUUID, "host_uuid"); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(req.Subject) > maxSubjectLen {
		return nil, meetsync.FieldErrorf("subject", "subject must be at most %d characters", maxSubjectLen)
	}
	if len(req.Password) > maxPasswordLen || strings.ContainsFunc(req.Password, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' }) {
		return nil, meetsync.FieldErrorf("password", "password must be at most %d printable ASCII characters", maxPasswordLen)
	}
	if !req.EndTime.IsZero() && !req.StartTime.IsZero() && !req.EndTime.After(req.StartTime) {
		return nil, meetsync.FieldErrorf("end_time", "end time must be after the start time")
	}
	if err := v.p.call(ctx, "CreateMeeting"); err != nil {
		return nil, err
	}
	p := v.p
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(v.appID)
	host, ok := a.Accounts[req.HostUUID]
	if !ok {
		return nil, meetsync.Errorf(meetsync.ENOTFOUND, "no meeting account %q (host)", req.HostUUID)
	}
	if host.Banned {
		return nil, meetsync.Errorf(meetsync.EFORBIDDEN, "meeting account %q is banned", req.HostUUID)
	}
	subject := req.Subject
	if subject == "" {
		subject = host.Name + "'s meeting"
	}
	m := p.newMeetingLocked(a, req, subject)
	if err := p.saveLocked(); err != nil {
		return nil, err
	}
	pm := m.view()
	return &pm, nil
}

// Meeting returns a meeting with its current members. ENOTFOUND.
func (v *provider) Meeting(ctx context.Context, meetingNum string) (*meetsync.PlatformMeeting, error) {
	if meetingNum == "" {
		return nil, meetsync.FieldErrorf("meeting_num", "meeting number is required")
	}
	if err := v.p.call(ctx, "Meeting"); err != nil {
		return nil, err
	}
	p := v.p
	p.mu.Lock()
	defer p.mu.Unlock()
	m, err := findMeeting(p.appLocked(v.appID), meetingNum)
	if err != nil {
		return nil, err
	}
	pm := m.view()
	return &pm, nil
}

// CancelMeeting ends a started meeting (its members hear DISCONNECTING
// and IDLE with CLOSED_BY_HOST and leave it, then MEETING_STATE_CHANGE_EVENT
// reports it ended) or cancels a scheduled one. Canceling a meeting that
// is already over does nothing. ENOTFOUND.
func (v *provider) CancelMeeting(ctx context.Context, meetingNum string) error {
	if meetingNum == "" {
		return meetsync.FieldErrorf("meeting_num", "meeting number is required")
	}
	if err := v.p.call(ctx, "CancelMeeting"); err != nil {
		return err
	}
	p := v.p
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.appLocked(v.appID)
	m, err := findMeeting(a, meetingNum)
	if err != nil {
		return err
	}
	if m.over() {
		return nil
	}
	p.endMeetingLocked(a, m, nil)
	return p.saveLocked()
}

// VerifyCallback checks a callback's signature like NetEase's (see
// verifyCallback) and translates it. It is local: no latency, outage or
// error rate applies.
func (v *provider) VerifyCallback(header http.Header, body []byte, now time.Time) (*meetsync.Callback, error) {
	p := v.p
	p.mu.Lock()
	a := p.appLocked(v.appID)
	key, secret := a.Key, a.Secret
	p.mu.Unlock()
	return verifyCallback(key, secret, header, body, now)
}

// checkUUID validates an account id: 1 to 128 bytes, no spaces or control
// characters.
func checkUUID(u, field string) error {
	if u == "" {
		return meetsync.FieldErrorf(field, "account id is required")
	}
	if len(u) > maxUUIDLen || !utf8.ValidString(u) || strings.ContainsFunc(u, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return meetsync.FieldErrorf(field, "account id must be at most %d bytes of UTF-8 with no spaces or control characters", maxUUIDLen)
	}
	return nil
}
