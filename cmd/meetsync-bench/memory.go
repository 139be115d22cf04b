package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// memoryOptions are the flags of "meetsync-bench memory".
type memoryOptions struct {
	commonOptions
	Steps         int
	EventsPerUser int
	Batch         int
	Settle        time.Duration
}

func parseMemoryFlags(args []string, stderr io.Writer) (*memoryOptions, error) {
	o := &memoryOptions{}
	o.Duration = time.Second // unused: the steps are sized in users, not time
	fs := flag.NewFlagSet("meetsync-bench memory", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.Users, "users", 200_000, "users tracked at the end of the run")
	fs.IntVar(&o.Steps, "steps", 4, "measurements after the one of the empty server, at equal steps of users")
	fs.IntVar(&o.EventsPerUser, "events-per-user", 2, "meeting.status_changed events posted for each user (in_meeting, idle, …)")
	fs.IntVar(&o.Batch, "batch", 100, "events per request")
	fs.IntVar(&o.Clients, "clients", 16, "concurrent clients posting the events")
	fs.DurationVar(&o.Settle, "settle", 6*time.Second, "wait after each step's load before measuring (the SQLite store writes users' states behind their events within 5 s)")
	fs.BoolVar(&o.JSON, "json", false, "print machine-readable JSON instead of the table")
	fs.StringVar(&o.DataDir, "data-dir", "", "directory for the store (default: a temporary directory, removed at the end)")
	o.bindStore(fs)
	fs.BoolVar(&o.NoDispatcher, "no-dispatcher", false, "leave out the delivery dispatcher (meetsync serve runs it)")
	o.bindGC(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meetsync-bench memory [flags]\n\n"+
			"Posts events for --users users in --steps steps to a fresh meetsync and, after each\n"+
			"step, measures the process's memory (live Go heap after a collection, resident set)\n"+
			"and the store's size on disk, per tracked user.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, "memory", args, &o.commonOptions); err != nil {
		return nil, err
	}
	switch {
	case o.Steps < 1 || o.Steps > 100:
		return nil, errors.New("--steps must be from 1 to 100")
	case o.Steps > o.Users:
		return nil, errors.New("--steps must not exceed --users")
	case o.EventsPerUser < 1 || o.EventsPerUser > 1000:
		return nil, errors.New("--events-per-user must be from 1 to 1000")
	case o.Batch < 1 || o.Batch > 1000:
		return nil, errors.New("--batch must be from 1 to 1000 (the API's batch limit)")
	case o.Settle < 0:
		return nil, errors.New("--settle must not be negative")
	}
	return o, nil
}

// memorySample is the process's memory and the store's size after a step.
type memorySample struct {
	Users  int   `json:"users"`
	Events int64 `json:"events"`
	// HeapLiveBytes is the live Go heap after a forced collection.
	HeapLiveBytes uint64 `json:"heap_live_bytes"`
	// GoBytes is the memory the Go runtime holds from the OS (heap, stacks,
	// metadata), less what it has returned.
	GoBytes uint64 `json:"go_bytes"`
	// RSSBytes is the resident set of the whole process: Go's memory and
	// SQLite's (its page caches live outside the Go heap), -1 if unknown.
	RSSBytes int64 `json:"rss_bytes"`
	// DiskBytes is the size of the store on disk: SQLite's files, or
	// PostgreSQL's pg_database_size; -1 if it could not be read.
	DiskBytes int64 `json:"disk_bytes"`
	// LoadSeconds is how long the step's events took to post (all acked).
	LoadSeconds float64 `json:"load_seconds"`
}

// memoryReport is the output of "meetsync-bench memory".
type memoryReport struct {
	Machine          machineInfo    `json:"machine"`
	Store            string         `json:"store"`
	StoreDescription string         `json:"store_description"`
	Users            int            `json:"users"`
	EventsPerUser    int            `json:"events_per_user"`
	BatchSize        int            `json:"batch_size"`
	Clients          int            `json:"clients"`
	Dispatcher       bool           `json:"dispatcher"`
	SettleSeconds    float64        `json:"settle_seconds"`
	Samples          []memorySample `json:"samples"`
	// Checked is how many users' states were read back through the API
	// after the last step and found with all their events.
	Checked int `json:"checked"`
}

