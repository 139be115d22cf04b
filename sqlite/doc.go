// Package sqlite is the embedded default Store of meetsync: one SQLite
// file in WAL mode, a single writer connection (so feed positions are
// assigned in commit order), a pool of read-only connections and a
// background checkpointer. The driver is modernc.org/sqlite, pure Go, no
// cgo.
//
// The write path is built for many small durable appends:
//
//   - An append transaction inserts its events rows (several per
//     statement) and little else; users' rows, the per-user index
//     (user_chunks) and the per-app feed index (feed_runs) are written
//     behind, in bulk, from an in-memory backlog that Open rebuilds from
//     the log after a crash (backlog.go).
//   - Durability: the writer connection runs with synchronous=NORMAL and
//     every write returns only after an fdatasync of the WAL that began
//     after its commit (durable.go). One fdatasync covers every commit
//     before it, and it runs outside the write lock, so the next group
//     commit is written while the disk works. An ack is as durable as
//     with synchronous=FULL.
//   - The WAL is started over once it passes 32 MiB, so it does not grow
//     under a steady load.
//
// Migrations are embedded (migrations/*.sql, plus steps written in Go)
// and applied by Open.
package sqlite
