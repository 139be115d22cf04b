package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/schema"
	"github.com/meetsync/meetsync/session"
	"github.com/meetsync/meetsync/sim"
	"github.com/meetsync/meetsync/sqlite"
)

type openAPIDoc struct {
	OpenAPI    string                               `json:"openapi"`
	Paths      map[string]map[string]map[string]any `json:"paths"`
	Components struct {
		Schemas   map[string]map[string]any `json:"schemas"`
		Responses map[string]map[string]any `json:"responses"`
	} `json:"components"`
}

func loadOpenAPI(t *testing.T) *openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	return &doc
}

// TestOpenAPIRoutes: every route the server serves is in openapi.json with
// its method and a summary, and every documented operation is served.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	doc := loadOpenAPI(t)
	served := map[string]bool{}
	for _, p := range e.API.Routes() {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			t.Errorf("route %q has no method", p)
			continue
		}
		key := strings.ToLower(method) + " " + path
		served[key] = true
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			t.Errorf("%s is served but not in openapi.json", p)
		} else if s, _ := op["summary"].(string); s == "" {
			t.Errorf("%s has no summary in openapi.json", p)
		}
	}
	var extra []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if !served[method+" "+path] {
				extra = append(extra, method+" "+path)
			}
		}
	}
	sort.Strings(extra)
	for _, x := range extra {
		t.Errorf("openapi.json documents %s, which is not served", x)
	}
	// And it is served, without a key.
	r := e.do(t, "GET", "/v1/openapi.json", "", nil)
	if r.Status != 200 || !json.Valid(r.Body) || !strings.Contains(string(r.Body), `"/v1/events"`) {
		t.Fatalf("GET /v1/openapi.json: %d", r.Status)
	}
}

