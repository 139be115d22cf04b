// Package delivery sends every event to the webhook endpoints that
// subscribed to it: claim due queue heads from the store (one per
// (endpoint, user) queue, so a user's webhooks reach an endpoint in seq
// order), sign them (Standard Webhooks), POST them, and record the outcome
// — retry with backoff and jitter, honour Retry-After, disable an endpoint
// on 410 or after failing too long, dead-letter exhausted deliveries — in
// group-committed transactions that also claim each queue's next head.
package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/storelog"
	"github.com/meetsync/meetsync/webhook"
)

// Config configures a Dispatcher. Every field has a default.
type Config struct {
	// Owner identifies this dispatcher's claims. Default a random id.
	Owner string
	// Sealer opens endpoint signing secrets encrypted at rest (nil: stored as they are).
	Sealer *meetsync.Sealer
	// Workers is the most deliveries in flight at once. Default 256.
	Workers int
	// Lease is how long a claim lasts; a crashed worker's claims are due
	// again after it. Must exceed Timeout. Default 60 s.
	Lease time.Duration
	// Timeout is the HTTP request timeout of one attempt. Default 15 s.
	Timeout time.Duration
	// Schedule is the delay before each attempt. Default meetsync.DefaultRetrySchedule.
	Schedule meetsync.RetrySchedule
	// Jitter spreads each retry delay by ±Jitter (a fraction below 1).
	// Default 0.2; a negative value turns jitter off.
	Jitter float64
	// MaxRetryAfter caps a receiver's Retry-After. Default 24 h.
	MaxRetryAfter time.Duration
	// DisableAfter disables an endpoint that has failed continuously for
	// longer than this. Default 5 days.
	DisableAfter time.Duration
	// URLPolicy is the SSRF guard, applied when connecting.
	URLPolicy meetsync.URLPolicy
	// IdlePoll is the longest the dispatcher sleeps without a wake-up. Default 30 s.
	IdlePoll time.Duration
	// ChangesQuiet is how long, after a look for due deliveries found
	// none, commits (Changes) do not make it look again: under a load of
	// events whose deliveries are not due yet (debounce windows), every
	// commit would otherwise cost two store queries. An API wake-up
	// (Notify) or a due time ends the quiet at once. Default 2 ms.
	ChangesQuiet time.Duration
	// ReleaseOnStart releases every claim in the store at start: right
	// only when no other dispatcher shares the store (embedded SQLite).
	ReleaseOnStart bool
	// Changes returns a channel closed at the next ingest commit that made
	// deliveries (wake-up).
	Changes func() <-chan struct{}
	// Notify is called after a completion appended system events.
	Notify func()
	// Now and Rand are the clock and the jitter source.
	Now  func() time.Time
	Rand func() float64
	// UserAgent is sent with every webhook.
	UserAgent string
}

