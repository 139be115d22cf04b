package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/httpapi"
)

// storeAppendResult is the store alone: Store.EventsAppend called by one
// committing goroutine, as the group committer does, with no HTTP.
type storeAppendResult struct {
	RequestsPerTxn   int
	EventsPerRequest int
	Txns             int64
	Events           int64
	Elapsed          time.Duration
	Latency          []time.Duration // per EventsAppend call, sorted
}

// storeAppend measures Store.EventsAppend on a fresh store in dir: every
// transaction holds reqsPerTxn requests of evPerReq status events, built
// the way the HTTP API builds them (ParseIngestBody, PrepareEvent) by
// another goroutine, as the handlers do for the committer.
func storeAppend(ctx context.Context, kind storeKind, dir string, reqsPerTxn, evPerReq, clients, users int, w window, m *meter) (storeAppendResult, error) {
	res := storeAppendResult{RequestsPerTxn: reqsPerTxn, EventsPerRequest: evPerReq, Elapsed: w.Duration}
	store, err := kind.Open(dir)
	if err != nil {
		return res, fmt.Errorf("open store: %w", err)
	}
	defer store.Close()
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "bench", CreatedAt: now}
	key, _ := meetsync.NewAPIKey(app.ID, now)
	if err := store.AppCreate(ctx, app, key); err != nil {
		return res, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type txn struct {
		reqs   []*meetsync.AppendRequest
		events int
	}
	queue := make(chan txn, 4)
	errc := make(chan error, 1)
	go func() {
		defer close(queue)
		gens := make([]*eventGen, clients)
		for i := range gens {
			gens[i] = newEventGen(i, clients, users)
		}
		next := 0
		for {
			t := txn{reqs: make([]*meetsync.AppendRequest, reqsPerTxn)}
			for r := range t.reqs {
				g := gens[next%clients]
				next++
				var body []byte
				if evPerReq == 1 {
					body = g.single()
				} else {
					body = g.batch(evPerReq)
				}
				inputs, _, err := httpapi.ParseIngestBody(body)
				if err != nil {
					errc <- err
					return
				}
				req := &meetsync.AppendRequest{AppID: app.ID, Events: make([]*meetsync.Event, len(inputs))}
				received := time.Now().UTC()
				for i, in := range inputs {
					ev, err := meetsync.PrepareEvent(in, meetsync.PrepareParams{
						AppID: app.ID, Source: meetsync.SourceClient, ReceivedAt: received,
						NewID: func() string { return meetsync.NewID("evt") },
					})
					if err != nil {
						errc <- err
						return
					}
					req.Events[i] = ev
				}
				t.reqs[r] = req
				t.events += len(inputs)
			}
			select {
			case queue <- t:
			case <-ctx.Done():
				return
			}
		}
	}()

	t0 := time.Now()
	from, to := t0.Add(w.Warmup), t0.Add(w.Warmup+w.Duration)
	stop := m.schedule(from, to)
	defer stop()
	for t := range queue {
		start := time.Now()
		// The window ends at to, or, on a machine too busy to finish one
		// transaction inside it, after the first one that ends past from.
		if !start.Before(to) && res.Txns > 0 {
			break
		}
		if err := store.EventsAppend(ctx, t.reqs); err != nil {
			return res, err
		}
		for _, r := range t.reqs {
			if r.Err != nil {
				return res, r.Err
			}
		}
		end := time.Now()
		if !end.Before(from) && (end.Before(to) || res.Txns == 0) {
			res.Txns++
			res.Events += int64(t.events)
			res.Latency = append(res.Latency, end.Sub(start))
			if end.After(to) {
				res.Elapsed = end.Sub(from)
			}
		}
	}
	cancel()
	select {
	case err := <-errc:
		return res, err
	default:
	}
	slices.Sort(res.Latency)
	return res, nil
}
