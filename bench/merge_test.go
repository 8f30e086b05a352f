package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A partial run's figures take their places in the earlier report, which
// keeps its order (figure 10 after 9, not after 1); the figures it did not
// measure say which commit did.
func TestMergeKeepsTheReportsOrder(t *testing.T) {
	old := Report{Commit: "abc123", Figures: []Figure{{ID: "1"}, {ID: "2"}, {ID: "3@500"}, {ID: "9@500"}, {ID: "10-p50@500"}, {ID: "3@5000"}}}
	data, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Report{Figures: []Figure{{ID: "3@5000", Detail: "new"}, {ID: "3@500", Detail: "new"}, {ID: "11"}}}
	r.mergeInto(path)
	var ids []string
	for _, f := range r.Figures {
		ids = append(ids, f.ID)
		if fresh := f.Detail == "new" || f.ID == "11"; fresh == strings.Contains(f.Detail, "measured at commit abc123") {
			t.Errorf("figure %s: detail %q", f.ID, f.Detail)
		}
	}
	if want := []string{"1", "2", "3@500", "9@500", "10-p50@500", "3@5000", "11"}; !slices.Equal(ids, want) {
		t.Fatalf("merged order %v, want %v", ids, want)
	}
}
