package kubenode

import (
	"slices"
	"testing"
)

func TestSplitRuleKeepsQuotedComments(t *testing.T) {
	got := splitRule(`-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD`)
	want := []string{"-A", "FORWARD", "-m", "comment", "--comment", "kubernetes forwarding rules", "-j", "KUBE-FORWARD"}
	if !slices.Equal(got, want) {
		t.Errorf("splitRule = %q, want %q", got, want)
	}
}

func TestOursNamesOnlyTheNodesChains(t *testing.T) {
	for chain, want := range map[string]bool{
		"KUBE-FORWARD": true, "KUBE-SVC-ABC": true, "CNI-123": true, guardChain: true,
		"FORWARD": false, "DOCKER": false, "KUBEX": false, "CONNAUDIT-OTHER": false,
	} {
		if ours(chain) != want {
			t.Errorf("ours(%q) = %v, want %v", chain, !want, want)
		}
	}
}
