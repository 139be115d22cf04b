package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/internal/storetimeout"
	"github.com/meetsync/meetsync/netease"
	"github.com/meetsync/meetsync/schema"
	"github.com/meetsync/meetsync/session"
	"github.com/meetsync/meetsync/sim"
)

// startSessions opens the built-in sim platform (its state in
// DATA/sim-platform.json) and starts the session engine, with the sim
// platform's callbacks wired to it in process, and the custom event types
// registry; it sets them in the API's configuration. A store without the
// session, invitation and type stores runs without them (their routes
// answer 503), saying so. With several replicas the engine's background
// jobs run on one of them (RunSingleton).
func (m *Main) startSessions(store meetsync.Store, log *slog.Logger, api *httpapi.Config) error {
	sessions, ok1 := store.(meetsync.SessionStore)
	invitations, ok2 := store.(meetsync.InvitationStore)
	types, ok3 := store.(meetsync.TypeStore)
	if !ok1 || !ok2 || !ok3 {
		log.Warn("this store keeps no sessions, invitations or event types: those routes answer 503")
		return nil
	}
	purger, _ := store.(meetsync.Purger)
	sealer := m.sealer
	if err := m.makeData(); err != nil { // the sim platform writes its state there at once
		return err
	}
	platform, err := sim.Open(filepath.Join(m.Config.Data, "sim-platform.json"))
	if err != nil {
		return fmt.Errorf("open the sim platform: %w", err)
	}
	m.Sim = platform
	var leader atomic.Bool
	// The engine's reads and writes are bounded by --store-timeout as the
	// API's are (a database that hangs fails them: 503 for a request).
	t := storetimeout.New(m.Config.StoreTimeout)
	bStore, bSessions, bInvitations := storetimeout.Store(store, t), storetimeout.SessionStore(sessions, t), storetimeout.InvitationStore(invitations, t)
	m.Sessions = session.New(session.Config{
		Store: bStore, Sessions: bSessions, Invitations: bInvitations, Purger: purger, Appender: m.Ingest, Logger: log,
		Providers: m.provider, Leader: leader.Load, Sealer: sealer,
	})
	platform.SetCallbackSink(func(ctx context.Context, appID string, h http.Header, body []byte) error {
		_, err := m.Sessions.HandleCallback(ctx, meetsync.ProviderSim, appID, h, body) // a retried one is answered as the first time
		return err
	})
	m.Sessions.Start()
	m.RunSingleton("sessions", func(ctx context.Context) {
		leader.Store(true)
		defer leader.Store(false)
		<-ctx.Done()
	})
	api.Sessions, api.SessionStore, api.InvitationStore = m.Sessions, sessions, invitations
	api.Types = schema.New(types, sessions, schema.Config{Logger: log})
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

// secretKeyPath is the file of the key that encrypts secrets at rest.
func (m *Main) secretKeyPath() string {
	if m.Config.SecretKeyFile != "" {
		return m.Config.SecretKeyFile
	}
	return filepath.Join(m.Config.Data, "secret.key")
}

// checkSecretKey makes sure m.sealer's key is the one the store's secrets
// are encrypted with, by the store's key check value: a store without one
// (new, or from before check values) gets one, once a secret it already
// holds, if any, has opened with the key.
func (m *Main) checkSecretKey(ctx context.Context, apps []*meetsync.App) error {
	check, err := m.Store.SecretKeyCheck(ctx)
	if err != nil {
		return err
	}
	if check == "" {
		v, err := firstSealedSecret(ctx, m.Store, apps)
		if err != nil {
			return err
		}
		if _, err := m.sealer.Open(v); err != nil {
			return m.wrongSecretKey()
		}
		if check, err = m.Store.SecretKeyCheckInit(ctx, m.sealer.CheckValue()); err != nil {
			return err
		}
	}
	if !m.sealer.CheckMatches(check) {
		return m.wrongSecretKey()
	}
	return nil
}

func (m *Main) wrongSecretKey() error {
	return fmt.Errorf("secret key %s is not the key this store's secrets are encrypted with (webhook signing secrets, the meeting provider's app secret, "+
		"meeting tokens): every replica must be given the key file made on the store's first start (--secret-key-file in the README's configuration)", m.secretKeyPath())
}

// firstSealedSecret returns a secret the store keeps encrypted (an
// endpoint's signing secret, an app's provider secret), "" if it has none.
func firstSealedSecret(ctx context.Context, store meetsync.Store, apps []*meetsync.App) (string, error) {
	settings, _ := store.(meetsync.SessionStore)
	for _, a := range apps {
		eps, err := store.EndpointList(ctx, a.ID)
		if err != nil {
			return "", err
		}
		for _, e := range eps {
			for _, s := range e.Secrets {
				if meetsync.IsSealed(s.Secret) {
					return s.Secret, nil
				}
			}
		}
		if settings == nil {
			continue
		}
		set, err := settings.AppSettingsGet(ctx, a.ID)
		if err != nil {
			return "", err
		}
		if meetsync.IsSealed(set.Provider.AppSecret) {
			return set.Provider.AppSecret, nil
		}
	}
	return "", nil
}

// openSealer reads the key that encrypts secrets at rest. It creates the
// key (mode 0600) only for a new store (one without apps): on a store that
// has apps, a missing key file is a mistake (a mistyped
// --secret-key-file, a data directory copied without it), and a new key
// would leave every stored secret unreadable (see missingSecretKey).
// Several replicas must be given the same key file. A key file that
// others than its owner may read is used, with a warning.
func (m *Main) openSealer(ctx context.Context, log *slog.Logger, apps []*meetsync.App) (*meetsync.Sealer, error) {
	path := m.secretKeyPath()
	b, err := readSecretKey(path, log)
	if errors.Is(err, os.ErrNotExist) {
		if len(apps) > 0 {
			return nil, m.missingSecretKey(ctx, apps)
		}
		if m.Config.SecretKeyFile == "" {
			if err := m.makeData(); err != nil {
				return nil, err
			}
		}
		if err := writeSecretFile(path, base64.StdEncoding.EncodeToString(meetsync.NewSecretKey())+"\n"); err != nil {
			return nil, fmt.Errorf("secret key: %w", err)
		}
		log.Info("created the key that encrypts secrets at rest; back it up (replicas must share it)", "key_file", path)
		b, err = readSecretKey(path, log)
	}
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("secret key %s: not base64: %w", path, err)
	}
	s, err := meetsync.NewSealer(key)
	if err != nil {
		return nil, fmt.Errorf("secret key %s: %w", path, err)
	}
	return s, nil
}

