// Package postgres is the PostgreSQL implementation of meetsync.Store, for
// running several stateless meetsync replicas on one database.
//
// It keeps exactly the semantics of the embedded SQLite store (checked by
// the shared conformance suite in storetest) with the mechanisms of a
// database that many processes write at once:
//
//   - Feed positions come from transaction ids and readers return only the
//     events of transactions that have ended (feed.go), so a feed cursor
//     never skips an event that commits late, and appends take no lock for
//     positions. PostgreSQL sequences would not do: their values are taken
//     at insert time and commit in any order.
//   - An append transaction takes advisory locks on the users it appends
//     for (in key order) before anything gives it a transaction id
//     (locks.go), so seqs stay gap-free and in feed order when replicas
//     append for the same user; nothing about users is cached between
//     transactions.
//   - Delivery queue heads are claimed with FOR UPDATE SKIP LOCKED and a
//     lease; outcomes are fenced by a per-claim id.
//   - The session saga's changes are compare-and-set: an append
//     conditional on a user's session version (AppendRequest.ExpectSession)
//     checks it on the user's locked row; an invitation written with its
//     event checks its version on its locked row (a new one is inserted,
//     so two replicas creating it race on its key and one fails).
//   - Custom event types' debounce is read by each append transaction in
//     its own snapshot: no replica caches it.
//   - Commits that make something new visible (events, due deliveries,
//     device commands) send a NOTIFY (in the committing transaction, so
//     only on commit); Listen turns them into wake-ups on the other
//     replicas.
//   - Migrations are embedded and applied under an advisory lock, so
//     replicas starting together are safe; Leader runs a job on one replica
//     of the cluster at a time.
package postgres
