package cgroup

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// mkcg creates a cgroup-like directory below root and returns its id (inode).
// The walk only needs directories and inode numbers, so any file system does.
func mkcg(t testing.TB, root, rel string) uint64 {
	t.Helper()
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := dirID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// fakeClock is a settable clock for the rate limit and the retention.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func newTestResolver(t testing.TB, root string) (*Resolver, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	r, err := newResolver(ResolverOptions{Root: root, MinRescanInterval: time.Second, Retention: time.Minute}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	return r, clock
}

func TestResolverLookup(t *testing.T) {
	root := t.TempDir()
	podPath := "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnd + ".slice"
	ctrPath := podPath + "/cri-containerd-" + cid + ".scope"
	ctrID := mkcg(t, root, ctrPath)
	hostID := mkcg(t, root, "/system.slice/sshd.service")

	r, _ := newTestResolver(t, root)

	info, ok := r.Lookup(ctrID)
	want := Info{ID: ctrID, Path: ctrPath, Container: Container{uid, cid, RuntimeContainerd, QoSBestEffort}}
	if !ok || info != want {
		t.Errorf("Lookup(container) = %+v, %v; want %+v", info, ok, want)
	}
	info, ok = r.Lookup(hostID)
	if !ok || info.Path != "/system.slice/sshd.service" || info.Container != (Container{}) {
		t.Errorf("Lookup(host) = %+v, %v", info, ok)
	}
	rootID, _ := dirID(root)
	if p, ok := r.PathOf(rootID); !ok || p != "/" {
		t.Errorf("PathOf(root) = %q, %v; want \"/\"", p, ok)
	}
	if info, ok := r.Lookup(1<<62 + 12345); ok {
		t.Errorf("Lookup(unknown) = %+v, true", info)
	}
}

func TestResolverMissRescansAtMostOncePerInterval(t *testing.T) {
	root := t.TempDir()
	r, clock := newTestResolver(t, root)

	clock.advance(2 * time.Second)
	id1 := mkcg(t, root, "/kubepods/besteffort/pod"+uid+"/"+cid)
	if info, ok := r.Lookup(id1); !ok || info.Container.ContainerID != cid {
		t.Fatalf("Lookup(new cgroup) = %+v, %v; want it found by a rescan", info, ok)
	}

	// A second new cgroup within the interval stays unknown: no walk storm.
	id2 := mkcg(t, root, "/kubepods/besteffort/pod"+uid+"/"+cid2)
	if _, ok := r.Lookup(id2); ok {
		t.Fatal("Lookup within MinRescanInterval walked again")
	}
	clock.advance(time.Second)
	if info, ok := r.Lookup(id2); !ok || info.Container.ContainerID != cid2 {
		t.Fatalf("Lookup after MinRescanInterval = %+v, %v; want it found", info, ok)
	}
}

func TestResolverRetention(t *testing.T) {
	root := t.TempDir()
	rel := "/system.slice/docker-" + cid + ".scope"
	id := mkcg(t, root, rel)
	r, clock := newTestResolver(t, root)

	if err := os.RemoveAll(filepath.Join(root, "system.slice")); err != nil {
		t.Fatal(err)
	}
	clock.advance(30 * time.Second)
	if err := r.Rescan(); err != nil {
		t.Fatal(err)
	}
	if info, ok := r.Lookup(id); !ok || info.Path != rel {
		t.Errorf("removed cgroup within retention: Lookup = %+v, %v; want it kept", info, ok)
	}
	clock.advance(31 * time.Second)
	if err := r.Rescan(); err != nil {
		t.Fatal(err)
	}
	if info, ok := r.Lookup(id); ok {
		t.Errorf("removed cgroup after retention: Lookup = %+v, true; want it dropped", info)
	}
}

func TestResolverConcurrent(t *testing.T) {
	root := t.TempDir()
	known := mkcg(t, root, "/kubepods/pod"+uid+"/"+cid)
	r, err := NewResolver(ResolverOptions{Root: root, MinRescanInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if _, ok := r.Lookup(known); !ok {
					t.Error("known id missed")
					return
				}
				r.Lookup(uint64(1<<40 + g*1000 + i)) // misses trigger rescans
			}
		}()
	}
	wg.Wait()
}

func TestNewResolverBadRoot(t *testing.T) {
	if _, err := NewResolver(ResolverOptions{Root: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("NewResolver with a missing root: want an error")
	}
}

func TestLookupHitDoesNotAllocate(t *testing.T) {
	root := t.TempDir()
	id := mkcg(t, root, "/kubepods/pod"+uid+"/"+cid)
	r, _ := newTestResolver(t, root)
	if n := testing.AllocsPerRun(1000, func() { r.Lookup(id) }); n != 0 {
		t.Errorf("Lookup hit: %v allocations, want 0", n)
	}
}

func BenchmarkLookupHit(b *testing.B) {
	root := b.TempDir()
	ids := make([]uint64, 0, 100)
	for i := 0; i < 100; i++ {
		ids = append(ids, mkcg(b, root, "/kubepods/besteffort/pod"+uid+"/"+cid[:62]+string(rune('a'+i/16))+string("0123456789abcdef"[i%16])))
	}
	r, _ := newTestResolver(b, root)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := r.Lookup(ids[i%len(ids)]); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkParse(b *testing.B) {
	path := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnd + ".slice/cri-containerd-" + cid + ".scope"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Parse(path)
	}
}

// BenchmarkRescan measures one walk of a node-sized hierarchy: 300 pods of
// 3 containers each.
func BenchmarkRescan(b *testing.B) {
	root := b.TempDir()
	for p := 0; p < 300; p++ {
		pod := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnd[:33] + string("0123456789abcdef"[p/256%16]) + string("0123456789abcdef"[p/16%16]) + string("0123456789abcdef"[p%16]) + ".slice"
		for c := 0; c < 3; c++ {
			mkcg(b, root, pod+"/cri-containerd-"+cid[:63]+string("0123456789abcdef"[c])+".scope")
		}
	}
	r, _ := newTestResolver(b, root)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Rescan(); err != nil {
			b.Fatal(err)
		}
	}
}
