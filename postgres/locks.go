package postgres

import (
	"cmp"
	"context"
	"hash/fnv"
	"slices"

	"github.com/jackc/pgx/v5"
)

// User locks.
//
// Whoever appends events for a user, or changes which of a user's
// deliveries are active, holds the user's lock until commit. The locks are
// transaction-level advisory locks, not row locks, for the sake of the feed
// (feed.go): a row lock gives the transaction its id, and the feed orders
// events by transaction id, so a transaction that had its id before it
// waited for a user's lock would place its events before those of the
// transaction it waited for, against the user's seq order. An advisory lock
// takes no transaction id: an append takes its users' locks first (before
// anything that writes), so whoever waits for a user gets a later id than
// whoever held it.
//
// A lock is a pair of int4 keys (a space apart from the bigint keys of the
// jobs' leases, leader.go): (app, 0) for the app, (app, user) for a user,
// both from 32-bit hashes (two users that share a hash share a lock, which
// only makes them take turns). A transaction holds its apps' locks shared
// and its users' exclusively; one with more than maxUserLocks users of an
// app holds the app's lock exclusively instead (so no transaction fills the
// server's lock table, sized by max_locks_per_transaction). Locks are taken
// in key order, so transactions that lock together do not deadlock.
const maxUserLocks = 128

// advLock is an advisory lock's pair of keys; excl says whether it is held
// exclusively.
type advLock struct {
	app, user int32
	excl      bool
}

func hash32(s string) int32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int32(h.Sum32())
}

// userLocks returns the locks that cover users, in the order to take them.
func userLocks(users []userKey) []advLock {
	perApp := map[string]map[int32]bool{}
	for _, u := range users {
		if perApp[u.app] == nil {
			perApp[u.app] = map[int32]bool{}
		}
		h := hash32(u.user)
		if h == 0 {
			h = 1 // 0 is the app's lock
		}
		perApp[u.app][h] = true
	}
	var out []advLock
	for app, hs := range perApp {
		a := hash32(app)
		if len(hs) > maxUserLocks {
			out = append(out, advLock{a, 0, true})
			continue
		}
		out = append(out, advLock{a, 0, false})
		for h := range hs {
			out = append(out, advLock{a, h, true})
		}
	}
	slices.SortFunc(out, func(x, y advLock) int {
		if c := cmp.Compare(x.app, y.app); c != 0 {
			return c
		}
		if c := cmp.Compare(x.user, y.user); c != 0 {
			return c
		}
		// Two apps that share a hash: exclusive first, so the one lock is
		// taken in its strongest mode (a shared request after it is granted:
		// a transaction does not conflict with itself).
		if x.excl != y.excl {
			if x.excl {
				return -1
			}
			return 1
		}
		return 0
	})
	return slices.CompactFunc(out, func(x, y advLock) bool { return x.app == y.app && x.user == y.user })
}

// lockSQL takes the locks of its arrays ($1 apps, $2 users, $3 exclusive)
// in their order.
const lockSQL = `SELECT count(CASE WHEN q.x THEN pg_advisory_xact_lock(q.a, q.u)::text ELSE pg_advisory_xact_lock_shared(q.a, q.u)::text END)
	FROM unnest($1::int[], $2::int[], $3::bool[]) AS q(a, u, x)`

func lockArgs(locks []advLock) []any {
	a, u, x := make([]int32, len(locks)), make([]int32, len(locks)), make([]bool, len(locks))
	for i, l := range locks {
		a[i], u[i], x[i] = l.app, l.user, l.excl
	}
	return []any{a, u, x}
}

// queueLocks queues the statement that takes users' locks.
func queueLocks(b *pgx.Batch, users []userKey) {
	if len(users) > 0 {
		b.Queue(lockSQL, lockArgs(userLocks(users))...)
	}
}

// lockUsers takes the locks of an app's users: whoever changes which
// deliveries of a user's queues are active holds them, as appends do.
func lockUsers(ctx context.Context, tx *txn, appID string, users []string) error {
	if len(users) == 0 {
		return nil
	}
	keys := make([]userKey, len(users))
	for i, u := range users {
		keys[i] = userKey{appID, u}
	}
	_, err := tx.Exec(ctx, lockSQL, lockArgs(userLocks(keys))...)
	return err
}
