package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/postgres"
	"github.com/meetsync/meetsync/sqlite"
)

// adminUsage is the usage line of each admin command, by name.
var adminUsage = map[string]string{
	"migrate":     "meetsync migrate [--data DIR | --database-url URL]",
	"apps create": "meetsync apps create NAME [--data DIR | --database-url URL]",
	"apps list":   "meetsync apps list [--data DIR | --database-url URL]",
	"keys create": "meetsync keys create APP [--data DIR | --database-url URL]   (APP: the app's name or id)",
	"keys list":   "meetsync keys list APP [--data DIR | --database-url URL]",
	"keys revoke": "meetsync keys revoke APP KEY_ID [--data DIR | --database-url URL]",
	"backup":      "meetsync backup DEST_DIR [--data DIR] [--secret-key-file FILE]   (a copy of the SQLite store and its secret key, while it runs)",
}

// storeFlags parses the flags naming a store (--data, --database-url),
// and those extra binds.
func storeFlags(name string, args []string, stderr io.Writer, extra ...func(*flag.FlagSet, *Config)) (Config, []string, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("meetsync "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\nflags:\n", adminUsage[name])
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data directory of the embedded SQLite store")
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "PostgreSQL URL (postgres://…) instead of SQLite")
	for _, bind := range extra {
		bind(fs, &cfg)
	}
	if err := parseFlags(fs, interleave(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, nil, errHelp
		}
		return cfg, nil, err
	}
	cfg.fromEnv = envSet(fs)
	return cfg, fs.Args(), checkDatabaseURL(cfg.DatabaseURL, cfg.setting("database-url"))
}

// openAdminStore opens the store named by --data / --database-url for an
// admin subcommand. It may run beside a live server (SQLite WAL,
// PostgreSQL), and never creates a store or changes its schema.
func openAdminStore(ctx context.Context, name string, args []string, stderr io.Writer) (meetsync.Store, []string, error) {
	cfg, rest, err := storeFlags(name, args, stderr)
	if err != nil {
		return nil, nil, err
	}
	if cfg.DatabaseURL != "" {
		db, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Config{})
		if err != nil {
			return nil, nil, fmt.Errorf("open store: %w", err)
		}
		if err := db.CheckSchema(ctx); err != nil {
			db.Close()
			return nil, nil, err
		}
		return db, rest, nil
	}
	if st, err := os.Stat(cfg.Data); err == nil && !st.IsDir() {
		return nil, nil, fmt.Errorf("--data %s is a file, not a data directory", cfg.Data)
	}
	path := filepath.Join(cfg.Data, "meetsync.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		// Never create a store here: a mistyped --data would silently get
		// an empty one.
		return nil, nil, fmt.Errorf("no meetsync store in %s: run \"meetsync serve --data %s\" once first, or pass the --data of an existing server", cfg.Data, cfg.Data)
	}
	db, err := sqlite.Open(path, sqlite.Config{NoMigrate: true, Beside: true})
	if err != nil {
		return nil, nil, fmt.Errorf("open store: %w", err)
	}
	return db, rest, nil
}

// runMigrate applies the store's migrations: PostgreSQL's (under an
// advisory lock: safe beside running replicas and other migrates), or
// SQLite's (which every open applies), creating the SQLite store if needed.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, rest, err := storeFlags("migrate", args, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("migrate takes no arguments, got %q", rest)
	}
	if cfg.DatabaseURL != "" {
		db, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Config{})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		defer db.Close()
		applied, err := db.Migrate(ctx)
		for _, v := range applied {
			fmt.Fprintf(stdout, "applied %s\n", v)
		}
		if err != nil {
			return err
		}
		all, _ := postgres.Migrations()
		fmt.Fprintf(stdout, "PostgreSQL database %s is up to date (%d migrations)\n", db.Where(), len(all))
		return nil
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	// A server of another version may have the store open: it would run
	// on a schema it does not know. serve migrates at start anyway.
	unlock, err := lockDir(cfg.Data)
	if err != nil {
		return fmt.Errorf("%w: stop it first (serve applies the migrations at start)", err)
	}
	defer unlock()
	path := filepath.Join(cfg.Data, "meetsync.db")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create store file: %w", err)
	}
	f.Close()
	db, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	fmt.Fprintf(stdout, "SQLite store %s is up to date\n", path)
	return db.Close()
}

