package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/netnstest"
)

// metricValue reads one counter from the agent's /metrics (0 when absent).
func metricValue(t *testing.T, s *stack, series string) int {
	t.Helper()
	metrics, err := s.agent.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(regexp.QuoteMeta(series) + ` (\d+)`).FindStringSubmatch(metrics)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// An unprivileged process (uid 65534, no capabilities) answers its own
// sockets from a "resolver" it runs on 127.0.0.1:53: to a socket that asked
// nothing, to one that asked another server, and with another question than
// it asked. Its connect to the address it tried to name carries no name; the
// forgeries are counted and written as dns.rejected records.
func TestForgedAnswersNameNothing(t *testing.T) {
	s := startStack(t)
	s.instance(t)
	h := netnstest.New(t)
	target := netip.MustParseAddr("203.0.113.66")
	h.AddHost(t, target)
	h.Server.Listen(t, "tcp", "203.0.113.66:8080")
	netns := netnsOf(t, h.Client)
	// Any port is unprivileged in this namespace, as in a rootless container.
	if out, err := exec.Command("ip", "netns", "exec", h.Client.Name, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	forger := filepath.Join(dir, "dnsforger")
	if out, err := exec.Command("go", "build", "-o", forger, "./dnsforger").CombinedOutput(); err != nil {
		t.Fatalf("build dnsforger: %v: %s", err, out)
	}
	before := metricValue(t, s, `connaudit_dns_packets_total{result="unsolicited"}`) + metricValue(t, s, `connaudit_dns_packets_total{result="question_mismatch"}`)
	cmd := h.Client.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		forger, "203.0.113.66:8080", netnstest.ServerV4.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dnsforger as uid 65534: %v: %s", err, out)
	}

	r := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" connaudit.netns:=%d network.peer.address:="203.0.113.66"`, netns), 1, time.Minute)[0]
	if r["server.address"] != "203.0.113.66" || r["connaudit.dns.age"] != "" || r["connaudit.dns.resolver"] != "" {
		t.Errorf("the forger's connect: server.address %q, dns.age %q, resolver %q; want its address and no name: %v",
			r["server.address"], r["connaudit.dns.age"], r["connaudit.dns.resolver"], r)
	}
	rejected := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="dns.rejected" connaudit.netns:=%d`, netns), 2, time.Minute)
	reasons := map[string]string{}
	for _, r := range rejected {
		reasons[r["dns.question.name"]] = r["connaudit.dns.rejected"] + " from " + r["server.address"]
	}
	if reasons["b.example.com"] != "unsolicited from 127.0.0.1" || reasons["www.google.com"] != "question_mismatch from 127.0.0.1" {
		t.Errorf("dns.rejected records %v, want b.example.com unsolicited and www.google.com mismatched, from 127.0.0.1", reasons)
	}
	// The answer to a socket that never asked is not even seen by the kernel program.
	if after := metricValue(t, s, `connaudit_dns_packets_total{result="unsolicited"}`) + metricValue(t, s, `connaudit_dns_packets_total{result="question_mismatch"}`); after-before < 2 {
		t.Errorf("rejected answers counted %d, want at least 2", after-before)
	}
}

// serveTCPResolver answers length-prefixed queries on the server's port 53/tcp.
func serveTCPResolver(t *testing.T, h *netnstest.Hosts, z zone) {
	t.Helper()
	var l net.Listener
	if err := h.Server.Do(func() (err error) {
		l, err = net.Listen("tcp", netip.AddrPortFrom(netnstest.ServerV4, 53).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				for {
					var n [2]byte
					if _, err := io.ReadFull(c, n[:]); err != nil {
						return
					}
					q := make([]byte, binary.BigEndian.Uint16(n[:]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					reply := answerQuery(q, z)
					if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(reply))), reply...)); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// A real lookup over TCP (resolv.conf use-vc) names the connect, and says
// which resolver answered; so does one over UDP.
func TestRealLookupsNameConnectsOverTCPAndUDP(t *testing.T) {
	s := startStack(t)
	s.instance(t)
	tcp, udp := netnstest.New(t), netnstest.New(t)
	z := zone{"tcp.example.com": {"203.0.113.84"}, "udp.example.com": {"203.0.113.84"}}
	startResolver(t, tcp, z)
	serveTCPResolver(t, tcp, z)
	conf := "nameserver " + netnstest.ServerV4.String() + "\noptions use-vc attempts:1 timeout:2\n"
	if err := os.WriteFile(filepath.Join("/etc/netns", tcp.Client.Name, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startResolver(t, udp, z)
	for _, h := range []*netnstest.Hosts{tcp, udp} {
		h.AddHost(t, netip.MustParseAddr("203.0.113.84"))
		h.Server.Listen(t, "tcp", "203.0.113.84:8080")
	}
	curl(t, tcp.Client, "http://tcp.example.com:8080/", "-4")
	curl(t, udp.Client, "http://udp.example.com:8080/", "-4")
	for _, c := range []struct {
		h         *netnstest.Hosts
		name, net string
	}{{tcp, "tcp.example.com", "tcp"}, {udp, "udp.example.com", "udp"}} {
		netns := netnsOf(t, c.h.Client)
		r := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" connaudit.netns:=%d network.peer.address:="203.0.113.84"`, netns), 1, time.Minute)[0]
		if r["server.address"] != c.name || r["connaudit.dns.resolver"] != netnstest.ServerV4.String() {
			t.Errorf("connect after a lookup over %s: server.address %q, resolver %q; want %s from %s", c.net, r["server.address"], r["connaudit.dns.resolver"], c.name, netnstest.ServerV4)
		}
		a := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="dns.answer" connaudit.netns:=%d`, netns), 1, time.Minute)[0]
		if a["network.transport"] != c.net || a["dns.question.name"] != c.name {
			t.Errorf("dns.answer %v, want %s over %s", a, c.name, c.net)
		}
	}
}

// A stub resolver asks again before every connect, 2 ms apart: the agent
// handles each connect after the next answer for the same name arrived, and
// each is still named, by the answer before it.
func TestEveryConnectAfterARepeatedLookupIsNamed(t *testing.T) {
	s := startStack(t)
	s.instance(t)
	victim := netnstest.New(t)
	startResolver(t, victim, zone{"api.example.com": {"203.0.113.80"}})
	victim.AddHost(t, netip.MustParseAddr("203.0.113.80"))
	victim.Server.Listen(t, "tcp", "203.0.113.80:8080")
	const connects = 300
	made := lookupAndConnect(t, victim.Client, 8080, connects)
	stored, named := countNamed(t, s.vl, netnsOf(t, victim.Client), 8080, made)
	if made != connects || stored != made || named != stored {
		t.Fatalf("%d of %d connects made, %d stored, %d of them named api.example.com; want all", made, connects, stored, named)
	}
}

// A flood of answers (10,000/s for 2 s) into one network namespace's socket
// that asked once: connects from another namespace, each after its own
// lookup, are all recorded, established and named; the flood is counted.
func TestDNSFloodLeavesOtherNamespacesNamed(t *testing.T) {
	s := startStack(t)
	s.instance(t)
	flood, victim := netnstest.New(t), netnstest.New(t)
	startResolver(t, victim, zone{"api.example.com": {"203.0.113.80"}})
	victim.AddHost(t, netip.MustParseAddr("203.0.113.80"))
	victim.Server.Listen(t, "tcp", "203.0.113.80:8080")
	victimNetns := netnsOf(t, victim.Client)

	const rate, seconds = 10000, 2
	fl := startDNSFlood(t, flood, rate, rate*seconds)
	const connects = 10
	for range connects {
		curl(t, victim.Client, "http://api.example.com:8080/", "-4")
	}
	sent := fl.wait()

	unnamed := false
	for _, r := range s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" connaudit.netns:=%d network.peer.address:="203.0.113.80"`, victimNetns), connects, time.Minute) {
		if r["server.address"] != "api.example.com" || r["connaudit.outcome"] != "established" {
			unnamed = true
			t.Errorf("a connect during the flood: server.address %q, outcome %q: %v", r["server.address"], r["connaudit.outcome"], r)
		}
	}
	if unnamed { // what the agent made of the victim's DNS traffic
		rows, err := s.vl.Query(t.Context(), fmt.Sprintf(`(event_name:="dns.answer" or event_name:="dns.rejected") connaudit.netns:=%d`, victimNetns))
		t.Logf("the victim's DNS records (%v):", err)
		for _, r := range rows {
			t.Logf("  %s %s %s %s", r["_time"], r["event_name"], r["dns.question.name"], r["connaudit.dns.rejected"])
		}
		metrics, _ := s.agent.Metrics()
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "connaudit_dns_") || strings.HasPrefix(line, "connaudit_records_lost") {
				t.Log("  " + line)
			}
		}
	}
	limited := metricValue(t, s, `connaudit_dns_packets_total{result="rate_limited"}`)
	if limited == 0 {
		t.Errorf("%d flood answers sent, none rate-limited", sent)
	}
	t.Logf("%d flood answers sent, %d rate-limited, %d connects shipped before their answers were read", sent, limited,
		metricValue(t, s, "connaudit_dns_lookup_timeouts_total"))
}

