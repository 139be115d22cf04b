package meetsync_test

import (
	"testing"

	"github.com/meetsync/meetsync"
)

func TestMigrationList(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"0009"}, "migration 0009"},
		{[]string{"0009", "0010"}, "migrations 0009, 0010"},
	} {
		if got := meetsync.MigrationList(c.in); got != c.want {
			t.Errorf("MigrationList(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
