package cgroup

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it returns is
// well-formed. The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnd + ".slice/cri-containerd-" + cid + ".scope")
	f.Add("/kubepods/burstable/pod" + uid + "/" + cid)
	f.Fuzz(func(t *testing.T, path string) {
		c, ok := Parse(path)
		checkWellFormed(t, path, c, ok)
		if ok && c.ContainerID != "" && !strings.Contains(path, c.ContainerID) {
			t.Errorf("Parse(%q): ContainerID %q is not in the path", path, c.ContainerID)
		}
	})
}