// dnsFlood answers one query of a socket in a network namespace over and
// over: the answers match the query, so they pass the kernel's filter and
// reach the agent, where the namespace's rate limit must contain them.
type dnsFlood struct {
	sent chan int
	stop chan struct{}
}

// startDNSFlood floods hosts' client namespace with rate answers a second
// until it has sent total, or until stop.
func startDNSFlood(tb testing.TB, hosts *netnstest.Hosts, rate, total int) *dnsFlood {
	tb.Helper()
	var srv, cli *net.UDPConn
	if err := hosts.Server.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 53})
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	if err := hosts.Client.Do(func() (err error) {
		cli, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.2")})
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	q := query(1, "flood.example.com.")
	if _, err := cli.WriteToUDPAddrPort(q, srv.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		tb.Fatal(err)
	}
	answer := answerQuery(q, zone{"flood.example.com": {"203.0.113.99"}})
	go func() { // the flooded socket reads, so that the kernel delivers every answer
		buf := make([]byte, 1500)
		for {
			if _, err := cli.Read(buf); err != nil {
				return
			}
		}
	}()
	f := &dnsFlood{sent: make(chan int, 1), stop: make(chan struct{})}
	go func() {
		sent := 0
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for sent < total {
			select {
			case <-f.stop:
				f.sent <- sent
				return
			case <-tick.C:
			}
			for range rate / 1000 {
				if _, err := srv.WriteToUDPAddrPort(answer, cli.LocalAddr().(*net.UDPAddr).AddrPort()); err == nil {
					sent++
				}
			}
		}
		f.sent <- sent
	}()
	return f
}

// wait returns the number of answers sent once all are.
func (f *dnsFlood) wait() int { return <-f.sent }

// end stops the flood and returns the number of answers sent.
func (f *dnsFlood) end() int {
	close(f.stop)
	return <-f.sent
}

func query(id uint16, name string) []byte {
	b := make([]byte, 0, 64)
	b = binary.BigEndian.AppendUint16(b, id)
	b = append(b, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0) // RD; one question
	for _, label := range regexp.MustCompile(`[^.]+`).FindAllString(name, -1) {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0, 0, 1, 0, 1) // root; type A, class IN
}
