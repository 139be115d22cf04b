package delivery_test

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/webhook"
)

// TestStandardWebhooksLibrary checks meetsync's webhooks with an
// independent implementation: the Standard Webhooks reference library for
// Go. Every webhook of this test (and of every other end-to-end test: see
// receiver) verifies with it; changing the body, the id, the timestamp or
// the secret makes it fail, so the check is not vacuous.
func TestStandardWebhooksLibrary(t *testing.T) {
	t.Parallel()
	e := setup(t)
	rc := newReceiver(t)
	ep := e.createEndpoint(t, rc.URL, map[string]any{"debounce_ms": 0})
	rc.verifyWith(nil, ep.Secret)

	evs := []map[string]any{
		statusEvent("u1", "MEETING_STATUS_INMEETING"),
		event("u1", meetsync.TypeMeetingMemberJoined, map[string]any{"meeting_num": "123-456", "name": "张三 <admin> & \"co\"", "emoji": "🎉"}),
		event("u2", "order.paid", map[string]any{"amount": 12.5, "lines": []any{map[string]any{"sku": "a\u2028b"}}, "nothing": nil}),
		event("u2", "custom.big", map[string]any{"blob": strings.Repeat("x", 200_000)}),
		event("u3", meetsync.TypeMeetingStarted, nil),
	}
	res := e.ingest(t, evs...)
	eventually(t, wait, func() bool { return len(rc.firsts()) == len(res) && e.settled(t, ep.ID) }, "every webhook")

	wh, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	other, err := standardwebhooks.NewWebhook(meetsync.NewEndpointSecret())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rc.requests() {
		h := r.Header
		if err := wh.Verify(r.Body, h); err != nil {
			t.Errorf("webhook %s does not verify with the reference library: %v", r.ID, err)
		}
		// The headers as the specification has them.
		ts, err := strconv.ParseInt(h.Get(standardwebhooks.HeaderWebhookTimestamp), 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("webhook-timestamp %q: want Unix seconds of about now", h.Get(standardwebhooks.HeaderWebhookTimestamp))
		}
		sig := h.Get(standardwebhooks.HeaderWebhookSignature)
		if v, b64, ok := strings.Cut(sig, ","); !ok || v != "v1" || len(mustBase64(t, b64)) != 32 {
			t.Errorf("webhook-signature %q: want v1,<base64 of a 32-byte HMAC-SHA256>", sig)
		}
		if !strings.HasPrefix(r.ID, "evt_") {
			t.Errorf("webhook-id %q: want the event id", r.ID)
		}
		// Negative checks: each change must make verification fail.
		tampered := append([]byte(nil), r.Body...)
		tampered[len(tampered)/2] ^= 1
		if wh.Verify(tampered, h) == nil {
			t.Errorf("webhook %s: a changed body verifies", r.ID)
		}
		for _, c := range []struct{ name, value string }{
			{standardwebhooks.HeaderWebhookID, r.ID + "x"},
			{standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts+1, 10)},
		} {
			h2 := h.Clone()
			h2.Set(c.name, c.value)
			if wh.Verify(r.Body, h2) == nil {
				t.Errorf("webhook %s: a changed %s verifies", r.ID, c.name)
			}
		}
		if other.Verify(r.Body, h) == nil {
			t.Errorf("webhook %s verifies with another secret", r.ID)
		}
	}
	// The body is Standard Webhooks' {"type","timestamp","data"} with the
	// event envelope.
	for i, r := range rc.firsts() {
		p := r.Payload
		if p.Type == "" || p.Timestamp.IsZero() || len(p.Data) == 0 || p.Data[0] != '{' || p.UserID == "" || p.Seq == 0 {
			t.Errorf("webhook %d body %.200s: want type, timestamp, data and the envelope", i, r.Body)
		}
	}

	// During a rotation the header carries two signatures; the library
	// accepts either secret.
	var rot struct {
		Secret string `json:"secret"`
	}
	expect(t, e.do(t, "POST", "/v1/endpoints/"+ep.ID+"/secrets/rotate", nil), http.StatusOK, &rot)
	rc.verifyWith(nil, ep.Secret, rot.Secret)
	id := e.ingest(t, event("u1", "custom.after_rotation", nil))[0].ID
	eventually(t, wait, func() bool { return rc.has(id, 1) }, "the webhook after rotation")
	r := rc.byID(id)[0]
	for _, s := range []string{ep.Secret, rot.Secret} {
		w, _ := standardwebhooks.NewWebhook(s)
		if err := w.Verify(r.Body, r.Header); err != nil {
			t.Errorf("during the grace period the library rejects a valid secret: %v", err)
		}
	}
}

func mustBase64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Errorf("%q is not base64: %v", s, err)
	}
	return b
}

// TestSignMatchesStandardWebhooks: webhook.Sign produces the reference
// library's signature, and each side verifies what the other signed.
func TestSignMatchesStandardWebhooks(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	for i := range 200 {
		key := make([]byte, 16+rng.IntN(48))
		for j := range key {
			key[j] = byte(rng.UintN(256))
		}
		secret := base64.StdEncoding.EncodeToString(key)
		if i%2 == 0 {
			secret = "whsec_" + secret
		}
		id := fmt.Sprintf("evt_%d_%x", i, rng.Uint64())
		ts := now.Add(time.Duration(rng.IntN(600)-300) * time.Second)
		body := make([]byte, rng.IntN(2000))
		for j := range body {
			body[j] = byte(rng.UintN(256))
		}
		ours, err := webhook.Sign(secret, id, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := ref.Sign(id, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		if ours != theirs {
			t.Fatalf("case %d: webhook.Sign = %s, reference library = %s", i, ours, theirs)
		}
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(webhook.HeaderSignature, theirs)
		if err := webhook.Verify(secret, h, body); err != nil {
			t.Errorf("case %d: webhook.Verify rejects the reference library's signature: %v", i, err)
		}
		h.Set(webhook.HeaderSignature, ours)
		if err := ref.Verify(body, h); err != nil {
			t.Errorf("case %d: the reference library rejects webhook.Sign's signature: %v", i, err)
		}
	}
}