// interleave moves fs's flags before the positional arguments, so that
// "apps create NAME --data DIR" works like "apps create --data DIR NAME"
// and "deliveries list EP --status dead --json" like "deliveries list
// --status dead --json EP": a flag takes the next argument as its value
// unless it has "=" or is one of fs's boolean flags.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				continue
			}
		}
		if i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(flags, pos...)
}

// subcommand checks the word after apps or keys before anything opens the
// store: help prints the group's usage (to stdout when asked for).
func subcommand(group string, args []string, subs []string, stdout, stderr io.Writer) error {
	usage := ""
	for _, sub := range subs {
		usage += "  " + adminUsage[group+" "+sub] + "\n"
	}
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage:\n%s", usage)
		return errUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprintf(stdout, "usage:\n%s", usage)
		return errHelp
	}
	for _, sub := range subs {
		if args[0] == sub {
			return nil
		}
	}
	fmt.Fprintf(stderr, "meetsync: unknown %s command %q\n\nusage:\n%s", group, args[0], usage)
	return errUsage
}

// wantArgs checks the positional arguments of an admin command.
func wantArgs(name string, rest []string, n int) error {
	if len(rest) != n {
		return fmt.Errorf("usage: %s", adminUsage[name])
	}
	return nil
}

func runApps(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := subcommand("apps", args, []string{"create", "list"}, stdout, stderr); err != nil {
		return err
	}
	name := "apps " + args[0]
	store, rest, err := openAdminStore(ctx, name, args[1:], stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	switch args[0] {
	case "create":
		if err := wantArgs(name, rest, 1); err != nil {
			return err
		}
		if err := meetsync.ValidAppName(rest[0]); err != nil {
			return err
		}
		now := time.Now().UTC()
		app := &meetsync.App{ID: meetsync.NewID("app"), Name: rest[0], CreatedAt: now}
		key, secret := meetsync.NewAPIKey(app.ID, now)
		if err := store.AppCreate(ctx, app, key); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created app %q (%s). Its API key is printed below, once; it is stored only hashed.\n", app.Name, app.ID)
		fmt.Fprintln(stdout, secret)
		return nil
	case "list":
		if err := wantArgs(name, rest, 0); err != nil {
			return err
		}
		apps, err := store.AppList(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tCREATED")
		for _, a := range apps {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.ID, a.Name, a.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	}
	return nil
}

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := subcommand("keys", args, []string{"create", "list", "revoke"}, stdout, stderr); err != nil {
		return err
	}
	name := "keys " + args[0]
	want := 1
	if args[0] == "revoke" {
		want = 2
	}
	store, rest, err := openAdminStore(ctx, name, args[1:], stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := wantArgs(name, rest, want); err != nil {
		return err
	}
	app, err := store.AppGetByName(ctx, rest[0])
	if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
		app, err = store.AppGet(ctx, rest[0])
	}
	if err != nil {
		return fmt.Errorf("app %q: %w", rest[0], err)
	}
	switch args[0] {
	case "create":
		key, secret := meetsync.NewAPIKey(app.ID, time.Now().UTC())
		if err := store.APIKeyCreate(ctx, key); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created key %s for app %q. It is printed below, once.\n", key.ID, app.Name)
		fmt.Fprintln(stdout, secret)
		return nil
	case "list":
		keys, err := store.APIKeyList(ctx, app.ID)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPREFIX\tCREATED\tREVOKED")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\n", k.ID, k.Prefix, k.CreatedAt.Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	case "revoke":
		if err := store.APIKeyRevoke(ctx, app.ID, rest[1], time.Now().UTC()); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "revoked key %s (servers forget cached keys within 10 s)\n", rest[1])
		return nil
	}
	return nil
}
