package cgroup

import (
	"path/filepath"
	"testing"
)

// A configured root that is the host's whole cgroup filesystem resolves to
// its v2 hierarchy: itself on a pure v2 host, "unified" on a hybrid one (as
// on the test VM), so a pod can mount the host's /sys/fs/cgroup either way.
func TestResolverRootOfHostCgroupFS(t *testing.T) {
	v2, err := FindV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	fsRoot := v2
	if filepath.Base(v2) == "unified" {
		fsRoot = filepath.Dir(v2)
	}
	r, err := NewResolver(ResolverOptions{Root: fsRoot})
	if err != nil {
		t.Fatal(err)
	}
	if r.Root() != v2 {
		t.Fatalf("Root() = %s for the configured %s; want the v2 mount %s", r.Root(), fsRoot, v2)
	}
}
