package delivery_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// TestSealedSecrets: endpoint signing secrets are encrypted at rest and
// opened by the dispatcher to sign; a dispatcher that cannot open them
// (another secret key) never sends an unsigned webhook: the attempt fails
// and says why.
func TestSealedSecrets(t *testing.T) {
	t.Parallel()
	key := meetsync.NewSecretKey()
	sealer, err := meetsync.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := meetsync.NewSealer(meetsync.NewSecretKey())
	for _, tc := range []struct {
		name      string
		dispatch  *meetsync.Sealer
		delivered bool
	}{{"same key", sealer, true}, {"another key", other, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, withSealers(sealer, tc.dispatch))
			rc := newReceiver(t)
			ep := e.createEndpoint(t, rc.URL, map[string]any{"debounce_ms": 0})
			if !strings.HasPrefix(ep.Secret, "whsec_") {
				t.Fatalf("the API did not show the plaintext secret once: %q", ep.Secret)
			}
			stored, err := e.Store.EndpointGet(context.Background(), e.AppID, ep.ID)
			if err != nil || !strings.HasPrefix(stored.Secrets[0].Secret, "enc:v1:") || strings.Contains(stored.Secrets[0].Secret, ep.Secret[6:]) {
				t.Fatalf("stored secret %q (%v): want it encrypted", stored.Secrets[0].Secret, err)
			}
			rc.verifyWith(nil, ep.Secret)
			ev := e.ingest(t, event("u1", "crm.note", nil))[0]
			if tc.delivered {
				eventually(t, 10*time.Second, func() bool { return rc.count() == 1 }, "the webhook was not delivered")
				return
			}
			eventually(t, 10*time.Second, func() bool {
				d := e.deliveryOf(t, ep.ID, ev.ID)
				_, attempts := e.delivery(t, d.ID)
				return len(attempts) > 0 && strings.Contains(attempts[0].Error, "no usable signing secret")
			}, "no failed attempt saying why")
			if n := rc.count(); n != 0 {
				t.Fatalf("%d webhooks sent without a usable signature", n)
			}
		})
	}
}
