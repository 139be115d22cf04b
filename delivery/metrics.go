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

// depthCollector reports the active deliveries of every endpoint at
// scrape time (0 for one with none, so that a dashboard tells an empty
// queue from missing data), from the store's grouped count and the apps'
// endpoint lists, cached for depthCacheFor. The count is the store's: on
// PostgreSQL every replica reports the same cluster-wide values.
type depthCollector struct {
	store meetsync.Store
	mu    sync.Mutex
	at    time.Time
	last  map[string]int64 // endpoint id → active deliveries, every endpoint included
}

// depthCacheFor is how long the collector reuses its last reading.
const depthCacheFor = 5 * time.Second

var depthDesc = prometheus.NewDesc("meetsync_delivery_queue_depth",
	"Pending or failed (awaiting retry) deliveries per endpoint, 0 for an endpoint with none. "+
		"Counted in the store: on PostgreSQL every replica reports the same cluster-wide value, "+
		"so aggregate replicas with max(), not sum().",
	[]string{"endpoint"}, nil)

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- depthDesc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > depthCacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		depths, err := c.read(ctx)
		cancel()
		if err == nil { // otherwise the last reading stands (the store may be out of reach)
			c.last, c.at = depths, time.Now()
		}
	}
	for id, n := range c.last {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(n), id)
	}
}

// read returns the active deliveries per endpoint, with every endpoint of
// every app (enabled or not: a disabled one keeps its parked queue), and
// those of endpoints deleted meanwhile left out.
func (c *depthCollector) read(ctx context.Context) (map[string]int64, error) {
	counts, err := c.store.DeliveryQueueDepths(ctx)
	if err != nil {
		return nil, err
	}
	apps, err := c.store.AppList(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(counts))
	for _, app := range apps {
		eps, err := c.store.EndpointList(ctx, app.ID)
		if err != nil {
			return nil, err
		}
		for _, ep := range eps {
			out[ep.ID] = counts[ep.ID]
		}
	}
	return out, nil
}
