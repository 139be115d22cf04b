package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
)

// The endpoints and deliveries commands talk to a running server through
// its API (the Go client), with one of an app's API keys: unlike apps and
// keys, which open the store, they work against a remote server too, and
// see what its API shows.

const serverFlags = "[--url URL] [--key KEY] [--json]"

var remoteUsage = map[string]string{
	"endpoints list":    "meetsync endpoints list " + serverFlags,
	"endpoints create":  "meetsync endpoints create URL [--types meeting.*,order.paid] [--debounce-ms N] [--rate-limit N] [--description TEXT] " + serverFlags,
	"endpoints show":    "meetsync endpoints show ID " + serverFlags,
	"endpoints enable":  "meetsync endpoints enable ID " + serverFlags,
	"endpoints disable": "meetsync endpoints disable ID " + serverFlags,
	"endpoints delete":  "meetsync endpoints delete ID " + serverFlags,
	"endpoints recover": "meetsync endpoints recover ID --since TIME|DURATION " + serverFlags + "   (every dead or failed delivery since then, again)",
	"endpoints test":    "meetsync endpoints test ID " + serverFlags + "   (send one signed test webhook now and show what the receiver answered)",
	"deliveries list":   "meetsync deliveries list ENDPOINT_ID [--status dead|failed|pending|delivered|superseded] [--limit N] [--all] " + serverFlags,
	"deliveries show":   "meetsync deliveries show ID " + serverFlags + "   (with every attempt)",
	"deliveries replay": "meetsync deliveries replay ID " + serverFlags,
}

var remoteSubs = map[string][]string{
	"endpoints":  {"list", "create", "show", "enable", "disable", "delete", "recover", "test"},
	"deliveries": {"list", "show", "replay"},
}

// remoteCmd is one endpoints or deliveries command being run.
type remoteCmd struct {
	name   string
	c      *client.Client
	json   bool
	stdout io.Writer
	args   []string

	// the commands' own flags
	types, description, since, status string
	debounce, rateLimit, limit        int
	all                               bool
}

func init() {
	// subcommand prints the usage lines of adminUsage.
	for k, v := range remoteUsage {
		adminUsage[k] = v
	}
}

func runRemote(ctx context.Context, group string, args []string, stdout, stderr io.Writer) error {
	if err := subcommand(group, args, remoteSubs[group], stdout, stderr); err != nil {
		return err
	}
	cmd := &remoteCmd{name: group + " " + args[0], stdout: stdout}
	fs := flag.NewFlagSet("meetsync "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "the server's address")
	key := fs.String("key", "", "an API key of the app (better: MEETSYNC_KEY, which ps does not show); default: the bootstrap key in --data")
	data := fs.String("data", defaultConfig().Data, "data directory whose bootstrap-key is the default --key")
	fs.BoolVar(&cmd.json, "json", false, "print the API's JSON instead of a table")
	switch cmd.name {
	case "endpoints create":
		fs.StringVar(&cmd.types, "types", "", "event types to deliver, comma separated: exact names and prefix.* (default: every event)")
		fs.IntVar(&cmd.debounce, "debounce-ms", -1, "status debounce window in ms (default 300, 0 is off)")
		fs.IntVar(&cmd.rateLimit, "rate-limit", 0, "most webhooks a second to this endpoint (0 is no limit)")
		fs.StringVar(&cmd.description, "description", "", "what the endpoint is for")
	case "endpoints recover":
		fs.StringVar(&cmd.since, "since", "", "RFC 3339 time (2026-01-02T15:04:05Z), or a duration back from now (24h)")
	case "deliveries list":
		fs.StringVar(&cmd.status, "status", "", "only deliveries with this status")
		fs.IntVar(&cmd.limit, "limit", 100, "deliveries per page (1-1000)")
		fs.BoolVar(&cmd.all, "all", false, "every page, not only the first")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\nflags (each also MEETSYNC_<FLAG>, e.g. MEETSYNC_URL, MEETSYNC_KEY):\n", remoteUsage[cmd.name])
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, interleave(fs, args[1:])); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	cmd.args = fs.Args()
	if *key == "" {
		b, err := os.ReadFile(filepath.Join(*data, "bootstrap-key"))
		if err != nil {
			return fmt.Errorf("no API key: pass --key or set MEETSYNC_KEY (an API key of the app; %s has no bootstrap-key to fall back on)", *data)
		}
		*key = strings.TrimSpace(string(b))
	}
	cmd.c = client.New(*url, client.WithAPIKey(*key))
	err := cmd.run(ctx)
	if meetsync.ErrorCode(err) == meetsync.EUNAUTHORIZED {
		why := "the key is not one of its apps' API keys"
		if strings.Contains(cliMessage(err), "revoked") {
			why = "the key was revoked"
		}
		return fmt.Errorf("%s refused the API key: %s (pass an app's API key with --key or MEETSYNC_KEY)", *url, why)
	}
	return err
}

