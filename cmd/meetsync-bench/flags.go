package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/meetsync/meetsync/internal/gctune"
)

// commonOptions are the flags every subcommand shares.
type commonOptions struct {
	Clients      int
	Duration     time.Duration
	Warmup       time.Duration
	Users        int
	JSON         bool
	DataDir      string
	Store        string
	DatabaseURL  string
	CPUProfile   string
	NoDispatcher bool
	GCPercent    int
}

func (o *commonOptions) bind(fs *flag.FlagSet) {
	fs.IntVar(&o.Clients, "clients", 64, "concurrent clients (keep-alive connections) of the closed-loop phases")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured duration of each phase")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "warm-up before each phase's measurement (not counted)")
	fs.IntVar(&o.Users, "users", 1000, "distinct user ids the events are spread over")
	fs.BoolVar(&o.JSON, "json", false, "print machine-readable JSON instead of the table")
	fs.StringVar(&o.DataDir, "data-dir", "", "directory for the stores (default: a temporary directory, removed at the end)")
	o.bindStore(fs)
	fs.BoolVar(&o.NoDispatcher, "no-dispatcher", false, "leave out the delivery dispatcher (meetsync serve runs it) to measure its cost")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of each phase's measured window to `PREFIX`-<phase>.pprof, and the allocations since start to `PREFIX`-<phase>.allocs.pprof")
	fs.StringVar(&tracePrefix, "trace", "", "write an execution trace of each phase's measured window to `PREFIX`-<phase>.trace (go tool trace)")
	o.bindGC(fs)
}

// bindGC binds --gc-percent: the process runs with meetsync serve's
// garbage collector setting, for every phase, the baselines included.
func (o *commonOptions) bindGC(fs *flag.FlagSet) {
	fs.IntVar(&o.GCPercent, "gc-percent", gctune.DefaultPercent,
		"Go garbage collector target of the whole process (every phase, baselines included), as meetsync serve's --gc-percent; GOGC in the environment wins")
}

func (o *commonOptions) bindStore(fs *flag.FlagSet) {
	fs.StringVar(&o.Store, "store", "", "store under test: sqlite (default), or postgres (with --database-url)")
	fs.StringVar(&o.DatabaseURL, "database-url", "", "PostgreSQL server to run on (postgres://…; the role must be allowed to create databases: each phase gets a fresh one)")
}

func (o *commonOptions) validate() error {
	switch {
	case o.Clients < 1:
		return errors.New("--clients must be at least 1")
	case o.Duration <= 0:
		return errors.New("--duration must be positive")
	case o.Warmup < 0:
		return errors.New("--warmup must not be negative")
	case o.Users < 1:
		return errors.New("--users must be at least 1")
	}
	switch {
	case o.Store == "" && o.DatabaseURL != "":
		o.Store = "postgres"
	case o.Store == "":
		o.Store = "sqlite"
	}
	if !slices.Contains(storeKindNames, o.Store) {
		return fmt.Errorf("--store %q: supported stores are %s", o.Store, strings.Join(storeKindNames, ", "))
	}
	if (o.Store == "postgres") != (o.DatabaseURL != "") {
		return errors.New("--database-url goes with --store postgres (and only with it)")
	}
	return gctune.Check(o.GCPercent)
}

// ingestOptions are the flags of "meetsync-bench ingest".
type ingestOptions struct {
	commonOptions
	Rate   int
	Batch  int
	Rounds int
	Phases map[string]bool
}

// ingestPhases are the phases of the ingest benchmark, in run order.
var ingestPhases = []string{"http", "commit", "append", "single", "batch", "latency"}

func parseIngestFlags(args []string, stderr io.Writer) (*ingestOptions, error) {
	o := &ingestOptions{}
	fs := flag.NewFlagSet("meetsync-bench ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.bind(fs)
	fs.IntVar(&o.Rate, "rate", 5000, "offered load of the latency phase, events/s (open loop)")
	fs.IntVar(&o.Batch, "batch", 100, "events per request in the batched phase")
	fs.IntVar(&o.Rounds, "rounds", 1, "rounds of the single-event phase, each just after its baselines (http; on PostgreSQL also the 1-writer raw commit); the report keeps the round with the median ratio and lists them all")
	phases := fs.String("phases", strings.Join(ingestPhases, ","), "phases to run: "+strings.Join(ingestPhases, ","))
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meetsync-bench ingest [flags]\n\nPhases: http = (a) loopback HTTP, trivial handler; commit = (b) raw store commits;\n"+
			"append = the store's EventsAppend alone, no HTTP (context); single, batch = (c) meetsync ingest;\n"+
			"latency = (d) ack latency at --rate.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, "ingest", args, &o.commonOptions); err != nil {
		return nil, err
	}
	if o.Rate < 1 {
		return nil, errors.New("--rate must be at least 1")
	}
	if o.Rounds < 1 || o.Rounds > 50 {
		return nil, errors.New("--rounds must be from 1 to 50")
	}
	if o.Batch < 1 || o.Batch > 1000 {
		return nil, errors.New("--batch must be from 1 to 1000 (the API's batch limit)")
	}
	var err error
	if o.Phases, err = parsePhases(*phases, ingestPhases); err != nil {
		return nil, err
	}
	return o, nil
}

