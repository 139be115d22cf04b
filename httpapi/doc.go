// Package httpapi serves meetsync's REST API (/v1), its Server-Sent Event
// streams, /healthz, /readyz and /metrics. It holds the single table that
// maps meetsync error codes to HTTP statuses (errors.go) and authenticates
// every /v1 request with an app API key.
package httpapi
