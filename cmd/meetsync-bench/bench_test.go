package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
)

// TestIngestSmoke runs every phase of the ingest benchmark briefly against
// the real server and checks that each phase measured something without a
// failed request, so the tool keeps working as the server changes.
func TestIngestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers and stores")
	}
	var out, errOut bytes.Buffer
	args := []string{"ingest", "--duration", "300ms", "--warmup", "50ms", "--clients", "4",
		"--rate", "200", "--batch", "10", "--users", "20", "--json", "--data-dir", t.TempDir()}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	var rep ingestReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	for _, p := range []*phaseResult{rep.HTTP, rep.Single, rep.Batch, rep.Latency} {
		if p == nil {
			t.Fatalf("a phase is missing:\n%s", out.String())
		}
		if p.Errors > 0 || p.Events == 0 || p.Duplicates > 0 {
			t.Errorf("%s: %d events, %d errors (%s), %d duplicates", p.Name, p.Events, p.Errors, p.FirstError, p.Duplicates)
		}
	}
	if rep.Batch.Events != 10*rep.Batch.Requests {
		t.Errorf("batch: %d events in %d requests", rep.Batch.Events, rep.Batch.Requests)
	}
	if rep.Commit == nil || rep.Commit.Txns == 0 || rep.CommitBatch == nil || rep.CommitBatch.RowsPerTxn != 10 {
		t.Errorf("raw commit phases: %+v %+v", rep.Commit, rep.CommitBatch)
	}
	if len(rep.StoreAppend) != 2 || rep.StoreAppend[0].Txns == 0 {
		t.Errorf("store append phases: %+v", rep.StoreAppend)
	}
	if rep.Single.Commit == nil || rep.Single.Commit.Commits == 0 {
		t.Errorf("single: no group commits seen in the ingest metrics")
	}
	if len(rep.Targets) != 3 {
		t.Errorf("targets: %+v", rep.Targets)
	}
}

// TestEventGen checks that the clients together cover every user, that
// every user gets events from one client (one device) and that client_seq
// increases.
func TestEventGen(t *testing.T) {
	for _, c := range []struct{ clients, users int }{{64, 1000}, {256, 1000}, {64, 10}, {3, 7}} {
		devices := map[int]map[string]bool{}
		for i := range c.clients {
			g := newEventGen(i, c.clients, c.users)
			for range 2 * g.owned {
				var ev struct {
					UserID    string `json:"user_id"`
					DeviceID  string `json:"device_id"`
					ClientSeq int64  `json:"client_seq"`
				}
				seq := g.seq
				if err := json.Unmarshal(g.single(), &ev); err != nil {
					t.Fatal(err)
				}
				if ev.ClientSeq != seq+1 {
					t.Fatalf("client_seq %d after %d", ev.ClientSeq, seq)
				}
				var u int
				if _, err := fmt.Sscanf(ev.UserID, "user-%d", &u); err != nil || u < 0 || u >= c.users {
					t.Fatalf("%+v: user %q out of range", c, ev.UserID)
				}
				if devices[u] == nil {
					devices[u] = map[string]bool{}
				}
				devices[u][ev.DeviceID] = true
			}
		}
		if len(devices) != c.users {
			t.Errorf("%+v: %d users covered", c, len(devices))
		}
		if c.clients <= c.users {
			for u, d := range devices {
				if len(d) != 1 {
					t.Errorf("%+v: user %d has %d devices", c, u, len(d))
				}
			}
		}
	}
	var b struct{ Events []json.RawMessage }
	if err := json.Unmarshal(newEventGen(0, 1, 5).batch(7), &b); err != nil || len(b.Events) != 7 {
		t.Errorf("batch: %v, %d events", err, len(b.Events))
	}
}
