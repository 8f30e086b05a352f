package capture_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/dns/capture"
	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/k8s/cgroup"
)

func load(t testing.TB, ringBytes int) *capture.Capture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests load eBPF programs and need root")
	}
	root, err := cgroup.FindV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	c, err := capture.Load(capture.Config{RingBufferBytes: ringBytes, CgroupRoot: root})
	if err != nil {
		t.Fatalf("load DNS capture: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func netnsInode(t *testing.T, ns netnstest.NS) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns.Name, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// udpServer answers every datagram on addr:53 with reply, from inside ns.
func udpServer(t *testing.T, ns netnstest.NS, addr netip.Addr, reply []byte) {
	t.Helper()
	var conn *net.UDPConn
	err := ns.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 53)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteToUDPAddrPort(reply, from)
		}
	}()
}

// next reads packets until an answer (query false) or a query for netns arrives.
func next(t *testing.T, c *capture.Capture, netns uint32, query bool, p *capture.Packet) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.SetDeadline(deadline)
		if err := c.Read(p); err != nil {
			t.Fatalf("no DNS packet for netns %d: %v", netns, err)
		}
		if p.NetNS == netns && p.Query == query {
			return
		}
	}
}

func TestUDPAndTCPResponsesCarryTheReceiversNetns(t *testing.T) {
	c := load(t, 1<<20)
	h := netnstest.New(t)
	client := netnsInode(t, h.Client)
	reply := bytes.Repeat([]byte{0xab}, 1500) // longer than PayloadMax: the copy is bounded
	udpServer(t, h.Server, netnstest.ServerV4, reply)
	udpServer(t, h.Server, netnstest.ServerV6, reply[:40])

	for _, server := range []netip.Addr{netnstest.ServerV4, netnstest.ServerV6} {
		var conn net.Conn
		err := h.Client.Do(func() (err error) {
			conn, err = net.Dial("udp", netip.AddrPortFrom(server, 53).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("query")); err != nil {
			t.Fatal(err)
		}
		var q, p capture.Packet
		next(t, c, client, true, &q)
		local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
		if q.Transport != capture.UDP || q.Server != server || q.Client != local || string(q.Payload) != "query" {
			t.Fatalf("query %+v: want UDP from %s to %s", q, local, server)
		}
		next(t, c, client, false, &p)
		conn.Close()
		if p.Transport != capture.UDP || p.Server != server || p.Client != local {
			t.Fatalf("packet %+v: want UDP from %s to %s", p, server, local)
		}
		want := len(reply)
		if server.Is6() {
			want = 40
		}
		if p.Len != want || len(p.Payload) != min(want, capture.PayloadMax) || p.Truncated() != (want > capture.PayloadMax) {
			t.Fatalf("packet of %d bytes with %d copied, want %d of %d", p.Len, len(p.Payload), min(want, capture.PayloadMax), want)
		}
		if p.TimeNs == 0 {
			t.Fatal("packet without a time")
		}
	}

	// TCP: the server writes a length-prefixed message; a segment from port 53 is caught.
	var l net.Listener
	if err := h.Server.Do(func() (err error) { l, err = net.Listen("tcp", "198.51.100.1:53"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Write([]byte{0, 3, 'a', 'b', 'c'})
		time.Sleep(100 * time.Millisecond)
	}()
	var conn net.Conn
	if err := h.Client.Do(func() (err error) { conn, err = net.Dial("tcp", "198.51.100.1:53"); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var p capture.Packet
	next(t, c, client, false, &p)
	if p.Transport != capture.TCP || !bytes.Equal(p.Payload, []byte{0, 3, 'a', 'b', 'c'}) {
		t.Fatalf("TCP packet %+v, want the 5 payload bytes", p)
	}
}

// A ring buffer that is never read overflows: every packet the sockets got
// is either in the ring buffer or counted as lost.
func TestOverflowIsCountedExactly(t *testing.T) {
	c := load(t, os.Getpagesize()) // room for 3 packets
	h := netnstest.New(t)
	client := netnsInode(t, h.Client)

	var srv *net.UDPConn
	err := h.Server.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 53})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var cli *net.UDPConn
	err = h.Client.Do(func() (err error) {
		cli, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.2")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	to := cli.LocalAddr().(*net.UDPAddr).AddrPort()
	// The client's query marks its socket; it takes one of the ring's places.
	if _, err := cli.WriteToUDPAddrPort([]byte("query"), netip.MustParseAddrPort("198.51.100.1:53")); err != nil {
		t.Fatal(err)
	}
	var q capture.Packet
	next(t, c, client, true, &q)

	const sent = 200
	got := 0
	done := make(chan struct{})
	go func() { // the client socket reads, so that the kernel delivers every datagram
		defer close(done)
		buf := make([]byte, 64)
		_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
		for got < sent {
			if _, err := cli.Read(buf); err != nil {
				return
			}
			got++
		}
	}()
	for i := 0; i < sent; i++ {
		if _, err := srv.WriteToUDPAddrPort([]byte("answer"), to); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(10 * time.Millisecond) // below the veth's backlog
		}
	}
	<-done
	if got != sent {
		t.Fatalf("client received %d of %d datagrams", got, sent)
	}
	lost, err := c.Lost()
	if err != nil {
		t.Fatal(err)
	}
	buffered, others := 0, 0
	var p capture.Packet
	c.SetDeadline(time.Now())
	for {
		if err := c.Read(&p); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
		if p.NetNS == client {
			buffered++
		} else {
			others++ // another resolver on this machine; it cannot take our losses' place
		}
	}
	// Packets from another resolver on this machine may share the ring buffer
	// and its loss counter; when none was seen, the count must be exact.
	if buffered == 0 || lost == 0 || uint64(buffered)+lost < sent {
		t.Fatalf("%d buffered (+%d from elsewhere) and %d lost, want %d in all", buffered, others, lost, sent)
	}
	if others == 0 && uint64(buffered)+lost != sent {
		t.Fatalf("%d buffered and %d lost, want exactly %d in all", buffered, lost, sent)
	}
}

// Only sockets that addressed port 53 are watched: answers from port 53 to
// any other socket, queries and answers of such sockets in the other
// direction, and other ports never reach the ring buffer.
func TestOnlySocketsThatAskedAreWatched(t *testing.T) {
	c := load(t, 1<<20)
	h := netnstest.New(t)
	client := netnsInode(t, h.Client)
	var srv, quiet, asker *net.UDPConn
	if err := h.Server.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 53})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := h.Client.Do(func() (err error) {
		if quiet, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.2")}); err != nil {
			return err
		}
		asker, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.2")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	defer asker.Close()
	// An answer to a socket that never addressed port 53: not seen.
	if _, err := srv.WriteToUDPAddrPort([]byte("forged"), quiet.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := quiet.Read(buf); err != nil {
		t.Fatal(err)
	}
	// The asking socket's query and the answer to it: both seen.
	if _, err := asker.WriteToUDPAddrPort([]byte("query"), netip.MustParseAddrPort("198.51.100.1:53")); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WriteToUDPAddrPort([]byte("answer"), asker.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	_ = asker.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := asker.Read(buf); err != nil {
		t.Fatal(err)
	}
	var seen []string
	var p capture.Packet
	c.SetDeadline(time.Now())
	for c.Read(&p) == nil {
		if p.NetNS == client {
			seen = append(seen, string(p.Payload))
		}
	}
	if len(seen) != 2 || seen[0] != "query" || seen[1] != "answer" {
		t.Fatalf("saw %q, want the asking socket's query and answer only", seen)
	}
}
