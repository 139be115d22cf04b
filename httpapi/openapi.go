package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 description of the API, kept true by
// TestOpenAPI (every route documented, every documented route served,
// response fields declared).
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI description served at /v1/openapi.json.
func OpenAPI() []byte { return openAPI }

func handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPI)
}
