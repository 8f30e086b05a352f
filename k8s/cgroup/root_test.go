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

// V2Root, which DNS capture attaches to, is the configured root's v2
// hierarchy, whether the host's whole cgroup filesystem or its v2 mount is
// configured; unset, it is the mount of /proc/self/mountinfo.
func TestV2Root(t *testing.T) {
	v2, err := FindV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	fsRoot := v2
	if filepath.Base(v2) == "unified" {
		fsRoot = filepath.Dir(v2)
	}
	for _, configured := range []string{"", v2, fsRoot} {
		got, err := V2Root(configured)
		if err != nil || got != v2 {
			t.Errorf("V2Root(%q) = %q, %v; want %s", configured, got, err, v2)
		}
	}
	other := t.TempDir()
	if got, _ := V2Root(other); got != other {
		t.Errorf("V2Root(%q) = %q; a configured root is used as given", other, got)
	}
}
