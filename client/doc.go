// Package client is the Go client of meetsync's HTTP API and the seed's
// init/login/logout flow for a Go program that runs a meeting SDK.
//
// Client covers the v1 API a business backend or a device calls (all of
// it but the meeting platform's callback route and /v1/openapi.json),
// custom event types included. It authenticates with an app API key
// (msk_…, for a business backend) or a per-user client token (mct_…, for a
// device). Every error it returns is, or wraps, a *meetsync.Error: the
// server's {"error":{"code","message","field"}} decoded unchanged, and a
// transport failure (connection refused, reset, timeout) with the code
// meetsync.EUNAVAILABLE. Reads and other safe calls are retried with
// backoff; so are event posts whose events carry a client_seq or an id, or
// that carry an Idempotency-Key, because the server stores those once.
//
// Coordinator is the client side of a session (docs/sessions.md): it plugs
// between the app's MeetingSDK and its BusinessSystem, initialises both,
// logs in business then meeting (with retries and the rollback or degrade
// policy), logs out both, forwards the SDK's status changes (debounced,
// numbered per device, through a durable on-disk Queue that survives
// restarts and network outages) and obeys the commands meetsync pushes
// (logout, invitations).
//
// The package imports no database driver.
package client
