package advise

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ruleSet collects the rules of one direction of one policy, one rule per
// peer with the peer's ports merged.
type ruleSet struct{ rules map[string]*rule }

func newRuleSet() *ruleSet { return &ruleSet{rules: map[string]*rule{}} }

// rule is one peer (pods by selector, or an ipBlock) and the ports used.
type rule struct {
	key string

	// A selector peer: the pods' stable labels (or a Service's selector, in
	// fixed), and a namespace selector when the peer is in another namespace.
	selector    bool
	labels      labelSet
	fixed       map[string]string
	ofNamespace string
	crossNS     bool

	// An ipBlock peer and the addresses seen in it.
	prefix netip.Prefix
	addrs  map[netip.Addr]map[string]struct{} // the DNS names each was asked by

	portEvidence map[intstr.IntOrString]*evidence
	notes        []string
}

type evidence struct {
	count       int64
	first, last time.Time
}

func (rs *ruleSet) selectorRule(key string, crossNS bool, namespace string) *rule {
	r := rs.rules[key]
	if r == nil {
		r = &rule{key: key, selector: true, crossNS: crossNS, ofNamespace: namespace, portEvidence: map[intstr.IntOrString]*evidence{}}
		rs.rules[key] = r
	}
	return r
}

func (rs *ruleSet) ipRule(prefix netip.Prefix) *rule {
	// Sort keys so that IPv4 comes before IPv6 and addresses in order.
	key := fmt.Sprintf("ip/%d/%s", prefix.Addr().BitLen(), prefix)
	r := rs.rules[key]
	if r == nil {
		r = &rule{key: key, prefix: prefix, addrs: map[netip.Addr]map[string]struct{}{}, portEvidence: map[intstr.IntOrString]*evidence{}}
		rs.rules[key] = r
	}
	return r
}

func (rs *ruleSet) sorted() []*rule {
	out := slices.Collect(maps.Values(rs.rules))
	slices.SortFunc(out, func(a, b *rule) int {
		if a.selector != b.selector { // pods first, then addresses
			if a.selector {
				return -1
			}
			return 1
		}
		if !a.selector {
			if c := cmp.Compare(a.prefix.Addr().BitLen(), b.prefix.Addr().BitLen()); c != 0 {
				return c
			}
			return a.prefix.Addr().Compare(b.prefix.Addr())
		}
		return strings.Compare(a.key, b.key)
	})
	return out
}

func (r *rule) note(s string) {
	if s != "" && !slices.Contains(r.notes, s) {
		r.notes = append(r.notes, s)
	}
}

func (r *rule) add(port intstr.IntOrString, f Flow) {
	e := r.portEvidence[port]
	if e == nil {
		e = &evidence{first: f.First, last: f.Last}
		r.portEvidence[port] = e
	}
	e.count += f.Count
	if f.First.Before(e.first) {
		e.first = f.First
	}
	if f.Last.After(e.last) {
		e.last = f.Last
	}
}

func (r *rule) peer() networkingv1.NetworkPolicyPeer {
	if !r.selector {
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: r.prefix.String()}}
	}
	match := r.fixed
	if match == nil {
		match = r.labels.labels
	}
	p := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: maps.Clone(match)}}
	if r.crossNS {
		p.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{namespaceNameLabel: r.ofNamespace}}
	}
	return p
}

// sortedPorts puts numbered ports in order, then named ones.
func (r *rule) sortedPorts() []intstr.IntOrString {
	ports := slices.Collect(maps.Keys(r.portEvidence))
	slices.SortFunc(ports, func(a, b intstr.IntOrString) int {
		if a.Type != b.Type {
			return cmp.Compare(a.Type, b.Type)
		}
		if a.Type == intstr.Int {
			return cmp.Compare(a.IntVal, b.IntVal)
		}
		return strings.Compare(a.StrVal, b.StrVal)
	})
	return ports
}

func (r *rule) ports() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for _, p := range r.sortedPorts() {
		tcp := corev1.ProtocolTCP
		port := p
		out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &port})
	}
	return out
}

// evidence is the comment above the rule: what it is for, and per port how
// often, first and last.
func (r *rule) evidence() []string {
	lines := slices.Clone(r.notes)
	slices.Sort(lines)
	if !r.selector {
		addrs := slices.SortedFunc(maps.Keys(r.addrs), netip.Addr.Compare)
		var seen []string
		for _, a := range addrs {
			seen = append(seen, a.String())
			if names := slices.Sorted(maps.Keys(r.addrs[a])); len(names) > 0 {
				seen[len(seen)-1] += " = " + strings.Join(names, " or ")
			}
		}
		line := "observed " + strings.Join(seen, ", ")
		if r.prefix.Bits() < r.prefix.Addr().BitLen() {
			line += fmt.Sprintf("; widened to /%d (--aggregate-cidr), which admits %s addresses never observed",
				r.prefix.Bits(), admittedButUnseen(r.prefix, len(addrs)).String())
		}
		lines = append(lines, line)
	}
	for _, p := range r.sortedPorts() {
		e := r.portEvidence[p]
		lines = append(lines, fmt.Sprintf("TCP %s: established %s, first %s, last %s", p.String(), times(e.count),
			e.first.UTC().Format(time.RFC3339), e.last.UTC().Format(time.RFC3339)))
	}
	return lines
}
