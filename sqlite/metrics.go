package sqlite

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns the store's Prometheus metrics, for the caller to
// register:
//
//	meetsync_sqlite_wal_syncs_total          group fdatasyncs of the WAL
//	meetsync_sqlite_wal_sync_seconds_total   the time they took
//
// Their rates give the mean sync time, the disk's share of an ack's
// latency (see WALSyncs).
func (db *DB) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "meetsync_sqlite_wal_syncs_total",
			Help: "Group fdatasyncs of the SQLite write-ahead log (each makes every commit before it durable).",
		}, func() float64 {
			n, _ := db.WALSyncs()
			return float64(n)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "meetsync_sqlite_wal_sync_seconds_total",
			Help: "Time the group fdatasyncs of the SQLite write-ahead log took, from start to the waiter resuming.",
		}, func() float64 {
			_, took := db.WALSyncs()
			return took.Seconds()
		}),
	}
}
