package check

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kapi "sigs.k8s.io/kube-network-policies/pkg/api"
	knp "sigs.k8s.io/kube-network-policies/pkg/networkpolicy"

	"github.com/connaudit/connaudit/advise"
	"github.com/connaudit/connaudit/trail"
)

// Denial is a flow that the policies would have denied.
type Denial struct {
	Flow       advise.Flow
	Directions []string // "egress" (leaving its source), "ingress" (entering its destination)
	Policies   []string // namespace/name of the policies that select the denied end
	Via        string   // how the destination was resolved, for a Service
}

// Result is what a replay found.
type Result struct {
	Flows  int      // flows replayed
	Denied []Denial // in the order of the flows
	// Notes say what could not be replayed exactly (unknown Services, ...).
	Notes []string
}

// DeniedEstablished counts the denied flows that had been established: what
// the policies would break.
func (r *Result) DeniedEstablished() int {
	n := 0
	for _, d := range r.Denied {
		if d.Flow.Established() {
			n++
		}
	}
	return n
}

// EvaluatorError names the policy that made the evaluator fail.
type EvaluatorError struct {
	Policy string
	Panic  any
}

func (e *EvaluatorError) Error() string {
	return fmt.Sprintf("the NetworkPolicy evaluator failed on policy %s: %v", e.Policy, e.Panic)
}

// Check replays flows against policies (already defaulted, see Default)
// with kube-network-policies' evaluator. cluster resolves Services to their
// backends; nil replays them to their address.
func Check(ctx context.Context, policies []*networkingv1.NetworkPolicy, flows []advise.Flow, cluster advise.Cluster) (*Result, error) {
	selectors := make([]labels.Selector, len(policies))
	for i, p := range policies {
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("policy %s: spec.podSelector: %w", name(p), err)
		}
		selectors[i] = sel
	}
	r := &replayer{ctx: ctx, cluster: cluster, policies: policies, selectors: selectors,
		services: map[string]*advise.Service{}, nodes: map[string][]netip.Addr{}}
	res := &Result{}
	for _, f := range flows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res.Flows++
		conns, via, err := r.connections(f)
		if err != nil {
			return nil, err
		}
		for _, c := range conns {
			d, err := r.evaluate(c)
			if err != nil {
				return nil, err
			}
			if d == nil {
				continue
			}
			d.Flow, d.Via = f, via
			res.Denied = append(res.Denied, *d)
			break // one denial per flow, also when it had several backends
		}
	}
	res.Notes = r.notes
	return res, nil
}

func name(p *networkingv1.NetworkPolicy) string { return p.Namespace + "/" + p.Name }

// end is one side of a connection after Service translation.
type end struct {
	pod *kapi.PodInfo // nil outside any pod (or in the host network)
	ip  net.IP
}

type connection struct {
	src, dst end
	port     int
}

type replayer struct {
	ctx       context.Context
	cluster   advise.Cluster
	policies  []*networkingv1.NetworkPolicy
	selectors []labels.Selector
	services  map[string]*advise.Service
	nodes     map[string][]netip.Addr
	notes     []string
}

func (r *replayer) note(s string) {
	if !slices.Contains(r.notes, s) {
		r.notes = append(r.notes, s)
	}
}

