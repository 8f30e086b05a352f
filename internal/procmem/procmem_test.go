package procmem

import (
	"os"
	"testing"
)

// This test process has resident memory, some of it its own executable's
// pages, and no more now than at its peak.
func TestReadThisProcess(t *testing.T) {
	u, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS <= 0 || u.Binary <= 0 || u.Anon <= 0 || u.Peak < u.RSS || u.Binary > u.RSS {
		t.Fatalf("usage %+v: want RSS, binary pages and anonymous memory, with RSS <= peak and binary <= RSS", u)
	}
}