// conforms reports where v does not fit the schema: fields it does not
// declare, and nulls it does not allow.
func (d *openAPIDoc) conforms(schema map[string]any, v any, at string) []string {
	if ref, ok := schema["$ref"].(string); ok {
		return d.conforms(d.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")], v, at)
	}
	if v == nil {
		if !d.allowsNull(schema) {
			return []string{"null at " + at + ", which openapi.json does not allow"}
		}
		return nil
	}
	if alt := nonNullAlternative(schema); alt != nil {
		return d.conforms(alt, v, at)
	}
	switch x := v.(type) {
	case map[string]any:
		props, _ := schema["properties"].(map[string]any)
		if len(props) == 0 {
			return nil // a free-form object (event data, schemas)
		}
		var bad []string
		for k, fv := range x {
			ps, ok := props[k].(map[string]any)
			if !ok {
				bad = append(bad, "field "+at+"."+k+", which openapi.json does not declare")
				continue
			}
			bad = append(bad, d.conforms(ps, fv, at+"."+k)...)
		}
		return bad
	case []any:
		items, _ := schema["items"].(map[string]any)
		var bad []string
		for _, it := range x {
			if items != nil {
				bad = append(bad, d.conforms(items, it, at+"[]")...)
			}
		}
		return bad
	}
	return nil
}

// allowsNull reports whether schema accepts null: "type":"null" or a type
// list holding it, or a oneOf/anyOf alternative that does.
func (d *openAPIDoc) allowsNull(schema map[string]any) bool {
	if ref, ok := schema["$ref"].(string); ok {
		return d.allowsNull(d.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")])
	}
	switch t := schema["type"].(type) {
	case string:
		if t == "null" {
			return true
		}
	case []any:
		for _, x := range t {
			if x == "null" {
				return true
			}
		}
	}
	for _, k := range []string{"oneOf", "anyOf"} {
		alts, _ := schema[k].([]any)
		for _, a := range alts {
			if m, ok := a.(map[string]any); ok && d.allowsNull(m) {
				return true
			}
		}
	}
	return false
}

// nonNullAlternative is the one alternative of a oneOf/anyOf that is not
// {"type":"null"} ("this or null"), or nil.
func nonNullAlternative(schema map[string]any) map[string]any {
	var alt map[string]any
	n := 0
	for _, k := range []string{"oneOf", "anyOf"} {
		alts, _ := schema[k].([]any)
		for _, a := range alts {
			if m, ok := a.(map[string]any); ok && m["type"] != "null" {
				alt, n = m, n+1
			}
		}
	}
	if n != 1 {
		return nil
	}
	return alt
}

// responseSchema is the schema of an operation's response with status.
func (d *openAPIDoc) responseSchema(t *testing.T, method, path, status string) map[string]any {
	t.Helper()
	op := d.Paths[path][method]
	resps, _ := op["responses"].(map[string]any)
	r, _ := resps[status].(map[string]any)
	if ref, ok := r["$ref"].(string); ok {
		r = d.Components.Responses[strings.TrimPrefix(ref, "#/components/responses/")]
	}
	content, _ := r["content"].(map[string]any)
	js, _ := content["application/json"].(map[string]any)
	schema, _ := js["schema"].(map[string]any)
	if schema == nil {
		t.Fatalf("openapi.json: no JSON schema for %s %s %s", method, path, status)
	}
	return schema
}

// TestOpenAPIResponses: real answers carry only fields their documented
// schema declares.
func TestOpenAPIResponses(t *testing.T) {
	t.Parallel()
	e := setup(t)
	doc := loadOpenAPI(t)
	check := func(method, path, status string, r response) {
		t.Helper()
		var v any
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Fatalf("%s %s: %v (%s)", method, path, err, r)
		}
		for _, f := range doc.conforms(doc.responseSchema(t, method, path, status), v, "") {
			t.Errorf("%s %s answers %s", strings.ToUpper(method), path, f)
		}
	}
	ep := e.do(t, "POST", "/v1/endpoints", e.Key, map[string]any{"url": "http://127.0.0.1:1/hook", "event_types": []string{"crm.*"}})
	if ep.Status != 201 {
		t.Fatalf("create endpoint: %s", ep)
	}
	check("post", "/v1/endpoints", "201", ep)
	var epv struct{ ID string }
	_ = json.Unmarshal(ep.Body, &epv)
	check("get", "/v1/endpoints/{id}", "200", e.do(t, "GET", "/v1/endpoints/"+epv.ID, e.Key, nil))
	check("get", "/v1/endpoints", "200", e.do(t, "GET", "/v1/endpoints", e.Key, nil))
	check("post", "/v1/events", "200", e.do(t, "POST", "/v1/events", e.Key, statusEvent("u1", "d1", 1, "in_meeting")))
	e.do(t, "POST", "/v1/events", e.Key, map[string]any{"type": "crm.note", "user_id": "u1"})
	check("get", "/v1/events", "200", e.do(t, "GET", "/v1/events?after=0", e.Key, nil))
	check("get", "/v1/users/{id}", "200", e.do(t, "GET", "/v1/users/u1", e.Key, nil))
	check("get", "/v1/users", "200", e.do(t, "GET", "/v1/users", e.Key, nil))
	check("get", "/v1/endpoints/{id}/deliveries", "200", e.do(t, "GET", "/v1/endpoints/"+epv.ID+"/deliveries", e.Key, nil))
	check("get", "/v1/event-types", "200", e.do(t, "GET", "/v1/event-types", e.Key, nil))
	check("post", "/v1/keys", "201", e.do(t, "POST", "/v1/keys", e.Key, nil))
	check("get", "/v1/keys", "200", e.do(t, "GET", "/v1/keys", e.Key, nil))
	check("get", "/v1/app", "200", e.do(t, "GET", "/v1/app", e.Key, nil))
	check("post", "/v1/events", "400", e.do(t, "POST", "/v1/events", e.Key, map[string]any{"type": "meeting.status_changed"}))
}

// setupSessions is setup with the session engine on the sim platform, so
// that the login, client, invitation and callback routes answer too. The
// platform's outage switch makes logins answer without credentials.
func setupSessions(t *testing.T, mods ...func(*httpapi.Config)) (*env, *sim.Platform) {
	t.Helper()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	reg := prometheus.NewRegistry()
	ing := ingest.New(db, reg, ingest.Config{})
	platform := sim.New()
	discard := slog.New(slog.DiscardHandler)
	svc := session.New(session.Config{
		Store: db, Sessions: db, Invitations: db, Appender: ing, Logger: discard,
		Providers: func(appID string, _ meetsync.ProviderConfig) (meetsync.Provider, error) {
			return platform.Provider(appID), nil
		},
		ReconcileEvery: -1, TickEvery: time.Hour, ProvisionAttempts: 1,
	})
	cfg := httpapi.Config{
		Store: db, Ingester: ing, Logger: discard, Registry: reg, StreamHeartbeat: 200 * time.Millisecond,
		Sessions: svc, SessionStore: db, InvitationStore: db,
		Types:     schema.New(db, db, schema.Config{Logger: discard}),
		URLPolicy: meetsync.URLPolicy{AllowPrivate: true},
	}
	for _, m := range mods {
		m(&cfg)
	}
	api := httpapi.New(cfg)
	srv := httptest.NewServer(api)
	e := &env{URL: srv.URL, Store: db, API: api, Client: &http.Client{}}
	t.Cleanup(func() {
		api.BeginShutdown()
		e.Client.CloseIdleConnections()
		srv.Close()
		_ = platform.Close()
		ing.Close()
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	e.AppID, e.Key, e.KeyID = e.newApp(t, "app-sessions")
	return e, platform
}

// login logs user in on device and returns the answer and its client token.
func (e *env) login(t *testing.T, user, device string) (response, string) {
	t.Helper()
	r := e.do(t, "POST", "/v1/users/"+user+"/login", e.Key, map[string]any{"device_id": device})
	if r.Status != http.StatusOK {
		t.Fatalf("login %s: %s", user, r)
	}
	var v struct {
		ClientToken string `json:"client_token"`
	}
	_ = json.Unmarshal(r.Body, &v)
	return r, v.ClientToken
}

// route is a served route with sample values in its path, and the
// credentials its operation in openapi.json asks for.
type route struct {
	method, path string // as served and documented
	url          string // path with sample values
	key          string
	op           map[string]any
}

func (d *openAPIDoc) routes(t *testing.T, e *env, clientToken string) []route {
	t.Helper()
	samples := strings.NewReplacer("{id}", "x_none", "{name}", "crm.openapi_probe", "{action}", "accept",
		"{kind}", "sim", "{app_id}", e.AppID)
	var out []route
	for _, p := range e.API.Routes() {
		method, path, _ := strings.Cut(p, " ")
		op := d.Paths[path][strings.ToLower(method)]
		if op == nil {
			continue // TestOpenAPIRoutes says so
		}
		rt := route{method: method, path: path, url: samples.Replace(path), op: op}
		sec, _ := op["security"].([]any)
		for _, s := range sec {
			m, _ := s.(map[string]any)
			if _, ok := m["apiKey"]; ok {
				rt.key = e.Key
			} else if _, ok := m["clientToken"]; ok {
				rt.key = clientToken
			}
		}
		out = append(out, rt)
	}
	return out
}

// TestOpenAPIRequestBodies: what openapi.json says of request bodies is
// what the server does. A route that reads a body (it answers 413 to one
// over the limit) documents its requestBody and 413, and no other route
// does; the body is "required" exactly when an empty one is refused as
// such (400 "the body is empty").
func TestOpenAPIRequestBodies(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t)
	doc := loadOpenAPI(t)
	_, token := e.login(t, "u1", "d1")
	big := bytes.Repeat([]byte(" "), meetsync.MaxBodyBytes+1)
	for _, rt := range doc.routes(t, e, token) {
		if rt.method == "GET" {
			continue
		}
		name := rt.method + " " + rt.path
		resps, _ := rt.op["responses"].(map[string]any)
		body, hasBody := rt.op["requestBody"].(map[string]any)
		_, has413 := resps["413"]
		required, _ := body["required"].(bool)
		if hasBody {
			content, _ := body["content"].(map[string]any)
			if js, _ := content["application/json"].(map[string]any); js["schema"] == nil {
				t.Errorf("%s: its requestBody has no application/json schema", name)
			}
		}
		if hasBody && !has413 {
			t.Errorf("%s takes a body but does not document 413", name)
		}

		r := e.do(t, rt.method, rt.url, rt.key, big)
		if r.Status == http.StatusServiceUnavailable || r.Status == http.StatusUnauthorized && rt.key != "" {
			t.Errorf("%s: %s: the check cannot reach the handler", name, r)
			continue
		}
		reads := r.Status == http.StatusRequestEntityTooLarge
		switch {
		case reads && !hasBody:
			t.Errorf("%s reads a body (413 to %d bytes) but openapi.json documents no requestBody", name, len(big))
		case reads && !has413:
			t.Errorf("%s answers 413 to %d bytes, which openapi.json does not document", name, len(big))
		case !reads && (hasBody || has413):
			t.Errorf("%s: openapi.json documents a requestBody or 413, but %d bytes got %s", name, len(big), r)
		}
		if !reads {
			continue
		}
		r = e.do(t, rt.method, rt.url, rt.key, "")
		var eb struct {
			Error struct{ Message string }
		}
		_ = json.Unmarshal(r.Body, &eb)
		refused := r.Status == http.StatusBadRequest && strings.HasPrefix(eb.Error.Message, "the body is empty")
		if refused != required {
			t.Errorf("%s: openapi.json says the body is required: %v, but an empty body got %s", name, required, r)
		}
	}
}

// TestOpenAPIStreams: a route that answers Server-Sent Events declares
// text/event-stream for its 200, and one that declares it streams.
func TestOpenAPIStreams(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t)
	doc := loadOpenAPI(t)
	_, token := e.login(t, "u1", "d1")
	for _, rt := range doc.routes(t, e, token) {
		if rt.method != "GET" {
			continue
		}
		resps, _ := rt.op["responses"].(map[string]any)
		ok200, _ := resps["200"].(map[string]any)
		content, _ := ok200["content"].(map[string]any)
		_, declared := content["text/event-stream"]

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+rt.url, nil)
		req.Header.Set("Accept", "text/event-stream")
		if rt.key != "" {
			req.Header.Set("Authorization", "Bearer "+rt.key)
		}
		resp, err := e.Client.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("GET %s: %v", rt.url, err)
		}
		ct := resp.Header.Get("Content-Type")
		cancel() // a stream ends here
		resp.Body.Close()
		streams := resp.StatusCode == http.StatusOK && strings.HasPrefix(ct, "text/event-stream")
		if streams != declared {
			t.Errorf("GET %s answers %d %s, openapi.json declares text/event-stream: %v", rt.path, resp.StatusCode, ct, declared)
		}
	}
}

