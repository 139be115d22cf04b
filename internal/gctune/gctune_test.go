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

// Apply sets the percent it is given, unless GOGC is set: then it leaves
// the collector alone and reports GOGC's value.
func TestApply(t *testing.T) {
	for _, tt := range []struct {
		gogc         string // "" = unset
		percent      int
		want, source string
		effective    int
	}{
		{percent: 250, want: "250", source: "config", effective: 250},
		{gogc: "150", percent: 400, want: "150", source: "GOGC", effective: 150},
	} {
		name := "GOGC unset"
		if tt.gogc != "" {
			name = "GOGC=" + tt.gogc
		}
		t.Run(name, func(t *testing.T) {
			unsetenv(t, "GOGC")
			before := 100
			if tt.gogc != "" {
				t.Setenv("GOGC", tt.gogc)
				before = tt.effective // as the runtime read it at start
			}
			old := debug.SetGCPercent(before)
			t.Cleanup(func() { debug.SetGCPercent(old) })

			setting, source := Apply(tt.percent)
			if setting != tt.want || source != tt.source {
				t.Fatalf("Apply(%d) = %q, %q; want %q, %q", tt.percent, setting, source, tt.want, tt.source)
			}
			if got := debug.SetGCPercent(before); got != tt.effective {
				t.Fatalf("the collector's percent is %d after Apply(%d), want %d", got, tt.percent, tt.effective)
			}
		})
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
