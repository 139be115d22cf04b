package main

import (
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// receiver is the delivery benchmark's webhook receiver: a net/http
// server on 127.0.0.1 in the same process that answers 204 at once (or
// 503 during a simulated outage). It verifies nothing cryptographic; with
// a tracker armed it counts each (endpoint, event) once, checks every
// user's seq increases on first receipt, and signals when all expected
// webhooks arrived. It allocates nothing per request beyond what net/http
// does (receipt logging, used at low rates only, appends to a slice).
type receiver struct {
	URL  string
	base time.Time // receipt times are durations since base (monotonic)

	srv  *http.Server
	done chan struct{}

	down     atomic.Bool  // outage: answer 503 with Retry-After
	rejected atomic.Int64 // requests answered 503
	plain    atomic.Int64 // 2xx answers while no tracker is armed
	tr       atomic.Pointer[tracker]

	logOn bool // set before serving
	logMu sync.Mutex
	log   []receipt
}

// receipt is one webhook received while logging.
type receipt struct {
	id string
	at time.Duration // since receiver.base
}

// Header keys in canonical form, so that looking them up allocates nothing.
const hdrWebhookID = "Webhook-Id"

// retryAfterOutage is the outage's Retry-After: long enough that no retry
// happens before the benchmark ends the outage itself.
var retryAfterOutage = []string{"3600"}

// newReceiver starts a receiver. With logReceipts every 2xx receipt's
// webhook-id and time are kept (for the latency phase).
func newReceiver(logReceipts bool) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &receiver{URL: "http://" + ln.Addr().String(), base: time.Now(), done: make(chan struct{}), logOn: logReceipts}
	rc.srv = &http.Server{
		Handler:           rc,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { rc.srv.Serve(ln); close(rc.done) }()
	return rc, nil
}

// endpointURL is the URL of the receiver's i-th endpoint.
func (rc *receiver) endpointURL(i int) string { return rc.URL + "/ep/" + strconv.Itoa(i) }

// close stops the receiver.
func (rc *receiver) close() {
	rc.srv.Close()
	<-rc.done
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if rc.down.Load() {
		rc.rejected.Add(1)
		w.Header()["Retry-After"] = retryAfterOutage
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	at := time.Since(rc.base)
	var id string
	if v := r.Header[hdrWebhookID]; len(v) > 0 {
		id = v[0]
	}
	if t := rc.tr.Load(); t != nil {
		t.receive(pathEndpoint(r.URL.Path), id, at)
	} else {
		rc.plain.Add(1)
	}
	if rc.logOn {
		rc.logMu.Lock()
		rc.log = append(rc.log, receipt{id, at})
		rc.logMu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

// receipts returns the receipts logged so far.
func (rc *receiver) receipts() []receipt {
	rc.logMu.Lock()
	defer rc.logMu.Unlock()
	return append([]receipt(nil), rc.log...)
}

// pathEndpoint returns the number ending a path "/ep/N", -1 if none.
func pathEndpoint(p string) int {
	n := -1
	for i := strings.LastIndexByte(p, '/') + 1; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = max(n, 0)*10 + int(c-'0')
	}
	return n
}

// eventIndex maps the event ids the benchmark ingested to their user and
// per-user seq (from the ingest responses).
type eventIndex struct {
	pos   map[string]int32
	user  []int32
	seq   []int64
	users int // distinct users (user numbers are below users)
}

func (x *eventIndex) len() int { return len(x.seq) }

// tracker checks the webhooks of a known set of events sent to a number
// of endpoints ("/ep/0" … "/ep/N-1").
type tracker struct {
	idx       *eventIndex
	endpoints int
	want      int64
	seen      []atomic.Bool  // endpoint*len + event
	last      []atomic.Int64 // endpoint*users + user: newest seq received
	done      chan struct{}
	doneAt    time.Time // set before done is closed

	received   atomic.Int64 // first receipts
	duplicates atomic.Int64 // further receipts of the same (endpoint, event)
	unknown    atomic.Int64 // webhook-id or path not of this index
	disorder   atomic.Int64 // first receipts whose seq was not above the user's previous one
}

func newTracker(idx *eventIndex, endpoints int) *tracker {
	return &tracker{
		idx: idx, endpoints: endpoints, want: int64(idx.len() * endpoints),
		seen: make([]atomic.Bool, idx.len()*endpoints), last: make([]atomic.Int64, idx.users*endpoints),
		done: make(chan struct{}),
	}
}

func (t *tracker) receive(ep int, id string, _ time.Duration) {
	i, ok := t.idx.pos[id]
	if !ok || ep < 0 || ep >= t.endpoints {
		t.unknown.Add(1)
		return
	}
	if t.seen[ep*t.idx.len()+int(i)].Swap(true) {
		t.duplicates.Add(1)
		return
	}
	seq, l := t.idx.seq[i], &t.last[ep*t.idx.users+int(t.idx.user[i])]
	for {
		old := l.Load()
		if seq <= old {
			t.disorder.Add(1)
			break
		}
		if l.CompareAndSwap(old, seq) {
			break
		}
	}
	if t.received.Add(1) == t.want {
		t.doneAt = time.Now()
		close(t.done)
	}
}
