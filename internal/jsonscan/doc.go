// Package jsonscan holds the small JSON lexing and writing pieces shared by
// meetsync's hand-written fast paths: the status data of the root package
// and the ingest body reader of httpapi.
//
// The Skip functions read one JSON token or value at b[i:] and return the
// index just after it, or -1 when b[i:] does not start with one. They accept
// exactly what encoding/json accepts (the grammar of RFC 8259; like
// encoding/json they do not check that strings hold valid UTF-8), never
// allocate, and never read outside b. i must be in [0, len(b)]. The Append
// functions write JSON as encoding/json writes it.
//
// The package depends on the standard library only and knows nothing of
// meetsync's types.
package jsonscan
