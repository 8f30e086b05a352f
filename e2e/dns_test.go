package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/k8s/cgroup"
)

// zone is what a test resolver answers: a name's CNAME target, or its addresses.
type zone map[string][]string

// startResolver serves zone on port 53 of the server namespace (IPv4 and
// IPv6), and makes the client namespace's resolv.conf (for `ip netns exec`)
// point at it. A name whose value is "malformed" gets garbage back.
func startResolver(t testing.TB, h *netnstest.Hosts, z zone) {
	t.Helper()
	for _, addr := range []netip.Addr{netnstest.ServerV4, netnstest.ServerV6} {
		var conn *net.UDPConn
		err := h.Server.Do(func() (err error) {
			conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 53)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if reply := answerQuery(buf[:n], z); reply != nil {
					_, _ = conn.WriteToUDPAddrPort(reply, from)
				}
			}
		}()
	}
	dir := filepath.Join("/etc/netns", h.Client.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := "nameserver " + netnstest.ServerV4.String() + "\noptions attempts:1 timeout:2\n"
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

func answerQuery(query []byte, z zone) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(q.Name.String()), ".")
	if v := z[name]; len(v) == 1 && v[0] == "malformed" {
		return append([]byte{byte(h.ID >> 8), byte(h.ID), 0x81, 0x80, 0, 1, 0, 1}, "garbage"...)
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionAvailable: true})
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	for hop := 0; hop < 8; hop++ {
		values, ok := z[name]
		if !ok {
			break
		}
		rh := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name + "."), Class: dnsmessage.ClassINET, TTL: 60}
		if ip, err := netip.ParseAddr(values[0]); err != nil {
			_ = b.CNAMEResource(rh, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(values[0] + ".")})
			name = values[0]
			continue
		} else if ip.Is4() != (q.Type == dnsmessage.TypeA) {
			break
		}
		for _, v := range values {
			ip := netip.MustParseAddr(v)
			if ip.Is4() {
				_ = b.AResource(rh, dnsmessage.AResource{A: ip.As4()})
			} else {
				_ = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: ip.As16()})
			}
		}
		break
	}
	msg, _ := b.Finish()
	return msg
}

// curl connects to url from the client namespace, resolving through its resolv.conf.
func curl(t *testing.T, ns netnstest.NS, url string, extra ...string) {
	t.Helper()
	curlIn(t, "", ns, url, extra...)
}

// curlIn is curl run in a cgroup (when not empty).
func curlIn(t *testing.T, cgroupDir string, ns netnstest.NS, url string, extra ...string) {
	t.Helper()
	args := append([]string{"netns", "exec", ns.Name, "curl", "-s", "-o", "/dev/null", "--max-time", "5"}, extra...)
	cmd := exec.Command("ip", append(args, url)...)
	if cgroupDir != "" {
		dir, err := os.Open(cgroupDir)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	}
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	// The test host accepts and closes: curl's "empty reply" (52) or "receive
	// failure" (56, a reset) mean that it connected.
	if err != nil && !strings.Contains(err.Error(), "exit status 52") && !strings.Contains(err.Error(), "exit status 56") {
		t.Fatalf("curl %s in %s: %v: %s", url, ns.Name, err, out)
	}
}

func netnsOf(t testing.TB, ns netnstest.NS) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns.Name, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

