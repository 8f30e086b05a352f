package process

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// The host's network namespace is pid 1's (or kthreadd's), not the caller's:
// read from a thread in a network namespace of its own, it stays the same.
func TestHostNetNSIsNotTheCallersOwn(t *testing.T) {
	host, err := HostNetNS("/proc")
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread() // read this thread's namespace, not another's
	var self unix.Stat_t
	err = unix.Stat("/proc/thread-self/ns/net", &self)
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	var own uint64
	errc := make(chan error, 1)
	var inOther uint32
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			errc <- err
			return
		}
		own = st.Ino
		inOther, err = HostNetNS("/proc")
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if inOther != host {
		t.Errorf("HostNetNS from another network namespace = %d; want the host's %d", inOther, host)
	}
	if uint64(host) == own {
		t.Fatalf("the test thread's new namespace %d is the host's", own)
	}
	if uint32(self.Ino) != host {
		t.Errorf("the test runs in the host's network namespace %d, but HostNetNS says %d", self.Ino, host)
	}
}
