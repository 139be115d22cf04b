package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync/webhook"
)

const (
	secret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secret2 = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	msgID   = "msg_p5jXN8AQM9LWM0D4loKWxJek"
)

var body = []byte(`{"test": 2432232314}`)

// now is the fixed clock of these tests.
var now = time.Unix(1614265330, 0)

func headers(id string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set(webhook.HeaderID, id)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(webhook.HeaderSignature, sig)
	return h
}

func sign(t *testing.T, secret, id string, ts time.Time, body []byte) string {
	t.Helper()
	s, err := webhook.Sign(secret, id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func verifier() webhook.Verifier { return webhook.Verifier{Now: func() time.Time { return now }} }

// TestSign checks the signature against an HMAC computed here and the
// Standard Webhooks specification's example.
func TestSign(t *testing.T) {
	got := sign(t, secret, msgID, now, body)
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %s, want the specification's %s", got, want)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret2, "whsec_"))
	m := hmac.New(sha256.New, key)
	m.Write([]byte("evt_1.1700000000.hello"))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	if got := sign(t, secret2, "evt_1", time.Unix(1700000000, 999_000_000), []byte("hello")); got != want {
		t.Errorf("Sign = %s, want %s (HMAC-SHA256 of id.seconds.body)", got, want)
	}
	// The whsec_ prefix is optional.
	if got := sign(t, strings.TrimPrefix(secret, "whsec_"), msgID, now, body); got != sign(t, secret, msgID, now, body) {
		t.Errorf("a secret without its prefix signs differently")
	}
}

func TestVerify(t *testing.T) {
	good := sign(t, secret, msgID, now, body)
	other := sign(t, secret2, msgID, now, body)
	cases := []struct {
		name string
		h    http.Header
		body []byte
		want error // nil: verifies
	}{
		{"valid", headers(msgID, now, good), body, nil},
		{"changed body", headers(msgID, now, good), []byte(`{"test": 2432232315}`), webhook.ErrNoMatch},
		{"empty body", headers(msgID, now, good), nil, webhook.ErrNoMatch},
		{"changed id", headers(msgID+"x", now, good), body, webhook.ErrNoMatch},
		{"changed timestamp", headers(msgID, now.Add(time.Second), good), body, webhook.ErrNoMatch},
		{"other secret's signature", headers(msgID, now, other), body, webhook.ErrNoMatch},
		{"flipped signature bit", headers(msgID, now, flip(good)), body, webhook.ErrNoMatch},
		{"truncated signature", headers(msgID, now, good[:len(good)-4]), body, webhook.ErrNoMatch},
		{"unknown version", headers(msgID, now, "v2,"+strings.TrimPrefix(good, "v1,")), body, webhook.ErrNoMatch},
		{"no version", headers(msgID, now, strings.TrimPrefix(good, "v1,")), body, webhook.ErrNoMatch},
		{"empty signature", headers(msgID, now, "v1,"), body, webhook.ErrNoMatch},
		{"not base64", headers(msgID, now, "v1,!!!"), body, webhook.ErrNoMatch},
		{"asymmetric v1a", headers(msgID, now, "v1a,"+strings.TrimPrefix(good, "v1,")), body, webhook.ErrNoMatch},

		// Several signatures, space separated (a rotation): one match is enough.
		{"several, match last", headers(msgID, now, other+" "+good), body, nil},
		{"several, match first", headers(msgID, now, good+" "+other), body, nil},
		{"several with junk", headers(msgID, now, "v1,bad v2,zzz  "+good+" "), body, nil},
		{"several, none match", headers(msgID, now, other+" "+flip(good)), body, webhook.ErrNoMatch},

		// Timestamps: 5 minutes either way by default.
		{"4m59s old", headers(msgID, now.Add(-299*time.Second), sign(t, secret, msgID, now.Add(-299*time.Second), body)), body, nil},
		{"5m old", headers(msgID, now.Add(-5*time.Minute), sign(t, secret, msgID, now.Add(-5*time.Minute), body)), body, nil},
		{"5m1s old", headers(msgID, now.Add(-301*time.Second), sign(t, secret, msgID, now.Add(-301*time.Second), body)), body, webhook.ErrTooOld},
		{"5m ahead", headers(msgID, now.Add(5*time.Minute), sign(t, secret, msgID, now.Add(5*time.Minute), body)), body, nil},
		{"5m1s ahead", headers(msgID, now.Add(301*time.Second), sign(t, secret, msgID, now.Add(301*time.Second), body)), body, webhook.ErrTooNew},
		{"milliseconds", withHeader(headers(msgID, now, good), webhook.HeaderTimestamp, strconv.FormatInt(now.UnixMilli(), 10)), body, webhook.ErrTooNew},

		// Malformed headers.
		{"no id", withHeader(headers(msgID, now, good), webhook.HeaderID, ""), body, webhook.ErrMissingHeaders},
		{"no timestamp", withHeader(headers(msgID, now, good), webhook.HeaderTimestamp, ""), body, webhook.ErrMissingHeaders},
		{"no signature", withHeader(headers(msgID, now, good), webhook.HeaderSignature, ""), body, webhook.ErrMissingHeaders},
		{"timestamp not a number", withHeader(headers(msgID, now, good), webhook.HeaderTimestamp, "yesterday"), body, webhook.ErrInvalidTimestamp},
		{"timestamp with fraction", withHeader(headers(msgID, now, good), webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10)+".5"), body, webhook.ErrInvalidTimestamp},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := verifier().Verify(secret, c.h, c.body)
			if c.want == nil && err != nil {
				t.Fatalf("Verify = %v, want nil", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func flip(sig string) string {
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, "v1,"))
	raw[0] ^= 0x80
	return "v1," + base64.StdEncoding.EncodeToString(raw)
}

func withHeader(h http.Header, k, v string) http.Header {
	if v == "" {
		h.Del(k)
	} else {
		h.Set(k, v)
	}
	return h
}

func TestVerifyTolerance(t *testing.T) {
	ts := now.Add(-30 * time.Second)
	h := headers(msgID, ts, sign(t, secret, msgID, ts, body))
	strict := webhook.Verifier{Tolerance: 10 * time.Second, Now: func() time.Time { return now }}
	if err := strict.Verify(secret, h, body); !errors.Is(err, webhook.ErrTooOld) {
		t.Errorf("30s old with a 10s tolerance: %v, want ErrTooOld", err)
	}
	lax := webhook.Verifier{Tolerance: time.Hour, Now: func() time.Time { return now.Add(59 * time.Minute) }}
	if err := lax.Verify(secret, h, body); err != nil {
		t.Errorf("59m30s old with a 1h tolerance: %v", err)
	}
	// The package-level Verify uses the real clock and the default tolerance.
	fresh := time.Now()
	if err := webhook.Verify(secret, headers(msgID, fresh, sign(t, secret, msgID, fresh, body)), body); err != nil {
		t.Errorf("Verify of a fresh webhook: %v", err)
	}
	if err := webhook.Verify(secret, h, body); !errors.Is(err, webhook.ErrTooOld) {
		t.Errorf("Verify of a webhook from %s: %v, want ErrTooOld", ts, err)
	}
}

func TestBadSecret(t *testing.T) {
	h := headers(msgID, now, sign(t, secret, msgID, now, body))
	for _, s := range []string{"", "whsec_", "whsec_!!!not-base64", "whsec_MfKQ9r8GKYqr TwjUPD8"} {
		if _, err := webhook.Sign(s, msgID, now, body); !errors.Is(err, webhook.ErrBadSecret) {
			t.Errorf("Sign with secret %q: %v, want ErrBadSecret", s, err)
		}
		if err := verifier().Verify(s, h, body); !errors.Is(err, webhook.ErrBadSecret) {
			t.Errorf("Verify with secret %q: %v, want ErrBadSecret", s, err)
		}
		if _, err := webhook.ParseSecret(s); !errors.Is(err, webhook.ErrBadSecret) {
			t.Errorf("ParseSecret(%q): %v, want ErrBadSecret", s, err)
		}
	}
	// A well-formed but wrong secret is no match, not a bad secret.
	if err := verifier().Verify(secret2, h, body); !errors.Is(err, webhook.ErrNoMatch) {
		t.Errorf("Verify with the wrong secret: %v, want ErrNoMatch", err)
	}
}

// TestSignatureHeader: one signature per key, space separated, each
// verifying with its own secret.
func TestSignatureHeader(t *testing.T) {
	var keys []webhook.Key
	for _, s := range []string{secret, secret2} {
		k, err := webhook.ParseSecret(s)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	v := webhook.SignatureHeader(keys, msgID, now, body)
	parts := strings.Split(v, " ")
	if len(parts) != 2 || parts[0] != sign(t, secret, msgID, now, body) || parts[1] != sign(t, secret2, msgID, now, body) {
		t.Fatalf("SignatureHeader = %q", v)
	}
	for _, s := range []string{secret, secret2} {
		if err := verifier().Verify(s, headers(msgID, now, v), body); err != nil {
			t.Errorf("secret %s: %v", s, err)
		}
	}
	if got := webhook.SignatureHeader(nil, msgID, now, body); got != "" {
		t.Errorf("SignatureHeader without keys = %q", got)
	}
}

// FuzzVerify: Verify never panics, and accepts a signature header only if
// it holds the right signature.
func FuzzVerify(f *testing.F) {
	good := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	f.Add(msgID, "1614265330", good, []byte(`{"test": 2432232314}`))
	f.Add(msgID, "1614265330", "v1,x v1,"+strings.Repeat("A", 44), []byte("{}"))
	f.Add("", "-1", ",,, v1", []byte(nil))
	f.Add("a", "99999999999999999999", "v1,====", []byte("x"))
	f.Fuzz(func(t *testing.T, id, ts, sig string, b []byte) {
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, ts)
		h.Set(webhook.HeaderSignature, sig)
		err := verifier().Verify(secret, h, b)
		if err != nil {
			return
		}
		n, perr := strconv.ParseInt(h.Get(webhook.HeaderTimestamp), 10, 64)
		if perr != nil {
			t.Fatalf("accepted an unparsable timestamp %q", ts)
		}
		want := sign(t, secret, h.Get(webhook.HeaderID), time.Unix(n, 0), b)
		if !strings.Contains(" "+h.Get(webhook.HeaderSignature)+" ", " "+want+" ") &&
			!strings.Contains(h.Get(webhook.HeaderSignature), strings.TrimPrefix(want, "v1,")) {
			t.Fatalf("accepted signature %q for id %q ts %q, want it to contain %s", sig, id, ts, want)
		}
	})
}
