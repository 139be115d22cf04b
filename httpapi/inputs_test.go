package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestAppPatchNullBody: PATCH /v1/app with the body null is a 400, as an
// empty body is, not a 200 that changes nothing; the settings stay.
func TestAppPatchNullBody(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t)
	before := e.do(t, "GET", "/v1/app", e.Key, nil)
	for _, body := range []string{"null", " null\n"} {
		msg := requireError(t, e.do(t, "PATCH", "/v1/app", e.Key, body), http.StatusBadRequest, "invalid", "")
		if !strings.Contains(msg, "null") {
			t.Errorf("body %q: message %q, want it to say the body is null", body, msg)
		}
	}
	requireError(t, e.do(t, "PATCH", "/v1/app", e.Key, ""), http.StatusBadRequest, "invalid", "")
	if after := e.do(t, "GET", "/v1/app", e.Key, nil); string(after.Body) != string(before.Body) {
		t.Fatalf("settings changed: %s, were %s", after.Body, before.Body)
	}
	// A field set to null is still "unchanged".
	if r := e.do(t, "PATCH", "/v1/app", e.Key, `{"login_deadline":null}`); r.Status != http.StatusOK {
		t.Fatalf("a null field: %s", r)
	}
}

// TestInvitationStateMessage: an unknown state lists the accepted ones
// as the other "accepted:" messages do, comma separated, not as a Go
// slice.
func TestInvitationStateMessage(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t)
	_, token := e.login(t, "u1", "d1")
	const want = "accepted: waiting_call, calling, accepted, joined, rejected, no_answer, canceled, expired"
	for _, c := range []struct{ path, key string }{
		{"/v1/invitations?state=maybe", e.Key},
		{"/v1/client/invitations?state=maybe", token},
	} {
		msg := requireError(t, e.do(t, "GET", c.path, c.key, nil), http.StatusBadRequest, "invalid", "state")
		if !strings.Contains(msg, want) || strings.ContainsAny(msg, "[]") {
			t.Errorf("GET %s: message %q, want %q", c.path, msg, want)
		}
	}
}

// TestClientInvitationListParams: GET /v1/client/invitations takes state,
// limit and cursor, and user_id only naming the token's own user (another
// is 403, as on the other client routes); any other parameter, which it
// would ignore, is a 400 naming it.
func TestClientInvitationListParams(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t)
	_, token := e.login(t, "u1", "d1")
	e.login(t, "u2", "d2")
	e.do(t, "POST", "/v1/invitations", e.Key, map[string]any{"meeting_num": "123456789", "inviter": "u2", "invitees": []string{"u1"}})
	list := func(query string) []string {
		t.Helper()
		r := e.do(t, "GET", "/v1/client/invitations"+query, token, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /v1/client/invitations%s: %s", query, r)
		}
		var v struct {
			Invitations []struct{ Invitee string } `json:"invitations"`
		}
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, inv := range v.Invitations {
			out = append(out, inv.Invitee)
		}
		return out
	}
	for _, q := range []string{"", "?user_id=u1", "?state=waiting_call&limit=10", "?user_id=u1&user_id=u1&cursor="} {
		if got := list(q); len(got) != 1 || got[0] != "u1" {
			t.Errorf("GET /v1/client/invitations%s: invitees %v, want u1's one", q, got)
		}
	}
	// next only while there may be more, as GET /v1/users: absent (it
	// was "") once the list is complete.
	for _, c := range []struct {
		path, key string
		next      bool
	}{
		{"/v1/client/invitations?limit=1", token, true}, {"/v1/client/invitations", token, false},
		{"/v1/invitations?limit=1", e.Key, true}, {"/v1/invitations", e.Key, false},
	} {
		var v map[string]any
		if err := json.Unmarshal(e.do(t, "GET", c.path, c.key, nil).Body, &v); err != nil {
			t.Fatal(err)
		}
		if _, has := v["next"]; has != c.next {
			t.Errorf("GET %s: next %v (present: %v), want present: %v", c.path, v["next"], has, c.next)
		}
	}
	requireError(t, e.do(t, "GET", "/v1/client/invitations?user_id=u2", token, nil), http.StatusForbidden, "forbidden", "user_id")
	requireError(t, e.do(t, "GET", "/v1/client/invitations?user_id=u1&user_id=u2", token, nil), http.StatusForbidden, "forbidden", "user_id")
	requireError(t, e.do(t, "GET", "/v1/client/invitations?user_id=", token, nil), http.StatusBadRequest, "invalid", "user_id")
	for _, c := range []struct{ query, field string }{
		{"?invitee=u2", "invitee"},
		{"?state=waiting_call&after=inv_x", "after"},
		{"?Limit=5", "Limit"},
	} {
		msg := requireError(t, e.do(t, "GET", "/v1/client/invitations"+c.query, token, nil), http.StatusBadRequest, "invalid", c.field)
		if !strings.Contains(msg, "state, limit, cursor") {
			t.Errorf("%s: message %q, want the accepted parameters", c.query, msg)
		}
	}
}

// TestReconciledReasonNotInput: the reason meetsync gives a status its
// reconciler corrected, reconciled (code 1000), is not a client's to send.
func TestReconciledReasonNotInput(t *testing.T) {
	t.Parallel()
	e, _ := setupSessions(t)
	for _, reason := range []any{1000, "reconciled", "1000"} {
		ev := statusEvent("u1", "d1", 1, "idle")
		ev["data"].(map[string]any)["arg"] = reason
		requireError(t, e.do(t, "POST", "/v1/events", e.Key, ev), http.StatusBadRequest, "invalid", "data.arg")
	}
}
