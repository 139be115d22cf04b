package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// meter records what the process did during a phase's measured window:
// wall time, CPU time, allocations, the server's histograms and, if asked,
// a CPU profile.
type meter struct {
	phase   string
	profile string               // profile file prefix, "" for none
	reg     *prometheus.Registry // the server's registry, nil for baselines

	mu           sync.Mutex
	begun, ended bool
	start, end   time.Time
	cpu0, cpu1   time.Duration
	sys0, sys1   time.Duration // whole machine, -1 if unknown
	disk0, disk1 int64         // bytes written to storage, -1 if unknown
	mem0, mem1   runtime.MemStats
	hist0, hist1 map[string]histSnap
	ctr0, ctr1   map[string]float64
	profFile     *os.File
	ProfilePath  string
	traceFile    *os.File
	err          error
}

// tracePrefix is --trace: when set, each measured window is also written
// as a runtime execution trace to PREFIX-<phase>.trace.
var tracePrefix string

func newMeter(phase, profilePrefix string, reg *prometheus.Registry) *meter {
	return &meter{phase: phase, profile: profilePrefix, reg: reg}
}

// Begin starts the measured window.
func (m *meter) Begin() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.begun {
		return
	}
	m.begun = true
	if m.profile != "" {
		m.ProfilePath = fmt.Sprintf("%s-%s.pprof", m.profile, m.phase)
		var f *os.File
		err := os.MkdirAll(filepath.Dir(m.ProfilePath), 0o755)
		if err == nil {
			f, err = os.Create(m.ProfilePath)
		}
		if err == nil {
			err = pprof.StartCPUProfile(f)
			if err != nil {
				f.Close()
			}
		}
		if err != nil {
			m.err = fmt.Errorf("cpu profile: %w", err)
			m.ProfilePath = ""
		} else {
			m.profFile = f
		}
	}
	if tracePrefix != "" {
		path := fmt.Sprintf("%s-%s.trace", tracePrefix, m.phase)
		f, err := os.Create(path)
		if err == nil {
			if err = trace.Start(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			m.err = fmt.Errorf("execution trace: %w", err)
		} else {
			m.traceFile = f
		}
	}
	m.hist0, m.ctr0 = gatherMetrics(m.reg)
	runtime.ReadMemStats(&m.mem0)
	m.cpu0, m.sys0, m.disk0 = processCPU(), systemCPU(), diskWritten()
	m.start = time.Now()
}

// End ends the measured window.
func (m *meter) End() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.begun || m.ended {
		return
	}
	m.ended = true
	m.end = time.Now()
	m.cpu1, m.sys1, m.disk1 = processCPU(), systemCPU(), diskWritten()
	runtime.ReadMemStats(&m.mem1)
	m.hist1, m.ctr1 = gatherMetrics(m.reg)
	if m.traceFile != nil {
		trace.Stop()
		if err := m.traceFile.Close(); err != nil {
			m.err = fmt.Errorf("execution trace: %w", err)
		}
		m.traceFile = nil
	}
	if m.profFile != nil {
		pprof.StopCPUProfile()
		if err := m.profFile.Close(); err != nil {
			m.err = fmt.Errorf("cpu profile: %w", err)
		}
		m.profFile = nil
		// The allocations since the process started (all phases so far):
		// run one phase to see its own.
		if err := writeAllocsProfile(fmt.Sprintf("%s-%s.allocs.pprof", m.profile, m.phase)); err != nil {
			m.err = fmt.Errorf("allocation profile: %w", err)
		}
	}
}

func writeAllocsProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// schedule calls Begin at from and End at to, in another goroutine. The
// returned stop ends the window early if it is still open, and waits.
func (m *meter) schedule(from, to time.Time) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, step := range []struct {
			at time.Time
			f  func()
		}{{from, m.Begin}, {to, m.End}} {
			t := time.NewTimer(time.Until(step.at))
			select {
			case <-t.C:
				step.f()
			case <-quit:
				t.Stop()
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		m.End()
	}
}

