package bpf_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/internal/netnstest"
)

var testConfig = bpf.Config{RingBufferBytes: 1 << 22, HandshakeEntries: 65536}

// capture runs a tracer and streams its events until the test ends.
type capture struct {
	t      *testing.T
	tracer *bpf.Tracer
	events chan bpf.Event
}

func startCapture(t *testing.T, cfg bpf.Config) *capture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests load eBPF programs and need root")
	}
	tr, err := bpf.Load(cfg)
	if err != nil {
		t.Fatalf("load tracer: %v", err)
	}
	c := &capture{t: t, tracer: tr, events: make(chan bpf.Event, 1<<16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ev bpf.Event
		for {
			if err := tr.Read(&ev); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				t.Errorf("read event: %v", err)
				return
			}
			c.events <- ev
		}
	}()
	t.Cleanup(func() {
		tr.Close()
		<-done
	})
	return c
}

// next returns the first event to peer, failing after timeout.
func (c *capture) next(peer netip.AddrPort, timeout time.Duration) bpf.Event {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-c.events:
			if ev.Peer == peer {
				return ev
			}
		case <-deadline:
			c.t.Fatalf("no event for a connect to %s within %s", peer, timeout)
		}
	}
}

// none fails if an event to peer arrives within d.
func (c *capture) none(peer netip.AddrPort, d time.Duration) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-c.events:
			if ev.Peer == peer {
				c.t.Fatalf("unexpected second event for %s: %+v", peer, ev)
			}
		case <-deadline:
			return
		}
	}
}

// closedPort returns a loopback address and port where nothing listens.
func closedPort(t *testing.T, network, addr string) netip.AddrPort {
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// connectResult is what the application saw.
type connectResult struct {
	fd    int
	local netip.AddrPort
	err   error
	tid   int
}

// dial makes one raw connect() with the requested mode. With nonblock it waits
// for the outcome with poll, unless abort is set, in which case it closes the
// socket while the handshake is in flight.
func dial(t *testing.T, peer netip.AddrPort, nonblock, abort bool) connectResult {
	t.Helper()
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(peer.Port()), Addr: peer.Addr().As16()}
	if peer.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(peer.Port()), Addr: peer.Addr().As4()}
	}
	typ := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
	if nonblock {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(family, typ, 0)
	if err != nil {
		t.Fatal(err)
	}
	res := connectResult{fd: fd, tid: unix.Gettid()}
	res.err = unix.Connect(fd, sa)
	if nonblock && errors.Is(res.err, unix.EINPROGRESS) {
		if abort {
			unix.Close(fd)
			return res
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(fds, 10_000); err != nil {
			t.Fatal(err)
		}
		soerr, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		res.err = nil
		if soerr != 0 {
			res.err = syscall.Errno(soerr)
		}
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			res.local = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			res.local = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
		}
	}
	if res.err != nil {
		// As an application does: a failed connect's socket is closed.
		unix.Close(fd)
		res.fd = -1
		return res
	}
	t.Cleanup(func() { unix.Close(fd) })
	return res
}

func dialIn(t *testing.T, ns netnstest.NS, peer netip.AddrPort, nonblock, abort bool) connectResult {
	t.Helper()
	var res connectResult
	if err := ns.Do(func() error { res = dial(t, peer, nonblock, abort); return nil }); err != nil {
		t.Fatal(err)
	}
	return res
}

func assertOutcome(t *testing.T, ev bpf.Event, want bpf.Outcome, errnos ...syscall.Errno) {
	t.Helper()
	if ev.Outcome != want {
		t.Fatalf("outcome = %s (errno %v), want %s", ev.Outcome, ev.Errno, want)
	}
	if len(errnos) == 0 && ev.Errno != 0 {
		t.Fatalf("errno = %v, want none", ev.Errno)
	}
	if len(errnos) > 0 {
		ok := false
		for _, e := range errnos {
			ok = ok || ev.Errno == e
		}
		if !ok {
			t.Fatalf("errno = %v (%d), want one of %v", ev.Errno, ev.Errno, errnos)
		}
	}
	if ev.StartNs == 0 || ev.EndNs < ev.StartNs {
		t.Fatalf("times: start %d end %d", ev.StartNs, ev.EndNs)
	}
}

