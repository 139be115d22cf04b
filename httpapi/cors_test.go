package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/meetsync/meetsync/httpapi"
)

// TestCORS: the device routes answer the configured origins' preflights
// and requests with CORS headers; other origins and the app-key routes
// get none, so a browser keeps those answers from the page.
func TestCORS(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t, func(cfg *httpapi.Config) { cfg.CORSOrigins = []string{"https://app.example.com"} })
	_, token := e.login(t, "alice", "web")
	preflight := func(origin, path string) response {
		return e.do(t, "OPTIONS", path, "", nil, "Origin", origin, "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization, content-type")
	}
	r := preflight("https://app.example.com", "/v1/client/events")
	if r.Status != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		r.Header.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type, Last-Event-ID, Idempotency-Key" ||
		r.Header.Get("Access-Control-Allow-Methods") != "GET, POST" || r.Header.Get("Vary") != "Origin" {
		t.Errorf("preflight from the allowed origin: %d %v", r.Status, r.Header)
	}
	for _, c := range []struct{ origin, path string }{
		{"https://evil.example.com", "/v1/client/events"},
		{"https://app.example.com", "/v1/events"}, // an app-key route
	} {
		if r := preflight(c.origin, c.path); r.Header.Get("Access-Control-Allow-Origin") != "" || r.Status == http.StatusNoContent {
			t.Errorf("preflight of %s from %s: %d %v", c.path, c.origin, r.Status, r.Header)
		}
	}
	// The request itself: the answer carries the origin, and exposes Retry-After.
	r = e.do(t, "POST", "/v1/client/events", token, map[string]any{"type": "crm.note"}, "Origin", "https://app.example.com")
	if r.Status != http.StatusOK || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		r.Header.Get("Access-Control-Expose-Headers") != "Retry-After" {
		t.Errorf("request from the allowed origin: %s %v", r, r.Header)
	}
	r = e.do(t, "POST", "/v1/client/events", token, map[string]any{"type": "crm.note"}, "Origin", "https://evil.example.com")
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("request from another origin: %v", r.Header)
	}
	// The JavaScript client may be imported from meetsync; the dashboard's own files may not.
	if r := e.do(t, "GET", "/dashboard/meetsync-client.js", "", nil, "Origin", "https://app.example.com"); r.Status != http.StatusOK ||
		r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("the client module: %d %v", r.Status, r.Header)
	}
	if r := e.do(t, "GET", "/dashboard/app.js", "", nil, "Origin", "https://app.example.com"); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("the dashboard's app.js answered with CORS headers: %v", r.Header)
	}
	if r := e.do(t, "GET", "/v1/app", e.Key, nil, "Origin", "https://app.example.com"); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("an app-key route answered with CORS headers: %v", r.Header)
	}
}

// TestCORSAnyOrigin: "*" lets every origin's pages call the device routes.
func TestCORSAnyOrigin(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t, func(cfg *httpapi.Config) { cfg.CORSOrigins = []string{"*"} })
	r := e.do(t, "OPTIONS", "/v1/client/commands", "", nil, "Origin", "https://any.example", "Access-Control-Request-Method", "GET")
	if r.Status != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %d %v", r.Status, r.Header)
	}
}

func TestValidCORSOrigin(t *testing.T) {
	for _, o := range []string{"*", "https://app.example.com", "http://127.0.0.1:3000"} {
		if err := httpapi.ValidCORSOrigin(o); err != nil {
			t.Errorf("%q: %v", o, err)
		}
	}
	for _, o := range []string{"", "app.example.com", "https://app.example.com/", "https://app.example.com/x", "ftp://x", "https://u@x"} {
		if err := httpapi.ValidCORSOrigin(o); err == nil {
			t.Errorf("%q accepted", o)
		}
	}
}
