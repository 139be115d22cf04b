package delivery

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
)

type metrics struct {
	attempts        *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	claimed         prometheus.Counter
	completeSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, store meetsync.Store) metrics {
	m := metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meetsync_delivery_attempts_total",
			Help: "Webhook attempts per endpoint by outcome: success, http_error, timeout, network_error, refused (SSRF guard).",
		}, []string{"endpoint", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meetsync_delivery_latency_seconds",
			Help:    "Time from an event's ingest to its successful delivery, per endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}, []string{"endpoint"}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meetsync_delivery_claimed_total", Help: "Deliveries claimed by the claim loop (next heads claimed on completion not included).",
		}),
		completeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meetsync_delivery_complete_seconds", Help: "Duration of one group-committed outcome transaction.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.latency, m.claimed, m.completeSeconds, &depthCollector{store: store})
	}
	return m
}

// depthCollector reports the active deliveries per endpoint at scrape
// time, from one grouped query cached for a few seconds.
type depthCollector struct {
	store meetsync.Store
	mu    sync.Mutex
	at    time.Time
	last  map[string]int64
	seen  map[string]bool // endpoints ever reported: an emptied queue reads 0, not absent
}

var depthDesc = prometheus.NewDesc("meetsync_delivery_queue_depth", "Pending or failed (awaiting retry) deliveries per endpoint.", []string{"endpoint"}, nil)

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- depthDesc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > 5*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		depths, err := c.store.DeliveryQueueDepths(ctx)
		cancel()
		if err == nil {
			c.last, c.at = depths, time.Now()
		}
	}
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	for id := range c.last {
		c.seen[id] = true
	}
	for id := range c.seen {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(c.last[id]), id)
	}
}