// deliveryOptions are the flags of "meetsync-bench delivery".
type deliveryOptions struct {
	commonOptions
	Events    int
	Backlog   int
	Rate      int
	Endpoints int
	Workers   int
	Timeout   time.Duration
	Phases    map[string]bool
}

// deliveryPhases are the phases of the delivery benchmark, in run order.
var deliveryPhases = []string{"http", "throughput", "fanout", "latency", "drain"}

func parseDeliveryFlags(args []string, stderr io.Writer) (*deliveryOptions, error) {
	o := &deliveryOptions{}
	o.Clients = 64 // unused: the phases size their own client pools
	fs := flag.NewFlagSet("meetsync-bench delivery", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.Users, "users", 1000, "distinct user ids the events are spread over")
	fs.IntVar(&o.Events, "events", 50_000, "events pre-loaded for the throughput and fan-out phases")
	fs.IntVar(&o.Backlog, "backlog", 100_000, "deliveries piled up during the receiver outage of the drain phase")
	fs.IntVar(&o.Rate, "rate", 2000, "offered load of the latency phase, events/s (open loop, single events)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured duration of the latency phase")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "warm-up of the latency phase (not counted)")
	fs.IntVar(&o.Endpoints, "endpoints", 10, "endpoints of the fan-out phase, all subscribed to the same events")
	fs.IntVar(&o.Workers, "workers", 0, "dispatcher workers (deliveries in flight); 0 = the dispatcher's default")
	fs.DurationVar(&o.Timeout, "timeout", 120*time.Second, "longest a phase may take to deliver everything (then the rate so far is reported, MISS)")
	fs.BoolVar(&o.JSON, "json", false, "print machine-readable JSON instead of the table")
	fs.StringVar(&o.DataDir, "data-dir", "", "directory for the stores (default: a temporary directory, removed at the end)")
	o.bindStore(fs)
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of each phase's measured window to `PREFIX`-<phase>.pprof, and the allocations since start to `PREFIX`-<phase>.allocs.pprof")
	fs.StringVar(&tracePrefix, "trace", "", "write an execution trace of each phase's measured window to `PREFIX`-<phase>.trace (go tool trace)")
	o.bindGC(fs)
	phases := fs.String("phases", strings.Join(deliveryPhases, ","), "phases to run: "+strings.Join(deliveryPhases, ","))
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meetsync-bench delivery [flags]\n\nPhases: http = loopback HTTP POSTs to the receiver alone (context);\n"+
			"throughput = (1) deliveries/s to one endpoint, --events pre-loaded, dispatcher started after;\n"+
			"fanout = (2) the same with --endpoints endpoints; latency = (3) ingest→received at --rate;\n"+
			"drain = (4) drain of --backlog deliveries after a receiver outage, per-user order checked.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, "delivery", args, &o.commonOptions); err != nil {
		return nil, err
	}
	switch {
	case o.Events < 1:
		return nil, errors.New("--events must be at least 1")
	case o.Backlog < 1:
		return nil, errors.New("--backlog must be at least 1")
	case o.Rate < 1:
		return nil, errors.New("--rate must be at least 1")
	case o.Endpoints < 1 || o.Endpoints > 100:
		return nil, errors.New("--endpoints must be from 1 to 100")
	case o.Workers < 0:
		return nil, errors.New("--workers must not be negative")
	case o.Timeout <= 0:
		return nil, errors.New("--timeout must be positive")
	}
	var err error
	if o.Phases, err = parsePhases(*phases, deliveryPhases); err != nil {
		return nil, err
	}
	return o, nil
}

// parseArgs parses args into fs for the subcommand name, which takes no
// positional arguments, and validates the options every subcommand shares.
func parseArgs(fs *flag.FlagSet, name string, args []string, o *commonOptions) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", name, fs.Args())
	}
	return o.validate()
}

// parsePhases reads a comma-separated --phases value against the known phases.
func parsePhases(v string, known []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(known, p) {
			return nil, fmt.Errorf("--phases: unknown phase %q (known: %s)", p, strings.Join(known, ","))
		}
		out[p] = true
	}
	if len(out) == 0 {
		return nil, errors.New("--phases: no phase selected")
	}
	return out, nil
}
