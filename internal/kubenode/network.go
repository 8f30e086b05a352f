package kubenode

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Addresses. Pods and Services use documentation ranges, never the host's
// uplink (192.0.2.0/24, fd00::/64), and the host's default route is never
// touched. The node's address is the bridge's, so pods reach the API server,
// the kubelet and CoreDNS there.
const (
	Bridge      = "cabr0"
	NodeIP      = "198.51.100.1"
	PodCIDR     = "198.51.100.0/24"
	ServiceCIDR = "203.0.113.0/25"
	// ClusterDNSIP is the ClusterIP of the Service kube-system/kube-dns,
	// which pods are told to ask; its endpoint is CoreDNS on NodeIP.
	ClusterDNSIP = "203.0.113.10"
	// TestCIDR holds the Services and the outside hosts: the only
	// addresses outside the pod range that pods may reach.
	TestCIDR = "203.0.113.0/24"
	// Pod addresses stop below 198.51.100.240, which other tests of this
	// repository give to veths of their own.
	podRangeStart = "198.51.100.10"
	podRangeEnd   = "198.51.100.200"
	guardChain    = "CONNAUDIT-NODE"
)

// Outside is a test host outside the cluster: a network namespace joined to
// the node by a veth, in 203.0.113.128/25, with a name that CoreDNS answers.
type Outside struct {
	Netns string // for `ip netns exec`
	Addr  string
	Name  string // a DNS name for Addr, answered by the cluster DNS
	host  string // the node's end of the veth
	veth  string
}

// Outsides are the node's two outside hosts.
var Outsides = []Outside{
	{Netns: "ca-out1", Addr: "203.0.113.130", Name: "a.outside.test", host: "203.0.113.129", veth: "caout1"},
	{Netns: "ca-out2", Addr: "203.0.113.134", Name: "b.outside.test", host: "203.0.113.133", veth: "caout2"},
}

// sysctls are the host settings the bridge plugin, the kubelet and
// kube-proxy change; Up records them and Down puts them back.
var sysctls = []string{
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

func saveSysctls(dir string) error {
	vals := map[string]string{}
	for _, s := range sysctls {
		b, err := os.ReadFile("/proc/sys/" + s)
		if err == nil {
			vals[s] = strings.TrimSpace(string(b))
		}
	}
	b, _ := json.Marshal(vals)
	return os.WriteFile(filepath.Join(dir, "sysctl.json"), b, 0o644)
}

func restoreSysctls(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "sysctl.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	vals := map[string]string{}
	if err := json.Unmarshal(b, &vals); err != nil {
		return fmt.Errorf("sysctl.json: %w", err)
	}
	var errs []string
	for k, v := range vals {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("restore sysctls: %s", strings.Join(errs, "; "))
	}
	return nil
}

// setUpNetwork makes the bridge (with the node's address, before the kubelet
// starts), the outside hosts and the guard, and turns on forwarding.
func setUpNetwork() error {
	steps := [][]string{
		{"ip", "link", "add", Bridge, "type", "bridge"},
		{"sysctl", "-qw", "net.ipv6.conf." + Bridge + ".disable_ipv6=1"},
		{"ip", "addr", "add", NodeIP + "/24", "dev", Bridge},
		{"ip", "link", "set", Bridge, "up"},
	}
	for _, o := range Outsides {
		steps = append(steps,
			[]string{"ip", "netns", "add", o.Netns},
			[]string{"ip", "link", "add", o.veth, "type", "veth", "peer", "name", "eth0", "netns", o.Netns},
			[]string{"ip", "addr", "add", o.host + "/30", "dev", o.veth},
			[]string{"ip", "link", "set", o.veth, "up"},
			[]string{"ip", "-n", o.Netns, "addr", "add", o.Addr + "/30", "dev", "eth0"},
			[]string{"ip", "-n", o.Netns, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", o.Netns, "link", "set", "lo", "up"},
			// Back to the pods through the node; nothing else leaves.
			[]string{"ip", "-n", o.Netns, "route", "add", PodCIDR, "via", o.host},
			[]string{"ip", "-n", o.Netns, "route", "add", ServiceCIDR, "via", o.host},
		)
	}
	// Pods reach the pod range, the Services and the outside hosts, and
	// nothing else: not the uplink, neither forwarded nor the host's own
	// uplink address. In raw PREROUTING, before the kubelet's and
	// kube-proxy's ACCEPT rules and before Service DNAT.
	steps = append(steps,
		[]string{"iptables", "-t", "raw", "-N", guardChain},
		[]string{"iptables", "-t", "raw", "-A", guardChain, "-d", PodCIDR, "-j", "RETURN"},
		[]string{"iptables", "-t", "raw", "-A", guardChain, "-d", TestCIDR, "-j", "RETURN"},
		[]string{"iptables", "-t", "raw", "-A", guardChain, "-j", "DROP"},
		[]string{"iptables", "-t", "raw", "-I", "PREROUTING", "1", "-s", PodCIDR, "-j", guardChain},
		[]string{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
	)
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return fmt.Errorf("set up network: %w", err)
		}
	}
	return nil
}

// tearDownNetwork removes the outside hosts, the bridge, pod veths left on
// it, and every iptables chain of the kubelet (KUBE-*), kube-proxy
// (KUBE-*), kube-router (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*), the
// CNI plugins (CNI-*) and the guard, with the rules that jump to them, and
// then kube-router's ipsets. Missing pieces are no error.
func tearDownNetwork() []error {
	var errs []error
	for _, o := range Outsides {
		_ = run("ip", "netns", "del", o.Netns) // takes its veth pair with it
		_ = run("ip", "link", "del", o.veth)
	}
	if out, err := output("ip", "-o", "link", "show", "master", Bridge); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) > 1 {
				name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
				_ = run("ip", "link", "del", name)
			}
		}
	}
	_ = run("ip", "link", "del", Bridge)
	for _, tool := range []string{"iptables", "ip6tables"} {
		if err := cleanIptables(tool); err != nil {
			errs = append(errs, err)
		}
	}
	if err := cleanIPSets(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func ours(chain string) bool {
	return strings.HasPrefix(chain, "KUBE-") || strings.HasPrefix(chain, "CNI-") || chain == guardChain
}

// cleanIptables deletes, in each table, the rules of built-in chains that
// jump to our chains, then flushes and deletes our chains. Rules and chains
// of anyone else are left alone.
func cleanIptables(tool string) error {
	dump, err := output(tool + "-save")
	if err != nil {
		return nil // no such tool: nothing of ours either
	}
	table := ""
	var ruleDels [][]string
	chains := map[string][]string{}
	for _, line := range strings.Split(dump, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			name := strings.Fields(line[1:])[0]
			if ours(name) {
				chains[table] = append(chains[table], name)
			}
		case strings.HasPrefix(line, "-A "):
			f := splitRule(line)
			if ours(f[1]) {
				continue // goes with its chain
			}
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
					ruleDels = append(ruleDels, append([]string{"-t", table, "-D"}, f[1:]...))
					break
				}
			}
		}
	}
	var errs []string
	for _, d := range ruleDels {
		if err := run(tool, d...); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for t, cs := range chains {
		for _, c := range cs {
			_ = run(tool, "-t", t, "-F", c)
		}
		for _, c := range cs {
			if err := run(tool, "-t", t, "-X", c); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s cleanup: %s", tool, strings.Join(errs, "; "))
	}
	return nil
}

// splitRule splits an iptables-save rule into arguments, keeping a quoted
// comment (with its spaces) as one argument without its quotes.
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	quoted, inArg := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inArg = !quoted, true
		case r == ' ' && !quoted:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}
