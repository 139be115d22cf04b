package httpapi_test

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/meetsync/meetsync/httpapi"
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

// conforms reports the fields of v that the schema does not declare.
func (d *openAPIDoc) conforms(schema map[string]any, v any, at string) []string {
	if ref, ok := schema["$ref"].(string); ok {
		return d.conforms(d.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")], v, at)
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
				bad = append(bad, at+"."+k)
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
			t.Errorf("%s %s answers field %s, which openapi.json does not declare", strings.ToUpper(method), path, f)
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
