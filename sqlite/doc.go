// Package sqlite is the embedded default Store of meetsync: one SQLite
// file in WAL mode with synchronous=FULL, a single writer connection (so
// feed positions are assigned in commit order) and a pool of read-only
// connections. The driver is modernc.org/sqlite, pure Go, no cgo.
//
// Migrations are embedded (migrations/*.sql) and applied by Open.
package sqlite
