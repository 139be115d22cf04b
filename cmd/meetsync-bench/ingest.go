package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Targets of issue 2 (on a 2-core machine).
const (
	targetSingleVsHTTP  = 0.5     // single-event ingest ≥ 50% of loopback HTTP req/s
	targetBatchEvents   = 100_000 // batched ingest ≥ 100,000 events/s
	targetP99AckLatency = 20 * time.Millisecond
	// Issue 5: on PostgreSQL, single-event ingest (durable acks) at least
	// 3× the server's raw single-row commit rate at the same client count.
	targetVsRawCommit = 3.0
)

// openLoopWorkers is the pool that sends the open-loop phase's requests.
// It is large so that a slow response does not hold back the schedule
// (and the latency counts from the scheduled time anyway).
func openLoopWorkers(clients int) int { return max(4*clients, 256) }

func runIngest(ctx context.Context, o *ingestOptions, stdout, stderr io.Writer) error {
	env, kind, err := newRun(ctx, &o.commonOptions, stderr)
	if err != nil {
		return err
	}
	defer env.cleanup()
	w := window{o.Warmup, o.Duration}
	rep := &ingestReport{
		Machine: env.machine(),
		Store:   o.Store, StoreDescription: kind.Describe,
		Clients: o.Clients, Users: o.Users, BatchSize: o.Batch, Rate: o.Rate, Dispatcher: !o.NoDispatcher,
		WarmupSeconds: o.Warmup.Seconds(), DurationSeconds: o.Duration.Seconds(),
	}
	if !o.JSON {
		fmt.Fprintf(stderr, "meetsync-bench ingest: each phase %s warm-up + %s measured; data in %s\n", o.Warmup, o.Duration, env.dataDir)
	}

	runHTTP := func() error {
		env.progress("(a) loopback HTTP, trivial handler, %d clients", o.Clients)
		url, stop, err := startTrivial()
		if err != nil {
			return err
		}
		client := newHTTPClient(o.Clients)
		key := "msk_" + strings.Repeat("x", 43) // the size of a real key: the same request as (c) single
		m := newMeter("http", o.CPUProfile, nil)
		lr := closedLoop(ctx, o.Clients, w, m, singleWorker(client, url, key, o.Clients, o.Users))
		client.CloseIdleConnections()
		stop()
		rep.HTTP = newPhaseResult("http", "loopback HTTP, trivial handler", o.Clients, lr, m)
		return ctx.Err()
	}
	runSerial := func(dir string) error {
		env.progress("(b) store raw commits, 1 row per transaction, 1 writer")
		m := newMeter("commit1serial", o.CPUProfile, nil)
		r, err := kind.RawCommitSerial(ctx, dir, w, m)
		if err != nil {
			return fmt.Errorf("raw commit phase: %w", err)
		}
		rep.CommitSerial = newCommitResult(r, m)
		return ctx.Err()
	}
	if o.Phases["http"] {
		if err := runHTTP(); err != nil {
			return err
		}
	}

	if o.Phases["commit"] {
		dir, err := env.phaseDir("commit")
		if err != nil {
			return err
		}
		for _, rows := range []int{1, o.Batch} {
			env.progress("(b) store raw commits, %d row(s) per transaction, %s", rows, writers(kind.RawCommitClients))
			m := newMeter(fmt.Sprintf("commit%d", rows), o.CPUProfile, nil)
			r, err := kind.RawCommit(ctx, dir, rows, w, m)
			if err != nil {
				return fmt.Errorf("raw commit phase: %w", err)
			}
			res := newCommitResult(r, m)
			if rows == 1 {
				rep.Commit = res
			} else {
				rep.CommitBatch = res
			}
			if rows == o.Batch {
				break
			}
		}
		if kind.RawCommitSerial != nil {
			if err := runSerial(dir); err != nil {
				return err
			}
		}
	}

	if o.Phases["append"] {
		// The group sizes the server forms under the (c) loads: ~32
		// single-event requests per commit, ~32 batches per commit.
		for _, shape := range [][2]int{{32, 1}, {32, o.Batch}} {
			env.progress("(context) store EventsAppend alone, %d requests × %d events per transaction", shape[0], shape[1])
			dir, err := env.phaseDir(fmt.Sprintf("append%dx%d", shape[0], shape[1]))
			if err != nil {
				return err
			}
			m := newMeter(fmt.Sprintf("append%dx%d", shape[0], shape[1]), o.CPUProfile, nil)
			r, err := storeAppend(ctx, kind, dir, shape[0], shape[1], o.Clients, o.Users, w, m)
			if err != nil {
				return fmt.Errorf("store append phase: %w", err)
			}
			rep.StoreAppend = append(rep.StoreAppend, newStoreAppendReport(r, m))
			if shape[1] == 1 && o.Batch == 1 {
				break
			}
		}
	}

	type meetsyncPhase struct {
		name, label string
		dst         **phaseResult
		run         func(ctx context.Context, srv *benchServer, m *meter) loadResult
		clients     int
	}
	phases := []meetsyncPhase{
		{"single", "meetsync ingest, single events", &rep.Single, func(ctx context.Context, srv *benchServer, m *meter) loadResult {
			client := newHTTPClient(o.Clients)
			defer client.CloseIdleConnections()
			return closedLoop(ctx, o.Clients, w, m, singleWorker(client, srv.URL, srv.Key, o.Clients, o.Users))
		}, o.Clients},
		{"batch", fmt.Sprintf("meetsync ingest, batches of %d", o.Batch), &rep.Batch, func(ctx context.Context, srv *benchServer, m *meter) loadResult {
			client := newHTTPClient(o.Clients)
			defer client.CloseIdleConnections()
			header := requestHeader(srv.Key)
			return closedLoop(ctx, o.Clients, w, m, func(i int) requestFunc {
				g := newEventGen(i, o.Clients, o.Users)
				p := &poster{client: client, url: srv.URL + "/v1/events", header: header}
				return func(ctx context.Context) (int, ack, error) {
					a, err := p.post(ctx, g.batch(o.Batch))
					return o.Batch, a, err
				}
			})
		}, o.Clients},
		{"latency", fmt.Sprintf("meetsync ack latency, %d events/s open loop", o.Rate), &rep.Latency, func(ctx context.Context, srv *benchServer, m *meter) loadResult {
			n := openLoopWorkers(o.Clients)
			client := newHTTPClient(n)
			defer client.CloseIdleConnections()
			return openLoop(ctx, o.Rate, n, w, m, singleWorker(client, srv.URL, srv.Key, n, o.Users))
		}, openLoopWorkers(o.Clients)},
	}
	runPhase := func(ph meetsyncPhase, dirName string) error {
		env.progress("(%s) %s", map[string]string{"single": "c", "batch": "c", "latency": "d"}[ph.name], ph.label)
		res, err := env.runMeetsync(ctx, kind, dirName, func(ctx context.Context, srv *benchServer, m *meter) loadResult {
			return ph.run(ctx, srv, m)
		})
		if err != nil {
			return fmt.Errorf("%s phase: %w", ph.name, err)
		}
		res.Name, res.Label, res.Clients = ph.name, ph.label, ph.clients
		if ph.name == "latency" {
			res.OfferedRate = float64(o.Rate)
		}
		*ph.dst = res
		return ctx.Err()
	}
	for _, ph := range phases {
		if !o.Phases[ph.name] {
			continue
		}
		if err := runPhase(ph, ph.name); err != nil {
			return err
		}
		if ph.name != "single" || o.Rounds < 2 {
			continue
		}
		// More rounds of the phases the single-event target compares:
		// each round measures its baseline and the ingest back to back,
		// so a drift of the machine's speed moves both.
		rep.Rounds = append(rep.Rounds, rep.round(1))
		for i := 2; i <= o.Rounds; i++ {
			if o.Phases["http"] {
				if err := runHTTP(); err != nil {
					return err
				}
			}
			if o.Phases["commit"] && kind.RawCommitSerial != nil {
				dir, err := env.phaseDir(fmt.Sprintf("commit-r%d", i))
				if err != nil {
					return err
				}
				if err := runSerial(dir); err != nil {
					return err
				}
			}
			if err := runPhase(ph, fmt.Sprintf("single-r%d", i)); err != nil {
				return err
			}
			rep.Rounds = append(rep.Rounds, rep.round(i))
		}
		rep.keepMedianRound()
	}

	rep.evaluate()
	if o.JSON {
		return rep.writeJSON(stdout)
	}
	rep.writeTable(stdout)
	return nil
}