// assertSelf checks the identity fields for a connect made by this test process.
func assertSelf(t *testing.T, ev bpf.Event, res connectResult) {
	t.Helper()
	if ev.PID != uint32(os.Getpid()) || ev.TID != uint32(res.tid) || ev.PPID != uint32(os.Getppid()) {
		t.Errorf("pid/tid/ppid = %d/%d/%d, want %d/%d/%d", ev.PID, ev.TID, ev.PPID, os.Getpid(), res.tid, os.Getppid())
	}
	if want := filepath.Base(os.Args[0]); len(want) > 15 && string(ev.Comm()) != want[:15] || len(want) <= 15 && string(ev.Comm()) != want {
		t.Errorf("comm = %q, want %q", ev.Comm(), want)
	}
	if ev.UID != uint32(os.Getuid()) || ev.GID != uint32(os.Getgid()) {
		t.Errorf("uid/gid = %d/%d", ev.UID, ev.GID)
	}
	if ev.CgroupID == 0 || ev.MntNS == 0 || ev.NetNS == 0 {
		t.Errorf("cgroup %d mntns %d netns %d: want all set", ev.CgroupID, ev.MntNS, ev.NetNS)
	}
	if ev.IdentityLost {
		t.Error("identity marked lost")
	}
}

func TestLoopbackOutcomes(t *testing.T) { testLoopbackOutcomes(t, testConfig) }

func testLoopbackOutcomes(t *testing.T, cfg bpf.Config) {
	checkLoopbackOutcomes(t, startCapture(t, cfg))
}

// checkLoopbackOutcomes checks c's records of an established and a refused
// loopback connect, IPv4 and IPv6, blocking and not.
func checkLoopbackOutcomes(t *testing.T, c *capture) {
	for _, fam := range []struct{ name, network, addr string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6", "tcp6", "[::1]:0"},
	} {
		for _, nonblock := range []bool{false, true} {
			mode := "blocking"
			if nonblock {
				mode = "nonblocking"
			}
			t.Run(fam.name+"/"+mode+"/established", func(t *testing.T) {
				peer := netnstest.Listen(t, fam.network, fam.addr)
				res := dial(t, peer, nonblock, false)
				if res.err != nil {
					t.Fatalf("connect: %v", res.err)
				}
				ev := c.next(peer, 5*time.Second)
				assertOutcome(t, ev, bpf.Established)
				assertSelf(t, ev, res)
				if ev.Local != res.local {
					t.Errorf("local = %s, want %s (as bound)", ev.Local, res.local)
				}
				c.none(peer, 200*time.Millisecond)
			})
			t.Run(fam.name+"/"+mode+"/refused", func(t *testing.T) {
				peer := closedPort(t, fam.network, fam.addr)
				res := dial(t, peer, nonblock, false)
				if !errors.Is(res.err, unix.ECONNREFUSED) {
					t.Fatalf("connect: %v, want ECONNREFUSED", res.err)
				}
				ev := c.next(peer, 5*time.Second)
				assertOutcome(t, ev, bpf.Refused, unix.ECONNREFUSED)
				assertSelf(t, ev, res)
				c.none(peer, 200*time.Millisecond)
			})
		}
	}
}

func TestMappedIPv4IsReportedAsIPv4(t *testing.T) { testMappedIPv4IsReportedAsIPv4(t, testConfig) }

func testMappedIPv4IsReportedAsIPv4(t *testing.T, cfg bpf.Config) {
	c := startCapture(t, cfg)
	peer := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(peer.Addr().As16()), peer.Port())
	if res := dial(t, mapped, false, false); res.err != nil {
		t.Fatalf("connect to %s: %v", mapped, res.err)
	}
	ev := c.next(peer, 5*time.Second)
	assertOutcome(t, ev, bpf.Established)
	if !ev.Local.Addr().Is4() {
		t.Errorf("local %s: want IPv4", ev.Local)
	}
}

func TestNetnsOutcomes(t *testing.T) { testNetnsOutcomes(t, testConfig) }