// readSecretKey reads the key file at path, warning (by path and mode,
// never the contents) when its group or others may read or write it.
func readSecretKey(path string, log *slog.Logger) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the secret key file is open to its group or others: anyone who can read it can decrypt the stored secrets; make it readable by meetsync's user only (chmod 600)",
			"key_file", path, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	return io.ReadAll(f)
}

// missingSecretKey is the error of a store with apps whose key file does
// not exist, worded for the case: the key file was named explicitly or
// not, and the store has secrets sealed with a key (or its check value)
// or has never sealed one (apps made by "meetsync apps create" before any
// serve: serve makes a key only with a store that has no apps yet).
func (m *Main) missingSecretKey(ctx context.Context, apps []*meetsync.App) error {
	path, setting := m.secretKeyPath(), m.Config.setting("secret-key-file")
	check, err := m.Store.SecretKeyCheck(ctx)
	if err != nil {
		return err
	}
	sealed := ""
	if check == "" {
		if sealed, err = firstSealedSecret(ctx, m.Store, apps); err != nil {
			return err
		}
	}
	explicit := m.Config.SecretKeyFile != ""
	switch {
	case (check != "" || sealed != "") && explicit:
		return fmt.Errorf("secret key file %s (%s) does not exist, and the store is not new: its secrets (webhook signing secrets, the meeting provider's app secret, "+
			"meeting tokens) are encrypted with the key made on its first start. Point %s at that file, or restore it there "+
			"(--secret-key-file in the README's configuration)", path, setting, setting)
	case check != "" || sealed != "":
		return fmt.Errorf("secret key %s does not exist, and the store is not new: the key made on its first start encrypts its stored secrets "+
			"(webhook signing secrets, the meeting provider's app secret). Restore that file, or pass its path with --secret-key-file "+
			"(--secret-key-file in the README's configuration)", path)
	case explicit:
		return fmt.Errorf("secret key file %s (%s) does not exist. This store has never encrypted a secret, so a new key will do: "+
			"create it (umask 077; head -c 32 /dev/urandom | base64 > %s) and give every replica the same file (--secret-key-file in the README's configuration)", path, setting, path)
	default:
		return fmt.Errorf("no secret key: %s does not exist, and this store already has apps (made by \"meetsync apps create\" before any serve): "+
			"serve makes the key itself only on a store without apps. This store has never encrypted a secret, so a new key will do: "+
			"create it with (umask 077; head -c 32 /dev/urandom | base64 > secret.key) and pass --secret-key-file secret.key (or put it at %s); "+
			"give every replica the same file (--secret-key-file in the README's configuration)", path, path)
	}
}