func requestHeader(key string) http.Header {
	return http.Header{
		"Authorization": {"Bearer " + key},
		"Content-Type":  {"application/json"},
	}
}

// singleWorker returns clients that post one event per request to
// baseURL/v1/events.
func singleWorker(client *http.Client, baseURL, key string, clients, users int) func(int) requestFunc {
	header := requestHeader(key)
	return func(i int) requestFunc {
		g := newEventGen(i, clients, users)
		p := &poster{client: client, url: baseURL + "/v1/events", header: header}
		return func(ctx context.Context) (int, ack, error) {
			a, err := p.post(ctx, g.single())
			return 1, a, err
		}
	}
}

// benchEnv is a run's data directory, logger and progress output.
type benchEnv struct {
	opts    *commonOptions
	dataDir string
	remove  bool
	stderr  io.Writer
	logger  *slog.Logger
}

func newBenchEnv(o *commonOptions, stderr io.Writer) (*benchEnv, error) {
	e := &benchEnv{opts: o, stderr: stderr,
		logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	var err error
	if o.DataDir == "" {
		e.dataDir, err = os.MkdirTemp("", "meetsync-bench-*")
		e.remove = true
	} else {
		if err = os.MkdirAll(o.DataDir, 0o700); err == nil {
			e.dataDir, err = os.MkdirTemp(o.DataDir, "run-*")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	return e, nil
}

// newRun prepares a run: its data directory and the store it measures.
func newRun(ctx context.Context, o *commonOptions, stderr io.Writer) (*benchEnv, storeKind, error) {
	env, err := newBenchEnv(o, stderr)
	if err != nil {
		return nil, storeKind{}, err
	}
	kind, err := storeKindFor(ctx, o)
	if err != nil {
		env.cleanup()
		return nil, storeKind{}, err
	}
	return env, kind, nil
}

func (e *benchEnv) cleanup() {
	if e.remove {
		os.RemoveAll(e.dataDir)
	}
}

func (e *benchEnv) progress(format string, args ...any) {
	if e.opts.JSON {
		return
	}
	fmt.Fprintf(e.stderr, "  %s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// phaseDir returns a fresh directory for one phase.
func (e *benchEnv) phaseDir(phase string) (string, error) {
	dir := filepath.Join(e.dataDir, phase)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// runMeetsync runs one load phase against a fresh meetsync on a fresh store.
func (e *benchEnv) runMeetsync(ctx context.Context, kind storeKind, phase string, load func(context.Context, *benchServer, *meter) loadResult) (*phaseResult, error) {
	dir, err := e.phaseDir(phase)
	if err != nil {
		return nil, err
	}
	store, err := kind.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	srv, err := startServer(ctx, store, serverConfig{Logger: e.logger, NoDispatcher: e.opts.NoDispatcher})
	if err != nil {
		store.Close()
		return nil, err
	}
	m := newMeter(phase, e.opts.CPUProfile, srv.Registry)
	lr := load(ctx, srv, m)
	err = srv.Close()
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("stop server: %w", err)
	}
	res := newPhaseResult(phase, "", 0, lr, m)
	res.Commit = newServerCommitStats(m)
	return res, nil
}

func (e *benchEnv) machine() machineInfo {
	return newMachineInfo(e.dataDir)
}
