package delivery_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestEndpointTest: POST /v1/endpoints/{id}/test sends one signed
// endpoint.test webhook now, outside the queue, that verifies with the
// endpoint's secret (both implementations), and answers what the receiver
// did; nothing is stored, and a receiver that fails or cannot be reached
// is reported, not retried.
func TestEndpointTest(t *testing.T) {
	e := setup(t)
	rc := newReceiver(t)
	ep := e.createEndpoint(t, rc.URL, nil)
	rc.verifyWith(e.Clock.Now, ep.Secret)
	var out struct {
		OK      bool `json:"ok"`
		Attempt struct {
			StatusCode   int     `json:"status_code"`
			Error        string  `json:"error"`
			LatencyMS    float64 `json:"latency_ms"`
			ResponseBody string  `json:"response_body"`
		} `json:"attempt"`
	}
	expect(t, e.do(t, "POST", "/v1/endpoints/"+ep.ID+"/test", nil), http.StatusOK, &out)
	if !out.OK || out.Attempt.StatusCode != 200 || out.Attempt.Error != "" {
		t.Fatalf("test to a receiver answering 200: %+v", out)
	}
	reqs := rc.requests()
	if len(reqs) != 1 || reqs[0].Payload.Type != "endpoint.test" || reqs[0].Payload.UserID != "@system" || !strings.HasPrefix(reqs[0].ID, "evt_") {
		t.Fatalf("the receiver got %d requests: %+v", len(reqs), reqs)
	}
	// Nothing stored: no delivery, no event in the feed.
	var dl struct {
		Deliveries []deliveryJSON `json:"deliveries"`
	}
	expect(t, e.do(t, "GET", "/v1/endpoints/"+ep.ID+"/deliveries", nil), http.StatusOK, &dl)
	var feed struct {
		Events []map[string]any `json:"events"`
	}
	expect(t, e.do(t, "GET", "/v1/events?after=0", nil), http.StatusOK, &feed)
	if len(dl.Deliveries) != 0 || len(feed.Events) != 0 {
		t.Errorf("a test stored %d deliveries and %d events", len(dl.Deliveries), len(feed.Events))
	}

	rc.setRespond(func(*webhookReq) reply { return reply{Status: 503, Body: "down for maintenance"} })
	expect(t, e.do(t, "POST", "/v1/endpoints/"+ep.ID+"/test", nil), http.StatusOK, &out)
	if out.OK || out.Attempt.StatusCode != 503 || out.Attempt.Error != "HTTP 503" || out.Attempt.ResponseBody != "down for maintenance" {
		t.Errorf("test to a receiver answering 503: %+v", out)
	}
	if n := len(rc.requests()); n != 2 {
		t.Errorf("the failed test was sent %d times in all, want once (no retry)", n-1)
	}
	gone := e.createEndpoint(t, "http://127.0.0.1:1/hook", nil)
	out.OK, out.Attempt.StatusCode, out.Attempt.ResponseBody = true, 0, "" // fields the answer leaves out
	expect(t, e.do(t, "POST", "/v1/endpoints/"+gone.ID+"/test", nil), http.StatusOK, &out)
	if out.OK || out.Attempt.StatusCode != 0 || !strings.Contains(out.Attempt.Error, "refused") {
		t.Errorf("test to nobody: %+v", out)
	}
	requireError(t, e.do(t, "POST", "/v1/endpoints/ep_nope/test", nil), http.StatusNotFound, "not_found", "")
}
