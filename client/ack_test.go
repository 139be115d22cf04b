package client_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
	"github.com/meetsync/meetsync/httpapi"
)

// sdkError is an SDK error with a code, as ResultOf reads one.
type sdkError struct {
	code int
	msg  string
}

func (e sdkError) Error() string { return e.msg }
func (e sdkError) Code() int     { return e.code }

// TestAckCommandFailure: AckCommand with a failed Result — what the
// Coordinator sends when the SDK's logout fails — is accepted (the server
// answered 400 "unknown field code", so the command stayed pending), and
// the failure shows: session.logged_out lists the device under
// devices_failed with the SDK's code and message, not as confirmed.
func TestAckCommandFailure(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	app := s.app()
	var devs []*client.Client
	for _, d := range []string{"laptop", "phone"} {
		res, err := app.Login(ctx, "erin", client.LoginRequest{DeviceID: d})
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, client.New(s.URL, client.WithClientToken(res.ClientToken)))
	}
	if _, err := app.Logout(ctx, "erin", client.LogoutRequest{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	results := []client.Result{
		{OK: true},
		client.ResultOf(sdkError{code: 3, msg: "sdk logout failed"}),
	}
	if results[1] != (client.Result{Code: 3, Message: "sdk logout failed"}) {
		t.Fatalf("ResultOf = %+v", results[1])
	}
	for i, dev := range devs {
		cmds, err := dev.PendingCommands(ctx)
		if err != nil || len(cmds) != 1 || cmds[0].Type != client.CommandLogout {
			t.Fatalf("device %d: pending commands %+v, %v", i, cmds, err)
		}
		if err := dev.AckCommand(ctx, cmds[0].ID, results[i]); err != nil {
			t.Fatalf("device %d: AckCommand(%+v): %v", i, results[i], err)
		}
		// Acknowledged: it is not sent again (the token of the ended
		// session sees nothing pending any more).
		if cmds, err := dev.PendingCommands(ctx); err == nil && len(cmds) != 0 {
			t.Fatalf("device %d: still pending after the ack: %+v", i, cmds)
		}
	}
	s.sessionEnded(t, "erin")
	lo := dataOf(t, s.events(t, "erin"), meetsync.TypeSessionLoggedOut)
	if lo["forced"] != false || lo["devices_unconfirmed"] != nil {
		t.Errorf("session.logged_out %v: every device answered, nothing forced", lo)
	}
	if got, _ := json.Marshal(lo["devices_confirmed"]); string(got) != `["laptop"]` {
		t.Errorf("devices_confirmed %s, want only the laptop", got)
	}
	var failed []struct {
		DeviceID string `json:"device_id"`
		Code     int    `json:"code"`
		Message  string `json:"message"`
	}
	b, _ := json.Marshal(lo["devices_failed"])
	if err := json.Unmarshal(b, &failed); err != nil || len(failed) != 1 || failed[0].DeviceID != "phone" ||
		failed[0].Code != 3 || failed[0].Message != "sdk logout failed" {
		t.Errorf("devices_failed %s, want the phone with code 3 and its message", b)
	}
}

// TestResultIsAckInput: every field the client's Result sends is one the
// ack route's body declares (openapi.json AckInput), with its type.
func TestResultIsAckInput(t *testing.T) {
	t.Parallel()
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Type string `json:"type"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	props := doc.Components.Schemas["AckInput"].Properties
	kinds := map[reflect.Kind]string{reflect.Bool: "boolean", reflect.Int: "integer", reflect.String: "string"}
	rt := reflect.TypeFor[client.Result]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if p, ok := props[name]; !ok || p.Type != kinds[f.Type.Kind()] {
			t.Errorf("client.Result.%s is sent as %q (%s); openapi.json AckInput has %+v", f.Name, name, kinds[f.Type.Kind()], props)
		}
	}
}
