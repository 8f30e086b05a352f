package cgroup

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRealCgroups creates kubelet-style cgroups in the machine's real v2
// hierarchy, moves a live process into each, and checks that the Resolver
// maps the process's cgroup id to its pod and container.
func TestRealCgroups(t *testing.T) {
	root := realV2Root(t)
	r, err := NewResolver(ResolverOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if r.Root() != root {
		t.Fatalf("Root() = %q, want %q", r.Root(), root)
	}

	podUID, ctrID := randomUID(t), randomHex(t, 32)
	tests := []struct {
		name string
		rel  string
		want Container
	}{
		{"systemd containerd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
			strings.ReplaceAll(podUID, "-", "_") + ".slice/cri-containerd-" + ctrID + ".scope",
			Container{podUID, ctrID, RuntimeContainerd, QoSBestEffort}},
		// Under a unique prefix, so that it cannot clash with other tests'
		// cgroups, which also shows that nested layouts resolve.
		{"cgroupfs", "/connaudit-test-" + randomHex(t, 4) + "/kubepods/burstable/pod" + podUID + "/" + ctrID,
			Container{PodUID: podUID, ContainerID: ctrID, QoS: QoSBurstable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Resolve on a cache miss: the Resolver was built before the cgroup.
			time.Sleep(300 * time.Millisecond) // let the default rescan interval pass
			dir := makeCgroup(t, root, tt.rel)
			pid := startIn(t, dir)

			id, err := dirID(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := procCgroup(t, pid); got != tt.rel {
				t.Fatalf("/proc/%d/cgroup 0:: line = %q, want %q", pid, got, tt.rel)
			}

			info, ok := r.Lookup(id)
			want := Info{ID: id, Path: tt.rel, Container: tt.want}
			if !ok || info != want {
				t.Fatalf("Lookup(%d) = %+v, %v\nwant %+v", id, info, ok, want)
			}
			if n := testing.AllocsPerRun(100, func() { r.Lookup(id) }); n != 0 {
				t.Errorf("Lookup hit: %v allocations, want 0", n)
			}
		})
	}
}

// realV2Root returns the machine's cgroup v2 mount. The test needs root to
// create cgroups and move processes.
func realV2Root(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create cgroups")
	}
	root, err := FindV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// makeCgroup creates root+rel and, at cleanup, removes the directories that
// it created, leaf first. Directories that already existed (shared parents
// such as kubepods.slice) are left alone.
func makeCgroup(t testing.TB, root, rel string) string {
	t.Helper()
	dir := root
	var created []string
	for _, name := range strings.Split(strings.Trim(rel, "/"), "/") {
		dir = filepath.Join(dir, name)
		err := os.Mkdir(dir, 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			t.Fatalf("create cgroup: %v", err)
		}
		created = append(created, dir)
	}
	t.Cleanup(func() {
		for i := len(created) - 1; i >= 0; i-- {
			// Retry briefly: a killed process leaves its cgroup asynchronously.
			var err error
			for try := 0; try < 50; try++ {
				if err = syscall.Rmdir(created[i]); err == nil || errors.Is(err, syscall.ENOENT) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				t.Errorf("remove cgroup %s: %v", created[i], err)
			}
		}
	})
	return dir
}

// startIn starts a sleeping process, moves it into the cgroup at dir, and
// kills it at cleanup (registered after makeCgroup's, so it runs first).
func startIn(t testing.TB, dir string) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatalf("move pid %d into %s: %v", pid, dir, err)
	}
	return pid
}

// procCgroup returns the v2 path in /proc/<pid>/cgroup (the "0::" line).
func procCgroup(t testing.TB, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p
		}
	}
	t.Fatalf("/proc/%d/cgroup has no 0:: line", pid)
	return ""
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randomUID(t testing.TB) string {
	h := randomHex(t, 16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// BenchmarkRescanReal measures one walk of the real v2 hierarchy holding a
// node's worth of pods: 100 pods of 3 containers under a unique prefix.
func BenchmarkRescanReal(b *testing.B) {
	root := realV2Root(b)
	prefix := "/connaudit-bench-" + randomHex(b, 4) + "/kubepods.slice/kubepods-burstable.slice"
	for p := 0; p < 100; p++ {
		pod := prefix + "/kubepods-burstable-pod" + strings.ReplaceAll(randomUID(b), "-", "_") + ".slice"
		for c := 0; c < 3; c++ {
			makeCgroup(b, root, pod+"/cri-containerd-"+randomHex(b, 32)+".scope")
		}
	}
	r, err := NewResolver(ResolverOptions{Root: root})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Rescan(); err != nil {
			b.Fatal(err)
		}
	}
}

// Cached never walks on the caller's goroutine: a miss returns at once, and
// RunRescans finds the new cgroup for a later call.
func TestCachedMissIsWalkedInTheBackground(t *testing.T) {
	root := realV2Root(t)
	r, err := NewResolver(ResolverOptions{Root: root, MinRescanInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dir := makeCgroup(t, root, "connaudit-test-"+randomHex(t, 8)+".slice")
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Cached(st.Ino); ok {
		t.Fatal("a cgroup created after the last walk was found without a walk")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.RunRescans(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if info, ok := r.Cached(st.Ino); ok {
			if want := strings.TrimPrefix(dir, root); info.Path != want {
				t.Fatalf("path %q, want %q", info.Path, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the background walk never found the new cgroup")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
