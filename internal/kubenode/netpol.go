package kubenode

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// The node's NetworkPolicy controller is kube-router's, alone: iptables
// chains (KUBE-ROUTER-INPUT/FORWARD/OUTPUT, KUBE-POD-FW-*, KUBE-NWPLCY-*)
// and ipsets (KUBE-SRC-*, KUBE-DST-*) that match pod addresses only.
// kube-network-policies would need nfqueue, which this kernel lacks. Its
// router and service proxy stay off: it touches no route, no interface and
// no address, and kube-proxy keeps the Services.
const (
	kubeRouterForwardChain = "KUBE-ROUTER-FORWARD"
)

// kubeRouterIPSetPrefixes are the prefixes of the ipsets kube-router's
// NetworkPolicy controller makes (IPv4; "inet6:" ones only with
// --enable-ipv6, which the node leaves off, but Down removes them too).
var kubeRouterIPSetPrefixes = []string{"KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-"}

// kubeRouterArgs are kube-router's flags on this node.
func (n *Node) kubeRouterArgs() []string {
	return []string{
		"--kubeconfig=" + n.Kubeconfig(),
		"--hostname-override=" + NodeName,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--enable-ipv4=true", "--enable-ipv6=false",
		// No health or metrics listener: it would listen on every address.
		"--health-port=0", "--metrics-port=0",
		"--v=2",
	}
}

// startNetworkPolicyController starts kube-router once the node exists (it
// reads its Node at start) and waits until its chains are hooked into
// FORWARD, so that policies applied from then on are enforced.
func (n *Node) startNetworkPolicyController(ctx context.Context) error {
	n.opts.Logf("kubenode: starting kube-router (NetworkPolicy controller only)")
	if err := n.startDetached("kube-router", filepath.Join(n.opts.NodeBinDir, "kube-router"), n.kubeRouterArgs(), nil); err != nil {
		return err
	}
	return waitFor(ctx, "kube-router's iptables chains", func() error {
		if !running(n.dir, "kube-router") {
			return fmt.Errorf("kube-router exited (see %s)", filepath.Join(n.dir, "logs", "kube-router.log"))
		}
		rules, err := output("iptables", "-t", "filter", "-S", "FORWARD")
		if err != nil {
			return err
		}
		if !strings.Contains(rules, "-j "+kubeRouterForwardChain) {
			return fmt.Errorf("no jump to %s in FORWARD yet", kubeRouterForwardChain)
		}
		return nil
	})
}

// kubeRouterIPSet reports whether an ipset is one kube-router's
// NetworkPolicy controller makes.
func kubeRouterIPSet(name string) bool {
	for _, p := range kubeRouterIPSetPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// cleanIPSets destroys kube-router's ipsets. It runs after the iptables
// chains that use them are gone (a set in use cannot be destroyed). No
// ipset tool means no sets of ours either.
func cleanIPSets() error {
	if !executable("/usr/sbin/ipset") {
		return nil
	}
	out, err := output("/usr/sbin/ipset", "list", "-n")
	if err != nil {
		return err
	}
	var names, errs []string
	for _, name := range strings.Fields(out) {
		if kubeRouterIPSet(name) {
			names = append(names, name)
		}
	}
	// A list:set may refer to other sets: flush all, then destroy.
	for _, name := range names {
		_ = run("/usr/sbin/ipset", "flush", name)
	}
	for _, name := range names {
		if err := run("/usr/sbin/ipset", "destroy", name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("ipset cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}