func TestConnectsCarryTheResolvedName(t *testing.T) {
	s := startStack(t)
	s.instance(t)

	// Two pods' worth of network namespaces, each with its own resolver.
	a, b := netnstest.New(t), netnstest.New(t)
	startResolver(t, a, zone{
		"api.example.com":      {"203.0.113.80"},
		"www.example.com":      {"edge.cdn.example.net"},
		"edge.cdn.example.net": {"e1.cdn.example.net"},
		"e1.cdn.example.net":   {"203.0.113.81"},
		"v6.example.com":       {"2001:db8:2::80"},
		"bad.example.com":      {"malformed"},
	})
	startResolver(t, b, zone{
		"api.example.com":   {"203.0.113.90"}, // the same name, another address
		"other.example.org": {"203.0.113.80"}, // the same address, another name
	})
	for _, h := range []*netnstest.Hosts{a, b} {
		for _, ip := range []string{"203.0.113.80", "203.0.113.81", "203.0.113.82", "203.0.113.90", "2001:db8:2::80"} {
			h.AddHost(t, netip.MustParseAddr(ip))
			h.Server.Listen(t, "tcp", net.JoinHostPort(ip, "8080"))
		}
	}
	nsA, nsB := netnsOf(t, a.Client), netnsOf(t, b.Client)

	// A third namespace whose client runs in a kubelet-style pod cgroup.
	pod := netnstest.New(t)
	startResolver(t, pod, zone{"pod.example.com": {"203.0.113.83"}})
	pod.AddHost(t, netip.MustParseAddr("203.0.113.83"))
	pod.Server.Listen(t, "tcp", "203.0.113.83:8080")
	containerID := randomHex(64)
	podDir := podCgroup(t, "6b1c0e2a-7d3f-4c1e-9a55-0123456789ab", containerID)
	curlIn(t, podDir, pod.Client, "http://pod.example.com:8080/", "-4")
	nsPod := netnsOf(t, pod.Client)

	curl(t, a.Client, "http://api.example.com:8080/", "-4")
	curl(t, a.Client, "http://api.example.com:8080/", "-4") // the same answer again: one dns.answer record
	curl(t, a.Client, "http://www.example.com:8080/", "-4")
	curl(t, a.Client, "http://v6.example.com:8080/", "-6")
	curl(t, a.Client, "http://203.0.113.82:8080/") // no name was asked
	if out, err := execCombined("ip", "netns", "exec", a.Client.Name, "getent", "ahostsv4", "bad.example.com"); err == nil {
		t.Fatalf("a malformed answer resolved: %s", out)
	}
	curl(t, b.Client, "http://api.example.com:8080/", "-4")
	curl(t, b.Client, "http://other.example.org:8080/", "-4")

	connect := func(netns uint32, peer string, n int) []map[string]string {
		return s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" connaudit.netns:=%d network.peer.address:=%q`, netns, peer), n, time.Minute)
	}
	for _, c := range []struct {
		netns      uint32
		peer, name string
		records    int
	}{
		{nsA, "203.0.113.80", "api.example.com", 2},
		{nsA, "203.0.113.81", "www.example.com", 1},
		{nsA, "2001:db8:2::80", "v6.example.com", 1},
		{nsA, "203.0.113.82", "203.0.113.82", 1},
		{nsB, "203.0.113.90", "api.example.com", 1},
		{nsB, "203.0.113.80", "other.example.org", 1},
		{nsPod, "203.0.113.83", "pod.example.com", 1},
	} {
		for _, r := range connect(c.netns, c.peer, c.records) {
			if r["server.address"] != c.name || r["connaudit.outcome"] != "established" {
				t.Errorf("connect to %s in netns %d: server.address %q, want %q: %v", c.peer, c.netns, r["server.address"], c.name, r)
			}
			if named := c.name != c.peer; named != (r["connaudit.dns.age"] != "") {
				t.Errorf("connect to %s: connaudit.dns.age %q", c.peer, r["connaudit.dns.age"])
			}
		}
	}

	s.vl.WaitFor(t, fmt.Sprintf(`event_name:="dns.answer" connaudit.netns:=%d`, nsA), 3, time.Minute)
	time.Sleep(2 * time.Second) // a duplicate would have been written with the first
	answers, err := s.vl.Query(t.Context(), fmt.Sprintf(`event_name:="dns.answer" connaudit.netns:=%d`, nsA))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]map[string]string{}
	for _, r := range answers {
		byName[r["dns.question.name"]] = append(byName[r["dns.question.name"]], r)
	}
	if len(byName["api.example.com"]) != 1 || byName["api.example.com"][0]["dns.answers"] != "203.0.113.80" {
		t.Errorf("api.example.com answers in netns A: %v, want one with 203.0.113.80", byName["api.example.com"])
	}
	if w := byName["www.example.com"]; len(w) != 1 || w[0]["connaudit.dns.aliases"] != "edge.cdn.example.net, e1.cdn.example.net" || w[0]["dns.answers"] != "203.0.113.81" {
		t.Errorf("www.example.com answers: %v", w)
	}
	if w := byName["v6.example.com"]; len(w) != 1 || w[0]["dns.answers"] != "2001:db8:2::80" || w[0]["connaudit.dns.ttl"] != "60" {
		t.Errorf("v6.example.com answers: %v", w)
	}
	podConnect := connect(nsPod, "203.0.113.83", 1)[0]
	podAnswer := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="dns.answer" connaudit.netns:=%d`, nsPod), 1, time.Minute)[0]
	if podAnswer["dns.question.name"] != "pod.example.com" || podAnswer["connaudit.cgroup.id"] != podConnect["connaudit.cgroup.id"] ||
		podAnswer["container.id"] != containerID || podConnect["container.id"] != containerID {
		t.Errorf("the pod's answer %v and connect %v should name the pod's cgroup and container %s", podAnswer, podConnect, containerID)
	}
	metrics, err := s.agent.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(metrics, `connaudit_dns_packets_total{result="malformed"}`) {
		t.Errorf("the malformed answer was not counted:\n%s", grepLines(metrics, "connaudit_dns"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func execCombined(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// A burst of queries and answers overflows a one-page DNS ring buffer: every
// answer is either a dns.answer record or counted by a dns_ring_buffer loss
// record, or, when its query was the one lost, a dns.rejected record; every
// query is either counted as read or counted lost.
func TestDNSBurstLossIsCountedExactly(t *testing.T) {
	s := startStack(t, "CONNAUDIT_DNS_RING_BUFFER_BYTES=4096", "CONNAUDIT_K8S_HOLD_TIMEOUT=0s")
	instance := s.instance(t)
	h := netnstest.New(t)
	client := netnsOf(t, h.Client)

	var srv, cli *net.UDPConn
	if err := h.Server.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 53})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := h.Client.Do(func() (err error) {
		cli, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.2")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	to := cli.LocalAddr().(*net.UDPAddr).AddrPort()

	const sent = 300
	received := make(chan int)
	go func() {
		buf := make([]byte, 1500)
		got := 0
		_ = cli.SetReadDeadline(time.Now().Add(30 * time.Second))
		for got < sent {
			if _, err := cli.Read(buf); err != nil {
				break
			}
			got++
		}
		received <- got
	}()
	for i := range sent {
		z := zone{fmt.Sprintf("q%d.burst.example.com", i): {netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 250)}).String()}}
		q := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(i)})
		_ = q.StartQuestions()
		_ = q.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(fmt.Sprintf("q%d.burst.example.com.", i)), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		query, _ := q.Finish()
		if _, err := cli.WriteToUDPAddrPort(query, srv.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.WriteToUDPAddrPort(answerQuery(query, z), to); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			time.Sleep(5 * time.Millisecond) // below the veth's backlog, far above what 4 KiB holds
		}
	}
	if got := <-received; got != sent {
		t.Fatalf("the client received %d of %d answers", got, sent)
	}

	var lost, answers, rejected, queries int
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		rows, err := s.vl.Query(t.Context(), fmt.Sprintf(`service.instance.id:=%q event_name:="connaudit.loss" connaudit.lost.reason:="dns_ring_buffer"`, instance))
		if err != nil {
			t.Fatal(err)
		}
		lost = 0
		for _, r := range rows {
			n, err := strconv.Atoi(r["connaudit.lost.count"])
			if err != nil {
				t.Fatalf("loss record without a count: %v", r)
			}
			lost += n
		}
		recs, err := s.vl.Query(t.Context(), fmt.Sprintf(`event_name:="dns.answer" connaudit.netns:=%d`, client))
		if err != nil {
			t.Fatal(err)
		}
		answers = len(recs)
		recs, err = s.vl.Query(t.Context(), fmt.Sprintf(`event_name:="dns.rejected" connaudit.netns:=%d`, client))
		if err != nil {
			t.Fatal(err)
		}
		rejected = len(recs)
		metrics, err := s.agent.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		queries = 0
		if m := regexp.MustCompile(`connaudit_dns_packets_total\{result="query"\} (\d+)`).FindStringSubmatch(metrics); m != nil {
			queries, _ = strconv.Atoi(m[1])
		}
		if lost > 0 && lost+answers+rejected+queries >= 2*sent {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if lost == 0 || lost+answers+rejected+queries != 2*sent {
		t.Fatalf("%d dns.answer and %d dns.rejected records, %d queries read and %d counted lost, want %d in all with some lost",
			answers, rejected, queries, lost, 2*sent)
	}
}

// DNS capture attaches to CONNAUDIT_CGROUP_ROOT, as the DaemonSet's agent
// needs: it runs in a cgroup namespace of its own (as a container runtime
// starts it), where the cgroup2 mount of /proc/self/mountinfo is its own
// cgroup only, with the host's cgroup filesystem bind-mounted elsewhere and
// configured. A pod's process in another cgroup gets its connect named.
func TestDNSAttachesAtTheConfiguredCgroupRoot(t *testing.T) {
	v2, err := cgroup.FindV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	cgroupFS := v2
	if filepath.Base(v2) == "unified" {
		cgroupFS = filepath.Dir(v2) // a hybrid host: the whole filesystem, as the DaemonSet's hostPath
	}
	agentCgroup := filepath.Join(v2, "connaudit-agent-"+randomHex(8))
	if err := os.Mkdir(agentCgroup, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(agentCgroup) }) // after the agent's cleanup has stopped it
	dir := t.TempDir()
	hostCgroup := filepath.Join(dir, "host-cgroup")
	if err := os.Mkdir(hostCgroup, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "agent-in-cgroupns")
	script := fmt.Sprintf(`#!/bin/sh
