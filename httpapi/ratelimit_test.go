package httpapi_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meetsync/meetsync/httpapi"
)

// clock is a settable clock for the API (Config.Now).
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestKeyRateLimit: each API key has its bucket; a key over its limit is
// answered 429 rate_limited with Retry-After, others are not held back,
// and the key is served again once its bucket refills.
func TestKeyRateLimit(t *testing.T) {
	t.Parallel()
	c := newClock()
	e := setup(t, func(cfg *httpapi.Config) {
		cfg.Now = c.now
		cfg.KeyRateLimit = httpapi.RateLimit{PerSecond: 0.5, Burst: 3} // a request every 2 s, 3 at once
	})
	for range 3 {
		want(t, e.do(t, "GET", "/v1/app", e.Key, nil), http.StatusOK)
	}
	r := e.do(t, "GET", "/v1/app", e.Key, nil)
	requireError(t, r, http.StatusTooManyRequests, "rate_limited", "")
	if got := r.Header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After %q, want 2 (the next token in 2 s)", got)
	}
	// A refused request takes nothing: still refused a second later, served two.
	_, other, _ := e.newApp(t, "other")
	want(t, e.do(t, "GET", "/v1/app", other, nil), http.StatusOK)
	c.advance(time.Second)
	requireError(t, e.do(t, "GET", "/v1/app", e.Key, nil), http.StatusTooManyRequests, "rate_limited", "")
	c.advance(time.Second)
	want(t, e.do(t, "GET", "/v1/app", e.Key, nil), http.StatusOK)
	requireError(t, e.do(t, "GET", "/v1/app", e.Key, nil), http.StatusTooManyRequests, "rate_limited", "")
	// A wrong key is a 401, whatever the limits.
	requireError(t, e.do(t, "GET", "/v1/app", "msk_nope", nil), http.StatusUnauthorized, "unauthorized", "")
}

// TestClientRateLimit: each device's client token has its bucket.
func TestClientRateLimit(t *testing.T) {
	t.Parallel()
	c := newClock()
	e, _ := setupSessions(t, func(cfg *httpapi.Config) {
		cfg.Now = c.now
		cfg.ClientRateLimit = httpapi.RateLimit{PerSecond: 1, Burst: 2}
	})
	_, laptop := e.login(t, "alice", "laptop")
	_, phone := e.login(t, "alice", "phone")
	report := func(token string) response {
		return e.do(t, "POST", "/v1/client/events", token, map[string]any{"type": "crm.note"})
	}
	want(t, report(laptop), http.StatusOK)
	want(t, report(laptop), http.StatusOK)
	r := report(laptop)
	requireError(t, r, http.StatusTooManyRequests, "rate_limited", "")
	if got := r.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	want(t, report(phone), http.StatusOK) // another device of the same user
	// The API key is not limited (no KeyRateLimit).
	for range 5 {
		want(t, e.do(t, "GET", "/v1/app", e.Key, nil), http.StatusOK)
	}
	c.advance(time.Second)
	want(t, report(laptop), http.StatusOK)
}

func want(t *testing.T, r response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want %d", r, status)
	}
}
