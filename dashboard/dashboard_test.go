package dashboard_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/meetsync/meetsync/dashboard"
)

// TestHandler: the page and its modules are served with their types and
// a policy that lets them load nothing from elsewhere; other names are 404.
func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /dashboard/", dashboard.Handler("/dashboard/"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, c := range []struct {
		path, ctype, contains string
		status                int
	}{
		{"/dashboard/", "text/html", `<script type="module" src="app.js">`, 200},
		{"/dashboard/index.html", "", "", 301}, // FileServer's canonical form is the directory
		{"/dashboard/app.js", "text/javascript", "import { APIError, Client } from './api.js'", 200},
		{"/dashboard/api.js", "text/javascript", "export class Client", 200},
		{"/dashboard/meetsync-client.js", "text/javascript", "export class Outbox", 200},
		{"/dashboard/style.css", "text/css", "", 200},
		{"/dashboard/nope.js", "", "", 404},
	} {
		req, _ := http.NewRequest("GET", srv.URL+c.path, nil)
		resp, err := srv.Client().Transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d", c.path, resp.StatusCode, c.status)
			continue
		}
		if c.status != 200 {
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, c.ctype) {
			t.Errorf("%s: Content-Type %q, want %s", c.path, ct, c.ctype)
		}
		if !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: body lacks %q", c.path, c.contains)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", c.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", c.path)
		}
	}
}

// TestAPIPaths: every /v1 path the dashboard or the JavaScript client calls is one the API
// documents (httpapi/openapi.json, which its own test keeps true to the
// served routes), so a renamed route cannot silently break the page.
func TestAPIPaths(t *testing.T) {
	var src []byte
	for _, f := range []string{"static/api.js", "static/meetsync-client.js"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	raw, err := os.ReadFile("../httpapi/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	uses := regexp.MustCompile(`'(/v1/[a-z/-]*)'`).FindAllStringSubmatch(string(src), -1)
	if len(uses) < 16 {
		t.Fatalf("found %d /v1 paths in the modules: %q", len(uses), uses)
	}
	for _, u := range uses {
		lit, ok := u[1], false
		for p := range doc.Paths {
			if p == lit || strings.HasPrefix(p, lit) && strings.HasPrefix(p[len(lit):], "{") {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("the JavaScript calls %s, which openapi.json does not document", lit)
		}
	}
}
