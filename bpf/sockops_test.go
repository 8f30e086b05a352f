package bpf_test

import (
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/internal/netnstest"
)

// startAltCapture streams the events of one experimental variant of
// sockops.c until the test ends.
func startAltCapture(t *testing.T, variant string) (*capture, *bpf.Alt) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests load eBPF programs and need root")
	}
	a, err := bpf.LoadAlt(variant, 1<<22)
	if err != nil {
		t.Fatalf("load %s: %v", variant, err)
	}
	c := &capture{t: t, events: make(chan bpf.Event, 1<<16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ev bpf.Event
		for {
			if err := a.Read(&ev); err != nil {
				if !errors.Is(err, os.ErrClosed) {
					t.Errorf("read event: %v", err)
				}
				return
			}
			c.events <- ev
		}
	}()
	t.Cleanup(func() {
		a.Close()
		<-done
	})
	return c, a
}

// The variants the kernel benchmark measures record what connect.c records
// for a loopback connect that succeeds and one that is refused, with the
// connecting process's identity, so that their cost is that of working
// programs. What they cannot see is in README.md (Performance).
func TestAltVariantsRecordLoopbackOutcomes(t *testing.T) {
	for _, variant := range []string{bpf.AltSockops, bpf.AltSockopsSkStorage, bpf.AltConnectSockops} {
		t.Run(variant, func(t *testing.T) {
			c, a := startAltCapture(t, variant)
			checkLoopbackOutcomes(t, c)
			cnt, err := a.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if cnt.HandshakeLost != 0 {
				t.Errorf("%d outcomes without their start", cnt.HandshakeLost)
			}
		})
	}
}

// Connects issued through io_uring go through the socket layer the hooks
// are in, so both variants see them, with the process that submitted them.
func TestAltVariantsRecordIOURingConnects(t *testing.T) {
	for _, variant := range []string{bpf.AltSockops, bpf.AltConnectSockops} {
		t.Run(variant, func(t *testing.T) {
			c, _ := startAltCapture(t, variant)
			open := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
			closed := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(freeTCPPort(t)))
			if res := ioURingConnect(t, open); res != 0 {
				t.Fatalf("io_uring connect to %s: %v", open, syscall.Errno(-res))
			}
			ev := c.next(open, 5*time.Second)
			assertOutcome(t, ev, bpf.Established)
			if ev.PID != uint32(os.Getpid()) || ev.IdentityLost {
				t.Errorf("pid %d identity lost %v: want this process", ev.PID, ev.IdentityLost)
			}
			if res := ioURingConnect(t, closed); syscall.Errno(-res) != unix.ECONNREFUSED {
				t.Fatalf("io_uring connect to closed %s: %d, want ECONNREFUSED", closed, res)
			}
			assertOutcome(t, c.next(closed, 5*time.Second), bpf.Refused, unix.ECONNREFUSED)
		})
	}
}

// What the variants cannot see, as README.md (Performance) says: a connect()
// that fails in the port allocator (EADDRNOTAVAIL), which connect.c reports
// with its errno from sys_exit_connect. sock_ops alone never hears of it
// (tcp_connect() is not reached); the cgroup connect hook starts it, and its
// SYN_SENT->CLOSE inside connect() leaves no error on the socket, so it is
// reported as an attempt the application aborted, without the errno.
func TestAltVariantsMissThePortAllocatorsError(t *testing.T) {
	for _, variant := range []string{bpf.AltSockops, bpf.AltConnectSockops} {
		t.Run(variant, func(t *testing.T) {
			hosts := netnstest.New(t)
			if out, err := hosts.Client.Command("sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40001").CombinedOutput(); err != nil {
				t.Fatalf("sysctl: %v: %s", err, out)
			}
			c, _ := startAltCapture(t, variant)
			peer := hosts.Server.Listen(t, "tcp4", netip.AddrPortFrom(netnstest.ServerV4, 0).String())
			var last connectResult
			for i := 0; i < 3; i++ {
				last = dialIn(t, hosts.Client, peer, false, false)
			}
			if !errors.Is(last.err, unix.EADDRNOTAVAIL) {
				t.Fatalf("third connect: %v, want EADDRNOTAVAIL", last.err)
			}
			for i := 0; i < 2; i++ {
				assertOutcome(t, c.next(peer, 5*time.Second), bpf.Established)
			}
			switch variant {
			case bpf.AltSockops:
				c.none(peer, 500*time.Millisecond)
			case bpf.AltConnectSockops:
				ev := c.next(peer, 5*time.Second)
				assertOutcome(t, ev, bpf.Aborted)
				assertSelf(t, ev, last)
				c.none(peer, 200*time.Millisecond)
			}
		})
	}
}