// TestOpenAPIStreamParams: the stream takes the feed's query parameters
// that openapi.json documents for it, and refuses the feed's others with a
// 400 naming them, rather than ignoring them (limit once was).
func TestOpenAPIStreamParams(t *testing.T) {
	t.Parallel()
	e := setup(t)
	doc := loadOpenAPI(t)
	params := func(path string) map[string]bool {
		m := map[string]bool{}
		ps, _ := doc.Paths[path]["get"]["parameters"].([]any)
		for _, p := range ps {
			if p, _ := p.(map[string]any); p["in"] == "query" {
				m[p["name"].(string)] = true
			}
		}
		return m
	}
	samples := map[string]string{"after": "0", "limit": "10", "type": "crm.*", "user_id": "u1"}
	stream := params("/v1/events/stream")
	for name := range params("/v1/events") {
		v, ok := samples[name]
		if !ok {
			t.Errorf("no sample value for the feed's parameter %s", name)
			continue
		}
		q := url.Values{name: {v}}.Encode()
		r := e.streamStart(t, q)
		if stream[name] {
			if r.Status != http.StatusOK {
				t.Errorf("GET /v1/events/stream?%s: %s, want the stream", q, r)
			}
			continue
		}
		if r.Status != http.StatusBadRequest {
			t.Errorf("GET /v1/events/stream?%s: %d, want a 400 naming %s (the feed's, not documented for the stream)", q, r.Status, name)
			continue
		}
		requireError(t, r, http.StatusBadRequest, "invalid", name)
	}
}

