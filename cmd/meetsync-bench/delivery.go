package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/delivery"
	"github.com/meetsync/meetsync/webhook"
)

// Targets of issue 3 (on a 2-core machine).
const (
	targetDeliveriesPerSec = 10_000
	targetE2EP99           = 50 * time.Millisecond
	targetDrainPerSec      = 10_000
)

const (
	// loadBatch is the events per request when pre-loading (the API's limit).
	loadBatch = 1000
	// loadClients is the concurrent clients that pre-load events.
	loadClients = 4
	// defaultWorkers is what the report says when --workers is 0 (the
	// dispatcher's own default, also the HTTP baseline's client count).
	defaultWorkers = 256
	// stragglerWait bounds the wait for the last webhooks of the latency phase.
	stragglerWait = 10 * time.Second
	// minSetupTimeout is the least time a phase's set-up (pre-load) may take.
	minSetupTimeout = 2 * time.Minute
)

// deliveryBench runs the phases of "meetsync-bench delivery".
type deliveryBench struct {
	o    *deliveryOptions
	env  *benchEnv
	kind storeKind
}

func runDelivery(ctx context.Context, o *deliveryOptions, stdout, stderr io.Writer) error {
	env, kind, err := newRun(ctx, &o.commonOptions, stderr)
	if err != nil {
		return err
	}
	defer env.cleanup()
	rep := &deliveryReport{
		Machine: env.machine(), Store: o.Store, StoreDescription: kind.Describe,
		Users: o.Users, Events: o.Events, Backlog: o.Backlog, Rate: o.Rate, Endpoints: o.Endpoints, Workers: o.Workers,
		WarmupSeconds: o.Warmup.Seconds(), DurationSeconds: o.Duration.Seconds(), TimeoutSeconds: o.Timeout.Seconds(),
	}
	if !o.JSON {
		fmt.Fprintf(stderr, "meetsync-bench delivery: %s users; each phase bounded by %s; data in %s\n", groupDigits(float64(o.Users)), o.Timeout, env.dataDir)
	}
	b := &deliveryBench{o: o, env: env, kind: kind}
	type phase struct {
		name string
		dst  **deliveryPhaseResult
		run  func(context.Context) (*deliveryPhaseResult, error)
	}
	if o.Phases["http"] {
		if rep.HTTP, err = b.httpBaseline(ctx); err != nil {
			return fmt.Errorf("http phase: %w", err)
		}
	}
	one := func(ctx context.Context) (*deliveryPhaseResult, error) { return b.throughput(ctx, "throughput", 1) }
	fan := func(ctx context.Context) (*deliveryPhaseResult, error) {
		return b.throughput(ctx, "fanout", o.Endpoints)
	}
	for _, ph := range []phase{
		{"throughput", &rep.Throughput, one},
		{"fanout", &rep.Fanout, fan},
		{"latency", &rep.Latency, b.latency},
		{"drain", &rep.Drain, b.drain},
	} {
		if !o.Phases[ph.name] {
			continue
		}
		res, err := ph.run(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err != nil {
			// A phase that could not run is a MISS; the others still run.
			b.env.progress("%s phase failed: %v", ph.name, err)
			res = &deliveryPhaseResult{Name: ph.name, Label: ph.name + " phase", Failed: err.Error()}
		}
		*ph.dst = res
	}
	rep.evaluate()
	if o.JSON {
		return rep.writeJSON(stdout)
	}
	rep.writeTable(stdout)
	return nil
}

func (b *deliveryBench) workers() int {
	if b.o.Workers > 0 {
		return b.o.Workers
	}
	return defaultWorkers
}

// httpBaseline measures the receiver alone: webhook-sized POSTs with
// webhook headers from as many keep-alive clients as the dispatcher has
// workers, closed loop. It is the most deliveries/s this machine could
// carry over loopback HTTP with this receiver, whatever the store.
func (b *deliveryBench) httpBaseline(ctx context.Context) (*phaseResult, error) {
	clients := b.workers()
	b.env.progress("(context) loopback HTTP POSTs of a webhook to the receiver, %d clients", clients)
	rc, err := newReceiver(false)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	header, body, err := sampleWebhook()
	if err != nil {
		return nil, err
	}
	client := newHTTPClient(clients)
	defer client.CloseIdleConnections()
	w := window{min(b.o.Warmup, 500*time.Millisecond), min(b.o.Duration, 3*time.Second)}
	m := newMeter("http", b.o.CPUProfile, nil)
	lr := closedLoop(ctx, clients, w, m, func(int) requestFunc {
		p := &poster{client: client, url: rc.endpointURL(0), header: header}
		return func(ctx context.Context) (int, ack, error) {
			_, err := p.postBody(ctx, body, http.StatusNoContent)
			return 1, ack{}, err
		}
	})
	return newPhaseResult("http", "loopback HTTP POST of a webhook to the receiver", clients, lr, m), nil
}

// sampleWebhook returns the headers and body of a webhook like those the
// dispatcher sends for the benchmark's events.
func sampleWebhook() (http.Header, []byte, error) {
	now := time.Now().UTC()
	ev := &meetsync.Event{ID: meetsync.NewID("evt"), Type: "meeting.status_changed", UserID: "user-123", Seq: 42, OccurredAt: now, ReceivedAt: now,
		Source: meetsync.SourceClient, DeviceID: "bench-device-3", ClientSeq: 42, Data: json.RawMessage(`{"status":"in_meeting","arg":0,"meeting_num":"81234567890"}`)}
	body, err := meetsync.WebhookPayload(ev)
	if err != nil {
		return nil, nil, err
	}
	key, err := webhook.ParseSecret(meetsync.NewEndpointSecret())
	if err != nil {
		return nil, nil, err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "meetsync-webhooks/1")
	h.Set(webhook.HeaderID, ev.ID)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(webhook.HeaderSignature, webhook.SignatureHeader([]webhook.Key{key}, ev.ID, now, body))
	return h, body, nil
}

// phaseRig is one phase's fresh store, server and receiver.
type phaseRig struct {
	store  meetsync.Store
	srv    *benchServer
	rc     *receiver
	client *http.Client // API client for set-up
}

func (b *deliveryBench) rig(ctx context.Context, phase string, deferDispatcher, logReceipts bool) (*phaseRig, error) {
	dir, err := b.env.phaseDir(phase)
	if err != nil {
		return nil, err
	}
	store, err := b.kind.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	srv, err := startServer(ctx, store, serverConfig{Logger: b.env.logger, DeferDispatcher: deferDispatcher,
		Delivery: delivery.Config{Workers: b.o.Workers}})
	if err != nil {
		store.Close()
		return nil, err
	}
	rc, err := newReceiver(logReceipts)
	if err != nil {
		srv.Close()
		store.Close()
		return nil, err
	}
	return &phaseRig{store: store, srv: srv, rc: rc, client: newHTTPClient(loadClients)}, nil
}

// close stops the server (the dispatcher finishes its in-flight sends to
// the receiver), then the receiver, then the store.
func (r *phaseRig) close() error {
	err := r.srv.Close()
	r.client.CloseIdleConnections()
	r.rc.close()
	if cerr := r.store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("stop server: %w", err)
	}
	return nil
}

