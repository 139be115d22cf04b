// Package gctune sets the Go garbage collector's target (GOGC) of a
// meetsync process: `meetsync serve` and the load generator, which runs
// the server in its own process, share it.
//
// Go's default, 100, lets the heap grow to twice the live heap between
// collections. meetsync's live heap is small (about 13 MB in the ingest
// benchmark: caches, the backlog, connection buffers) while it allocates
// quickly (every request's headers, body and result), so at the default it
// collects about 20 times a second under load, 5 % of the CPU by
// GODEBUG=gctrace=1. At 400 the heap may reach five times the live heap and
// the collector runs a quarter as often (1 %).
package gctune

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
)

// DefaultPercent is meetsync's GOGC unless configured otherwise.
const DefaultPercent = 400

// Off is the percent that turns the collector off; it needs a memory
// limit (GOMEMLIMIT), at which the collector runs again.
const Off = -1

// Check reports whether percent is a usable setting: Off, or at least 1.
func Check(percent int) error {
	switch {
	case percent == Off:
		if os.Getenv("GOMEMLIMIT") == "" {
			return errors.New("--gc-percent -1 turns the garbage collector off: set GOMEMLIMIT too, or the heap grows without bound")
		}
		return nil
	case percent < 1:
		return fmt.Errorf("--gc-percent must be at least 1, or -1 (off, with GOMEMLIMIT), not %d", percent)
	}
	return nil
}

// Apply sets the collector's target to percent, unless the GOGC
// environment variable is set: as for any Go program, it wins. It returns
// the setting in effect and where it came from ("GOGC" or "config").
func Apply(percent int) (setting, source string) {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		return v, "GOGC"
	}
	debug.SetGCPercent(percent)
	if percent == Off {
		return "off", "config"
	}
	return fmt.Sprint(percent), "config"
}
