package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/netease"
	"github.com/meetsync/meetsync/session"
	"github.com/meetsync/meetsync/sim"
)

// startSessions opens the built-in sim platform (its state in
// DATA/sim-platform.json) and starts the session engine, with the sim
// platform's callbacks wired to it in process.
func (m *Main) startSessions(store meetsync.Store, sessions meetsync.SessionStore, invitations meetsync.InvitationStore, purger meetsync.Purger, log *slog.Logger) error {
	platform, err := sim.Open(filepath.Join(m.Config.Data, "sim-platform.json"))
	if err != nil {
		return fmt.Errorf("open the sim platform: %w", err)
	}
	m.Sim = platform
	m.Sessions = session.New(session.Config{
		Store: store, Sessions: sessions, Invitations: invitations, Appender: m.Ingest, Logger: log,
		Purger:    purger,
		Providers: m.provider,
	})
	platform.SetCallbackSink(func(ctx context.Context, appID string, h http.Header, body []byte) error {
		_, err := m.Sessions.HandleCallback(ctx, meetsync.ProviderSim, appID, h, body)
		if meetsync.ErrorCode(err) == meetsync.ECONFLICT {
			return nil // already processed: a retried callback
		}
		return err
	})
	m.Sessions.Start()
	return nil
}

// provider returns the meeting-platform provider of an app.
func (m *Main) provider(appID string, cfg meetsync.ProviderConfig) (meetsync.Provider, error) {
	switch cfg.Kind {
	case meetsync.ProviderSim, "":
		return m.Sim.Provider(appID), nil
	case meetsync.ProviderNetEase:
		p, err := netease.New(netease.ConfigFrom(cfg))
		if err != nil {
			return nil, err
		}
		return p, nil
	default:
		return nil, meetsync.Errorf(meetsync.EINVALID, "meeting provider %q is not available", cfg.Kind)
	}
}

// stopSessions stops the session engine and the sim platform.
func (m *Main) stopSessions() {
	if m.Sessions != nil {
		m.Sessions.Close()
	}
	if m.Sim != nil {
		m.Sim.Close()
	}
}
