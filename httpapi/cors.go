package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The device routes (/v1/client/…) answer cross-origin requests from the
// origins in Config.CORSOrigins, so a client app in a browser (a web page
// of the business system, an Electron window) can call them with its
// client token, and import the JavaScript client from meetsync itself. The app-key routes never do: an app's API key belongs on
// the business backend, not in a browser.

const clientRoutes = "/v1/client/"

// clientModule is the JavaScript client, which pages of those origins may
// import straight from meetsync.
const clientModule = "/dashboard/meetsync-client.js"

// corsAllowHeaders are the request headers a device may send: its token,
// the JSON body's type, a stream's resume point and an idempotency key.
const corsAllowHeaders = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"

// ValidCORSOrigin checks one entry of Config.CORSOrigins: "*" (any
// origin), or an origin as a browser sends it, scheme://host[:port].
func ValidCORSOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("CORS origin %q is not an origin such as https://app.example.com (scheme and host, an optional port, nothing else), nor *", o)
	}
	return nil
}

// cors adds the CORS headers of a device route's answer to an allowed
// origin, and answers its preflight itself (true: nothing left to do).
func (s *Server) cors(w http.ResponseWriter, r *http.Request) (done bool) {
	if len(s.cfg.CORSOrigins) == 0 || !strings.HasPrefix(r.URL.Path, clientRoutes) && r.URL.Path != clientModule {
		return false
	}
	origin := r.Header.Get("Origin")
	anyOrigin := slices.Contains(s.cfg.CORSOrigins, "*")
	if origin == "" || !anyOrigin && !slices.Contains(s.cfg.CORSOrigins, origin) {
		return false // no CORS headers: the browser keeps the answer from the page
	}
	h := w.Header()
	if anyOrigin {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	h.Set("Access-Control-Expose-Headers", "Retry-After")
	return false
}