// runMemory posts the events of o.Users users to a fresh meetsync in
// o.Steps steps and measures memory and disk after each.
func runMemory(ctx context.Context, o *memoryOptions, stdout, stderr io.Writer) error {
	env, kind, err := newRun(ctx, &o.commonOptions, stderr)
	if err != nil {
		return err
	}
	defer env.cleanup()
	rep := &memoryReport{
		Machine: env.machine(), Store: o.Store, StoreDescription: kind.Describe,
		Users: o.Users, EventsPerUser: o.EventsPerUser, BatchSize: o.Batch, Clients: o.Clients,
		Dispatcher: !o.NoDispatcher, SettleSeconds: o.Settle.Seconds(),
	}
	if !o.JSON {
		fmt.Fprintf(stderr, "meetsync-bench memory: %d users × %d events in %d steps; data in %s\n", o.Users, o.EventsPerUser, o.Steps, env.dataDir)
	}
	dir, err := env.phaseDir("memory")
	if err != nil {
		return err
	}
	store, err := kind.Open(dir)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	srv, err := startServer(ctx, store, serverConfig{Logger: env.logger, NoDispatcher: o.NoDispatcher})
	if err != nil {
		store.Close()
		return err
	}
	runErr := memorySteps(ctx, o, env, srv, diskSize(store, dir), rep)
	err = srv.Close()
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if runErr != nil {
		return runErr
	}
	if err != nil {
		return fmt.Errorf("stop server: %w", err)
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.write(stdout)
	return nil
}

// diskSize returns how to measure the store's size on disk: its
// database's on PostgreSQL, the files in dir (SQLite's) otherwise.
func diskSize(store any, dir string) func() int64 {
	if s, ok := store.(interface{ diskBytes() int64 }); ok {
		return s.diskBytes
	}
	return func() int64 { return dirBytes(dir) }
}

func memorySteps(ctx context.Context, o *memoryOptions, env *benchEnv, srv *benchServer, disk func() int64, rep *memoryReport) error {
	settle := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.Settle):
			return nil
		}
	}
	if err := settle(); err != nil {
		return err
	}
	rep.Samples = append(rep.Samples, measureMemory(0, 0, 0, disk))
	client := newHTTPClient(o.Clients)
	header := requestHeader(srv.Key)
	var events int64
	for step := 1; step <= o.Steps; step++ {
		lo, hi := (step-1)*o.Users/o.Steps, step*o.Users/o.Steps
		env.progress("step %d/%d: events for users %d to %d", step, o.Steps, lo, hi-1)
		start := time.Now()
		n, err := postUsers(ctx, client, srv.URL+"/v1/events", header, lo, hi, o)
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		elapsed := time.Since(start)
		events += n
		// The client's idle connections and their buffers are not the
		// server's memory: the empty server's sample had none.
		client.CloseIdleConnections()
		if err := settle(); err != nil {
			return err
		}
		rep.Samples = append(rep.Samples, measureMemory(hi, events, elapsed, disk))
	}
	// Every user is tracked: read back the first and last user of each
	// step, and one in the middle, through the API.
	for step := 1; step <= o.Steps; step++ {
		lo, hi := (step-1)*o.Users/o.Steps, step*o.Users/o.Steps
		for _, u := range []int{lo, (lo + hi) / 2, hi - 1} {
			if err := checkUser(ctx, client, srv, u, int64(o.EventsPerUser)); err != nil {
				return err
			}
			rep.Checked++
		}
	}
	client.CloseIdleConnections()
	return nil
}

// postUsers posts o.EventsPerUser events for each of the users [lo, hi),
// in batches of o.Batch from o.Clients clients, and returns how many
// events were acknowledged. Client c posts for the users lo+c,
// lo+c+clients, …, all their first events before their second ones, so
// each user's events arrive in client_seq order.
func postUsers(ctx context.Context, client *http.Client, url string, header http.Header, lo, hi int, o *memoryOptions) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		acked atomic.Int64
	)
	for c := range min(o.Clients, hi-lo) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &poster{client: client, url: url, header: header}
			body := make([]byte, 0, 64<<10)
			inBatch := 0
			var sent int64
			flush := func() error {
				if inBatch == 0 {
					return nil
				}
				body = append(body, "]}"...)
				a, err := p.post(ctx, body)
				if err == nil && a.duplicates > 0 {
					err = fmt.Errorf("%d events of a batch answered as duplicates", a.duplicates)
				}
				if err != nil {
					return err
				}
				sent += int64(inBatch)
				inBatch = 0
				return nil
			}
			for seq := int64(1); seq <= int64(o.EventsPerUser); seq++ {
				for u := lo + c; u < hi; u += o.Clients {
					if inBatch == 0 {
						body = append(body[:0], `{"events":[`...)
					} else {
						body = append(body, ',')
					}
					body = appendStatusEvent(body, u, "phone", seq)
					if inBatch++; inBatch == o.Batch {
						if err := flush(); err != nil {
							cancel(err)
							return
						}
					}
				}
			}
			if err := flush(); err != nil {
				cancel(err)
				return
			}
			acked.Add(sent)
		}()
	}
	wg.Wait()
	return acked.Load(), context.Cause(ctx)
}

