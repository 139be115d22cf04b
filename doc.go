// Package meetsync holds the domain of meetsync: the types every other
// package speaks (App, APIKey, Event, UserState, MeetingStatus, …), the one
// error type with its codes, the pure rules that decide how an event moves a
// user's state, and the seams (Store, Notifier) that the technology packages
// implement.
//
// The root package imports no technology: sqlite/ (and later postgres/)
// implement Store, ingest/ groups requests into shared transactions,
// httpapi/ serves the REST API and cmd/meetsync wires them together.
// See docs/ARCHITECTURE.md for the picture.
package meetsync