func testNetnsOutcomes(t *testing.T, cfg bpf.Config) {
	hosts := netnstest.New(t)
	c := startCapture(t, cfg)
	for _, fam := range []struct {
		name                           string
		server, unreachable, blackhole netip.Addr
	}{
		{"ipv4", netnstest.ServerV4, netnstest.UnreachableV4, netnstest.BlackholeV4},
		{"ipv6", netnstest.ServerV6, netnstest.UnreachableV6, netnstest.BlackholeV6},
	} {
		t.Run(fam.name+"/established-across-veth", func(t *testing.T) {
			peer := hosts.Server.Listen(t, "tcp", netip.AddrPortFrom(fam.server, 0).String())
			res := dialIn(t, hosts.Client, peer, true, false)
			if res.err != nil {
				t.Fatalf("connect: %v", res.err)
			}
			ev := c.next(peer, 5*time.Second)
			assertOutcome(t, ev, bpf.Established)
			if ev.Local != res.local {
				t.Errorf("local = %s, want %s", ev.Local, res.local)
			}
		})
		t.Run(fam.name+"/unreachable", func(t *testing.T) {
			peer := netip.AddrPortFrom(fam.unreachable, 80)
			res := dialIn(t, hosts.Client, peer, true, false)
			if !errors.Is(res.err, unix.EHOSTUNREACH) && !errors.Is(res.err, unix.ENETUNREACH) {
				t.Fatalf("connect: %v, want EHOSTUNREACH or ENETUNREACH", res.err)
			}
			ev := c.next(peer, 10*time.Second)
			assertOutcome(t, ev, bpf.Unreachable, unix.EHOSTUNREACH, unix.ENETUNREACH)
			assertSelf(t, ev, res)
		})
		t.Run(fam.name+"/rejected", func(t *testing.T) {
			// A firewall's REJECT answers with an ICMP port unreachable
			// inside connect(), while the socket is owned by it: the kernel
			// keeps the error as a soft one, and SO_ERROR clears it before
			// the application closes the socket (as Go and curl do).
			iptables, reject := "iptables", "icmp-port-unreachable"
			if fam.name == "ipv6" {
				iptables, reject = "ip6tables", "icmp6-port-unreachable"
			}
			rule := []string{"INPUT", "-p", "tcp", "--dport", "84", "-j", "REJECT", "--reject-with", reject}
			if out, err := hosts.Server.Command(iptables, append([]string{"-A"}, rule...)...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", iptables, err, out)
			}
			t.Cleanup(func() { hosts.Server.Command(iptables, append([]string{"-D"}, rule...)...).Run() })
			peer := netip.AddrPortFrom(fam.server, 84)
			res := dialIn(t, hosts.Client, peer, true, false)
			if !errors.Is(res.err, unix.ECONNREFUSED) {
				t.Fatalf("connect: %v, want ECONNREFUSED", res.err)
			}
			ev := c.next(peer, 5*time.Second)
			assertOutcome(t, ev, bpf.Refused, unix.ECONNREFUSED)
			assertSelf(t, ev, res)
		})
		t.Run(fam.name+"/timeout", func(t *testing.T) {
			peer := netip.AddrPortFrom(fam.blackhole, 81)
			res := dialIn(t, hosts.Client, peer, false, false)
			if !errors.Is(res.err, unix.ETIMEDOUT) {
				t.Fatalf("connect: %v, want ETIMEDOUT", res.err)
			}
			ev := c.next(peer, 10*time.Second)
			assertOutcome(t, ev, bpf.Timeout, unix.ETIMEDOUT)
			assertSelf(t, ev, res)
			if d := time.Duration(ev.EndNs - ev.StartNs); d < time.Second {
				t.Errorf("duration %s: a timed-out handshake retried at least once", d)
			}
		})
		t.Run(fam.name+"/aborted", func(t *testing.T) {
			peer := netip.AddrPortFrom(fam.blackhole, 82)
			res := dialIn(t, hosts.Client, peer, true, true)
			ev := c.next(peer, 5*time.Second)
			assertOutcome(t, ev, bpf.Aborted)
			assertSelf(t, ev, res)
		})
		t.Run(fam.name+"/synchronous-error", func(t *testing.T) {
			// The server namespace has no route to the client's far side: connect() fails at once.
			unrouted := netip.MustParseAddr("203.0.113.99")
			if fam.name == "ipv6" {
				unrouted = netip.MustParseAddr("2001:db8:3::99")
			}
			peer := netip.AddrPortFrom(unrouted, 83)
			res := dialIn(t, hosts.Server, peer, false, false)
			if !errors.Is(res.err, unix.ENETUNREACH) {
				t.Fatalf("connect: %v, want ENETUNREACH", res.err)
			}
			ev := c.next(peer, 5*time.Second)
			assertOutcome(t, ev, bpf.Error, unix.ENETUNREACH)
			assertSelf(t, ev, res)
		})
	}
}

