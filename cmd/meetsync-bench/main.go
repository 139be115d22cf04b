// Command meetsync-bench is meetsync's load generator. It starts the real
// server in-process on 127.0.0.1 (store, group-commit ingest, HTTP API),
// drives it over loopback HTTP and prints meetsync's figures next to the
// raw limits of the same machine, measured in the same run, with the
// targets of the issues and PASS/MISS for each.
//
//	go run ./cmd/meetsync-bench ingest [flags]
//	go run ./cmd/meetsync-bench delivery [flags]
//	go run ./cmd/meetsync-bench memory [flags]
//
// Subcommands:
//
//	ingest    (a) loopback HTTP req/s against a trivial handler,
//	          (b) the store's raw commit rate,
//	          (c) ingest events/s with durable acks, single events and batches,
//	          (d) p50/p99 ack latency at a fixed offered load (open loop).
//	delivery  webhook delivery to a fast receiver on 127.0.0.1 in the same
//	          process: (1) deliveries/s to one endpoint and (2) to several
//	          (fan-out) from a pre-loaded queue, (3) ingest→received
//	          latency at a fixed rate (open loop), (4) drain rate of a
//	          backlog after a receiver outage, with per-user order checked.
//	memory    the process's memory (live Go heap, resident set) and the
//	          store's size on disk per tracked user, measured after each
//	          step of users posted.
//
// Every ingest phase runs --warmup then --duration; every delivery phase
// is bounded by --timeout; the run stops by itself.
// The load generator shares the process with the server, as the trivial
// handler baseline does, so both sides of the comparison pay the client's
// CPU the same way.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/meetsync/meetsync/internal/gctune"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "meetsync-bench:", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// gcSetting is the garbage collector setting the run applied, and where it
// came from, for the report.
var gcSetting, gcSource string

// applyGC gives the whole process meetsync serve's collector setting.
func applyGC(percent int) { gcSetting, gcSource = gctune.Apply(percent) }

const usage = `meetsync-bench drives an in-process meetsync over loopback HTTP and prints
its figures next to this machine's raw limits.

Usage:
  meetsync-bench ingest [flags]     ingest throughput and ack latency (issue 2)
  meetsync-bench delivery [flags]   webhook delivery throughput, latency and backlog drain (issue 3)
  meetsync-bench memory [flags]     memory and disk per tracked user (DESIGN §7)

Run "meetsync-bench ingest -h" (delivery, memory) for the flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "ingest":
		opts, err := parseIngestFlags(args[1:], stderr)
		if err != nil {
			return err
		}
		applyGC(opts.GCPercent)
		return runIngest(ctx, opts, stdout, stderr)
	case "delivery":
		opts, err := parseDeliveryFlags(args[1:], stderr)
		if err != nil {
			return err
		}
		applyGC(opts.GCPercent)
		return runDelivery(ctx, opts, stdout, stderr)
	case "memory":
		opts, err := parseMemoryFlags(args[1:], stderr)
		if err != nil {
			return err
		}
		applyGC(opts.GCPercent)
		return runMemory(ctx, opts, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "meetsync-bench: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}