func (c Config) withDefaults() Config {
	if c.Owner == "" {
		c.Owner = meetsync.NewID("node")
	}
	if c.Workers <= 0 {
		c.Workers = 256
	}
	if c.Timeout <= 0 {
		c.Timeout = 15 * time.Second
	}
	if c.Lease <= 0 {
		c.Lease = 60 * time.Second
	}
	if len(c.Schedule) == 0 {
		c.Schedule = meetsync.DefaultRetrySchedule
	}
	if c.Jitter < 0 || c.Jitter >= 1 {
		c.Jitter = 0
	} else if c.Jitter == 0 {
		c.Jitter = 0.2
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = 24 * time.Hour
	}
	if c.DisableAfter <= 0 {
		c.DisableAfter = 5 * 24 * time.Hour
	}
	if c.IdlePoll <= 0 {
		c.IdlePoll = 30 * time.Second
	}
	if c.ChangesQuiet <= 0 {
		c.ChangesQuiet = 2 * time.Millisecond
	}
	if c.Changes == nil {
		c.Changes = func() <-chan struct{} { return nil }
	}
	if c.Notify == nil {
		c.Notify = func() {}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.UserAgent == "" {
		c.UserAgent = "meetsync-webhooks/1"
	}
	return c
}

func (c Config) validate() error {
	if c.Lease <= c.Timeout {
		return fmt.Errorf("delivery: lease (%s) must be longer than the request timeout (%s)", c.Lease, c.Timeout)
	}
	return nil
}

// Dispatcher delivers webhooks. Start it with Start, stop it with Close.
type Dispatcher struct {
	store  meetsync.Store
	cfg    Config
	log    *slog.Logger
	client *http.Client

	work     chan *meetsync.DeliveryTask
	results  chan *meetsync.DeliveryOutcome
	slots    chan struct{} // a slot freed
	wake     chan struct{}
	inflight atomic.Int64

	ctx      context.Context // ends sends at Close's deadline
	cancel   context.CancelFunc
	stop     chan struct{}
	loopDone chan struct{}
	workers  sync.WaitGroup
	compDone chan struct{}

	workMu     sync.Mutex // guards sends on work against its closing
	workClosed bool
	started    bool

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	keys     map[string]cachedKeys

	storeLog *storelog.Log
	m        metrics
}

type cachedKeys struct {
	updated time.Time
	keys    []webhook.Key
	expires time.Time
}

// New returns a Dispatcher. reg may be nil.
func New(store meetsync.Store, log *slog.Logger, reg prometheus.Registerer, cfg Config) (*Dispatcher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	policy := cfg.URLPolicy
	dialer := &net.Dialer{
		Timeout: 10 * time.Second,
		// The SSRF guard at connect time: whatever DNS said, the address
		// actually dialled must be public unless private targets are allowed.
		Control: func(network, address string, _ syscall.RawConn) error { return policy.CheckDialAddr(address) },
	}
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        cfg.Workers * 2,
		MaxIdleConnsPerHost: cfg.Workers,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Dispatcher{
		store: store, cfg: cfg, log: log,
		client: &http.Client{
			Transport:     transport,
			Timeout:       cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		work:     make(chan *meetsync.DeliveryTask, cfg.Workers),
		results:  make(chan *meetsync.DeliveryOutcome, cfg.Workers),
		slots:    make(chan struct{}, 1),
		wake:     make(chan struct{}, 1),
		ctx:      ctx,
		cancel:   cancel,
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		compDone: make(chan struct{}),
		limiters: map[string]*rate.Limiter{},
		keys:     map[string]cachedKeys{},
		storeLog: storelog.New(log),
		m:        newMetrics(reg, store),
	}
	return d, nil
}

// Start starts the claim loop, the workers and the completer.
func (d *Dispatcher) Start(ctx context.Context) error {
	if d.cfg.ReleaseOnStart {
		n, err := d.store.DeliveriesReleaseClaims(ctx, "", d.cfg.Now())
		if err != nil {
			return err
		}
		if n > 0 {
			d.log.Info("released delivery claims left by a previous run", "count", n)
		}
	}
	d.started = true
	for range d.cfg.Workers {
		d.workers.Add(1)
		go d.worker()
	}
	go d.complete()
	go d.loop()
	return nil
}

// Wake makes the dispatcher look for due deliveries now.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Close stops claiming, waits up to grace for the deliveries in flight,
// records their outcomes and returns. A send still running at the grace
// deadline is cut short and not recorded as an attempt (it is no failure
// of the receiver); its claim, like those of next heads claimed but not
// sent, is released, so the delivery is due at once elsewhere or at the
// next start (at least once, same webhook-id).
func (d *Dispatcher) Close(grace time.Duration) {
	if !d.started {
		d.cancel()
		return
	}
	close(d.stop)
	<-d.loopDone
	timer := time.AfterFunc(grace, d.cancel)
	defer timer.Stop()
	d.workMu.Lock()
	d.workClosed = true
	close(d.work)
	d.workMu.Unlock()
	d.workers.Wait()
	close(d.results)
	<-d.compDone
	d.cancel()
	// Claims taken but not attempted (next heads claimed by the last
	// completions) are released so that they are due at once elsewhere.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := d.store.DeliveriesReleaseClaims(ctx, d.cfg.Owner, d.cfg.Now()); err != nil {
		d.log.Warn("release delivery claims at shutdown", "err", err)
	}
}

// push hands a claimed task to the workers; false once they are stopping.
func (d *Dispatcher) push(t *meetsync.DeliveryTask) bool {
	d.workMu.Lock()
	defer d.workMu.Unlock()
	if d.workClosed {
		return false
	}
	d.work <- t
	return true
}

func (d *Dispatcher) loop() {
	defer close(d.loopDone)
	backoff := time.Duration(0)
	for {
		changed := d.cfg.Changes()
		free := d.cfg.Workers - int(d.inflight.Load())
		wait := d.cfg.IdlePoll
		quiet := false // found nothing due: let commits wait a little
		if free > 0 {
			now := d.cfg.Now()
			tasks, err := d.store.DeliveriesClaim(d.ctx, meetsync.DeliveryClaimParams{Owner: d.cfg.Owner, Now: now, Lease: d.cfg.Lease, Limit: free})
			if err != nil {
				backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
				d.storeLog.Error("claim deliveries", err, "retry_in", backoff)
				wait = backoff
			} else {
				backoff = 0
				d.m.claimed.Add(float64(len(tasks)))
				for _, t := range tasks {
					d.inflight.Add(1)
					d.push(t)
				}
				if len(tasks) == free {
					continue
				}
				quiet = len(tasks) == 0
				if due, ok, err := d.store.DeliveryNextDue(d.ctx); err != nil {
					d.storeLog.Error("next due delivery", err)
				} else if ok {
					wait = min(wait, max(due.Sub(d.cfg.Now()), time.Millisecond))
				}
			}
		}
		timer := time.NewTimer(wait)
		var quietEnd <-chan time.Time
		if quiet {
			quietEnd = time.After(d.cfg.ChangesQuiet)
		}
	sleep:
		for {
			select {
			case <-changed:
				if quietEnd == nil {
					break sleep
				}
				changed = nil // look once the quiet ends
			case <-quietEnd:
				if changed == nil {
					break sleep
				}
				quietEnd = nil
			case <-d.wake:
				break sleep
			case <-d.slots:
				break sleep
			case <-timer.C:
				break sleep
			case <-d.stop:
				timer.Stop()
				return
			}
		}
		timer.Stop()
	}
}

func (d *Dispatcher) worker() {
	defer d.workers.Done()
	for t := range d.work {
		if o := d.attempt(t); o != nil {
			d.results <- o
		} else {
			d.inflight.Add(-1) // cut short by Close: its claim is released there
		}
	}
}

// complete group-commits outcomes and feeds the queues' next heads back to
// the workers.
func (d *Dispatcher) complete() {
	defer close(d.compDone)
	batch := make([]*meetsync.DeliveryOutcome, 0, 512)
	for o := range d.results {
		batch = append(batch[:0], o)
	drain:
		for len(batch) < cap(batch) {
			select {
			case o, ok := <-d.results:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		d.commit(batch)
	}
}

func (d *Dispatcher) commit(batch []*meetsync.DeliveryOutcome) {
	stopping := false
	select {
	case <-d.stop:
		stopping = true
	default:
	}
	var next []*meetsync.DeliveryTask
	var err error
	start := time.Now()
	for try := 0; try < 5; try++ {
		// A failed try may still return heads claimed by the parts of the
		// batch that committed (see Store.DeliveriesComplete): they are
		// ours. Trying the whole batch again is safe, as the outcomes
		// already recorded are fenced by their claim.
		var got []*meetsync.DeliveryTask
		got, err = d.store.DeliveriesComplete(context.Background(), meetsync.DeliveryCompleteParams{
			Owner: d.cfg.Owner, Now: d.cfg.Now(), Lease: d.cfg.Lease, Outcomes: batch, ClaimNext: !stopping,
		})
		next = append(next, got...)
		if err == nil {
			break
		}
		d.storeLog.Error("record delivery outcomes", err, "try", try+1)
		time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
	}
	d.m.completeSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		// The claims expire after the lease and the deliveries are sent
		// again (at least once, same webhook-id).
		d.storeLog.Error("dropping delivery outcomes; their claims will expire and be retried", err, "count", len(batch))
	}
	events := false
	for _, o := range batch {
		events = events || len(o.Events) > 0 || o.DisabledEvent != nil
	}
	if events && err == nil {
		d.cfg.Notify()
	}
	d.inflight.Add(int64(len(next) - len(batch)))
	for _, t := range next {
		d.push(t)
	}
	select {
	case d.slots <- struct{}{}:
	default:
	}
}

// attempt sends one delivery and decides its outcome. It returns nil when
// Close cut the attempt short: that is no failure of the receiver, so no
// attempt is recorded and the delivery keeps its claim (released by Close).
func (d *Dispatcher) attempt(t *meetsync.DeliveryTask) *meetsync.DeliveryOutcome {
	ep := t.Endpoint
	o := &meetsync.DeliveryOutcome{Task: t}
	if lim := d.limiter(ep); lim != nil {
		// Wait for the endpoint's rate limit while the claim lasts; a wait
		// that would outlast it gives the claim back, due when the limit
		// allows (no attempt counted), so it is never sent twice.
		wall := time.Now()
		r := lim.ReserveN(wall, 1)
		if delay := r.DelayFrom(wall); delay > 0 {
			if budget := t.ClaimedUntil.Sub(d.cfg.Now()) - d.cfg.Timeout - time.Second; delay > budget {
				r.CancelAt(wall)
				return &meetsync.DeliveryOutcome{Task: t, Release: true, NextAttemptAt: d.cfg.Now().Add(delay)}
			}
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-d.ctx.Done():
				timer.Stop()
				r.Cancel()
				return nil // shutting down before the rate limit allowed a send
			}
		}
	}
	now := d.cfg.Now()
	o.Attempt.At = now
	resp, err := d.post(d.ctx, ep, t.Event, now)
	o.Attempt.Latency = resp.latency
	o.Attempt.LatencyMS = float64(o.Attempt.Latency.Microseconds()) / 1000
	var before *unsentError
	switch {
	case errors.As(err, &before):
		// Never sent (never an unsigned webhook): fail the attempt, visibly, and retry.
		return d.failure(o, now, 0, before.msg, 0)
	case err != nil && d.ctx.Err() != nil:
		return nil // cut short by Close
	case err != nil:
		kind := "network_error"
		var me *meetsync.Error
		var ne net.Error
		switch {
		case errors.As(err, &me):
			kind = "refused"
		case errors.As(err, &ne) && ne.Timeout():
			kind = "timeout"
		}
		d.m.attempts.WithLabelValues(ep.ID, kind).Inc()
		return d.failure(o, now, 0, describe(err), 0)
	}
	o.Attempt.StatusCode = resp.status
	o.Attempt.ResponseBody = resp.body
	if resp.status >= 200 && resp.status < 300 {
		d.m.attempts.WithLabelValues(ep.ID, "success").Inc()
		d.m.latency.WithLabelValues(ep.ID).Observe(d.cfg.Now().Sub(t.Event.ReceivedAt).Seconds())
		o.Status = meetsync.DeliveryDelivered
		return o
	}
	d.m.attempts.WithLabelValues(ep.ID, "http_error").Inc()
	var retryAfter time.Duration
	if resp.status == http.StatusTooManyRequests || resp.status == http.StatusServiceUnavailable {
		retryAfter = parseRetryAfter(resp.retryAfter, now, d.cfg.MaxRetryAfter)
	}
	o = d.failure(o, now, resp.status, "HTTP "+strconv.Itoa(resp.status), retryAfter)
	if resp.status == http.StatusGone && o.DisableEndpoint == "" {
		d.disable(o, now, "the endpoint answered 410 Gone")
	}
	return o
}

// answer is a receiver's answer to one webhook POST.
type answer struct {
	status     int
	body       string // the first MaxResponseBody bytes, as valid UTF-8
	retryAfter string // its Retry-After header
	latency    time.Duration
}

// unsentError is a webhook that could not be sent at all (its payload, its
// URL, no usable signing secret): nothing went out.
type unsentError struct{ msg string }

func (e *unsentError) Error() string { return e.msg }

// post signs ev's webhook for ep at now (webhook-id = the event's id) and
// POSTs it with the dispatcher's client (the SSRF guard, the timeout).
func (d *Dispatcher) post(ctx context.Context, ep *meetsync.Endpoint, ev *meetsync.Event, now time.Time) (answer, error) {
	body, err := meetsync.WebhookPayload(ev)
	if err != nil {
		return answer{}, &unsentError{"encode payload: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return answer{}, &unsentError{"bad endpoint URL: " + err.Error()}
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", d.cfg.UserAgent)
	h.Set(webhook.HeaderID, ev.ID)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	keys := d.signingKeys(ep, now)
	if len(keys) == 0 {
		return answer{}, &unsentError{"no usable signing secret (encrypted with another secret key? see --secret-key-file)"}
	}
	h.Set(webhook.HeaderSignature, webhook.SignatureHeader(keys, ev.ID, now, body))
	start := time.Now()
	resp, err := d.client.Do(req)
	a := answer{latency: time.Since(start)}
	if err != nil {
		return a, err
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, meetsync.MaxResponseBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	a.status, a.body, a.retryAfter = resp.StatusCode, string(bytes.ToValidUTF8(snippet, []byte("?"))), resp.Header.Get("Retry-After")
	return a, nil
}

// Test sends ep one signed test webhook (type endpoint.test) now, outside
// its queue: nothing is stored and nothing counts as a delivery. The
// attempt says what the receiver answered, or why it could not be
// reached; a receiver that verifies the signature with the endpoint's
// secret and answers 2xx is ready.
func (d *Dispatcher) Test(ctx context.Context, ep *meetsync.Endpoint) *meetsync.Attempt {
	now := d.cfg.Now()
	data, _ := json.Marshal(map[string]any{"endpoint_id": ep.ID,
		"message": "a test webhook from meetsync: verify its signature with this endpoint's secret and answer 2xx"})
	ev := &meetsync.Event{ID: meetsync.NewID("evt"), AppID: ep.AppID, Type: meetsync.TypeEndpointTest, UserID: meetsync.SystemUserID,
		OccurredAt: now, ReceivedAt: now, Source: meetsync.SourceSystem, Data: data}
	a := &meetsync.Attempt{N: 1, At: now}
	resp, err := d.post(ctx, ep, ev, now)
	a.Latency, a.LatencyMS = resp.latency, float64(resp.latency.Microseconds())/1000
	if err != nil {
		a.Error = describe(err)
		return a
	}
	a.StatusCode, a.ResponseBody = resp.status, resp.body
	if resp.status < 200 || resp.status > 299 {
		a.Error = "HTTP " + strconv.Itoa(resp.status)
	}
	return a
}

// failure fills a failed outcome: the next attempt per the schedule (or
// Retry-After), or a dead letter when the schedule is used up; and the
// endpoint's disabling once it has failed for longer than DisableAfter.
func (d *Dispatcher) failure(o *meetsync.DeliveryOutcome, now time.Time, code int, msg string, retryAfter time.Duration) *meetsync.DeliveryOutcome {
	t := o.Task
	if o.Attempt.At.IsZero() {
		o.Attempt.At = now
	}
	o.Attempt.StatusCode, o.Attempt.Error = code, msg
	n := t.Delivery.Attempts + 1 // attempts made, this one included
	if n >= len(d.cfg.Schedule) {
		o.Status = meetsync.DeliveryDead
		if t.Event.Type != meetsync.TypeDeliveryExhausted {
			o.Events = append(o.Events, d.systemEvent(t.Event.AppID, t.Delivery.UserID, meetsync.TypeDeliveryExhausted, now, map[string]any{
				"delivery_id": t.Delivery.ID, "endpoint_id": t.Endpoint.ID, "event_id": t.Event.ID, "event_type": t.Event.Type,
				"attempts": n, "last_status_code": code, "last_error": msg,
			}))
		}
	} else {
		delay := d.cfg.Schedule[n]
		if d.cfg.Jitter > 0 && delay > 0 {
			delay = time.Duration(float64(delay) * (1 + d.cfg.Jitter*(2*d.cfg.Rand()-1)))
		}
		if retryAfter > 0 {
			delay = retryAfter
		}
		o.Status, o.NextAttemptAt = meetsync.DeliveryFailed, now.Add(delay)
	}
	if fs := t.Endpoint.FailingSince; fs != nil && now.Sub(*fs) > d.cfg.DisableAfter {
		d.disable(o, now, fmt.Sprintf("failing continuously since %s (longer than %s)", fs.UTC().Format(time.RFC3339), d.cfg.DisableAfter))
	}
	return o
}

func (d *Dispatcher) disable(o *meetsync.DeliveryOutcome, now time.Time, reason string) {
	o.DisableEndpoint = reason
	ep := o.Task.Endpoint
	o.DisabledEvent = d.systemEvent(ep.AppID, meetsync.SystemUserID, meetsync.TypeEndpointDisabled, now, map[string]any{
		"endpoint_id": ep.ID, "url": ep.URL, "reason": reason,
	})
	d.log.Warn("disabling endpoint", "app_id", ep.AppID, "endpoint_id", ep.ID, "reason", reason)
}

func (d *Dispatcher) systemEvent(appID, userID, typ string, now time.Time, data map[string]any) *meetsync.Event {
	b, _ := json.Marshal(data)
	return &meetsync.Event{ID: meetsync.NewID("evt"), Type: typ, AppID: appID, UserID: userID, OccurredAt: now, ReceivedAt: now,
		Source: meetsync.SourceSystem, Data: b}
}

// signingKeys returns the endpoint's active keys, cached per endpoint version.
func (d *Dispatcher) signingKeys(ep *meetsync.Endpoint, now time.Time) []webhook.Key {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.keys[ep.ID]; ok && c.updated.Equal(ep.UpdatedAt) && now.Before(c.expires) {
		return c.keys
	}
	c := cachedKeys{updated: ep.UpdatedAt, expires: now.Add(time.Minute)}
	for _, s := range ep.Secrets {
		if s.ExpiresAt != nil && !now.Before(*s.ExpiresAt) {
			continue
		}
		if s.ExpiresAt != nil && s.ExpiresAt.Before(c.expires) {
			c.expires = *s.ExpiresAt
		}
		plain, err := d.cfg.Sealer.Open(s.Secret)
		if err != nil {
			d.log.Error("an endpoint signing secret cannot be decrypted; it is not used", "endpoint_id", ep.ID, "err", err)
			continue
		}
		if k, err := webhook.ParseSecret(plain); err == nil {
			c.keys = append(c.keys, k)
		}
	}
	d.keys[ep.ID] = c
	return c.keys
}

func (d *Dispatcher) limiter(ep *meetsync.Endpoint) *rate.Limiter {
	if ep.RateLimit <= 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.limiters[ep.ID]
	if !ok || int(l.Limit()) != ep.RateLimit {
		l = rate.NewLimiter(rate.Limit(ep.RateLimit), ep.RateLimit)
		d.limiters[ep.ID] = l
	}
	return l
}

// parseRetryAfter reads delta-seconds or an HTTP date, capped at max.
func parseRetryAfter(v string, now time.Time, maxWait time.Duration) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, maxWait)
}

func describe(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			err = inner
		}
	}
	s := err.Error()
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}
