package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// deliveryPhaseResult is one phase of the delivery benchmark.
type deliveryPhaseResult struct {
	Name      string `json:"name"`
	Label     string `json:"label"`
	Endpoints int    `json:"endpoints"`
	Users     int    `json:"users"`
	// Events is what was pre-loaded (throughput, fanout, drain) or sent in
	// the measured window (latency).
	Events int `json:"events"`
	// SetupSeconds is the pre-load (not counted); Seconds the measured time.
	SetupSeconds float64 `json:"setup_seconds"`
	Seconds      float64 `json:"seconds"`
	// Expected and Delivered count (endpoint, event) pairs, each once.
	Expected         int64   `json:"expected"`
	Delivered        int64   `json:"delivered"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	TimedOut         bool    `json:"timed_out,omitempty"`
	Duplicates       int64   `json:"duplicates"`
	Unknown          int64   `json:"unknown,omitempty"`
	OutOfOrder       int64   `json:"out_of_order"`
	OrderKept        *bool   `json:"order_kept,omitempty"`
	// Drain: 503s answered during the outage, deliveries the recover call
	// requeued, and how long that call took (inside the measured time).
	Rejected       int64   `json:"outage_rejected,omitempty"`
	Requeued       int     `json:"requeued,omitempty"`
	RecoverSeconds float64 `json:"recover_call_seconds,omitempty"`
	// Latency phase.
	OfferedRate float64    `json:"offered_rate,omitempty"`
	E2E         *latencyMs `json:"e2e_latency_ms,omitempty"`
	Ack         *latencyMs `json:"ack_latency_ms,omitempty"`
	SendLag     *latencyMs `json:"send_lag_ms,omitempty"`
	Missing     int64      `json:"missing,omitempty"`
	Errors      int64      `json:"errors,omitempty"`
	FirstError  string     `json:"first_error,omitempty"`
	Unsent      int64      `json:"unsent,omitempty"`

	// Failed is why the phase could not run (set-up error).
	Failed string `json:"failed,omitempty"`

	Resources    resourceUse      `json:"resources"`
	Dispatcher   *dispatcherStats `json:"dispatcher,omitempty"`
	Profile      string           `json:"cpu_profile,omitempty"`
	ProfileError string           `json:"cpu_profile_error,omitempty"`
}

// complete reports whether a phase delivered everything it should have,
// once, with nothing unknown.
func (p *deliveryPhaseResult) complete() bool {
	if p == nil || p.Failed != "" {
		return false
	}
	if p.Name == "latency" {
		return p.Errors == 0 && p.Unsent == 0 && p.Missing == 0 && p.Delivered > 0
	}
	return !p.TimedOut && p.Delivered == p.Expected && p.Expected > 0 && p.Unknown == 0
}

// dispatcherStats is what the dispatcher's metrics said over the window.
type dispatcherStats struct {
	Completes           uint64  `json:"completes"`
	CompletesPerSec     float64 `json:"completes_per_sec"`
	OutcomesPerComplete float64 `json:"outcomes_per_complete_mean"`
	CompleteMsMean      float64 `json:"complete_ms_mean"`
	CompleteMsP50       float64 `json:"complete_ms_p50_bucket"`
	CompleteMsP99       float64 `json:"complete_ms_p99_bucket"`
	ClaimedByLoop       float64 `json:"claimed_by_loop"`
	AttemptsOK          float64 `json:"attempts_success"`
	AttemptsFailed      float64 `json:"attempts_failed"`
}

func newDispatcherStats(m *meter) *dispatcherStats {
	c := m.hist("meetsync_delivery_complete_seconds")
	attempts := m.counter("meetsync_delivery_attempts_total")
	ok := m.counter("meetsync_delivery_attempts_total{outcome=success}")
	s := &dispatcherStats{
		Completes: c.Count, CompleteMsMean: c.Mean() * 1000, CompleteMsP50: c.Quantile(0.5) * 1000, CompleteMsP99: c.Quantile(0.99) * 1000,
		ClaimedByLoop: m.counter("meetsync_delivery_claimed_total"), AttemptsOK: ok, AttemptsFailed: attempts - ok,
	}
	if c.Count > 0 {
		s.OutcomesPerComplete = attempts / float64(c.Count)
	}
	if u := m.usage(); u.Wall > 0 {
		s.CompletesPerSec = float64(c.Count) / u.Wall.Seconds()
	}
	return s
}

type deliveryReport struct {
	Machine          machineInfo          `json:"machine"`
	Store            string               `json:"store"`
	StoreDescription string               `json:"store_description"`
	Users            int                  `json:"users"`
	Events           int                  `json:"events"`
	Backlog          int                  `json:"backlog"`
	Rate             int                  `json:"rate"`
	Endpoints        int                  `json:"fanout_endpoints"`
	Workers          int                  `json:"workers"` // 0: the dispatcher's default
	WarmupSeconds    float64              `json:"warmup_seconds"`
	DurationSeconds  float64              `json:"duration_seconds"`
	TimeoutSeconds   float64              `json:"timeout_seconds"`
	HTTP             *phaseResult         `json:"http_baseline,omitempty"`
	Throughput       *deliveryPhaseResult `json:"throughput,omitempty"`
	Fanout           *deliveryPhaseResult `json:"fanout,omitempty"`
	Latency          *deliveryPhaseResult `json:"latency,omitempty"`
	Drain            *deliveryPhaseResult `json:"drain,omitempty"`
	Targets          []targetResult       `json:"targets"`
}

func (r *deliveryReport) phases() []*deliveryPhaseResult {
	var out []*deliveryPhaseResult
	for _, p := range []*deliveryPhaseResult{r.Throughput, r.Fanout, r.Latency, r.Drain} {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func (r *deliveryReport) evaluate() {
	rateTarget := func(name string, p *deliveryPhaseResult, bound float64) targetResult {
		t := targetResult{Name: name, Want: fmt.Sprintf("≥ %s del/s", groupDigits(bound)), Bound: bound, Unit: "deliveries/s"}
		if p != nil {
			t.Figure = p.DeliveriesPerSec
			t.Pass = ptr(p.complete() && t.Figure >= bound)
		}
		return t
	}
	lat := targetResult{Name: "e2e_p99", Want: fmt.Sprintf("≤ %s ms at %s/s", fmtMs(float64(targetE2EP99.Milliseconds())), groupDigits(float64(r.Rate))),
		Bound: float64(targetE2EP99.Milliseconds()), Unit: "ms"}
	if p := r.Latency; p != nil && p.E2E != nil {
		lat.Figure = p.E2E.P99
		lat.Pass = ptr(p.complete() && lat.Figure <= lat.Bound)
	}
	order := targetResult{Name: "drain_order", Want: "per-user order", Bound: 1, Unit: "bool"}
	if p := r.Drain; p != nil && p.OrderKept != nil {
		if *p.OrderKept {
			order.Figure = 1
		}
		order.Pass = ptr(*p.OrderKept && p.Delivered > 0)
	}
	drain := rateTarget("drain", r.Drain, targetDrainPerSec)
	if drain.Pass != nil && order.Pass != nil {
		drain.Pass = ptr(*drain.Pass && *order.Pass)
	}
	r.Targets = []targetResult{
		rateTarget("deliveries_1_endpoint", r.Throughput, targetDeliveriesPerSec),
		rateTarget("deliveries_fanout", r.Fanout, targetDeliveriesPerSec),
		lat, drain, order,
	}
}

func (r *deliveryReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *deliveryReport) writeTable(out io.Writer) {
	m := r.Machine
	fmt.Fprintf(out, "\nmeetsync-bench delivery\n")
	fmt.Fprintf(out, "machine:  %s/%s, %d CPUs (%s), GOMAXPROCS=%d, %s, %s\n", m.GOOS, m.GOARCH, m.NumCPU, orDash(m.CPUModel), m.GOMAXPROCS, m.GoVersion, m.gcNote())
	fmt.Fprintf(out, "store:    %s; data on %s\n", r.StoreDescription, orDash(m.DataFS))
	workers := fmt.Sprintf("%d workers (the default)", defaultWorkers)
	if r.Workers > 0 {
		workers = fmt.Sprintf("%d workers", r.Workers)
	}
	fmt.Fprintf(out, "server:   ingest + HTTP API + delivery dispatcher (%s), as meetsync serve runs; a fresh store per phase\n", workers)
	fmt.Fprintf(out, "receiver: net/http on 127.0.0.1 in the same process, answers 204 at once; counts each (endpoint, event) once by webhook-id\n")
	fmt.Fprintf(out, "          and checks that each user's seq increases; client, server and receiver share the process\n")
	fmt.Fprintf(out, "load:     %s users, debounce off, events pre-loaded through the API in batches of %s (set-up not counted); each phase bounded by %s\n\n",
		groupDigits(float64(r.Users)), groupDigits(loadBatch), secs(r.TimeoutSeconds))

	type line struct{ label, figure, target, verdict string }
	var lines []line
	add := func(label, figure, target, verdict string) {
		lines = append(lines, line{label, figure, target, verdict})
	}
	t := r.Targets
	if p := r.HTTP; p != nil {
		add(fmt.Sprintf("(a) %s, %d clients", p.Label, p.Clients), rate(p.RequestsPerSec, "req/s")+errNote(p), "", "")
	}
	for i, p := range []*deliveryPhaseResult{r.Throughput, r.Fanout} {
		if p != nil {
			add(fmt.Sprintf("(%d) %s", i+1, p.Label), rate(p.DeliveriesPerSec, "del/s")+phaseNote(p), t[i].Want, t[i].verdict())
		}
	}
	if p := r.Latency; p != nil && p.E2E != nil {
		head := fmt.Sprintf("(3) %s: ", p.Label)
		add(head+"p50", fmtMs(p.E2E.P50)+" ms", "", "")
		add(strings.Repeat(" ", runes(head))+"p99", fmtMs(p.E2E.P99)+" ms"+phaseNote(p), t[2].Want, t[2].verdict())
		add("    achieved rate", rate(p.DeliveriesPerSec, "ev/s"), "", "")
		if p.Ack != nil {
			add("    (context) ingest ack latency p99", fmtMs(p.Ack.P99)+" ms", "", "")
		}
	}
	if p := r.Drain; p != nil {
		add("(4) "+p.Label, rate(p.DeliveriesPerSec, "del/s")+phaseNote(p), t[3].Want, t[3].verdict())
		kept := "no"
		if p.OrderKept != nil && *p.OrderKept {
			kept = "yes"
		}
		add("    order kept (each user's seq increasing at the receiver)", kept, t[4].Want, t[4].verdict())
	}
	wl, wf, wt := 0, len("figure"), len("target")
	for _, l := range lines {
		wl, wf, wt = max(wl, runes(l.label)), max(wf, runes(l.figure)), max(wt, runes(l.target))
	}
	printLine := func(l line) {
		fmt.Fprintln(out, strings.TrimRight(pad(l.label, wl)+"  "+padLeft(l.figure, wf)+"   "+pad(l.target, wt)+"  "+l.verdict, " "))
	}
	printLine(line{"", "figure", "target", "result"})
	for _, l := range lines {
		printLine(l)
	}

	phases := r.phases()
	if len(phases) > 0 || r.HTTP != nil {
		fmt.Fprintf(out, "\ndetails (measured window; CPU and allocations are the whole process: API client, server and receiver)\n")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
		row(pad("phase", 10), "endpoints", "set-up s", "measured s", "delivered", "of", "del/s", "dups", "out of order",
			"CPU cores", "other procs", "CPU µs/del", "allocs/del", "B/del", "disk B/del")
		if p := r.HTTP; p != nil {
			row(pad("http", 10), "-", "-", fmt.Sprintf("%.2f", p.Seconds), groupDigits(float64(p.Requests)), "-", groupDigits(p.RequestsPerSec), "-", "-",
				fmt.Sprintf("%.2f", p.Resources.CPUCores), cores(p.Resources.OtherCores), fmt.Sprintf("%.1f", p.Resources.CPUPerEventUs),
				fmt.Sprintf("%.1f", p.Resources.AllocsPerEvent), groupDigits(p.Resources.AllocBytesPerEvent), diskBytes(p.Resources.DiskBytesPerEvent))
		}
		for _, p := range phases {
			expected := groupDigits(float64(p.Expected))
			if p.Name == "latency" {
				expected = groupDigits(float64(p.Events))
			}
			row(pad(p.Name, 10), fmt.Sprint(p.Endpoints), fmt.Sprintf("%.1f", p.SetupSeconds), fmt.Sprintf("%.2f", p.Seconds),
				groupDigits(float64(p.Delivered)), expected, groupDigits(p.DeliveriesPerSec), fmt.Sprint(p.Duplicates), fmt.Sprint(p.OutOfOrder),
				fmt.Sprintf("%.2f", p.Resources.CPUCores), cores(p.Resources.OtherCores), fmt.Sprintf("%.1f", p.Resources.CPUPerEventUs),
				fmt.Sprintf("%.1f", p.Resources.AllocsPerEvent), groupDigits(p.Resources.AllocBytesPerEvent), diskBytes(p.Resources.DiskBytesPerEvent))
		}
		tw.Flush()
	}
	if len(phases) > 0 {
		fmt.Fprintf(out, "\ndispatcher (its metrics over the measured window: one complete = one group-committed outcome transaction)\n")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
		row(pad("phase", 10), "completes/s", "outcomes/complete", "complete ms mean", "p50≤", "p99≤", "claimed by loop", "attempts ok", "failed")
		for _, p := range phases {
			d := p.Dispatcher
			if d == nil {
				continue
			}
			row(pad(p.Name, 10), groupDigits(d.CompletesPerSec), fmt.Sprintf("%.1f", d.OutcomesPerComplete), fmtMs(d.CompleteMsMean),
				bucket(d.CompleteMsP50), bucket(d.CompleteMsP99), groupDigits(d.ClaimedByLoop), groupDigits(d.AttemptsOK), groupDigits(d.AttemptsFailed))
		}
		tw.Flush()
	}

	if p := r.Latency; p != nil && p.E2E != nil {
		fmt.Fprintf(out, "\nlatency phase (ms)         p50     p90     p99   p99.9     max\n")
		for _, l := range []struct {
			name string
			v    *latencyMs
		}{{"ingest→received (e2e)", p.E2E}, {"ingest ack", p.Ack}, {"send lag (client)", p.SendLag}} {
			if l.v != nil {
				fmt.Fprintf(out, "  %-22s %7s %7s %7s %7s %7s\n", l.name, fmtMs(l.v.P50), fmtMs(l.v.P90), fmtMs(l.v.P99), fmtMs(l.v.P999), fmtMs(l.v.Max))
			}
		}
	}

	var notes []string
	var busy []string
	if p := r.HTTP; p != nil && p.Resources.OtherCores > busyThreshold {
		busy = append(busy, fmt.Sprintf("http %.2f", p.Resources.OtherCores))
	}
	for _, p := range phases {
		if p.Resources.OtherCores > busyThreshold {
			busy = append(busy, fmt.Sprintf("%s %.2f", p.Name, p.Resources.OtherCores))
		}
	}
	notes = append(notes, busyNote(r.Store, busy)...)
	if p := r.HTTP; p != nil && p.Errors > 0 {
		notes = append(notes, fmt.Sprintf("http: %d failed requests, first: %s", p.Errors, p.FirstError))
	}
	if p := r.Drain; p != nil {
		notes = append(notes, fmt.Sprintf("drain: during the outage the receiver answered %s requests with 503 (Retry-After: 3600), one per user queue head;"+
			" recovery = receiver answers 204 again + POST /v1/endpoints/{id}/recover (requeued %d, took %s ms, inside the measured time)",
			groupDigits(float64(p.Rejected)), p.Requeued, fmtMs(p.RecoverSeconds*1000)))
	}
	for _, p := range phases {
		if p.Failed != "" {
			notes = append(notes, fmt.Sprintf("%s: the phase failed: %s", p.Name, p.Failed))
		}
		if p.TimedOut {
			notes = append(notes, fmt.Sprintf("%s: not finished within %s: %s of %s delivered; the rate is what was achieved so far",
				p.Name, secs(r.TimeoutSeconds), groupDigits(float64(p.Delivered)), groupDigits(float64(p.Expected))))
		}
		if p.Unknown > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d webhooks with an unknown webhook-id or path", p.Name, p.Unknown))
		}
		if p.OutOfOrder > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d webhooks arrived with a seq not above their user's previous one (per-user order broken)", p.Name, p.OutOfOrder))
		}
		if p.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d failed ingest requests, first: %s", p.Name, p.Errors, p.FirstError))
		}
		if p.Unsent > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d scheduled requests never sent (deadline)", p.Name, p.Unsent))
		}
		if p.Missing > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d acked events whose webhook did not arrive within %s after the load", p.Name, p.Missing, stragglerWait))
		}
		if p.SendLag != nil && p.SendLag.P99 > 1 {
			notes = append(notes, fmt.Sprintf("%s: requests left up to %s ms (p99) after their scheduled time; the latency counts that wait", p.Name, fmtMs(p.SendLag.P99)))
		}
	}
	profiles := append([]*deliveryPhaseResult(nil), phases...)
	if p := r.HTTP; p != nil {
		notes = appendProfileNote(notes, "http", p.Profile, p.ProfileError)
	}
	for _, p := range profiles {
		notes = appendProfileNote(notes, p.Name, p.Profile, p.ProfileError)
	}
	writeNotes(out, notes)
}

// phaseNote marks a figure that is not a clean measurement.
func phaseNote(p *deliveryPhaseResult) string {
	if !p.complete() || p.OutOfOrder > 0 {
		return " (!)"
	}
	return ""
}
