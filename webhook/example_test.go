package webhook_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/meetsync/meetsync/webhook"
)

// A receiver checks every request before trusting it.
func ExampleVerify() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"type":"meeting.status_changed","data":{"status":"in_meeting"}}`)
	ts := time.Now()

	// What meetsync sends:
	sig, _ := webhook.Sign(secret, "evt_01", ts, body)
	h := http.Header{}
	h.Set(webhook.HeaderID, "evt_01")
	h.Set(webhook.HeaderTimestamp, fmt.Sprint(ts.Unix()))
	h.Set(webhook.HeaderSignature, sig)

	// What the receiver does:
	fmt.Println(webhook.Verify(secret, h, body))
	fmt.Println(webhook.Verify(secret, h, []byte(`{"tampered":true}`)) != nil)
	// Output:
	// <nil>
	// true
}

// Sign is deterministic for a given id, timestamp and body.
func ExampleSign() {
	sig, _ := webhook.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	fmt.Println(sig)
	// Output:
	// v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}
