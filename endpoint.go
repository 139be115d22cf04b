package meetsync

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Endpoint is a webhook receiver of an app.
type Endpoint struct {
	ID          string
	AppID       string
	URL         string
	Description string
	// EventTypes filters the events delivered (exact names and "prefix.*");
	// empty means every event.
	EventTypes TypeFilter
	// Debounce is how long a meeting.status_changed delivery waits for a
	// newer status of the same user that would supersede it. 0 = off.
	Debounce time.Duration
	// RateLimit is the most requests per second sent to the endpoint (0 = no limit).
	RateLimit int
	// Secrets are the signing secrets, newest first; during a rotation the
	// older ones carry an expiry and every webhook is signed with all of them.
	Secrets        []EndpointSecret
	Disabled       bool
	DisabledReason string
	DisabledAt     *time.Time
	// FailingSince is when the current run of failed attempts began (nil
	// after a success).
	FailingSince *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// EndpointSecret is one signing secret of an endpoint.
type EndpointSecret struct {
	Secret    string     `json:"secret"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Defaults for endpoints.
const (
	DefaultDebounce      = 300 * time.Millisecond
	MaxDebounce          = 60 * time.Second
	DefaultRotationGrace = 24 * time.Hour
	SecretPrefix         = "whsec_"
)

// NewEndpointSecret returns a fresh signing secret: "whsec_" and the base64
// of 32 random bytes, as Standard Webhooks expects.
func NewEndpointSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// Subscribed reports whether the endpoint takes events of type typ.
func (e *Endpoint) Subscribed(typ string) bool { return !e.Disabled && e.EventTypes.Match(typ) }

// URLPolicy decides which webhook URLs are acceptable (the SSRF guard).
type URLPolicy struct {
	// AllowPrivate lets URLs use plain http and point at loopback, private,
	// link-local and other non-public addresses (tests and demos).
	AllowPrivate bool
}

// CheckURL validates a webhook URL's form: absolute http(s), a host, no
// credentials; https unless private endpoints are allowed. field names the
// input field for errors.
func (p URLPolicy) CheckURL(raw, field string) (*url.URL, error) {
	if len(raw) > 2048 {
		return nil, FieldErrorf(field, "url is longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, FieldErrorf(field, "url must be an absolute http(s) URL")
	}
	if u.User != nil {
		return nil, FieldErrorf(field, "url must not carry credentials")
	}
	if u.Scheme != "https" && !p.AllowPrivate {
		return nil, FieldErrorf(field, "url must use https (plain http only with --allow-private-endpoints)")
	}
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && !p.AllowPrivate && !PublicAddr(ip) {
		return nil, FieldErrorf(field, "url points at a non-public address %s (allowed only with --allow-private-endpoints)", ip)
	}
	return u, nil
}

// CheckURLResolved is CheckURL plus a DNS look-up of the host: unless
// private endpoints are allowed, every address it resolves to must be public.
func (p URLPolicy) CheckURLResolved(ctx context.Context, raw, field string) (*url.URL, error) {
	u, err := p.CheckURL(raw, field)
	if err != nil || p.AllowPrivate {
		return u, err
	}
	host := strings.Trim(u.Hostname(), "[]")
	if _, err := netip.ParseAddr(host); err == nil {
		return u, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return nil, FieldErrorf(field, "url host %q does not resolve", host)
	}
	for _, a := range addrs {
		if !PublicAddr(a) {
			return nil, FieldErrorf(field, "url host %q resolves to non-public address %s (allowed only with --allow-private-endpoints)", host, a)
		}
	}
	return u, nil
}

// PublicAddr reports whether ip is a public unicast address: not loopback,
// private (RFC 1918, ULA), link-local, CGNAT, multicast, unspecified, or a
// cloud metadata address.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

var nonPublic = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
		"64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "fd00:ec2::254/128",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// CheckDialAddr is the SSRF check done at connect time (after DNS): it
// refuses a non-public address unless private endpoints are allowed.
func (p URLPolicy) CheckDialAddr(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return Errorf(EFORBIDDEN, "webhook target %s is not an IP address", host)
	}
	if !p.AllowPrivate && !PublicAddr(ip) {
		return Errorf(EFORBIDDEN, "webhook target resolves to non-public address %s (refused: SSRF guard; allow with --allow-private-endpoints)", ip)
	}
	return nil
}
