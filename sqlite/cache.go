package sqlite

import (
	"slices"
	"sync"

	"github.com/meetsync/meetsync"
)

// userCache keeps the state of users whose rows were written recently
// (by an append, or by the materializer: the users still in the backlog
// are found there first), so appending an event for a user usually reads
// no row. It is valid because this store is the only writer of its file
// (the server holds a lock on the data directory) and every write of a
// users row happens under DB.writeMu, which publishes the new states
// after the commit.
type userCache struct {
	mu  sync.Mutex
	m   map[userKey]*meetsync.UserState
	max int
}

func cloneUser(u *meetsync.UserState) *meetsync.UserState {
	c := *u
	c.Session.Devices = slices.Clone(u.Session.Devices)
	c.Invites = slices.Clone(u.Invites)
	c.Devices = make([]*meetsync.DeviceState, len(u.Devices))
	for i, d := range u.Devices {
		dc := *d
		dc.Dirty = false
		c.Devices[i] = &dc
	}
	return &c
}

func (c *userCache) get(k userKey) *meetsync.UserState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if u, ok := c.m[k]; ok {
		return cloneUser(u)
	}
	return nil
}

func (c *userCache) put(us []*meetsync.UserState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m)+len(us) > c.max {
		c.m = make(map[userKey]*meetsync.UserState, len(us))
	}
	for _, u := range us {
		c.m[userKey{u.AppID, u.UserID}] = cloneUser(u)
	}
}

func (c *userCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}