// streamStart opens GET /v1/events/stream?query and returns its status
// and headers, with the body of an error (a stream is closed at once).
func (e *env) streamStart(t *testing.T, query string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/v1/events/stream?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+e.Key)
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/events/stream?%s: %v", query, err)
	}
	defer resp.Body.Close()
	r := response{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		r.Body, _ = io.ReadAll(resp.Body)
	}
	return r
}

// TestOpenAPIRequiredFields: the fields a request body schema lists as
// required are the ones the server requires. From a valid body, leaving
// out a required field is refused with a 400 naming it, and leaving out
// any other is not.
func TestOpenAPIRequiredFields(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t)
	doc := loadOpenAPI(t)
	_, token := e.login(t, "u1", "d1")
	e.ingest(t, map[string]any{"type": "crm.seen", "user_id": "u9"}) // an invitee meetsync knows
	ep := e.do(t, "POST", "/v1/endpoints", e.Key, map[string]any{"url": "http://127.0.0.1:1/hook"})
	var epv struct{ ID string }
	_ = json.Unmarshal(ep.Body, &epv)
	for _, tc := range []struct {
		method, path, url, key string
		body                   map[string]any
	}{
		{"PUT", "/v1/event-types/{name}", "/v1/event-types/crm.required_probe", e.Key,
			map[string]any{"schema": map[string]any{"type": "object"}, "description": "d", "debounce": false}},
		{"POST", "/v1/endpoints", "/v1/endpoints", e.Key,
			map[string]any{"url": "http://127.0.0.1:1/hook", "description": "d", "event_types": []string{"crm.*"}, "debounce_ms": 0}},
		{"POST", "/v1/endpoints/{id}/recover", "/v1/endpoints/" + epv.ID + "/recover", e.Key,
			map[string]any{"since": "2026-01-01T00:00:00Z"}},
		{"POST", "/v1/invitations", "/v1/invitations", e.Key,
			map[string]any{"meeting_num": "123456789", "inviter": "u1", "invitees": []string{"u9"}, "subject": "s", "expires_in": "1m"}},
		{"POST", "/v1/client/init", "/v1/client/init", token,
			map[string]any{"business": map[string]any{"ok": true}, "meeting": map[string]any{"ok": true}}},
		{"POST", "/v1/client/login", "/v1/client/login", token, map[string]any{"ok": true, "code": 0}},
	} {
		name := tc.method + " " + tc.path
		required := doc.requiredFields(t, tc.method, tc.path)
		if r := e.do(t, tc.method, tc.url, tc.key, tc.body); r.Status >= 400 {
			t.Errorf("%s: the valid body got %s", name, r)
			continue
		}
		for f := range tc.body {
			less := map[string]any{}
			for k, v := range tc.body {
				if k != f {
					less[k] = v
				}
			}
			r := e.do(t, tc.method, tc.url, tc.key, less)
			var eb struct {
				Error struct{ Field string }
			}
			_ = json.Unmarshal(r.Body, &eb)
			refused := r.Status == http.StatusBadRequest && eb.Error.Field == f
			if refused != required[f] {
				t.Errorf("%s: openapi.json says %s is required: %v, but a body without it got %s", name, f, required[f], r)
			}
		}
	}
}

