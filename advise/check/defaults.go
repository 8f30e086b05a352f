package check

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Default applies what the API server would to a NetworkPolicy read from a
// file (a port's protocol is TCP; policyTypes is Ingress, plus Egress when
// there are egress rules), and checks what the evaluator would otherwise
// panic on, naming the field.
func Default(np *networkingv1.NetworkPolicy) error {
	s := &np.Spec
	if len(s.PolicyTypes) == 0 {
		s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(s.Egress) > 0 {
			s.PolicyTypes = append(s.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	for _, t := range s.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			return fmt.Errorf("spec.policyTypes: %q is neither Ingress nor Egress", t)
		}
	}
	if _, err := metav1.LabelSelectorAsSelector(&s.PodSelector); err != nil {
		return fmt.Errorf("spec.podSelector: %w", err)
	}
	for i := range s.Ingress {
		r := &s.Ingress[i]
		if err := defaultPorts(fmt.Sprintf("spec.ingress[%d]", i), r.Ports); err != nil {
			return err
		}
		if err := checkPeers(fmt.Sprintf("spec.ingress[%d].from", i), r.From); err != nil {
			return err
		}
	}
	for i := range s.Egress {
		r := &s.Egress[i]
		if err := defaultPorts(fmt.Sprintf("spec.egress[%d]", i), r.Ports); err != nil {
			return err
		}
		if err := checkPeers(fmt.Sprintf("spec.egress[%d].to", i), r.To); err != nil {
			return err
		}
	}
	return nil
}

func defaultPorts(where string, ports []networkingv1.NetworkPolicyPort) error {
	for j := range ports {
		p := &ports[j]
		if p.Protocol == nil {
			tcp := corev1.ProtocolTCP
			p.Protocol = &tcp
		}
		if p.EndPort != nil {
			if p.Port == nil || p.Port.Type != intstr.Int {
				return fmt.Errorf("%s.ports[%d]: endPort needs a numbered port", where, j)
			}
			if *p.EndPort < p.Port.IntVal {
				return fmt.Errorf("%s.ports[%d]: endPort %d is below port %d", where, j, *p.EndPort, p.Port.IntVal)
			}
		}
	}
	return nil
}

func checkPeers(where string, peers []networkingv1.NetworkPolicyPeer) error {
	for j, p := range peers {
		at := fmt.Sprintf("%s[%d]", where, j)
		if p.IPBlock != nil {
			cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
			if err != nil {
				return fmt.Errorf("%s.ipBlock.cidr: %w", at, err)
			}
			for k, e := range p.IPBlock.Except {
				ex, err := netip.ParsePrefix(e)
				if err != nil {
					return fmt.Errorf("%s.ipBlock.except[%d]: %w", at, k, err)
				}
				if ex.Addr().Is4() != cidr.Addr().Is4() {
					return fmt.Errorf("%s.ipBlock.except[%d]: %s is not of the family of %s", at, k, e, p.IPBlock.CIDR)
				}
			}
		}
		for name, sel := range map[string]*metav1.LabelSelector{"podSelector": p.PodSelector, "namespaceSelector": p.NamespaceSelector} {
			if sel == nil {
				continue
			}
			if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
				return fmt.Errorf("%s.%s: %w", at, name, err)
			}
		}
	}
	return nil
}
