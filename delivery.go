package meetsync

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Delivery statuses.
const (
	DeliveryPending    = "pending"    // waiting for its turn, its debounce window or its first attempt
	DeliveryFailed     = "failed"     // an attempt failed; another is scheduled
	DeliveryDelivered  = "delivered"  // a 2xx was received
	DeliveryDead       = "dead"       // retries exhausted (dead letter); replayable
	DeliverySuperseded = "superseded" // coalesced away by a newer status of the same user
)

// Delivery is one event to one endpoint. A user's deliveries to an
// endpoint form a FIFO queue in seq order: only its head is ever attempted.
type Delivery struct {
	ID            string     `json:"id"`
	AppID         string     `json:"-"`
	EndpointID    string     `json:"endpoint_id"`
	EventID       string     `json:"event_id"`
	EventType     string     `json:"event_type"`
	UserID        string     `json:"user_id"`
	Seq           int64      `json:"seq"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastCode      int        `json:"last_status_code,omitempty"`
	SupersededBy  string     `json:"superseded_by,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`

	// EventPos is the feed position of the event (internal).
	EventPos int64 `json:"-"`
}

// Attempt is one HTTP attempt of a delivery.
type Attempt struct {
	DeliveryID   string        `json:"-"`
	N            int           `json:"n"`
	At           time.Time     `json:"at"`
	StatusCode   int           `json:"status_code,omitempty"`
	Latency      time.Duration `json:"-"`
	LatencyMS    float64       `json:"latency_ms"`
	Error        string        `json:"error,omitempty"`
	ResponseBody string        `json:"response_body,omitempty"`
}

// MaxResponseBody is how much of a receiver's response an attempt keeps.
const MaxResponseBody = 1024

// DeliveryTask is a claimed delivery with what it takes to send it.
type DeliveryTask struct {
	Delivery *Delivery
	Event    *Event
	Endpoint *Endpoint
	// ClaimedUntil is when the claim's lease ends.
	ClaimedUntil time.Time
	// ClaimID identifies this claim: an outcome is recorded only while the
	// delivery is still held by the same claim.
	ClaimID int64
}

// DeliveryOutcome is what the dispatcher decided after an attempt; the
// store applies it (with the attempt and any events) in one transaction.
type DeliveryOutcome struct {
	Task    *DeliveryTask
	Attempt Attempt
	// Status is the delivery's new status: delivered, failed (with
	// NextAttemptAt) or dead.
	Status        string
	NextAttemptAt time.Time
	// DisableEndpoint, when set, disables the endpoint with this reason.
	DisableEndpoint string
	// Events are system events to append in the same transaction
	// (delivery.exhausted).
	Events []*Event
	// DisabledEvent (endpoint.disabled) is appended only if this outcome is
	// the one that disables the endpoint (it was still enabled).
	DisabledEvent *Event
	// Release gives the claim back without counting an attempt: the
	// delivery stays its queue's head, due at NextAttemptAt (e.g. the
	// endpoint's rate limit would hold it past its lease).
	Release bool
}

// DeliveryClaimParams selects due delivery heads to claim.
type DeliveryClaimParams struct {
	Owner string        // who claims (a replica's id)
	Now   time.Time     // due at or before Now
	Lease time.Duration // the claim expires after this
	Limit int
}

// DeliveryCompleteParams records outcomes.
type DeliveryCompleteParams struct {
	Owner    string
	Now      time.Time
	Lease    time.Duration
	Outcomes []*DeliveryOutcome
	// ClaimNext asks the store to claim, in the same transaction, the next
	// head of each queue a delivered outcome advanced, if it is due.
	ClaimNext bool
}

// DeliveryListParams selects an endpoint's deliveries, newest first.
type DeliveryListParams struct {
	AppID      string
	EndpointID string
	Status     string // "" for any
	Before     string // delivery id cursor
	Limit      int
}

// DeliveryRequeueParams puts deliveries back in their queues (replay,
// recover): one delivery by id, or every dead or failed delivery of an
// endpoint created at or after Since.
type DeliveryRequeueParams struct {
	AppID      string
	DeliveryID string
	EndpointID string
	Since      time.Time
	Now        time.Time
}

// RetrySchedule is the delay before each attempt: the first entry is the
// delay of the first attempt (normally 0), and a delivery whose attempts
// all failed is dead.
type RetrySchedule []time.Duration

// DefaultRetrySchedule is Standard Webhooks' / Svix's schedule.
var DefaultRetrySchedule = RetrySchedule{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// ParseRetrySchedule parses "0s,5s,5m,30m,2h,5h,10h,10h".
func ParseRetrySchedule(s string) (RetrySchedule, error) {
	var out RetrySchedule
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("retry schedule %q: %q is not a duration such as 5s or 2h", s, part)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("retry schedule is empty")
	}
	return out, nil
}

// String renders the schedule as ParseRetrySchedule reads it.
func (r RetrySchedule) String() string {
	parts := make([]string, len(r))
	for i, d := range r {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// WebhookPayload renders the body of a webhook: Standard Webhooks'
// {"type","timestamp","data"} plus the event envelope. It is the same for
// every attempt of a delivery.
func WebhookPayload(e *Event) ([]byte, error) {
	return json.Marshal(struct {
		Type       string          `json:"type"`
		Timestamp  time.Time       `json:"timestamp"`
		Data       json.RawMessage `json:"data"`
		ID         string          `json:"id"`
		UserID     string          `json:"user_id"`
		Seq        int64           `json:"seq"`
		OccurredAt time.Time       `json:"occurred_at"`
		Source     string          `json:"source"`
		DeviceID   string          `json:"device_id,omitempty"`
		ClientSeq  int64           `json:"client_seq,omitempty"`
		Stale      bool            `json:"stale"`
		// SchemaVersion is the custom type's schema version (omitted for built-ins).
		SchemaVersion int `json:"schema_version,omitempty"`
	}{e.Type, e.ReceivedAt, e.Data, e.ID, e.UserID, e.Seq, e.OccurredAt, e.Source, e.DeviceID, e.ClientSeq, e.Stale, e.SchemaVersion})
}

// SystemUserID is the user of events that concern no user (endpoint.disabled).
// User ids starting with "@" are reserved for meetsync.
const SystemUserID = "@system"