// requiredFields is the "required" list of an operation's request body
// schema (with those of its allOf parts).
func (d *openAPIDoc) requiredFields(t *testing.T, method, path string) map[string]bool {
	t.Helper()
	body, _ := d.Paths[path][strings.ToLower(method)]["requestBody"].(map[string]any)
	content, _ := body["content"].(map[string]any)
	js, _ := content["application/json"].(map[string]any)
	schema, _ := js["schema"].(map[string]any)
	if schema == nil {
		t.Fatalf("openapi.json: %s %s has no request body schema", method, path)
	}
	out := map[string]bool{}
	var walk func(s map[string]any)
	walk = func(s map[string]any) {
		if ref, ok := s["$ref"].(string); ok {
			s = d.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		}
		req, _ := s["required"].([]any)
		for _, f := range req {
			out[f.(string)] = true
		}
		all, _ := s["allOf"].([]any)
		for _, a := range all {
			if m, ok := a.(map[string]any); ok {
				walk(m)
			}
		}
	}
	walk(schema)
	return out
}

// TestOpenAPISessionResponses: the answers of the session routes carry
// only what their schemas declare, and null only where they allow it.
func TestOpenAPISessionResponses(t *testing.T) {
	t.Parallel()
	e, platform := setupSessions(t)
	doc := loadOpenAPI(t)
	check := func(method, path, status string, r response) {
		t.Helper()
		if want, _ := strconv.Atoi(status); r.Status != want {
			t.Fatalf("%s %s: %s, want %s", method, path, r, status)
		}
		var v any
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Fatalf("%s %s: %v (%s)", method, path, err, r)
		}
		for _, f := range doc.conforms(doc.responseSchema(t, method, path, status), v, "") {
			t.Errorf("%s %s answers %s", strings.ToUpper(method), path, f)
		}
	}
	r, token := e.login(t, "u1", "d1")
	check("post", "/v1/users/{id}/login", "200", r)
	check("post", "/v1/client/credentials", "200", e.do(t, "POST", "/v1/client/credentials", token, nil))
	check("get", "/v1/client/commands", "200", e.do(t, "GET", "/v1/client/commands", token, nil, "Accept", "application/json"))
	check("post", "/v1/users/{id}/logout", "202", e.do(t, "POST", "/v1/users/u1/logout", e.Key, nil))

	// The platform is down: the login answers without credentials.
	platform.SetOutage(true)
	r, _ = e.login(t, "u2", "d1")
	if !bytes.Contains(r.Body, []byte(`"meeting":null`)) {
		t.Fatalf("login during an outage: %s, want meeting null", r)
	}
	check("post", "/v1/users/{id}/login", "200", r)
}
