// Command meetsync runs the meetsync server and its admin subcommands.
//
//	meetsync serve                 run the server (embedded SQLite in ./meetsync-data, or --database-url)
//	meetsync migrate               apply the store's migrations (PostgreSQL: before starting replicas)
//	meetsync demo                  the whole product in a minute: server, sim platform, users, receiver
//	meetsync apps create NAME      create an app and print its first API key
//	meetsync apps list             list apps
//	meetsync keys create APP       create another API key for an app
//	meetsync keys list APP         list an app's keys
//	meetsync keys revoke APP KEYID revoke a key
//	meetsync backup DEST_DIR       copy the SQLite store and its secret key while it runs
//	meetsync endpoints …           a running server's webhook endpoints, through its API
//	meetsync deliveries …          their deliveries, attempts and dead letters, through its API
//	meetsync receive               a sample webhook receiver that verifies and prints
//	meetsync version               print the version
//
// Every flag of serve, migrate, apps, keys, backup, endpoints and deliveries can also be set as an
// environment variable MEETSYNC_<FLAG>, e.g. --addr as MEETSYNC_ADDR; a flag
// on the command line wins. receive and demo read flags only.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/meetsync/meetsync"
)

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, errHelp) {
			return // the help asked for was printed
		}
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "meetsync:", cliMessage(err))
		}
		os.Exit(1)
	}
}

// errUsage: the usage was printed for a mistake (exit 1); errHelp: it was
// asked for (-h, --help: exit 0).
var (
	errUsage = errors.New("usage")
	errHelp  = errors.New("help")
)

// cliMessage is err for a terminal: a store error (*meetsync.Error) by its
// message alone, without the API's code prefix.
func cliMessage(err error) string {
	if e, ok := err.(*meetsync.Error); ok {
		return e.Message
	}
	return err.Error()
}

const usage = `meetsync keeps a business system and a meeting platform in sync.

Usage:
  meetsync serve [flags]                 run the server
  meetsync migrate [--database-url URL]  apply the store's database migrations
  meetsync demo [--keep] [-v]            see every flow in a minute: the server on the sim platform,
                                         simulated users and a receiver that prints verified webhooks
  meetsync apps create NAME [flags]      create an app and print its first API key
  meetsync apps list [flags]             list apps
  meetsync keys create APP [flags]       create another API key for app APP (name or id)
  meetsync keys list APP [flags]         list an app's API keys
  meetsync keys revoke APP KEY_ID        revoke an API key
  meetsync backup DEST_DIR [--data DIR]  copy the SQLite store and its secret key while it runs
  meetsync endpoints list|create|show|enable|disable|delete|recover|test …
                                         a running server's webhook endpoints (through its API)
  meetsync deliveries list|show|replay … an endpoint's deliveries, their attempts, dead letters again
  meetsync receive [--addr A] [--secret whsec_…]
                                         a sample webhook receiver: verifies and prints webhooks
  meetsync version                       print the version

Run "meetsync serve -h" for the server's flags, "meetsync COMMAND -h" for
another command's. Every flag of serve, migrate, apps, keys, backup, endpoints and deliveries is also an
environment variable (--addr is MEETSYNC_ADDR, --data is MEETSYNC_DATA, …);
a flag on the command line wins. receive and demo read flags only.
endpoints and deliveries talk to the server at --url (MEETSYNC_URL, default
http://127.0.0.1:8080) with an app's API key (MEETSYNC_KEY; default the
bootstrap key in --data).
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		m := NewMain()
		if err := m.ParseFlags(args[1:], stderr); err != nil {
			return err
		}
		m.Logger = newLogger(m.Config, stderr)
		return m.Serve(ctx)
	case "migrate":
		return runMigrate(ctx, args[1:], stdout, stderr)
	case "apps":
		return runApps(ctx, args[1:], stdout, stderr)
	case "keys":
		return runKeys(ctx, args[1:], stdout, stderr)
	case "backup":
		return runBackup(ctx, args[1:], stdout, stderr)
	case "endpoints", "deliveries":
		return runRemote(ctx, args[0], args[1:], stdout, stderr)
	case "receive":
		return runReceive(ctx, args[1:], stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "meetsync", Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "meetsync: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}
