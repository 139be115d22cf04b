package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/meetsync/meetsync/sqlite"
)

// runBackup copies the embedded SQLite store, consistent as of one commit
// and while a server may be running on it, with the secret key its sealed
// secrets need, into a new data directory: "meetsync serve --data DEST"
// runs on it as it is.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, rest, err := storeFlags("backup", args, stderr, func(fs *flag.FlagSet, cfg *Config) {
		fs.StringVar(&cfg.SecretKeyFile, "secret-key-file", cfg.SecretKeyFile, "the store's secret key file (default DATA/secret.key)")
	})
	if err != nil {
		return err
	}
	if cfg.DatabaseURL != "" {
		return errors.New("meetsync backup copies the embedded SQLite store; back up PostgreSQL with its own tools (pg_dump, or a base backup with WAL archiving), and keep the secret key file with it")
	}
	if err := wantArgs("backup", rest, 1); err != nil {
		return err
	}
	dest := rest[0]
	if entries, err := os.ReadDir(dest); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: a backup goes into a new or empty directory", dest)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	src := filepath.Join(cfg.Data, "meetsync.db")
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("no meetsync store in %s (%v): pass the --data of an existing server", cfg.Data, err)
	}
	keyFile := cfg.SecretKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(cfg.Data, "secret.key")
	}
	key, keyErr := os.ReadFile(keyFile)
	if keyErr != nil && !errors.Is(keyErr, os.ErrNotExist) {
		return fmt.Errorf("read the secret key: %w", keyErr)
	}
	db, err := sqlite.Open(src, sqlite.Config{NoMigrate: true, Beside: true})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer db.Close()
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return err
	}
	out := filepath.Join(dest, "meetsync.db")
	if err := db.Backup(ctx, out); err != nil {
		return err
	}
	if keyErr == nil {
		if err := writeSecretFile(filepath.Join(dest, "secret.key"), string(key)); err != nil {
			return fmt.Errorf("copy the secret key: %w", err)
		}
	}
	st, _ := os.Stat(out)
	fmt.Fprintf(stdout, "backed up %s to %s (%d bytes)\n", src, out, st.Size())
	if keyErr == nil {
		fmt.Fprintf(stdout, "with its secret key, %s; keep the backup as private as the data directory\n", filepath.Join(dest, "secret.key"))
	} else {
		fmt.Fprintf(stdout, "without a secret key: %s does not exist (pass --secret-key-file if the server uses another)\n", keyFile)
	}
	fmt.Fprintf(stdout, "restore: meetsync serve --data %s (or stop the server and put both files in its data directory)\n", dest)
	return nil
}
