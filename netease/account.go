package netease

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/meetsync/meetsync"
)

// Account API paths (NetEase Meeting server API, 会议账号管理).
const (
	PathAddUser          = "/scene/meeting/api/v2/add-user"
	PathBatchGetUser     = "/scene/meeting/api/v2/batch-get-user"
	PathRefreshUserToken = "/scene/meeting/api/v2/refresh-user-token"
	PathBanUser          = "/scene/meeting/api/v2/ban-user"
	PathUnbanUser        = "/scene/meeting/api/v2/unban-user"
)

// Account states in the platform's user data.
const (
	UserStateNormal = 1
	UserStateBanned = 2
)

// batchGetUserMax is how many accounts one batch-get-user asks for.
const batchGetUserMax = 50

// maxUserUUID is the platform's limit on a userUuid's length.
const maxUserUUID = 32

// userData is an account as the platform returns it.
type userData struct {
	UserUUID  string `json:"userUuid"`
	UserToken string `json:"userToken"`
	Name      string `json:"name"`
	State     int    `json:"state"`
}

type userRequest struct {
	UserUUID string `json:"userUuid"`
	Name     string `json:"name,omitempty"`
}

// ValidUserUUID reports whether s is usable as a NetEase userUuid: 1 to 32
// characters among lowercase letters, digits, '_', '@', '.' and '-'.
func ValidUserUUID(s string) bool {
	if s == "" || len(s) > maxUserUUID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '@' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func checkUserUUID(s string) error {
	if !ValidUserUUID(s) {
		return meetsync.FieldErrorf("user_uuid", "user_uuid must be 1 to 32 characters among a-z, 0-9, _ @ . -")
	}
	return nil
}

// EnsureAccount provisions the account (add-user) on first use. When the
// platform already has it (code 409), it returns the existing account's
// credentials from batch-get-user, or a fresh token from
// refresh-user-token when the platform does not return the token. A
// banned account is EFORBIDDEN.
func (p *Provider) EnsureAccount(ctx context.Context, req meetsync.AccountRequest) (*meetsync.MeetingAccount, error) {
	if err := checkUserUUID(req.UserUUID); err != nil {
		return nil, err
	}
	name := strings.TrimSpace(req.DisplayName)
	if name == "" {
		name = req.UserUUID
	}
	var u userData
	err := p.do(ctx, call{op: "add-user", method: http.MethodPost, path: PathAddUser,
		body: userRequest{UserUUID: req.UserUUID, Name: name}}, &u)
	switch {
	case err == nil:
		if u.UserToken == "" {
			return nil, meetsync.Errorf(meetsync.EUNAVAILABLE, "netease add-user: the answer has no userToken")
		}
		return p.account(req.UserUUID, u.UserToken), nil
	case meetsync.ErrorCode(err) != meetsync.ECONFLICT:
		return nil, err
	}
	// The account exists (made earlier, or by an attempt whose answer was lost).
	users, err := p.batchGetUser(ctx, []string{req.UserUUID})
	if err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, meetsync.Errorf(meetsync.EUNAVAILABLE, "netease add-user: the platform says account %s exists but batch-get-user does not return it", req.UserUUID)
	}
	if users[0].State == UserStateBanned {
		return nil, meetsync.Errorf(meetsync.EFORBIDDEN, "meeting account %s is banned on the platform", req.UserUUID)
	}
	if users[0].UserToken != "" {
		return p.account(req.UserUUID, users[0].UserToken), nil
	}
	return p.RevokeToken(ctx, req.UserUUID)
}

func (p *Provider) account(userUUID, token string) *meetsync.MeetingAccount {
	return &meetsync.MeetingAccount{Provider: meetsync.ProviderNetEase, AppKey: p.cfg.AppKey, UserUUID: userUUID, UserToken: token}
}

// RevokeToken calls refresh-user-token: the platform issues a new token and
// the old one stops working, which logs every device of the account out.
// ENOTFOUND for an unknown account.
func (p *Provider) RevokeToken(ctx context.Context, userUUID string) (*meetsync.MeetingAccount, error) {
	if err := checkUserUUID(userUUID); err != nil {
		return nil, err
	}
	var u userData
	if err := p.do(ctx, call{op: "refresh-user-token", method: http.MethodPost, path: PathRefreshUserToken,
		body: userRequest{UserUUID: userUUID}}, &u); err != nil {
		return nil, err
	}
	if u.UserToken == "" {
		return nil, meetsync.Errorf(meetsync.EUNAVAILABLE, "netease refresh-user-token: the answer has no userToken")
	}
	return p.account(userUUID, u.UserToken), nil
}

// SetBanned calls ban-user or unban-user. ENOTFOUND for an unknown account.
func (p *Provider) SetBanned(ctx context.Context, userUUID string, banned bool) error {
	if err := checkUserUUID(userUUID); err != nil {
		return err
	}
	c := call{op: "unban-user", method: http.MethodPost, path: PathUnbanUser, body: userRequest{UserUUID: userUUID}}
	if banned {
		c.op, c.path = "ban-user", PathBanUser
	}
	return p.do(ctx, c, nil)
}

// LookupAccounts calls batch-get-user (in batches of 50) and returns one
// PlatformAccount per requested uuid, in order; accounts the platform does
// not know have Exists false.
func (p *Provider) LookupAccounts(ctx context.Context, userUUIDs []string) ([]meetsync.PlatformAccount, error) {
	for _, u := range userUUIDs {
		if err := checkUserUUID(u); err != nil {
			return nil, err
		}
	}
	found := make(map[string]userData, len(userUUIDs))
	for start := 0; start < len(userUUIDs); start += batchGetUserMax {
		users, err := p.batchGetUser(ctx, userUUIDs[start:min(start+batchGetUserMax, len(userUUIDs))])
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			found[u.UserUUID] = u
		}
	}
	out := make([]meetsync.PlatformAccount, len(userUUIDs))
	for i, id := range userUUIDs {
		out[i] = meetsync.PlatformAccount{UserUUID: id}
		if u, ok := found[id]; ok {
			out[i].Exists, out[i].Name, out[i].Banned = true, u.Name, u.State == UserStateBanned
		}
	}
	return out, nil
}

// batchGetUser returns the accounts the platform knows among ids.
func (p *Provider) batchGetUser(ctx context.Context, ids []string) ([]userData, error) {
	var users []userData
	err := p.do(ctx, call{op: "batch-get-user", method: http.MethodGet, path: PathBatchGetUser,
		query: url.Values{"userUuids": {strings.Join(ids, ",")}}}, &users)
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	kept := users[:0]
	for _, u := range users {
		if want[u.UserUUID] {
			kept = append(kept, u)
		}
	}
	return kept, nil
}
