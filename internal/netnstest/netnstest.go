// Package netnstest builds throwaway test hosts in network namespaces.
//
// The topology is two namespaces joined only by a veth, so that no packet can
// leave the machine whatever the routes say:
//
//	client ns  198.51.100.2, 2001:db8:1::2  <-veth->  server ns  198.51.100.1, 2001:db8:1::1
//
// The client routes 203.0.113.0/24 and 2001:db8:2::/64 through the server,
// which forwards them: to its own extra addresses (AddHost), to an
// "unreachable" route that answers with ICMP unreachable, or to a blackhole
// that answers nothing. The client gives up a SYN after one retry (~3 s).
package netnstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Fixed addresses of the topology.
var (
	ClientV4 = netip.MustParseAddr("198.51.100.2")
	ServerV4 = netip.MustParseAddr("198.51.100.1")
	ClientV6 = netip.MustParseAddr("2001:db8:1::2")
	ServerV6 = netip.MustParseAddr("2001:db8:1::1")

	UnreachableV4 = netip.MustParseAddr("203.0.113.10")
	BlackholeV4   = netip.MustParseAddr("203.0.113.20")
	UnreachableV6 = netip.MustParseAddr("2001:db8:2::10")
	BlackholeV6   = netip.MustParseAddr("2001:db8:2::20")
)

// NS is one named network namespace under /run/netns.
type NS struct{ Name string }

// Hosts is the client and server pair.
type Hosts struct {
	Client, Server NS
	links          map[string]string // namespace name -> its end of the veth
}

var seq atomic.Int32

// New creates the pair and removes it when the test ends.
func New(t testing.TB) *Hosts {
	t.Helper()
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, seq.Add(1))
	h := &Hosts{Client: NS{"ca-cli-" + id}, Server: NS{"ca-srv-" + id}}
	veth := "cav" + id
	peer := "cap" + id
	h.links = map[string]string{h.Client.Name: veth, h.Server.Name: peer}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", h.Client.Name).Run()
		_ = exec.Command("ip", "netns", "del", h.Server.Name).Run()
	})
	steps := [][]string{
		{"ip", "netns", "add", h.Client.Name},
		{"ip", "netns", "add", h.Server.Name},
		{"ip", "link", "add", veth, "netns", h.Client.Name, "type", "veth", "peer", "name", peer, "netns", h.Server.Name},
	}
	cli := func(args ...string) []string { return append([]string{"ip", "netns", "exec", h.Client.Name}, args...) }
	srv := func(args ...string) []string { return append([]string{"ip", "netns", "exec", h.Server.Name}, args...) }
	steps = append(steps,
		cli("ip", "link", "set", "lo", "up"),
		cli("ip", "link", "set", veth, "up"),
		cli("ip", "addr", "add", ClientV4.String()+"/24", "dev", veth),
		cli("ip", "addr", "add", ClientV6.String()+"/64", "dev", veth, "nodad"),
		cli("ip", "route", "add", "203.0.113.0/24", "via", ServerV4.String()),
		cli("ip", "route", "add", "2001:db8:2::/64", "via", ServerV6.String()),
		cli("sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"),
		srv("ip", "link", "set", "lo", "up"),
		srv("ip", "link", "set", peer, "up"),
		srv("ip", "addr", "add", ServerV4.String()+"/24", "dev", peer),
		srv("ip", "addr", "add", ServerV6.String()+"/64", "dev", peer, "nodad"),
		srv("sysctl", "-qw", "net.ipv4.ip_forward=1"),
		srv("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"),
		srv("ip", "route", "add", "unreachable", UnreachableV4.String()),
		srv("ip", "route", "add", "blackhole", BlackholeV4.String()),
		srv("ip", "-6", "route", "add", "unreachable", UnreachableV6.String()),
		srv("ip", "-6", "route", "add", "blackhole", BlackholeV6.String()),
	)
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("netns setup %q: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return h
}

// AddHost gives the server one more address, reachable from the client.
// Use addresses in 203.0.113.0/24 or 2001:db8:2::/64.
func (h *Hosts) AddHost(t testing.TB, a netip.Addr) {
	t.Helper()
	bits := 32
	if a.Is6() {
		bits = 128
	}
	args := []string{"ip", "netns", "exec", h.Server.Name, "ip", "addr", "add", fmt.Sprintf("%s/%d", a, bits), "dev", "lo"}
	if a.Is6() {
		args = append(args, "nodad")
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("add host %s: %v: %s", a, err, out)
	}
}

// DropEgress makes ns drop (or, with drop false, send again) every packet it
// sends over the veth: a qdisc that holds nothing. Call PinNeighbors first,
// or neighbour resolution fails and turns held-back connects unreachable.
func (h *Hosts) DropEgress(t testing.TB, ns NS, drop bool) {
	t.Helper()
	args := []string{"tc", "qdisc", "del", "dev", h.links[ns.Name], "root"}
	if drop {
		args = []string{"tc", "qdisc", "add", "dev", h.links[ns.Name], "root", "pfifo", "limit", "0"}
	}
	if out, err := ns.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// PinNeighbors makes each side's neighbour entry for the other permanent.
func (h *Hosts) PinNeighbors(t testing.TB) {
	t.Helper()
	mac := func(ns NS) string {
		var hw string
		err := ns.Do(func() error {
			ifc, err := net.InterfaceByName(h.links[ns.Name])
			if err != nil {
				return err
			}
			hw = ifc.HardwareAddr.String()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return hw
	}
	for _, side := range []struct {
		ns     NS
		peers  []netip.Addr
		peerNS NS
	}{
		{h.Client, []netip.Addr{ServerV4, ServerV6}, h.Server},
		{h.Server, []netip.Addr{ClientV4, ClientV6}, h.Client},
	} {
		lladdr := mac(side.peerNS)
		for _, a := range side.peers {
			args := []string{"ip", "neigh", "replace", a.String(), "lladdr", lladdr, "dev", h.links[side.ns.Name], "nud", "permanent"}
			if out, err := side.ns.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
	}
}

// Do runs f on an OS thread inside the namespace. Sockets created by f stay
// in the namespace and may be used from anywhere afterwards.
func (n NS) Do(f func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", n.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with the goroutine rather than serve others in the wrong namespace.
		return fmt.Errorf("leave netns %s: %w", n.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Command runs a program inside the namespace with nsenter, which, unlike
// `ip netns exec`, leaves /sys and the cgroup alone.
func (n NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + n.Name, "--", name}, args...)...)
}

// Listen serves addr ("127.0.0.1:0", "[::1]:0", ...) until the test ends,
// accepting and closing every connection, and returns the bound address.
func Listen(t testing.TB, network, addr string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// Listen is Listen inside the namespace.
func (n NS) Listen(t testing.TB, network, addr string) netip.AddrPort {
	t.Helper()
	var ap netip.AddrPort
	if err := n.Do(func() error { ap = Listen(t, network, addr); return nil }); err != nil {
		t.Fatal(err)
	}
	return ap
}
