// Package ingest is the write path of meetsync: it groups concurrent
// append requests into shared store transactions (group commit) and
// answers each request only after its transaction committed, so an ack
// always means durable while one fsync serves many requests.
package ingest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
)

// Config configures a Service.
type Config struct {
	// MaxBatchEvents caps the events committed in one transaction. A
	// request is never split; a bigger one is committed alone. Default 5000.
	MaxBatchEvents int
	// QueueSize is how many requests may wait for the committer. Default 8192.
	QueueSize int
	// Committers is how many group commits may be in flight at once.
	// Default: what the store's AppendCommitters says, else 1. A store that
	// waits for the disk outside its write lock (SQLite) writes one group
	// while the previous one is being made durable.
	Committers int
	// CommitTimeout bounds each group commit (the store's EventsAppend):
	// a database that does not answer (stopped, or behind a network
	// partition) fails the batch with EUNAVAILABLE, its outcome unknown
	// (ErrOutcomeUnknown), instead of holding the committer until it
	// answers. Default 10 s.
	CommitTimeout time.Duration
}

// pipelinedStore is a Store that says how many concurrent EventsAppend
// calls it gains from.
type pipelinedStore interface {
	AppendCommitters() int
}

func (c Config) withDefaults(store meetsync.Store) Config {
	if c.Committers <= 0 {
		c.Committers = 1
		if p, ok := store.(pipelinedStore); ok {
			c.Committers = max(1, p.AppendCommitters())
		}
	}
	if c.MaxBatchEvents <= 0 {
		c.MaxBatchEvents = 5000
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 8192
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = 10 * time.Second
	}
	return c
}

// ErrOutcomeUnknown is in the chain of Append's error when the request was
// in a group commit that did not end in time (CommitTimeout), or when the
// caller stopped waiting while it was: its events may or may not have been
// committed. It is EUNAVAILABLE. Sending the same request again is safe
// when it has an Idempotency-Key, or its events have ids or client_seq:
// the store answers a repeat of what it committed as a duplicate, and a
// transaction that is still running holds its users' locks, so the repeat
// waits for it and then finds it (or, if it rolled back, commits alone).
var ErrOutcomeUnknown = meetsync.Errorf(meetsync.EUNAVAILABLE,
	"the database did not answer in time: the events may or may not have been committed; "+
		"sending the same request again is safe if it has an Idempotency-Key or its events have ids or client_seq "+
		"(a repeat of committed events is answered as a duplicate)")

// outcomeUnknown is ErrOutcomeUnknown with its cause (for the log, and
// errors.Is: context.Canceled when the caller went away).
type outcomeUnknown struct{ cause error }

func (e *outcomeUnknown) Error() string {
	return "ingest: the commit's outcome is unknown: " + e.cause.Error()
}

func (e *outcomeUnknown) Unwrap() []error { return []error{ErrOutcomeUnknown, e.cause} }

// Service is the group committer. Create it with New and stop it with Close.
type Service struct {
	store meetsync.Store
	cfg   Config
	queue chan *pending
	sig   meetsync.Signal // every commit
	dsig  meetsync.Signal // commits that made deliveries

	mu     sync.RWMutex
	closed bool
	done   chan struct{}

	m metrics
}

type pending struct {
	ctx   context.Context
	req   *meetsync.AppendRequest
	done  chan error
	state atomic.Int32 // queued, then taken (by a committer) or abandoned (by Append)
}

// The states of a pending request: the committer takes it, or Append,
// whose caller stopped waiting first, abandons it and it is never written.
const (
	queued int32 = iota
	taken
	abandoned
)

// New starts a Service writing to store. reg may be nil.
func New(store meetsync.Store, reg prometheus.Registerer, cfg Config) *Service {
	cfg = cfg.withDefaults(store)
	s := &Service{store: store, cfg: cfg, queue: make(chan *pending, cfg.QueueSize), done: make(chan struct{}), m: newMetrics(reg)}
	var wg sync.WaitGroup
	for range cfg.Committers {
		wg.Go(s.run)
	}
	go func() {
		wg.Wait()
		close(s.done)
	}()
	return s
}

