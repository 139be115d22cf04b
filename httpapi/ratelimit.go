package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/meetsync/meetsync"
)

// RateLimit is a token bucket per caller: PerSecond requests a second on
// average, Burst at once. A zero PerSecond is no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int // default: twice PerSecond, at least 1
}

// limiters keeps one bucket per caller (an API key, a device's client
// token). A caller not seen for longer than its bucket takes to fill up
// again is forgotten: its next request finds a full bucket either way.
type limiters struct {
	limit rate.Limit
	burst int
	idle  time.Duration // forget a caller after this

	mu        sync.Mutex
	m         map[string]*bucket
	nextSweep time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

// newLimiters returns the buckets of rl, nil (no limit) for a zero rate.
func newLimiters(rl RateLimit) *limiters {
	if rl.PerSecond <= 0 {
		return nil
	}
	burst := rl.Burst
	if burst <= 0 {
		burst = max(1, int(math.Ceil(2*rl.PerSecond)))
	}
	fill := time.Duration(float64(burst) / rl.PerSecond * float64(time.Second))
	return &limiters{limit: rate.Limit(rl.PerSecond), burst: burst, idle: max(time.Minute, fill), m: map[string]*bucket{}}
}

// take takes one request of caller at now; refused, it says how long until
// the caller may send one.
func (ls *limiters) take(caller string, now time.Time) (ok bool, wait time.Duration) {
	if ls == nil {
		return true, 0
	}
	ls.mu.Lock()
	if now.After(ls.nextSweep) {
		for k, b := range ls.m {
			if now.Sub(b.seen) > ls.idle {
				delete(ls.m, k)
			}
		}
		ls.nextSweep = now.Add(ls.idle)
	}
	b := ls.m[caller]
	if b == nil {
		b = &bucket{l: rate.NewLimiter(ls.limit, ls.burst)}
		ls.m[caller] = b
	}
	b.seen = now
	ls.mu.Unlock()
	r := b.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// limit answers 429 with Retry-After (whole seconds, at least 1) and
// returns false when caller is over its limit.
func (s *Server) limit(ls *limiters, w http.ResponseWriter, r *http.Request, caller, who string) bool {
	if ls == nil {
		return true
	}
	ok, wait := ls.take(caller, s.now())
	if ok {
		return true
	}
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	s.writeError(w, r, meetsync.Errorf(meetsync.ERATELIMIT, "too many requests from this %s: at most %g a second (bursts of %d); try again after Retry-After",
		who, float64(ls.limit), ls.burst))
	return false
}