// api calls the server's API with the bench key; want is the expected status.
func (r *phaseRig) api(ctx context.Context, path string, in any, want int, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	p := &poster{client: r.client, url: r.srv.URL + path, header: requestHeader(r.srv.Key)}
	b, err := p.postBody(ctx, body, want)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// createEndpoints creates n endpoints subscribed to the benchmark's
// events, debounce off, pointing at the receiver's /ep/0 … /ep/n-1.
func (r *phaseRig) createEndpoints(ctx context.Context, n int) ([]string, error) {
	ids := make([]string, n)
	for i := range n {
		var out struct {
			ID string `json:"id"`
		}
		in := map[string]any{"url": r.rc.endpointURL(i), "event_types": []string{"meeting.status_changed"}, "debounce_ms": 0,
			"description": "meetsync-bench receiver " + strconv.Itoa(i)}
		if err := r.api(ctx, "/v1/endpoints", in, http.StatusCreated, &out); err != nil {
			return nil, err
		}
		ids[i] = out.ID
	}
	return ids, nil
}

// loadEvents ingests n status events over users through the API, in
// batches of loadBatch from loadClients clients, and indexes them by id
// with their user and seq (from the responses).
func (r *phaseRig) loadEvents(ctx context.Context, n, users int) (*eventIndex, error) {
	clients := min(loadClients, users, max(1, n/loadBatch))
	type loaded struct {
		id   string
		user int32
		seq  int64
	}
	parts := make([][]loaded, clients)
	errs := make([]error, clients)
	header := requestHeader(r.srv.Key)
	var wg sync.WaitGroup
	for c := range clients {
		share := n / clients
		if c < n%clients {
			share++
		}
		wg.Go(func() {
			g := newEventGen(c, clients, users)
			p := &poster{client: r.client, url: r.srv.URL + "/v1/events", header: header}
			out := make([]loaded, 0, share)
			for left := share; left > 0 && ctx.Err() == nil; {
				k := min(left, loadBatch)
				seq0 := g.seq
				b, err := p.postBody(ctx, g.batch(k), http.StatusOK)
				if err != nil {
					errs[c] = err
					return
				}
				var resp struct{ Events []meetsync.EventResult }
				if err := json.Unmarshal(b, &resp); err != nil {
					errs[c] = fmt.Errorf("ingest response: %w", err)
					return
				}
				if len(resp.Events) != k {
					errs[c] = fmt.Errorf("ingest answered %d results for %d events", len(resp.Events), k)
					return
				}
				for j, e := range resp.Events {
					if e.Duplicate {
						errs[c] = fmt.Errorf("event %s acked as a duplicate", e.ID)
						return
					}
					out = append(out, loaded{e.ID, int32(g.user(seq0 + int64(j) + 1)), e.Seq})
				}
				left -= k
			}
			parts[c] = out
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	x := &eventIndex{pos: make(map[string]int32, n), user: make([]int32, 0, n), seq: make([]int64, 0, n), users: users}
	for _, part := range parts {
		for _, l := range part {
			x.pos[l.id] = int32(len(x.seq))
			x.user = append(x.user, l.user)
			x.seq = append(x.seq, l.seq)
		}
	}
	return x, nil
}

// distinctUsers counts the users that have events in x.
func (x *eventIndex) distinctUsers() int {
	seen := make([]bool, x.users)
	n := 0
	for _, u := range x.user {
		if !seen[u] {
			seen[u], n = true, n+1
		}
	}
	return n
}

// throughput is phases (1) and (2): --events pre-loaded with the
// dispatcher stopped, then the time from its start until the receiver has
// every (endpoint, event) once.
func (b *deliveryBench) throughput(ctx context.Context, name string, endpoints int) (res *deliveryPhaseResult, err error) {
	o := b.o
	label := fmt.Sprintf("deliveries/s, 1 endpoint, %s events pre-loaded", groupDigits(float64(o.Events)))
	num := "1"
	if name == "fanout" {
		label = fmt.Sprintf("deliveries/s, fan-out to %d endpoints, %s events pre-loaded", endpoints, groupDigits(float64(o.Events)))
		num = "2"
	}
	b.env.progress("(%s) %s: loading", num, label)
	r, err := b.rig(ctx, name, true, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := r.close(); err == nil && cerr != nil {
			res, err = nil, cerr
		}
	}()
	res = &deliveryPhaseResult{Name: name, Label: label, Endpoints: endpoints, Users: o.Users, Events: o.Events}
	setupCtx, cancel := context.WithTimeout(ctx, max(o.Timeout, minSetupTimeout))
	defer cancel()
	setup := time.Now()
	if _, err := r.createEndpoints(setupCtx, endpoints); err != nil {
		return nil, err
	}
	idx, err := r.loadEvents(setupCtx, o.Events, o.Users)
	if err != nil {
		return nil, fmt.Errorf("pre-load: %w", err)
	}
	res.SetupSeconds = time.Since(setup).Seconds()
	t := newTracker(idx, endpoints)
	r.rc.tr.Store(t)
	b.env.progress("(%s) %s: %s deliveries queued in %.1fs; starting the dispatcher", num, label, groupDigits(float64(t.want)), res.SetupSeconds)

	m := newMeter(name, o.CPUProfile, r.srv.Registry)
	m.Begin()
	t0 := time.Now()
	if err := r.srv.StartDelivery(ctx); err != nil {
		m.End()
		return nil, fmt.Errorf("start dispatcher: %w", err)
	}
	b.await(ctx, t, t0, res)
	m.End()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.finish(t, m)
	return res, nil
}

// await waits until the tracker has everything, the phase's timeout or
// the end of ctx, and sets the measured time.
func (b *deliveryBench) await(ctx context.Context, t *tracker, t0 time.Time, res *deliveryPhaseResult) {
	timeout := time.NewTimer(b.o.Timeout - time.Since(t0))
	defer timeout.Stop()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			res.Seconds = t.doneAt.Sub(t0).Seconds()
			return
		case <-tick.C:
			b.env.progress("    %s/%s delivered", groupDigits(float64(t.received.Load())), groupDigits(float64(t.want)))
			continue
		case <-timeout.C:
		case <-ctx.Done():
		}
		res.Seconds, res.TimedOut = time.Since(t0).Seconds(), true
		return
	}
}

// latency is phase (3): single events over HTTP at a fixed rate (open
// loop) to one endpoint with debounce off; each event's latency runs from
// its scheduled send time to the receiver's first receipt of its webhook
// (matched by webhook-id = the event id the ingest returned).
func (b *deliveryBench) latency(ctx context.Context) (res *deliveryPhaseResult, err error) {
	o := b.o
	label := fmt.Sprintf("ingest→received latency at %s ev/s, open loop", groupDigits(float64(o.Rate)))
	b.env.progress("(3) %s, %s + %s", label, o.Warmup, o.Duration)
	r, err := b.rig(ctx, "latency", false, true)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := r.close(); err == nil && cerr != nil {
			res, err = nil, cerr
		}
	}()
	if _, err := r.createEndpoints(ctx, 1); err != nil {
		return nil, err
	}
	workers := openLoopWorkers(64)
	client := newHTTPClient(workers)
	defer client.CloseIdleConnections()
	header := requestHeader(r.srv.Key)
	type sent struct {
		id string
		at time.Time // scheduled
	}
	sents := make([][]sent, workers)
	var acked atomic.Int64
	m := newMeter("latency", o.CPUProfile, r.srv.Registry)
	lr := openLoopAt(ctx, o.Rate, workers, window{o.Warmup, o.Duration}, m, func(i int) scheduledFunc {
		g := newEventGen(i, workers, o.Users)
		p := &poster{client: client, url: r.srv.URL + "/v1/events", header: header}
		return func(ctx context.Context, s time.Time, counted bool) (int, ack, error) {
			body, err := p.postBody(ctx, g.single(), http.StatusOK)
			if err != nil {
				return 1, ack{}, err
			}
			acked.Add(1)
			id, ok := ackID(body)
			if !ok {
				return 1, ack{}, fmt.Errorf("no event id in %q", body)
			}
			if counted {
				sents[i] = append(sents[i], sent{id, s})
			}
			return 1, ack{duplicates: bytes.Count(body, duplicateTrue), stale: bytes.Count(body, staleTrue)}, nil
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The webhooks of the last events are still on their way.
	deadline := time.Now().Add(stragglerWait)
	for r.rc.plain.Load() < acked.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	receipts := r.rc.receipts()
	first := make(map[string]time.Duration, len(receipts))
	for _, rc := range receipts {
		if _, ok := first[rc.id]; !ok {
			first[rc.id] = rc.at
		}
	}
	res = &deliveryPhaseResult{Name: "latency", Label: label, Endpoints: 1, Users: o.Users, OfferedRate: float64(o.Rate),
		Seconds: o.Duration.Seconds(), Errors: lr.Errors, FirstError: lr.FirstError, Unsent: lr.Unsent}
	var lat []time.Duration
	for _, ws := range sents {
		for _, s := range ws {
			at, ok := first[s.id]
			if !ok {
				res.Missing++
				continue
			}
			lat = append(lat, r.rc.base.Add(at).Sub(s.at))
		}
	}
	slices.Sort(lat)
	res.Events = int(lr.Events)
	res.Delivered = int64(len(lat))
	res.DeliveriesPerSec = float64(lr.Events) / res.Seconds
	res.E2E = ptr(newLatencyMs(lat))
	res.Ack = ptr(newLatencyMs(lr.Latency))
	if lr.SendLag != nil {
		res.SendLag = ptr(newLatencyMs(lr.SendLag))
	}
	res.Duplicates = int64(len(receipts) - len(first))
	res.Resources = newResourceUse(m.usage(), lr.Events)
	res.Dispatcher = newDispatcherStats(m)
	res.Profile, res.ProfileError = m.ProfilePath, errString(m.Err())
	return res, nil
}

// ackID returns the first "id" of an ingest response.
func ackID(b []byte) (string, bool) {
	const key = `"id":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return "", false
	}
	b = b[i+len(key):]
	j := bytes.IndexByte(b, '"')
	if j <= 0 {
		return "", false
	}
	return string(b[:j]), true
}

// drain is phase (4): with the receiver down (503, Retry-After: 3600) a
// backlog of --backlog deliveries over --users piles up (each user's head
// fails once and waits; the rest queue behind it). Then the receiver
// comes back and the operator asks for a resend (POST
// /v1/endpoints/{id}/recover); the clock runs from the receiver's recovery
// until it has every delivery, and each user's seq must increase at it.
func (b *deliveryBench) drain(ctx context.Context) (res *deliveryPhaseResult, err error) {
	o := b.o
	label := fmt.Sprintf("backlog drain after a receiver outage, %s deliveries", groupDigits(float64(o.Backlog)))
	b.env.progress("(4) %s: building the backlog (receiver answers 503)", label)
	r, err := b.rig(ctx, "drain", false, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := r.close(); err == nil && cerr != nil {
			res, err = nil, cerr
		}
	}()
	r.rc.down.Store(true)
	res = &deliveryPhaseResult{Name: "drain", Label: label, Endpoints: 1, Users: o.Users, Events: o.Backlog}
	setupCtx, cancel := context.WithTimeout(ctx, max(o.Timeout, minSetupTimeout))
	defer cancel()
	setup := time.Now()
	since := setup.Add(-time.Minute).UTC()
	ids, err := r.createEndpoints(setupCtx, 1)
	if err != nil {
		return nil, err
	}
	idx, err := r.loadEvents(setupCtx, o.Backlog, o.Users)
	if err != nil {
		return nil, fmt.Errorf("build backlog: %w", err)
	}
	// Wait until every queue's head has failed and its outcome is recorded
	// (a head still claimed would not be resent by the recovery).
	heads := idx.distinctUsers()
	for {
		failed, err := r.store.DeliveryList(setupCtx, meetsync.DeliveryListParams{AppID: r.srv.AppID, EndpointID: ids[0],
			Status: meetsync.DeliveryFailed, Limit: heads + 1})
		if err != nil {
			return nil, fmt.Errorf("wait for the outage's failed heads: %w", err)
		}
		if len(failed) >= heads {
			break
		}
		select {
		case <-setupCtx.Done():
			return nil, fmt.Errorf("wait for the outage's failed heads: %d of %d after %s: %w", len(failed), heads, time.Since(setup).Round(time.Millisecond), setupCtx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	res.SetupSeconds = time.Since(setup).Seconds()
	res.Rejected = r.rc.rejected.Load()
	t := newTracker(idx, 1)
	r.rc.tr.Store(t)
	b.env.progress("(4) %s: backlog of %s built in %.1fs (%s heads failed); receiver recovers",
		label, groupDigits(float64(t.want)), res.SetupSeconds, groupDigits(float64(res.Rejected)))

	m := newMeter("drain", o.CPUProfile, r.srv.Registry)
	m.Begin()
	t0 := time.Now()
	r.rc.down.Store(false)
	var out struct {
		Requeued int `json:"requeued"`
	}
	if err := r.api(ctx, "/v1/endpoints/"+ids[0]+"/recover", map[string]string{"since": since.Format(time.RFC3339Nano)}, http.StatusAccepted, &out); err != nil {
		m.End()
		return nil, err
	}
	res.RecoverSeconds = time.Since(t0).Seconds()
	res.Requeued = out.Requeued
	b.await(ctx, t, t0, res)
	m.End()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.finish(t, m)
	return res, nil
}

// finish fills a tracked phase's figures.
func (res *deliveryPhaseResult) finish(t *tracker, m *meter) {
	res.Expected = t.want
	res.Delivered = t.received.Load()
	res.Duplicates = t.duplicates.Load()
	res.Unknown = t.unknown.Load()
	res.OutOfOrder = t.disorder.Load()
	res.OrderKept = ptr(res.OutOfOrder == 0 && res.Unknown == 0)
	if res.Seconds > 0 {
		res.DeliveriesPerSec = float64(res.Delivered) / res.Seconds
	}
	res.Resources = newResourceUse(m.usage(), res.Delivered)
	res.Dispatcher = newDispatcherStats(m)
	res.Profile, res.ProfileError = m.ProfilePath, errString(m.Err())
}
