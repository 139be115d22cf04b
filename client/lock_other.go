//go:build !unix

package client

// lockQueueDir does nothing where there is no flock: one process per
// queue directory is then up to the app.
func lockQueueDir(dir string) (func(), error) { return func() {}, nil }

// syncDir is a no-op where directories cannot be synced.
func syncDir(dir string) error { return nil }