func (r *remoteCmd) want(n int) error {
	if len(r.args) != n {
		return fmt.Errorf("usage: %s", remoteUsage[r.name])
	}
	return nil
}

// print prints v as JSON with --json, else calls table.
func (r *remoteCmd) print(v any, table func(tw *tabwriter.Writer)) error {
	if r.json {
		enc := json.NewEncoder(r.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func (r *remoteCmd) run(ctx context.Context) error {
	switch r.name {
	case "endpoints list":
		if err := r.want(0); err != nil {
			return err
		}
		eps, err := r.c.ListEndpoints(ctx)
		if err != nil {
			return err
		}
		return r.print(map[string]any{"endpoints": eps}, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "ID\tURL\tEVENTS\tSTATE\tFAILING SINCE\tDESCRIPTION")
			for _, e := range eps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.URL, eventTypes(e.EventTypes), endpointState(&e), timeOrDash(e.FailingSince), e.Description)
			}
		})
	case "endpoints create":
		if err := r.want(1); err != nil {
			return err
		}
		p := client.EndpointParams{URL: &r.args[0]}
		if r.types != "" {
			types := strings.Split(r.types, ",")
			for i := range types {
				types[i] = strings.TrimSpace(types[i])
			}
			p.EventTypes = &types
		}
		if r.debounce >= 0 {
			d := int64(r.debounce)
			p.DebounceMS = &d
		}
		if r.rateLimit > 0 {
			p.RateLimitPerS = &r.rateLimit
		}
		if r.description != "" {
			p.Description = &r.description
		}
		e, err := r.c.CreateEndpoint(ctx, p)
		if err != nil {
			return err
		}
		return r.print(e, func(tw *tabwriter.Writer) {
			fmt.Fprintf(tw, "created endpoint %s for %s (%s)\n", e.ID, e.URL, eventTypes(e.EventTypes))
			fmt.Fprintf(tw, "signing secret, shown only now (verify webhooks with it): %s\n", e.Secret)
		})
	case "endpoints show":
		if err := r.want(1); err != nil {
			return err
		}
		e, err := r.c.GetEndpoint(ctx, r.args[0])
		if err != nil {
			return err
		}
		return r.print(e, func(tw *tabwriter.Writer) { endpointFields(tw, e) })
	case "endpoints enable", "endpoints disable":
		if err := r.want(1); err != nil {
			return err
		}
		on := r.name == "endpoints enable"
		e, err := r.c.UpdateEndpoint(ctx, r.args[0], client.EndpointParams{Enabled: &on})
		if err != nil {
			return err
		}
		return r.print(e, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, "endpoint %s is %s\n", e.ID, endpointState(e)) })
	case "endpoints delete":
		if err := r.want(1); err != nil {
			return err
		}
		if err := r.c.DeleteEndpoint(ctx, r.args[0]); err != nil {
			return err
		}
		return r.print(map[string]any{"deleted": r.args[0]}, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, "deleted endpoint %s\n", r.args[0]) })
	case "endpoints recover":
		if err := r.want(1); err != nil {
			return err
		}
		since, err := parseSince(r.since, time.Now())
		if err != nil {
			return err
		}
		n, err := r.c.RecoverEndpoint(ctx, r.args[0], since)
		if err != nil {
			return err
		}
		return r.print(map[string]any{"requeued": n}, func(tw *tabwriter.Writer) {
			fmt.Fprintf(tw, "requeued %d dead or failed deliveries since %s (in order per user)\n", n, since.UTC().Format(time.RFC3339))
		})
	case "endpoints test":
		if err := r.want(1); err != nil {
			return err
		}
		res, err := r.c.TestEndpoint(ctx, r.args[0])
		if err != nil {
			return err
		}
		if err := r.print(res, func(tw *tabwriter.Writer) {
			a := res.Attempt
			what := "answered " + strconv.Itoa(a.StatusCode)
			if a.StatusCode == 0 {
				what = "could not be reached"
			}
			fmt.Fprintf(tw, "test webhook to endpoint %s: the receiver %s in %.1f ms\n", r.args[0], what, a.LatencyMS)
			if a.Error != "" {
				fmt.Fprintf(tw, "error: %s\n", a.Error)
			}
			if a.ResponseBody != "" {
				fmt.Fprintf(tw, "its answer: %s\n", a.ResponseBody)
			}
		}); err != nil {
			return err
		}
		if !res.OK {
			return errors.New("the test webhook was not accepted (see above)")
		}
		return nil
	case "deliveries list":
		if err := r.want(1); err != nil {
			return err
		}
		var all []meetsync.Delivery
		page := &client.DeliveryPage{}
		for {
			var err error
			if page, err = r.c.ListDeliveries(ctx, r.args[0], client.DeliveryListParams{Status: r.status, Limit: r.limit, Cursor: page.Next}); err != nil {
				return err
			}
			all = append(all, page.Deliveries...)
			if !r.all || page.Next == "" {
				break
			}
		}
		out := map[string]any{"deliveries": all}
		if !r.all && page.Next != "" {
			out["next"] = page.Next
		}
		return r.print(out, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "ID\tSTATUS\tTYPE\tUSER\tSEQ\tATTEMPTS\tLAST ERROR\tNEXT ATTEMPT")
			for _, d := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.ID, d.Status, d.EventType, d.UserID, d.Seq, d.Attempts, orDash(d.LastError), timeOrDash(d.NextAttemptAt))
			}
			if !r.all && page.Next != "" {
				fmt.Fprintf(tw, "(more: --all)\n")
			}
		})
	case "deliveries show":
		if err := r.want(1); err != nil {
			return err
		}
		d, err := r.c.GetDelivery(ctx, r.args[0])
		if err != nil {
			return err
		}
		return r.print(d, func(tw *tabwriter.Writer) {
			x := d.Delivery
			fmt.Fprintf(tw, "delivery\t%s\nstatus\t%s\nendpoint\t%s\nevent\t%s (%s), user %s, seq %d\nattempts\t%d\nnext attempt\t%s\nlast error\t%s\n",
				x.ID, x.Status, x.EndpointID, x.EventID, x.EventType, x.UserID, x.Seq, x.Attempts, timeOrDash(x.NextAttemptAt), orDash(x.LastError))
			if len(d.Attempts) > 0 {
				fmt.Fprintln(tw, "\n#\tAT\tSTATUS CODE\tLATENCY\tERROR")
				for _, a := range d.Attempts {
					code := "-"
					if a.StatusCode != 0 {
						code = strconv.Itoa(a.StatusCode)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%.1f ms\t%s\n", a.N, a.At.Format(time.RFC3339), code, a.LatencyMS, orDash(a.Error))
				}
			}
		})
	case "deliveries replay":
		if err := r.want(1); err != nil {
			return err
		}
		n, err := r.c.ReplayDelivery(ctx, r.args[0])
		if err != nil {
			return err
		}
		return r.print(map[string]any{"requeued": n}, func(tw *tabwriter.Writer) {
			fmt.Fprintf(tw, "requeued %d: delivery %s is sent again, after its user's earlier deliveries\n", n, r.args[0])
		})
	}
	return fmt.Errorf("usage: %s", remoteUsage[r.name])
}

// parseSince reads --since: an RFC 3339 time, or a duration back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("--since is required: an RFC 3339 time (2026-01-02T15:04:05Z) or a duration back from now (24h)")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration back from now (24h)", s)
}

func endpointFields(tw *tabwriter.Writer, e *client.Endpoint) {
	fmt.Fprintf(tw, "endpoint\t%s\nurl\t%s\nevents\t%s\ndebounce\t%d ms\nstate\t%s\nfailing since\t%s\ncreated\t%s\ndescription\t%s\n",
		e.ID, e.URL, eventTypes(e.EventTypes), e.DebounceMS, endpointState(e), timeOrDash(e.FailingSince), e.CreatedAt.Format(time.RFC3339), orDash(e.Description))
}

func endpointState(e *client.Endpoint) string {
	if e.Enabled {
		return "enabled"
	}
	if e.DisabledReason != "" {
		return "disabled: " + e.DisabledReason
	}
	return "disabled"
}

func eventTypes(ts []string) string {
	if len(ts) == 0 {
		return "every event"
	}
	return strings.Join(ts, ",")
}

func timeOrDash(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