// Append commits req (in a transaction shared with concurrent requests) and
// returns once it is durable. It returns req.Err for a request-level
// failure, the store's error if the transaction failed, EUNAVAILABLE after
// Close, or ctx's error if the caller gave up before its turn came (then
// nothing was written). When ctx ends while a committer has the request,
// Append returns at once without waiting for the commit: an EUNAVAILABLE
// error with ErrOutcomeUnknown and ctx's error in its chain.
func (s *Service) Append(ctx context.Context, req *meetsync.AppendRequest) error {
	start := time.Now()
	p := &pending{ctx: ctx, req: req, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return meetsync.Errorf(meetsync.EUNAVAILABLE, "meetsync is shutting down")
	}
	select {
	case s.queue <- p:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	// Once queued, the request is committed or failed by the committer.
	// The caller gets that answer, unless ctx ends first: then a request
	// no committer has taken is left out (nothing is written), and one
	// that is being committed may or may not commit.
	var err error
	select {
	case err = <-p.done:
	case <-ctx.Done():
		select {
		case err = <-p.done: // answered meanwhile
		default:
			if p.state.CompareAndSwap(queued, abandoned) {
				return ctx.Err()
			}
			return &outcomeUnknown{ctx.Err()}
		}
	}
	s.m.requestSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	for _, r := range req.Results {
		switch {
		case r.Duplicate:
			s.m.duplicate.Inc()
		case r.Stale:
			s.m.stale.Inc()
		default:
			s.m.fresh.Inc()
		}
	}
	return req.Err
}

// Changes returns a channel closed at the next commit (see meetsync.Signal).
func (s *Service) Changes() <-chan struct{} { return s.sig.Wait() }

// DeliveryChanges returns a channel closed at the next commit that made
// deliveries, or at the next Notify: under a load of events no endpoint
// subscribes to, the dispatcher sleeps.
func (s *Service) DeliveryChanges() <-chan struct{} { return s.dsig.Wait() }

// Notify wakes the waiters of Changes and of DeliveryChanges, for writers
// other than the committer.
func (s *Service) Notify() {
	s.sig.Notify()
	s.dsig.Notify()
}

// NotifyFeed wakes the waiters of Changes only: the feed moved through
// commits elsewhere (another replica's, whose deliveries come with their
// own wake-up).
func (s *Service) NotifyFeed() { s.sig.Notify() }

// Close stops taking requests, commits those already queued and returns
// when the committers have stopped.
func (s *Service) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.queue)
	}
	s.mu.Unlock()
	<-s.done
}

func (s *Service) run() {
	var batch []*pending
	var reqs []*meetsync.AppendRequest
	for {
		p, ok := <-s.queue
		if !ok {
			return
		}
		batch, reqs = batch[:0], reqs[:0]
		n := 0
		add := func(p *pending) {
			if p.ctx.Err() != nil || !p.state.CompareAndSwap(queued, taken) {
				// Its caller gave up before its turn came (Append
				// returns ctx's error): it is not written.
				p.done <- p.ctx.Err()
				return
			}
			batch = append(batch, p)
			reqs = append(reqs, p.req)
			n += len(p.req.Events)
		}
		add(p)
	drain:
		for n < s.cfg.MaxBatchEvents {
			select {
			case p, ok := <-s.queue:
				if !ok {
					break drain
				}
				add(p)
			default:
				break drain
			}
		}
		if len(batch) == 0 {
			continue
		}
		start := time.Now()
		err := s.commit(reqs)
		s.m.commitSeconds.Observe(time.Since(start).Seconds())
		s.m.batchEvents.Observe(float64(n))
		s.m.batchRequests.Observe(float64(len(batch)))
		if err != nil {
			s.m.commitErrors.Inc()
		}
		deliveries := false
		for _, r := range reqs {
			deliveries = deliveries || r.Deliveries > 0
		}
		// Waiters are woken before the requests return, so a caller that
		// got its ack finds Changes already closed.
		if err == nil {
			s.sig.Notify()
			if deliveries {
				s.dsig.Notify()
			}
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

// commit runs one group commit, bounded by CommitTimeout. A store that did
// not answer in time may still commit (a COMMIT sent before the deadline
// can succeed after it), so the error says the outcome is unknown. Both
// stores give up the transaction's connection to a canceled context
// cleanly: SQLite rolls back (database/sql), pgx closes the connection and
// the pool opens another one for the next batch.
func (s *Service) commit(reqs []*meetsync.AppendRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CommitTimeout)
	defer cancel()
	err := s.store.EventsAppend(ctx, reqs)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &outcomeUnknown{err}
	}
	return err
}

type metrics struct {
	fresh, duplicate, stale prometheus.Counter
	commitErrors            prometheus.Counter
	requestSeconds          prometheus.Histogram
	commitSeconds           prometheus.Histogram
	batchEvents             prometheus.Histogram
	batchRequests           prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) metrics {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meetsync_ingest_events_total",
		Help: "Events ingested, by outcome: new, duplicate (idempotent repeat) or stale (stored, state unchanged).",
	}, []string{"outcome"})
	m := metrics{
		fresh:     events.WithLabelValues("new"),
		duplicate: events.WithLabelValues("duplicate"),
		stale:     events.WithLabelValues("stale"),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meetsync_commit_errors_total", Help: "Group-commit transactions that failed.",
		}),
		requestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meetsync_ingest_append_seconds", Help: "Time from an append request being queued to its durable commit.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meetsync_commit_seconds", Help: "Duration of one group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meetsync_commit_batch_events", Help: "Events committed per group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		batchRequests: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meetsync_commit_batch_requests", Help: "Requests sharing one group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
	}
	if reg != nil {
		reg.MustRegister(events, m.commitErrors, m.requestSeconds, m.commitSeconds, m.batchEvents, m.batchRequests)
	}
	return m
}
