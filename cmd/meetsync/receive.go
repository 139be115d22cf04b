package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/meetsync/meetsync/webhook"
)

// runReceive is `meetsync receive`: a sample webhook receiver that
// verifies every signature and prints each webhook, for tours and demos.
func runReceive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meetsync receive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9000", "listen address")
	secret := fs.String("secret", "", "the endpoint's signing secret (whsec_…); without it signatures are not checked")
	status := fs.Int("status", 200, "HTTP status to answer (try 500 to watch retries, 410 to disable the endpoint)")
	// Flags only: MEETSYNC_ADDR is the server's address, not the receiver's.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("receive takes no arguments, got %q", fs.Args())
	}
	if *status < 200 || *status > 599 {
		return fmt.Errorf("--status must be an HTTP status from 200 to 599, got %d", *status)
	}
	if *secret != "" {
		if _, err := webhook.ParseSecret(*secret); err != nil {
			return fmt.Errorf("--secret: %w", err)
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		verdict := "unchecked"
		if *secret != "" {
			if err := webhook.Verify(*secret, r.Header, body); err != nil {
				verdict = "INVALID: " + err.Error()
				fmt.Fprintf(stdout, "%s %s signature %s\n", time.Now().Format("15:04:05.000"), r.Header.Get(webhook.HeaderID), verdict)
				http.Error(w, "bad signature", http.StatusUnauthorized)
				return
			}
			verdict = "valid"
		}
		fmt.Fprintf(stdout, "%s %s signature %s (%d) %s\n", time.Now().Format("15:04:05.000"), r.Header.Get(webhook.HeaderID), verdict,
			len(strings.Fields(r.Header.Get(webhook.HeaderSignature))), body)
		w.WriteHeader(*status)
	})}
	fmt.Fprintf(stderr, "receiving webhooks on http://%s/ (answering %d)\n", ln.Addr(), *status)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