// spend is what the process spent in the measured window.
type spend struct {
	Wall       time.Duration
	CPU        time.Duration
	Mallocs    uint64
	AllocBytes uint64
	GCs        uint32
	// Others is the CPU time other processes used meanwhile (-1 if unknown):
	// a busy machine makes every figure of the phase low.
	Others time.Duration
	// DiskBytes is what the process wrote to storage (-1 if unknown).
	DiskBytes int64
}

func (m *meter) usage() spend {
	if m == nil || !m.ended {
		return spend{}
	}
	s := spend{
		Wall:       m.end.Sub(m.start),
		CPU:        m.cpu1 - m.cpu0,
		Mallocs:    m.mem1.Mallocs - m.mem0.Mallocs,
		AllocBytes: m.mem1.TotalAlloc - m.mem0.TotalAlloc,
		GCs:        m.mem1.NumGC - m.mem0.NumGC,
		Others:     -1,
		DiskBytes:  -1,
	}
	if m.disk0 >= 0 && m.disk1 >= 0 {
		s.DiskBytes = m.disk1 - m.disk0
	}
	if m.sys0 >= 0 && m.sys1 >= 0 {
		// /proc/stat ticks at 10 ms: clamp the rounding noise.
		s.Others = max(0, (m.sys1-m.sys0)-(m.cpu1-m.cpu0))
	}
	return s
}

// Err returns what went wrong with the profile, if anything.
func (m *meter) Err() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// hist returns the change of the named histogram over the window.
func (m *meter) hist(name string) histSnap {
	if m == nil || !m.ended {
		return histSnap{}
	}
	return m.hist1[name].sub(m.hist0[name])
}

// counter returns the change of a counter over the window: name sums
// every label set, name{label=value} those with that label value.
func (m *meter) counter(name string) float64 {
	if m == nil || !m.ended {
		return 0
	}
	return m.ctr1[name] - m.ctr0[name]
}

// histSnap is a histogram's state (cumulative bucket counts).
type histSnap struct {
	Count  uint64
	Sum    float64
	Bounds []float64
	Cum    []uint64
}

func (h histSnap) sub(o histSnap) histSnap {
	d := histSnap{Count: h.Count - o.Count, Sum: h.Sum - o.Sum, Bounds: h.Bounds, Cum: make([]uint64, len(h.Cum))}
	for i := range h.Cum {
		d.Cum[i] = h.Cum[i]
		if i < len(o.Cum) {
			d.Cum[i] -= o.Cum[i]
		}
	}
	return d
}

func (h histSnap) Mean() float64 {
	if h.Count == 0 {
		return 0
	}
	return h.Sum / float64(h.Count)
}

// Quantile returns the upper bound of the bucket holding the q-quantile
// (+Inf if it is above the last bucket, 0 for an empty histogram).
func (h histSnap) Quantile(q float64) float64 {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.Count)))
	for i, c := range h.Cum {
		if c >= rank {
			return h.Bounds[i]
		}
	}
	return math.Inf(1)
}

// gatherMetrics reads every unlabelled histogram of reg, and every
// counter summed per name and per name{label=value}.
func gatherMetrics(reg *prometheus.Registry) (map[string]histSnap, map[string]float64) {
	out, ctr := map[string]histSnap{}, map[string]float64{}
	if reg == nil {
		return out, ctr
	}
	mfs, err := reg.Gather()
	if err != nil {
		return out, ctr
	}
	for _, mf := range mfs {
		ms := mf.GetMetric()
		for _, m := range ms {
			if c := m.GetCounter(); c != nil {
				ctr[mf.GetName()] += c.GetValue()
				for _, l := range m.GetLabel() {
					ctr[mf.GetName()+"{"+l.GetName()+"="+l.GetValue()+"}"] += c.GetValue()
				}
			}
		}
		if len(ms) != 1 || ms[0].GetHistogram() == nil || len(ms[0].GetLabel()) != 0 {
			continue
		}
		h := ms[0].GetHistogram()
		s := histSnap{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
		for _, b := range h.GetBucket() {
			s.Bounds = append(s.Bounds, b.GetUpperBound())
			s.Cum = append(s.Cum, b.GetCumulativeCount())
		}
		out[mf.GetName()] = s
	}
	return out, ctr
}