// selecting returns the policies of direction typ that select pod.
func (r *replayer) selecting(pod *kapi.PodInfo, typ networkingv1.PolicyType) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for i, p := range r.policies {
		if p.Namespace == pod.Namespace.Name && slices.Contains(p.Spec.PolicyTypes, typ) && r.selectors[i].Matches(labels.Set(pod.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

// evaluate returns the denial of c, or nil when both its source's egress
// and its destination's ingress allow it.
func (r *replayer) evaluate(c connection) (*Denial, error) {
	d := &Denial{}
	deny := func(dir string, ps []*networkingv1.NetworkPolicy) {
		d.Directions = append(d.Directions, dir)
		for _, p := range ps {
			d.Policies = append(d.Policies, name(p))
		}
	}
	if c.src.pod != nil {
		if ps := r.selecting(c.src.pod, networkingv1.PolicyTypeEgress); len(ps) > 0 {
			ok, err := guarded(ps, func(ps []*networkingv1.NetworkPolicy) bool {
				return knp.EvaluatePolicyDirection(r.ctx, ps, networkingv1.PolicyTypeEgress, c.src.pod, 0, c.dst.pod, c.dst.ip, c.port, corev1.ProtocolTCP)
			})
			if err != nil {
				return nil, err
			}
			if !ok {
				deny("egress", ps)
			}
		}
	}
	if c.dst.pod != nil {
		if ps := r.selecting(c.dst.pod, networkingv1.PolicyTypeIngress); len(ps) > 0 {
			// The evaluator's ingress convention: the policy's pod and port
			// first, then the peer and its address.
			ok, err := guarded(ps, func(ps []*networkingv1.NetworkPolicy) bool {
				return knp.EvaluatePolicyDirection(r.ctx, ps, networkingv1.PolicyTypeIngress, c.dst.pod, c.port, c.src.pod, c.src.ip, 0, corev1.ProtocolTCP)
			})
			if err != nil {
				return nil, err
			}
			if !ok {
				deny("ingress", ps)
			}
		}
	}
	if len(d.Directions) == 0 {
		return nil, nil
	}
	slices.Sort(d.Policies)
	d.Policies = slices.Compact(d.Policies)
	return d, nil
}

// guarded runs eval over ps, and when the evaluator panics, finds the policy
// that makes it.
func guarded(ps []*networkingv1.NetworkPolicy, eval func([]*networkingv1.NetworkPolicy) bool) (bool, error) {
	ok, panicked := recovered(func() bool { return eval(ps) })
	if panicked == nil {
		return ok, nil
	}
	for _, p := range ps {
		if _, v := recovered(func() bool { return eval([]*networkingv1.NetworkPolicy{p}) }); v != nil {
			return false, &EvaluatorError{Policy: name(p), Panic: v}
		}
	}
	return false, &EvaluatorError{Policy: "(several together)", Panic: panicked}
}

func recovered(f func() bool) (ok bool, panicked any) {
	defer func() { panicked = recover() }()
	return f(), nil
}

func podInfo(namespace, pod string, lbls map[string]string, ports map[string]int32) *kapi.PodInfo {
	info := &kapi.PodInfo{
		Name:      pod,
		Labels:    lbls,
		Namespace: &kapi.Namespace{Name: namespace, Labels: map[string]string{"kubernetes.io/metadata.name": namespace}},
	}
	names := make([]string, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		info.ContainerPorts = append(info.ContainerPorts, &kapi.ContainerPort{Name: n, Port: ports[n], Protocol: string(corev1.ProtocolTCP)})
	}
	return info
}

func ip(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil // matches no ipBlock
	}
	return net.IP(a.Unmap().AsSlice())
}

// connections are the flow as the data path sees it, after Service
// translation: one per backend when a Service has several.
func (r *replayer) connections(f advise.Flow) ([]connection, string, error) {
	s, d := f.Source, f.Destination
	src := end{ip: ip(s.Address)}
	if s.Kind == trail.SourcePod && !s.HostNetwork && s.Namespace != "" {
		src.pod = podInfo(s.Namespace, s.Pod, s.Labels, nil)
	} else if src.ip == nil && s.Node != "" && r.cluster != nil {
		addrs, err := r.nodeAddresses(s.Node)
		if err != nil {
			return nil, "", err
		}
		if len(addrs) > 0 {
			src.ip = ip(addrs[0])
		}
	}
	direct := []connection{{src: src, dst: end{ip: ip(d.Address)}, port: int(d.Port)}}
	switch d.Kind {
	case trail.PeerLoopback:
		return nil, "", nil // never passes NetworkPolicy
	case trail.PeerPod:
		direct[0].dst.pod = podInfo(d.Namespace, d.Name, d.Labels, nil)
		return direct, "", nil
	case trail.PeerService:
		svc, err := r.service(d.Namespace, d.Name)
		if err != nil {
			return nil, "", err
		}
		if svc == nil {
			r.note(fmt.Sprintf("Service %s/%s is not known: replayed to its address %s", d.Namespace, d.Name, d.Address))
			return direct, "", nil
		}
		sp, target, ok := svc.Backend(d.Port)
		if !ok {
			r.note(fmt.Sprintf("Service %s/%s has no port %d now: replayed to its address %s", d.Namespace, d.Name, d.Port, d.Address))
			return direct, "", nil
		}
		if len(svc.Selector) > 0 {
			return r.backends(src, d, svc, target)
		}
		port := int(d.Port)
		if p, ok := svc.EndpointPorts[sp.Name]; ok {
			port = int(p)
		}
		var out []connection
		var eps []string
		for _, ep := range svc.Endpoints {
			out = append(out, connection{src: src, dst: end{ip: ip(ep)}, port: port})
			eps = append(eps, ep.String())
		}
		if len(out) == 0 {
			r.note(fmt.Sprintf("Service %s/%s has neither selector nor endpoints: replayed to its address %s", d.Namespace, d.Name, d.Address))
			return direct, "", nil
		}
		return out, fmt.Sprintf("Service %s/%s port %d -> endpoints %s port %d", d.Namespace, d.Name, d.Port, strings.Join(eps, ", "), port), nil
	}
	return direct, "", nil
}

// backends are the connections to a Service's pods: each running pod the
// cluster lists now, with its labels, address and named ports; else one pod
// with just the selector's labels.
func (r *replayer) backends(src end, d advise.Destination, svc *advise.Service, target intstr.IntOrString) ([]connection, string, error) {
	via := fmt.Sprintf("Service %s/%s port %d -> pods %s port %s", d.Namespace, d.Name, d.Port,
		labels.SelectorFromSet(svc.Selector).String(), target.String())
	var pods []advise.Pod
	if lister, ok := r.cluster.(advise.PodLister); ok {
		var err error
		if pods, err = lister.Pods(r.ctx, d.Namespace, svc.Selector); err != nil {
			return nil, "", err
		}
	}
	if len(pods) == 0 {
		if target.Type == intstr.String {
			r.note(fmt.Sprintf("Service %s/%s: no running pod tells the number of target port %s: not replayed", d.Namespace, d.Name, target.StrVal))
			return nil, via, nil
		}
		r.note(fmt.Sprintf("Service %s/%s: no running pod is known, replayed to a pod with just its selector's labels and no address", d.Namespace, d.Name))
		return []connection{{src: src, dst: end{pod: podInfo(d.Namespace, "", svc.Selector, nil)}, port: int(target.IntVal)}}, via, nil
	}
	var out []connection
	for _, p := range pods {
		port := int(target.IntVal)
		if target.Type == intstr.String {
			n, ok := p.Ports[target.StrVal]
			if !ok {
				continue // this pod does not serve the Service's port
			}
			port = int(n)
		}
		out = append(out, connection{src: src, dst: end{pod: podInfo(d.Namespace, "", p.Labels, p.Ports), ip: ip(p.IP)}, port: port})
	}
	return out, via, nil
}

func (r *replayer) service(namespace, name string) (*advise.Service, error) {
	if r.cluster == nil {
		return nil, nil
	}
	key := namespace + "/" + name
	if s, ok := r.services[key]; ok {
		return s, nil
	}
	s, err := r.cluster.Service(r.ctx, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("look up Service %s: %w", key, err)
	}
	r.services[key] = s
	return s, nil
}

func (r *replayer) nodeAddresses(node string) ([]netip.Addr, error) {
	if a, ok := r.nodes[node]; ok {
		return a, nil
	}
	a, err := r.cluster.NodeAddresses(r.ctx, node)
	if err != nil {
		return nil, fmt.Errorf("look up node %s: %w", node, err)
	}
	r.nodes[node] = a
	return a, nil
}