// A port allocator failure happens after SYN_SENT but leaves no error on the
// socket; only connect()'s return value says EADDRNOTAVAIL.
func TestAddressNotAvailable(t *testing.T) { testAddressNotAvailable(t, testConfig) }

func testAddressNotAvailable(t *testing.T, cfg bpf.Config) {
	hosts := netnstest.New(t)
	if out, err := hosts.Client.Command("sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40001").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	c := startCapture(t, cfg)
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
	ev := c.next(peer, 5*time.Second)
	assertOutcome(t, ev, bpf.Error, unix.EADDRNOTAVAIL)
	assertSelf(t, ev, last)
}

func TestChildProcessIdentity(t *testing.T) { testChildProcessIdentity(t, testConfig) }

func testChildProcessIdentity(t *testing.T, cfg bpf.Config) {
	c := startCapture(t, cfg)
	peer := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	cmd := exec.Command("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+strconv.Itoa(int(peer.Port())))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child connect: %v: %s", err, out)
	}
	ev := c.next(peer, 5*time.Second)
	assertOutcome(t, ev, bpf.Established)
	if ev.PID != uint32(cmd.Process.Pid) || ev.TID != ev.PID || ev.PPID != uint32(os.Getpid()) {
		t.Errorf("pid/tid/ppid = %d/%d/%d, want %d/%d/%d", ev.PID, ev.TID, ev.PPID, cmd.Process.Pid, cmd.Process.Pid, os.Getpid())
	}
	if string(ev.Comm()) != "bash" || ev.UID != 65534 || ev.GID != 65534 {
		t.Errorf("comm %q uid %d gid %d, want bash 65534 65534", ev.Comm(), ev.UID, ev.GID)
	}
}

// Non-TCP sockets and connects that are not new attempts produce no events.
func TestIgnoresNonAttempts(t *testing.T) { testIgnoresNonAttempts(t, testConfig) }

func testIgnoresNonAttempts(t *testing.T, cfg bpf.Config) {
	c := startCapture(t, cfg)
	peer := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	udp, err := net.Dial("udp4", peer.String())
	if err != nil {
		t.Fatal(err)
	}
	udp.Close()
	res := dial(t, peer, false, false)
	if res.err != nil {
		t.Fatal(res.err)
	}
	// connect() again on a connected socket: EISCONN, not an attempt.
	if err := unix.Connect(res.fd, &unix.SockaddrInet4{Port: int(peer.Port()), Addr: peer.Addr().As4()}); !errors.Is(err, unix.EISCONN) {
		t.Fatalf("second connect: %v, want EISCONN", err)
	}
	assertOutcome(t, c.next(peer, 5*time.Second), bpf.Established)
	c.none(peer, 300*time.Millisecond)

	// connect() again to learn how a non-blocking attempt ended (an idiom
	// in place of SO_ERROR): it returns the refusal, and is no new attempt.
	closed := closedPort(t, "tcp4", "127.0.0.1:0")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Port: int(closed.Port()), Addr: closed.Addr().As4()}
	if err := unix.Connect(fd, sa); !errors.Is(err, unix.EINPROGRESS) {
		t.Fatalf("non-blocking connect: %v, want EINPROGRESS", err)
	}
	if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 10_000); err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, sa); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("connect again after the refusal: %v, want ECONNREFUSED", err)
	}
	assertOutcome(t, c.next(closed, 5*time.Second), bpf.Refused, unix.ECONNREFUSED)
	c.none(closed, 300*time.Millisecond)
}

