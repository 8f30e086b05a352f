package kubenode

import (
	"slices"
	"strings"
	"testing"
)

func TestKubeRouterIPSetNamesOnlyItsSets(t *testing.T) {
	for name, want := range map[string]bool{
		"KUBE-SRC-ABCDEF": true, "KUBE-DST-ABCDEF": true, "inet6:KUBE-SRC-ABC": true, "inet6:KUBE-DST-ABC": true,
		"kube-router-svip": false, "KUBE-CLUSTER-IP": false, "cali40all-hosts": false, "KUBE-SRCX": false,
	} {
		if kubeRouterIPSet(name) != want {
			t.Errorf("kubeRouterIPSet(%q) = %v, want %v", name, !want, want)
		}
	}
}

func TestKubeRouterRunsTheFirewallOnly(t *testing.T) {
	n := &Node{dir: "/tmp/x"}
	args := n.kubeRouterArgs()
	for _, want := range []string{"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--hostname-override=" + NodeName, "--service-cluster-ip-range=" + ServiceCIDR, "--health-port=0", "--metrics-port=0"} {
		if !slices.Contains(args, want) {
			t.Errorf("kube-router args %q lack %q", args, want)
		}
	}
	for _, a := range args {
		if strings.Contains(a, "192.0.2.") || strings.Contains(a, "fd00:") {
			t.Errorf("kube-router arg %q names the uplink", a)
		}
	}
}

func TestOursNamesKubeRoutersChains(t *testing.T) {
	for _, c := range []string{"KUBE-ROUTER-INPUT", "KUBE-ROUTER-FORWARD", "KUBE-ROUTER-OUTPUT", "KUBE-POD-FW-ABC", "KUBE-NWPLCY-ABC", "KUBE-NWPLCY-DEFAULT"} {
		if !ours(c) {
			t.Errorf("ours(%q) = false: Down would leave kube-router's chain", c)
		}
	}
}
