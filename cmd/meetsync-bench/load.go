package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// window is a phase's schedule: a warm-up that is not counted, then the
// measured duration.
type window struct {
	Warmup, Duration time.Duration
}

// newHTTPClient returns a keep-alive client for conns concurrent
// connections to one loopback host, with no proxy and no compression.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			WriteBufferSize:     32 << 10,
			ReadBufferSize:      8 << 10,
		},
		Timeout: 30 * time.Second,
	}
}

// poster POSTs bodies to one URL for one client. It reads each response
// into its own buffer, which it reuses.
type poster struct {
	client *http.Client
	url    string
	header http.Header // shared and read-only
	buf    bytes.Buffer
}

// ack counts what the server answered about a request's events.
type ack struct {
	duplicates, stale int
}

var (
	duplicateTrue = []byte(`"duplicate":true`)
	staleTrue     = []byte(`"stale":true`)
)

func (p *poster) post(ctx context.Context, body []byte) (ack, error) {
	b, err := p.postBody(ctx, body, http.StatusOK)
	if err != nil {
		return ack{}, err
	}
	return ack{duplicates: bytes.Count(b, duplicateTrue), stale: bytes.Count(b, staleTrue)}, nil
}

// postBody POSTs body and returns the response body, which is valid until
// the next call; a status other than want is an error.
func (p *poster) postBody(ctx context.Context, body []byte, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = p.header
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p.buf.Reset()
	if _, err := p.buf.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		msg := p.buf.Bytes()
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return p.buf.Bytes(), nil
}

// requestFunc sends one request and returns how many events it carried.
type requestFunc func(ctx context.Context) (events int, a ack, err error)

// loadResult is what a load phase measured in its window.
type loadResult struct {
	Requests   int64
	Events     int64
	Errors     int64
	Duplicates int64
	Stale      int64
	FirstError string
	Elapsed    time.Duration
	// Latency of each measured request: from send (closed loop) or from
	// its scheduled send time (open loop) to the full response.
	Latency []time.Duration
	// SendLag (open loop) is how late each measured request was actually
	// sent after its scheduled time: a large value means the client could
	// not keep up, and the latency includes that wait.
	SendLag []time.Duration
	// Unsent (open loop) counts scheduled requests never sent because the
	// phase's hard deadline passed.
	Unsent int64
}

type workerStats struct {
	requests, events, errors, dups, stale int64
	firstErr                              error
	lat, lag                              []time.Duration
}

func (r *loadResult) merge(ws []*workerStats) {
	for _, w := range ws {
		r.Requests += w.requests
		r.Events += w.events
		r.Errors += w.errors
		r.Duplicates += w.dups
		r.Stale += w.stale
		if r.FirstError == "" && w.firstErr != nil {
			r.FirstError = w.firstErr.Error()
		}
		r.Latency = append(r.Latency, w.lat...)
		r.SendLag = append(r.SendLag, w.lag...)
	}
	slices.Sort(r.Latency)
	slices.Sort(r.SendLag)
}

// record counts one finished request if it falls in the measured window.
func (w *workerStats) record(counted bool, events int, a ack, err error, lat time.Duration) {
	if !counted {
		return
	}
	if err != nil {
		w.errors++
		if w.firstErr == nil {
			w.firstErr = err
		}
		return
	}
	w.requests++
	w.events += int64(events)
	w.dups += int64(a.duplicates)
	w.stale += int64(a.stale)
	w.lat = append(w.lat, lat)
}

// hardDeadlineSlack bounds how long a phase may run past its window for
// requests still in flight.
const hardDeadlineSlack = 15 * time.Second

// closedLoop runs clients workers that each send requests back to back
// for the window. A request counts if it completes inside the measured
// part of the window. m.Begin and m.End are called at its edges.
func closedLoop(ctx context.Context, clients int, w window, m *meter, newWorker func(client int) requestFunc) loadResult {
	t0 := time.Now()
	from, to := t0.Add(w.Warmup), t0.Add(w.Warmup+w.Duration)
	ctx, cancel := context.WithDeadline(ctx, to.Add(hardDeadlineSlack))
	defer cancel()
	stopMeter := m.schedule(from, to)
	defer stopMeter()

	stats := make([]*workerStats, clients)
	var wg sync.WaitGroup
	for i := range clients {
		ws := &workerStats{}
		stats[i] = ws
		do := newWorker(i)
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				if !start.Before(to) {
					return
				}
				n, a, err := do(ctx)
				end := time.Now()
				ws.record(!end.Before(from) && end.Before(to), n, a, err, end.Sub(start))
			}
		})
	}
	wg.Wait()
	r := loadResult{Elapsed: w.Duration}
	r.merge(stats)
	return r
}

// openLoop sends requests at a fixed rate whatever the responses do:
// request i is scheduled at t0 + i/rate and handed to a pool of workers;
// its latency is measured from the scheduled time (no coordinated
// omission). Requests scheduled in the measured part of the window count.
func openLoop(ctx context.Context, rate, workers int, w window, m *meter, newWorker func(client int) requestFunc) loadResult {
	return openLoopAt(ctx, rate, workers, w, m, func(client int) scheduledFunc {
		do := newWorker(client)
		return func(ctx context.Context, _ time.Time, _ bool) (int, ack, error) { return do(ctx) }
	})
}

// scheduledFunc is a requestFunc of the open loop that is told the
// request's scheduled time and whether it falls in the measured window.
type scheduledFunc func(ctx context.Context, scheduled time.Time, counted bool) (events int, a ack, err error)

// openLoopAt is openLoop for requests that need their scheduled time.
func openLoopAt(ctx context.Context, rate, workers int, w window, m *meter, newWorker func(client int) scheduledFunc) loadResult {
	t0 := time.Now().Add(10 * time.Millisecond)
	from, to := t0.Add(w.Warmup), t0.Add(w.Warmup+w.Duration)
	ctx, cancel := context.WithDeadline(ctx, to.Add(hardDeadlineSlack))
	defer cancel()
	stopMeter := m.schedule(from, to)
	defer stopMeter()

	total := int64((w.Warmup + w.Duration).Seconds() * float64(rate))
	at := func(i int64) time.Time { return t0.Add(time.Duration(i * int64(time.Second) / int64(rate))) }
	queue := make(chan time.Time, min(total, 1<<20))
	go func() {
		defer close(queue)
		for i := int64(0); i < total; {
			now := time.Now()
			for ; i < total && !at(i).After(now); i++ {
				select {
				case queue <- at(i):
				case <-ctx.Done():
					return
				}
			}
			if i < total {
				t := time.NewTimer(time.Until(at(i)))
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
		}
	}()

	stats := make([]*workerStats, workers)
	var unsent int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range workers {
		ws := &workerStats{}
		stats[i] = ws
		do := newWorker(i)
		wg.Go(func() {
			var dropped int64
			for s := range queue {
				if ctx.Err() != nil {
					dropped++
					continue
				}
				counted := !s.Before(from) && s.Before(to)
				if counted {
					ws.lag = append(ws.lag, time.Since(s))
				}
				n, a, err := do(ctx, s, counted)
				ws.record(counted, n, a, err, time.Since(s))
			}
			mu.Lock()
			unsent += dropped
			mu.Unlock()
		})
	}
	wg.Wait()
	r := loadResult{Elapsed: w.Duration, Unsent: unsent}
	r.merge(stats)
	return r
}
