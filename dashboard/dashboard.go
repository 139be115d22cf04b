// Package dashboard is meetsync's operator dashboard: a few static files
// (HTML, CSS and JavaScript modules, no build step) embedded in the binary
// and served under /dashboard/. The page holds no data of its own: the
// operator signs in with one of an app's API keys, which stays in the
// browser tab, and every figure it shows comes from the /v1 API with that
// key — users and their live status, sessions and devices, the event log
// (live, through the event stream), endpoints with their deliveries and
// attempts, and dead letters with replay and recovery.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Static returns the dashboard's files (index.html, app.js, api.js,
// style.css) and meetsync's JavaScript client for client apps
// (meetsync-client.js), whose HTTP and stream plumbing api.js uses.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	return sub
}

// contentSecurityPolicy lets the page load only its own files and talk
// only to its own server: no inline script, no third-party origin, no
// framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard's files under prefix (such as
// "/dashboard/"); prefix itself serves index.html.
func Handler(prefix string) http.Handler {
	files := http.StripPrefix(prefix, http.FileServerFS(Static()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache") // revalidated: a new binary's files are picked up at once
		files.ServeHTTP(w, r)
	})
}
