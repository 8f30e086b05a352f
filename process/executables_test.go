package process

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func bootNs(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// The path is given only for the very task that connected.
func TestLookupTrustsOnlyTheSameTask(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	before := bootNs(t)
	time.Sleep(30 * time.Millisecond) // more than one clock tick before the child starts
	child := exec.Command(sleep, "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	time.Sleep(50 * time.Millisecond) // let it exec
	pid := uint32(child.Process.Pid)
	now := bootNs(t)
	x := NewExecutables("/proc", 16)

	want, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	self := uint32(os.Getpid())
	if got := x.Lookup(self, self, []byte(readComm(t, self)), now); got != want {
		t.Errorf("own task: %q, want %q", got, want)
	}
	if got := x.Lookup(pid, pid, []byte("sleep"), now); got != sleep {
		t.Errorf("child: %q, want %q", got, sleep)
	}
	if got := x.Lookup(pid, pid, []byte("curl"), now); got != "" {
		t.Errorf("child under another name (it exec'd since): %q, want none", got)
	}
	if got := x.Lookup(pid, pid, []byte("sleep"), before); got != "" {
		t.Errorf("an attempt made before the task started (its tid was reused): %q, want none", got)
	}
	child.Process.Kill()
	child.Wait()
	if got := x.Lookup(pid, pid, []byte("sleep"), now); got != sleep {
		t.Errorf("exited child, for an attempt made while it was seen alive: %q, want %q", got, sleep)
	}
	if got := x.Lookup(pid, pid, []byte("sleep"), bootNs(t)); got != "" {
		t.Errorf("exited child, for an attempt made after it was last seen alive: %q, want none", got)
	}
	if got := NewExecutables("/proc", 16).Lookup(pid, pid, []byte("sleep"), now); got != "" {
		t.Errorf("exited child, never seen alive: %q, want none", got)
	}
}

// The cache holds one descriptor per live task it vouches for, and closes
// those of tasks it forgets.
func TestLookupClosesWhatItForgets(t *testing.T) {
	self := uint32(os.Getpid())
	comm := []byte(readComm(t, self))
	openFDs := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(fds)
	}
	x := NewExecutables("/proc", 2)
	before := openFDs()
	var tids []uint32
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		var tid uint32
		fmt.Sscan(task.Name(), &tid)
		tids = append(tids, tid)
	}
	if len(tids) < 3 {
		t.Fatalf("the test process has %d threads; want 3 (the Go runtime starts more)", len(tids))
	}
	for range 3 {
		for _, tid := range tids {
			x.Lookup(self, tid, comm, bootNow())
		}
	}
	if x.dirFDs > 2 || openFDs()-before != x.dirFDs {
		t.Errorf("%d descriptors held for a cache of 2 tasks, %d more open than before", x.dirFDs, openFDs()-before)
	}
}

func readComm(t *testing.T, pid uint32) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:len(b)-1])
}

func BenchmarkLookup(b *testing.B) {
	x := NewExecutables("/proc", 16)
	self := uint32(os.Getpid())
	comm, _ := os.ReadFile("/proc/self/comm")
	comm = comm[:len(comm)-1]
	b.Run("attempt before the last sighting", func(b *testing.B) {
		at := bootNow()
		x.Lookup(self, self, comm, at)
		b.ReportAllocs()
		for b.Loop() {
			x.Lookup(self, self, comm, at)
		}
	})
	b.Run("attempt after the last sighting", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			x.Lookup(self, self, comm, bootNow())
		}
	})
}
