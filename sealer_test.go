package meetsync_test

import (
	"strings"
	"testing"

	"github.com/meetsync/meetsync"
)

func TestSealer(t *testing.T) {
	s, err := meetsync.NewSealer(meetsync.NewSecretKey())
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.Seal("token-123"), s.Seal("token-123")
	if !strings.HasPrefix(a, "enc:v1:") || strings.Contains(a, "token-123") || a == b {
		t.Fatalf("sealed %q and %q: want encrypted, with a fresh nonce each time", a, b)
	}
	if s.Seal(a) != a || s.Seal("") != "" {
		t.Fatal("sealing is not idempotent on sealed or empty values")
	}
	for _, v := range []string{a, b} {
		if got, err := s.Open(v); err != nil || got != "token-123" {
			t.Fatalf("open %q = %q, %v", v, got, err)
		}
	}
	if got, err := s.Open("plain"); err != nil || got != "plain" {
		t.Fatalf("a value written before encryption: %q, %v", got, err)
	}
	other, _ := meetsync.NewSealer(meetsync.NewSecretKey())
	if _, err := other.Open(a); meetsync.ErrorCode(err) != meetsync.EINTERNAL || strings.Contains(err.Error(), "token") {
		t.Fatalf("another key opened it, or the error leaks: %v", err)
	}
	if _, err := s.Open(a[:len(a)-3]); err == nil {
		t.Fatal("a damaged value opened")
	}
	var none *meetsync.Sealer
	if none.Seal("x") != "x" {
		t.Fatal("a nil Sealer changed a value")
	}
	if _, err := none.Open(a); err == nil {
		t.Fatal("a nil Sealer opened an encrypted value")
	}
	if _, err := meetsync.NewSealer(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
}

// TestSealerCheckValue: a key's check value matches that key only.
func TestSealerCheckValue(t *testing.T) {
	t.Parallel()
	a, _ := meetsync.NewSealer(meetsync.NewSecretKey())
	b, _ := meetsync.NewSealer(meetsync.NewSecretKey())
	check := a.CheckValue()
	if !meetsync.IsSealed(check) || !a.CheckMatches(check) {
		t.Errorf("a's check value %q does not match a", check)
	}
	if b.CheckMatches(check) {
		t.Error("a's check value matches another key")
	}
	if other, _ := a.Open(a.Seal("some secret")); a.CheckMatches(a.Seal(other)) {
		t.Error("another value sealed with a counts as its check value")
	}
}
