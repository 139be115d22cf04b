// Package schema is meetsync's custom event types: it checks and registers
// types (names outside the reserved namespaces, JSON Schemas compiled
// before they are stored, versioned by the store) and validates the data
// of custom events on ingest, with the JSON Schema implementation
// github.com/santhosh-tekuri/jsonschema/v6 (draft 2020-12 by default;
// format assertions on; no reference outside the schema is ever loaded).
//
// A Registry sits in front of a meetsync.TypeStore: the HTTP API registers
// and reads types through it, and PrepareEvent calls it (as the
// meetsync.TypeChecker) for every event of a custom type. A validation
// error names the failing field under the event's data
// (events[2].data.amount) and the rule that failed.
package schema
