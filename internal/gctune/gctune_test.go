package gctune

import (
	"os"
	"runtime/debug"
	"testing"
)

// unsetenv removes name for the test and restores it afterwards.
func unsetenv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // restores the old value at the end
	os.Unsetenv(name)
}

func TestApplySetsThePercent(t *testing.T) {
	unsetenv(t, "GOGC")
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	setting, source := Apply(250)
	if setting != "250" || source != "config" {
		t.Fatalf("Apply(250) = %q, %q; want 250, config", setting, source)
	}
	if got := debug.SetGCPercent(100); got != 250 {
		t.Fatalf("the collector's percent is %d after Apply(250)", got)
	}
}

func TestGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "150")
	old := debug.SetGCPercent(150)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	setting, source := Apply(400)
	if setting != "150" || source != "GOGC" {
		t.Fatalf("Apply(400) with GOGC=150 = %q, %q; want 150, GOGC", setting, source)
	}
	if got := debug.SetGCPercent(150); got != 150 {
		t.Fatalf("Apply changed the percent to %d although GOGC is set", got)
	}
}

func TestCheck(t *testing.T) {
	unsetenv(t, "GOMEMLIMIT")
	for _, p := range []int{1, 100, DefaultPercent, 10000} {
		if err := Check(p); err != nil {
			t.Errorf("Check(%d) = %v", p, err)
		}
	}
	for _, p := range []int{0, -2, Off} {
		if err := Check(p); err == nil {
			t.Errorf("Check(%d) accepted it (GOMEMLIMIT unset)", p)
		}
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if err := Check(Off); err != nil {
		t.Errorf("Check(Off) with GOMEMLIMIT = %v", err)
	}
}