set -e
echo $$ > %[1]s/cgroup.procs
exec unshare --cgroup --mount --propagation private -- /bin/sh -c '
set -e
mount --rbind %[2]s %[3]s
umount -l %[4]s
mount -t cgroup2 cgroup2 %[4]s
exec %[5]s "$@"' connaudit-agent "$@"
`, agentCgroup, cgroupFS, hostCgroup, v2, teststack.Binary(t, "connaudit-agent"))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartCollector(t, vl.URL())
	agent := teststack.StartAgentBinary(t, col, wrapper, "CONNAUDIT_CGROUP_ROOT="+hostCgroup)

	// The agent's own view is its cgroup only: the bug this test guards against.
	own, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s/cgroup.procs", agent.PID(), v2))
	if err != nil {
		t.Fatal(err)
	}
	if pids := strings.Fields(string(own)); len(pids) != 1 || pids[0] != strconv.Itoa(agent.PID()) {
		t.Fatalf("the agent's %s lists %v: not its own cgroup alone", v2, pids)
	}

	pod := netnstest.New(t)
	startResolver(t, pod, zone{"pod.example.com": {"203.0.113.83"}})
	pod.AddHost(t, netip.MustParseAddr("203.0.113.83"))
	pod.Server.Listen(t, "tcp", "203.0.113.83:8080")
	podDir := podCgroup(t, "0d7c2f4e-1b2a-4c3d-8e9f-0123456789ab", randomHex(64))
	curlIn(t, podDir, pod.Client, "http://pod.example.com:8080/", "-4")
	r := vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" connaudit.netns:=%d network.peer.address:="203.0.113.83"`, netnsOf(t, pod.Client)), 1, time.Minute)[0]
	if r["server.address"] != "pod.example.com" {
		t.Errorf("the pod's connect: server.address %q, want pod.example.com (DNS capture not attached at CONNAUDIT_CGROUP_ROOT)\nagent log: %s",
			r["server.address"], agent.LogTail(4096))
	}
	attached := hostCgroup
	if cgroupFS != v2 {
		attached = filepath.Join(hostCgroup, "unified")
	}
	if want := `"cgroup":"` + attached + `"`; !strings.Contains(agent.LogTail(1<<20), want) {
		t.Errorf("the agent's log does not say it captures DNS at %s:\n%s", want, agent.LogTail(4096))
	}
}