// A full ring buffer loses events; the kernel counts each one and no event
// that made it into the buffer is skipped.
func TestRingBufferOverflowIsCountedExactly(t *testing.T) {
	const attempts = 300
	for try := 1; try <= 3; try++ {
		tr, err := bpf.Load(bpf.Config{RingBufferBytes: os.Getpagesize(), HandshakeEntries: 1024})
		if err != nil {
			t.Fatal(err)
		}
		peer := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
		for i := 0; i < attempts; i++ {
			if res := dial(t, peer, false, false); res.err != nil {
				t.Fatal(res.err)
			}
		}
		ours, others := 0, 0
		var ev bpf.Event
		for {
			tr.SetDeadline(time.Now().Add(300 * time.Millisecond))
			if err := tr.Read(&ev); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal(err)
				}
				break
			}
			if ev.Peer == peer && ev.Outcome == bpf.Established {
				ours++
			} else {
				others++
			}
		}
		counters, err := tr.Counters()
		tr.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("try %d: %d read, %d lost, %d from other processes", try, ours, counters.RingBufferLost, others)
		if counters.RingBufferLost == 0 {
			t.Fatalf("one page of ring buffer held all %d events: the overflow was not forced", attempts)
		}
		if uint64(ours)+counters.RingBufferLost == attempts {
			return
		}
		// Another process's connect, lost in the same window, spoils the count: try again.
	}
	t.Fatal("read + lost never equalled the attempts made")
}

// An LRU eviction loses the handshake's identity but not the attempt.
func TestHandshakeEvictionKeepsTheAttempt(t *testing.T) {
	const attempts = 64
	hosts := netnstest.New(t)
	c := startCapture(t, bpf.Config{RingBufferBytes: 1 << 20, HandshakeEntries: 8})
	before, _ := c.tracer.Counters()
	// All handshakes are in flight at once, then all are aborted.
	fds := make([]int, 0, attempts)
	err := hosts.Client.Do(func() error {
		for i := 0; i < attempts; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			sa := &unix.SockaddrInet4{Port: 2000 + i, Addr: netnstest.BlackholeV4.As4()}
			if err := unix.Connect(fd, sa); !errors.Is(err, unix.EINPROGRESS) {
				return fmt.Errorf("connect %d: %v, want EINPROGRESS", i, err)
			}
		}
		return nil
	})
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil {
		t.Fatal(err)
	}
	seen, lost := 0, 0
	deadline := time.After(10 * time.Second)
	for seen < attempts {
		select {
		case ev := <-c.events:
			if ev.Peer.Addr() != netnstest.BlackholeV4 || ev.Peer.Port() < 2000 || ev.Peer.Port() >= 2000+attempts {
				continue
			}
			seen++
			if ev.Outcome != bpf.Aborted {
				t.Errorf("%s: outcome %s, want aborted", ev.Peer, ev.Outcome)
			}
			if ev.IdentityLost {
				lost++
			} else if ev.PID != uint32(os.Getpid()) {
				t.Errorf("%s: pid %d", ev.Peer, ev.PID)
			}
		case <-deadline:
			t.Fatalf("saw %d of %d attempts", seen, attempts)
		}
	}
	after, _ := c.tracer.Counters()
	if lost == 0 || uint64(lost) != after.HandshakeLost-before.HandshakeLost {
		t.Fatalf("%d events without identity, counter says %d: want equal and positive", lost, after.HandshakeLost-before.HandshakeLost)
	}
}

