package httpapi

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/meetsync/meetsync"
)

// principal is who a request acts as.
type principal struct {
	AppID string
	KeyID string
}

type ctxKey int

const principalKey ctxKey = 0

func principalOf(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey).(principal)
	return p
}

// keyCache remembers valid keys for a short time, so most requests cost a
// SHA-256 and a map lookup. Revocations through this server evict at once;
// other replicas see them within the TTL.
type keyCache struct {
	ttl time.Duration
	mu  sync.RWMutex
	m   map[string]cachedKey
}

type cachedKey struct {
	key     *meetsync.APIKey
	expires time.Time
}

func (c *keyCache) get(hash string, now time.Time) *meetsync.APIKey {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.m[hash]; ok && now.Before(e.expires) {
		return e.key
	}
	return nil
}

func (c *keyCache) put(hash string, k *meetsync.APIKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) > 10000 {
		clear(c.m)
	}
	c.m[hash] = cachedKey{k, now.Add(c.ttl)}
}

func (c *keyCache) evict(keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.m {
		if e.key.ID == keyID {
			delete(c.m, h)
		}
	}
}

var errUnauthorized = meetsync.Errorf(meetsync.EUNAUTHORIZED, "missing or invalid API key: send Authorization: Bearer msk_…")

// authenticate resolves the bearer key of r. It never logs the key.
func (s *Server) authenticate(r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || !strings.HasPrefix(token, meetsync.APIKeyPrefix) || len(token) > 128 {
		return principal{}, errUnauthorized
	}
	hash := meetsync.HashSecret(token)
	now := s.now()
	k := s.keys.get(string(hash), now)
	if k == nil {
		var err error
		k, err = s.store.APIKeyGetByHash(r.Context(), hash)
		if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
			return principal{}, errUnauthorized
		} else if err != nil {
			return principal{}, err
		}
		s.keys.put(string(hash), k, now)
	}
	if k.RevokedAt != nil {
		return principal{}, meetsync.Errorf(meetsync.EUNAUTHORIZED, "this API key was revoked")
	}
	return principal{AppID: k.AppID, KeyID: k.ID}, nil
}

// withApp wraps a handler that needs an app API key.
func (s *Server) withApp(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meetsync"`)
			s.writeError(w, r, err)
			return
		}
		if !s.limit(s.keyLimits, w, r, p.KeyID, "API key") {
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey, p)))
	}
}
