package session_test

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/session"
)

// logoutCommand returns the id of the one command pending for a client
// token, a logout.
func (e *env) logoutCommand(t *testing.T, token string) string {
	t.Helper()
	var cmds struct {
		Commands []struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"commands"`
	}
	e.want(t, e.do(t, "GET", "/v1/client/commands", token, nil), 200).decode(t, &cmds)
	if len(cmds.Commands) != 1 || cmds.Commands[0].Type != "logout" {
		t.Fatalf("commands: %+v, want one logout", cmds)
	}
	return cmds.Commands[0].ID
}

// TestAckFailedLogout: a device acknowledges its logout command with the
// body the Go client sends for a failure, {"ok":false,"code":3,"message":
// "…"}. It is accepted (it was 400 "unknown field code", and the command
// stayed pending), stored as a failure with its code, and the logout's
// session.logged_out tells the failed device from the confirmed one.
func TestAckFailedLogout(t *testing.T) {
	e := setup(t)
	laptop := e.login(t, "alice", "laptop")
	phone := e.login(t, "alice", "phone")
	e.want(t, e.do(t, "POST", "/v1/users/alice/logout", e.Key, nil), 202)
	laptopCmd, phoneCmd := e.logoutCommand(t, laptop.ClientToken), e.logoutCommand(t, phone.ClientToken)

	e.want(t, e.do(t, "POST", "/v1/client/commands/"+laptopCmd+"/ack", laptop.ClientToken, `{"ok":true}`), 204)
	if u := e.user(t, "alice"); u.Session.Meeting != "logging_out" {
		t.Fatalf("with the phone still to answer: %+v", u.Session)
	}
	// The Go client's client.Result of a failed SDK logout, byte for byte.
	e.want(t, e.do(t, "POST", "/v1/client/commands/"+phoneCmd+"/ack", phone.ClientToken, `{"ok":false,"code":3,"message":"sdk logout failed"}`), 204)

	// Every device answered: the logout is complete, not forced.
	if u := e.user(t, "alice"); u.Session.Business != "logged_out" || u.Session.Meeting != "logged_out" {
		t.Fatalf("after both acks: %+v", u.Session)
	}
	d := lastOf(t, e.events(t, "alice"), "session.logged_out")
	if d["forced"] != false || d["devices_unconfirmed"] != nil {
		t.Errorf("logged_out: %v, want not forced, every device answered", d)
	}
	if got, _ := json.Marshal(d["devices_confirmed"]); string(got) != `["laptop"]` {
		t.Errorf("devices_confirmed %s, want [\"laptop\"] (the failed phone is not confirmed)", got)
	}
	if got, _ := json.Marshal(d["devices_failed"]); string(got) != `[{"code":3,"device_id":"phone","message":"sdk logout failed"}]` {
		t.Errorf("devices_failed %s, want the phone with its code and message", got)
	}

	// The store has the failure, code included.
	cmds, err := e.Store.CommandsForSession(context.Background(), e.AppID, "alice", laptop.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	var seen int
	for _, c := range cmds {
		switch c.ID {
		case laptopCmd:
			seen++
			if c.AckedAt == nil || !c.AckOK || c.AckError != "" {
				t.Errorf("laptop's ack stored as %+v", c)
			}
		case phoneCmd:
			seen++
			if c.AckedAt == nil || c.AckOK || c.AckError != "code 3: sdk logout failed" {
				t.Errorf("phone's ack stored as ok %v, error %q, at %v; want false, \"code 3: sdk logout failed\"", c.AckOK, c.AckError, c.AckedAt)
			}
		}
	}
	if seen != 2 {
		t.Fatalf("commands of the session: %+v", cmds)
	}
	// Acking again is harmless; the first ack stays.
	e.want(t, e.do(t, "POST", "/v1/client/commands/"+phoneCmd+"/ack", phone.ClientToken, `{"ok":true}`), 204)
}

// TestAckErrorAlias: {"ok":false,"error":"…"}, the body openapi.json
// described before, is still accepted: error is message's former name.
func TestAckErrorAlias(t *testing.T) {
	e := setup(t)
	lr := e.login(t, "bob", "d1")
	e.want(t, e.do(t, "POST", "/v1/users/bob/logout", e.Key, nil), 202)
	cmd := e.logoutCommand(t, lr.ClientToken)
	e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmd+"/ack", lr.ClientToken, `{"ok":false,"error":"the SDK did not answer"}`), 204)
	d := lastOf(t, e.events(t, "bob"), "session.logged_out")
	if got, _ := json.Marshal(d["devices_confirmed"]); string(got) != `[]` {
		t.Errorf("devices_confirmed %s, want []", got)
	}
	if got, _ := json.Marshal(d["devices_failed"]); string(got) != `[{"code":0,"device_id":"d1","message":"the SDK did not answer"}]` {
		t.Errorf("devices_failed %s", got)
	}
}

// TestAckBadInput: an ack body that cannot be understood is a 400 naming
// its field, and the command stays pending.
func TestAckBadInput(t *testing.T) {
	e := setup(t)
	lr := e.login(t, "carol", "d1")
	e.want(t, e.do(t, "POST", "/v1/users/carol/logout", e.Key, nil), 202)
	cmd := e.logoutCommand(t, lr.ClientToken)
	for _, tc := range []struct{ body, field string }{
		{`{"ok":false,"code":"3"}`, "code"},
		{`{"ok":false,"message":"` + strings.Repeat("x", 1025) + `"}`, "message"},
		{`{"ok":false,"error":"` + strings.Repeat("x", 1025) + `"}`, "error"},
		{`{"ok":false,"message":"a","error":"b"}`, "error"},
		{`{"code":3,"message":"no ok"}`, "ok"},
		{`{"ok":false,"bogus":1}`, "bogus"},
	} {
		r := e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmd+"/ack", lr.ClientToken, tc.body), 400)
		if !strings.Contains(string(r.Body), `"field":"`+tc.field+`"`) {
			t.Errorf("ack %.60s: %s, want field %s", tc.body, r, tc.field)
		}
	}
	e.logoutCommand(t, lr.ClientToken) // still pending
	// The same message twice, under both names, is one message.
	e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmd+"/ack", lr.ClientToken, `{"ok":false,"message":"x","error":"x"}`), 204)
}

// TestAckInputDocumented: openapi.json's AckInput declares exactly the
// fields session.AckInput takes, and the ack route's body is AckInput.
func TestAckInputDocumented(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			RequestBody struct {
				Content map[string]struct {
					Schema struct {
						Ref string `json:"$ref"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if ref := doc.Paths["/v1/client/commands/{id}/ack"]["post"].RequestBody.Content["application/json"].Schema.Ref; ref != "#/components/schemas/AckInput" {
		t.Errorf("the ack body's schema is %q, want AckInput", ref)
	}
	var declared, taken []string
	for name := range doc.Components.Schemas["AckInput"].Properties {
		declared = append(declared, name)
	}
	rt := reflect.TypeFor[session.AckInput]()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		taken = append(taken, name)
	}
	slices.Sort(declared)
	slices.Sort(taken)
	if !slices.Equal(declared, taken) {
		t.Errorf("openapi.json AckInput declares %v, the server takes %v", declared, taken)
	}
}
