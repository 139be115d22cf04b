package delivery_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/delivery"
)

// TestMetricsQueueDepthZero: every endpoint has a queue depth series, 0
// when nothing is pending (a dashboard tells an empty queue from missing
// data): a new endpoint that was never sent anything, one of another app,
// a disabled one, and one whose deliveries all succeeded; one still
// failing counts its active deliveries.
func TestMetricsQueueDepthZero(t *testing.T) {
	t.Parallel()
	e := setup(t, withConfig(func(c *delivery.Config) { c.Schedule = meetsync.RetrySchedule{0, time.Hour} }))
	ok, down := newReceiver(t), newReceiver(t)
	idle := e.createEndpoint(t, ok.URL, map[string]any{"event_types": []string{"other.*"}})
	off := e.createEndpoint(t, ok.URL, map[string]any{"event_types": []string{"other.*"}})
	expect(t, e.do(t, "PATCH", "/v1/endpoints/"+off.ID, map[string]any{"enabled": false}), http.StatusOK, nil)
	_, otherKey := e.newApp(t, "other-"+e.AppID)
	var other endpointJSON
	expect(t, e.doAs(t, otherKey, "POST", "/v1/endpoints", map[string]any{"url": ok.URL}), http.StatusCreated, &other)
	epOK := e.createEndpoint(t, ok.URL, map[string]any{"event_types": []string{"test.*"}})
	epDown := e.createEndpoint(t, down.URL, map[string]any{"event_types": []string{"test.*"}})
	ok.verifyWith(nil, epOK.Secret)
	down.verifyWith(nil, epDown.Secret)
	down.setRespond(fail(http.StatusInternalServerError))
	e.ingest(t, event("u1", "test.m", nil), event("u2", "test.m", nil))
	eventually(t, wait, func() bool {
		return e.settled(t, epOK.ID) && len(ok.firsts()) == 2 && e.countDeliveries(t, epDown.ID, "failed") == 2
	}, "deliveries done at one endpoint, failing at the other")
	// The first scrape reads the store (nothing was cached before it).
	m := e.metrics(t)
	for id, want := range map[string]float64{idle.ID: 0, off.ID: 0, other.ID: 0, epOK.ID: 0, epDown.ID: 2} {
		k := `meetsync_delivery_queue_depth{endpoint="` + id + `"}`
		if got, found := m[k]; !found || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, found, want)
		}
	}
}