// checkUser reads user u's state through the API and checks that it holds
// all of the user's events.
func checkUser(ctx context.Context, client *http.Client, srv *benchServer, u int, events int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/users/user-"+strconv.Itoa(u), nil)
	if err != nil {
		return err
	}
	req.Header = requestHeader(srv.Key)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("read back user-%d: %w", u, err)
	}
	defer resp.Body.Close()
	var st struct {
		LastSeq int64 `json:"last_seq"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("read back user-%d: HTTP %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return fmt.Errorf("read back user-%d: %w", u, err)
	}
	if st.LastSeq != events {
		return fmt.Errorf("user-%d: last_seq %d, want %d (one per event posted)", u, st.LastSeq, events)
	}
	return nil
}

// measureMemory collects garbage, returns freed memory to the OS and
// takes a sample.
func measureMemory(users int, events int64, load time.Duration, disk func() int64) memorySample {
	runtime.GC()
	debug.FreeOSMemory() // a second collection, and the freed pages handed back, so the resident set shows what is held
	ms := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(ms)
	s := memorySample{Users: users, Events: events, LoadSeconds: load.Seconds(), RSSBytes: residentBytes(), DiskBytes: disk()}
	if ms[0].Value.Kind() == metrics.KindUint64 {
		s.HeapLiveBytes = ms[0].Value.Uint64()
	}
	if ms[1].Value.Kind() == metrics.KindUint64 && ms[2].Value.Kind() == metrics.KindUint64 {
		s.GoBytes = ms[1].Value.Uint64() - ms[2].Value.Uint64()
	}
	return s
}

// dirBytes is the total size of the regular files under dir, -1 if it
// cannot be read.
func dirBytes(dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				if errors.Is(err, os.ErrNotExist) { // a file removed meanwhile (the WAL's shm)
					return nil
				}
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		return -1
	}
	return n
}

func (r *memoryReport) write(out io.Writer) {
	fmt.Fprintln(out)
	fmt.Fprintln(out, "meetsync-bench memory")
	fmt.Fprintf(out, "machine: %s/%s, %d CPUs (%s), GOMAXPROCS=%d, %s, %s\n", r.Machine.GOOS, r.Machine.GOARCH, r.Machine.NumCPU,
		orDash(r.Machine.CPUModel), r.Machine.GOMAXPROCS, r.Machine.GoVersion, r.Machine.gcNote())
	fmt.Fprintf(out, "store:   %s\n", r.StoreDescription)
	server := "ingest + HTTP API + delivery dispatcher (no endpoints), as meetsync serve runs"
	if !r.Dispatcher {
		server = "ingest + HTTP API, no delivery dispatcher (--no-dispatcher)"
	}
	fmt.Fprintf(out, "server:  %s; load generator in the same process, its connections closed before each sample\n", server)
	fmt.Fprintf(out, "load:    %s users, %d meeting.status_changed events each, batches of %d from %d clients; each sample %s after its step, after a full garbage collection\n\n",
		groupDigits(float64(r.Users)), r.EventsPerUser, r.BatchSize, r.Clients, secs(r.SettleSeconds))

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "users\tevents\tload ev/s\tGo heap live MB\tGo runtime MB\tRSS MB\tdisk MB\t|\theap B/user\tRSS B/user\tdisk B/user\t")
	base := r.Samples[0]
	for i, s := range r.Samples {
		loadRate := "-"
		if i > 0 && s.LoadSeconds > 0 {
			loadRate = groupDigits(float64(s.Events-r.Samples[i-1].Events) / s.LoadSeconds)
		}
		perUser := func(v, v0 float64, known bool) string {
			if s.Users == 0 || !known {
				return "-"
			}
			return groupDigits((v - v0) / float64(s.Users))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t|\t%s\t%s\t%s\t\n",
			groupDigits(float64(s.Users)), groupDigits(float64(s.Events)), loadRate,
			megabytes(int64(s.HeapLiveBytes)), megabytes(int64(s.GoBytes)), megabytes(s.RSSBytes), megabytes(s.DiskBytes),
			perUser(float64(s.HeapLiveBytes), float64(base.HeapLiveBytes), true),
			perUser(float64(s.RSSBytes), float64(base.RSSBytes), s.RSSBytes >= 0 && base.RSSBytes >= 0),
			perUser(float64(s.DiskBytes), float64(base.DiskBytes), s.DiskBytes >= 0 && base.DiskBytes >= 0))
	}
	tw.Flush()
	fmt.Fprintf(out, "\nper user: the growth since the empty server (the first row) divided by the users tracked; %d users read back through the API after the last step, each with all its events\n", r.Checked)
	if r.Store == "sqlite" {
		fmt.Fprintln(out, "SQLite: the store keeps up to 100,000 users' states in memory for the write path, and each of its connections a page cache of up to 64 MB outside the Go heap (in the RSS): both are bounded, so memory per user falls past them while disk grows with the events")
	} else {
		fmt.Fprintln(out, "PostgreSQL: the users' states and events are in the database server, whose memory is not this process's; disk is pg_database_size of the store's database")
	}
	fmt.Fprintln(out)
}

func megabytes(v int64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(v)/(1<<20))
}