// Pinned capture goes on while no agent runs; the next one drains it, and
// losses already reported are not reported again.
func TestPinnedCaptureSurvivesTheAgent(t *testing.T) {
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("connaudit-test-%d", os.Getpid()))
	t.Cleanup(func() { bpf.Unpin(pinDir) })
	cfg := bpf.Config{RingBufferBytes: 1 << 20, HandshakeEntries: 1024, PinDir: pinDir}

	first, err := bpf.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.Resumed() {
		t.Fatal("a fresh pin directory was resumed")
	}
	if err := first.MarkReported(bpf.Counters{RingBufferLost: 7}); err != nil {
		t.Fatal(err)
	}
	first.Close()

	// No agent is running now.
	peer := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	if res := dial(t, peer, false, false); res.err != nil {
		t.Fatal(res.err)
	}

	second, err := bpf.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if !second.Resumed() || len(second.Takeovers()) != 0 {
		t.Fatalf("resumed %v, took over %v: want resumed, nothing taken over", second.Resumed(), second.Takeovers())
	}
	if r, _ := second.Reported(); r.RingBufferLost != 7 {
		t.Errorf("reported counters not kept: %+v", r)
	}
	var ev bpf.Event
	for {
		second.SetDeadline(time.Now().Add(2 * time.Second))
		if err := second.Read(&ev); err != nil {
			t.Fatalf("the connect made while no agent ran was not captured: %v", err)
		}
		if ev.Peer == peer {
			break
		}
	}

	// Another build or size takes the pinned capture over, and drains what
	// its ring buffer held: attempts made while no agent ran are not lost.
	second.Close()
	late := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	const n = 50
	for i := 0; i < n; i++ {
		if res := dial(t, late, false, false); res.err != nil {
			t.Fatal(res.err)
		}
	}
	third, err := bpf.Load(bpf.Config{RingBufferBytes: 1 << 21, HandshakeEntries: 1024, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	tk := third.Takeovers()
	if third.Resumed() || len(tk) != 1 || !tk[0].Drained || tk[0].Unreadable != 0 {
		t.Fatalf("resumed %v, took over %+v: want one drained takeover", third.Resumed(), tk)
	}
	if tk[0].Unreported.RingBufferLost != 0 {
		t.Errorf("unreported losses %+v of a capture that lost nothing beyond what was reported", tk[0].Unreported)
	}
	seen := 0
	for seen < n {
		third.SetDeadline(time.Now().Add(2 * time.Second))
		if err := third.Read(&ev); err != nil {
			t.Fatalf("%d of the %d attempts buffered by the replaced capture were read: %v", seen, n, err)
		}
		if ev.Peer == late {
			seen++
		}
	}
	if entries, _ := os.ReadDir(pinDir); len(entries) != 1 {
		t.Errorf("pin directory holds %d entries after the takeover, want only the new capture", len(entries))
	}
}

// Pins live beside other software's (Cilium, Tetragon) under a shared
// bpffs: connaudit never touches entries it did not create, and refuses to
// unpin a directory that is not on a bpffs.
func TestPinsLeaveForeignEntriesAlone(t *testing.T) {
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("connaudit-test-foreign-%d", os.Getpid()))
	if err := os.MkdirAll(filepath.Join(pinDir, "tetragon"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	for _, p := range []string{filepath.Join(pinDir, "cilium_ct4_global"), filepath.Join(pinDir, "tetragon", "execve_map")} {
		foreign, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer foreign.Close()
		if err := foreign.Pin(p); err != nil {
			t.Fatal(err)
		}
	}
	foreignLeft := func(when string) {
		t.Helper()
		for _, p := range []string{"cilium_ct4_global", "tetragon/execve_map"} {
			if _, err := os.Stat(filepath.Join(pinDir, p)); err != nil {
				t.Errorf("%s: foreign pin %s is gone: %v", when, p, err)
			}
		}
	}
	for _, size := range []int{1 << 20, 1 << 21} { // the second load takes the first over
		tr, err := bpf.Load(bpf.Config{RingBufferBytes: size, HandshakeEntries: 1024, PinDir: pinDir})
		if err != nil {
			t.Fatal(err)
		}
		tr.Close()
	}
	foreignLeft("after a takeover")
	if n, err := bpf.Unpin(pinDir); err != nil || n != 1 {
		t.Fatalf("unpin: %d removed, %v; want the one capture", n, err)
	}
	if n, err := bpf.Unpin(pinDir); err != nil || n != 0 {
		t.Errorf("unpin again: %d removed, %v; want nothing", n, err)
	}
	foreignLeft("after unpin")
	entries, _ := os.ReadDir(pinDir)
	if len(entries) != 2 {
		t.Errorf("after unpin the directory holds %v, want only the two foreign entries", entries)
	}

	plain := t.TempDir()
	keep := filepath.Join(plain, "v1-0123456789abcdef")
	if err := os.Mkdir(keep, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := bpf.Unpin(plain); err == nil || !strings.Contains(err.Error(), "not on a bpffs") {
		t.Errorf("unpin of a directory on another filesystem: %v, want a refusal", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("unpin of a directory on another filesystem removed %s", keep)
	}
}

// A handshake reset: a simultaneous open leaves socket b in SYN_RECV, then
// its SYN-ACK meets a host where a's socket is gone, which answers RST.
// Each side's packets are held back until the step needs them.
func TestSimultaneousOpenReset(t *testing.T) {
	for _, fam := range []struct {
		name           string
		domain         int
		client, server netip.Addr
	}{
		{"ipv4", unix.AF_INET, netnstest.ClientV4, netnstest.ServerV4},
		{"ipv6", unix.AF_INET6, netnstest.ClientV6, netnstest.ServerV6},
	} {
		t.Run(fam.name, func(t *testing.T) {
			hosts := netnstest.New(t)
			hosts.PinNeighbors(t)
			c := startCapture(t, testConfig)
			hosts.DropEgress(t, hosts.Client, true)
			hosts.DropEgress(t, hosts.Server, true)
			a := netip.AddrPortFrom(fam.client, 40001)
			b := netip.AddrPortFrom(fam.server, 40002)
			fdA := boundConnect(t, hosts.Client, fam.domain, a, b)
			fdB := boundConnect(t, hosts.Server, fam.domain, b, a)
			t.Cleanup(func() { unix.Close(fdB) })

			hosts.DropEgress(t, hosts.Client, false) // a's retransmitted SYN reaches b: b goes SYN_RECV
			deadline := time.Now().Add(10 * time.Second)
			for tcpState(t, fdB) != 3 /* TCP_SYN_RECV */ {
				if time.Now().After(deadline) {
					t.Fatalf("socket b never reached SYN_RECV (state %d)", tcpState(t, fdB))
				}
				time.Sleep(50 * time.Millisecond)
			}
			unix.Close(fdA)
			assertOutcome(t, c.next(b, 5*time.Second), bpf.Aborted)
			hosts.DropEgress(t, hosts.Server, false) // b's SYN-ACK now finds no socket at a: RST

			ev := c.next(a, 15*time.Second)
			assertOutcome(t, ev, bpf.Reset, unix.ECONNRESET)
			if ev.PID != uint32(os.Getpid()) || ev.Local != b {
				t.Errorf("pid %d local %s, want %d %s", ev.PID, ev.Local, os.Getpid(), b)
			}
		})
	}
}

// boundConnect starts a non-blocking connect from local to peer inside ns;
// the caller closes the socket.
func boundConnect(t *testing.T, ns netnstest.NS, domain int, local, peer netip.AddrPort) int {
	t.Helper()
	sockaddr := func(ap netip.AddrPort) unix.Sockaddr {
		if domain == unix.AF_INET {
			return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
		}
		return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	var fd int
	err := ns.Do(func() error {
		var err error
		if fd, err = unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.Bind(fd, sockaddr(local)); err != nil {
			return fmt.Errorf("bind %s: %w", local, err)
		}
		if err := unix.Connect(fd, sockaddr(peer)); !errors.Is(err, unix.EINPROGRESS) {
			return fmt.Errorf("connect %s -> %s: %v, want EINPROGRESS", local, peer, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func tcpState(t *testing.T, fd int) uint8 {
	t.Helper()
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// The object for kernels without bpf_rdonly_cast (before Linux 6.2), which
// Load picks there, behaves as the default one.
func TestProbeReadsObject(t *testing.T) {
	cfg := testConfig
	cfg.ProbeReads = true
	t.Run("LoopbackOutcomes", func(t *testing.T) { testLoopbackOutcomes(t, cfg) })
	t.Run("MappedIPv4IsReportedAsIPv4", func(t *testing.T) { testMappedIPv4IsReportedAsIPv4(t, cfg) })
	t.Run("ChildProcessIdentity", func(t *testing.T) { testChildProcessIdentity(t, cfg) })
	t.Run("IgnoresNonAttempts", func(t *testing.T) { testIgnoresNonAttempts(t, cfg) })
	t.Run("NetnsOutcomes", func(t *testing.T) { testNetnsOutcomes(t, cfg) })
	t.Run("AddressNotAvailable", func(t *testing.T) { testAddressNotAvailable(t, cfg) })
}
