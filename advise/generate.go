package advise

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/connaudit/connaudit/trail"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Annotations and labels on every generated policy.
const (
	AnnotationWindow    = "connaudit.io/window"
	AnnotationQuery     = "connaudit.io/query"
	AnnotationTrailGaps = "connaudit.io/trail-gaps"
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	managedBy           = "connaudit"
	namespaceNameLabel  = "kubernetes.io/metadata.name"
)

// ErrNoHistory is returned when no flow of the selection is in the history.
var ErrNoHistory = errors.New("no connections of the selection in the history")

// Options select the workloads and shape the policies.
type Options struct {
	Namespace string          // required
	Selector  labels.Selector // of the workloads' pods; nil selects all
	Workload  string          // "kind/name", e.g. "deployment/web"; empty selects all
	// PolicyTypes the policies restrict; empty means both.
	PolicyTypes []networkingv1.PolicyType
	// AggregateV4 and AggregateV6 widen ipBlocks to these prefix lengths;
	// 0 keeps single addresses (/32, /128).
	AggregateV4, AggregateV6 int
	NoDNS                    bool // leave out the kube-dns egress rule
	AllowEmpty               bool // write policies even without any observed flow
	// Cluster answers Service and node questions; nil leaves Services as
	// ipBlocks of the observed address, with a comment.
	Cluster Cluster
}

// Validate checks the options, naming the flag to fix.
func (o *Options) Validate() error {
	if o.Namespace == "" {
		return errors.New("a namespace is required (-n)")
	}
	if o.Workload != "" {
		kind, name, ok := strings.Cut(o.Workload, "/")
		if !ok || kind == "" || name == "" {
			return fmt.Errorf("--workload %q: want KIND/NAME, e.g. deployment/web", o.Workload)
		}
	}
	if o.AggregateV4 < 0 || o.AggregateV4 > 32 {
		return fmt.Errorf("--aggregate-cidr: IPv4 prefix %d is not in 0..32", o.AggregateV4)
	}
	if o.AggregateV6 < 0 || o.AggregateV6 > 128 {
		return fmt.Errorf("--aggregate-cidr: IPv6 prefix %d is not in 0..128", o.AggregateV6)
	}
	for _, t := range o.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			return fmt.Errorf("--policy-types: %q is neither ingress nor egress", t)
		}
	}
	return nil
}

// Advice is the generator's result.
type Advice struct {
	Policies []Policy
	// Warnings are for stderr: gaps in the trail, workloads no policy can
	// select.
	Warnings []string
}

// Policy is one NetworkPolicy with the comments that explain it.
type Policy struct {
	NetworkPolicy *networkingv1.NetworkPolicy
	Header        []string   // comment lines above the document
	Ingress       [][]string // comment lines above each ingress rule
	Egress        [][]string // comment lines above each egress rule
}

// workloadKey names a workload; a bare pod is kind "pod".
type workloadKey struct{ namespace, kind, name string }

func (k workloadKey) String() string { return k.kind + "/" + k.name }

func sourceWorkload(s Source) workloadKey {
	if s.WorkloadKind != "" {
		return workloadKey{s.Namespace, s.WorkloadKind, s.WorkloadName}
	}
	return workloadKey{s.Namespace, "pod", s.Pod}
}

func destinationWorkload(d Destination) workloadKey {
	if d.WorkloadKind != "" {
		return workloadKey{d.Namespace, d.WorkloadKind, d.WorkloadName}
	}
	return workloadKey{d.Namespace, "pod", d.Name}
}

type workload struct {
	key         workloadKey
	labels      labelSet
	hostNetwork bool
	egress      *ruleSet
	ingress     *ruleSet
	failed      []string
	// failedEgress waits until every established flow is known, to say
	// whether the policy allows what failed.
	failedEgress []Flow
	established  map[netip.AddrPort]bool
	via          []string // how the workload was found, when not by its own records
}

// Generate builds one policy per workload of the selection from the history.
func Generate(ctx context.Context, h History, opts Options) (*Advice, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	g := &generator{opts: opts, history: h, services: map[string]*Service{}, workloads: map[workloadKey]*workload{}}
	return g.run(ctx)
}

type generator struct {
	opts      Options
	history   History
	services  map[string]*Service // by namespace/name; nil when not found
	workloads map[workloadKey]*workload
	warnings  []string
}

func (g *generator) selected(k workloadKey, podLabels map[string]string) bool {
	if k.namespace != g.opts.Namespace {
		return false
	}
	if g.opts.Selector != nil && !g.opts.Selector.Matches(labels.Set(podLabels)) {
		return false
	}
	if g.opts.Workload != "" {
		kind, name, _ := strings.Cut(g.opts.Workload, "/")
		if normalizeKind(kind) != k.kind || name != k.name {
			return false
		}
	}
	return true
}

func (g *generator) workload(k workloadKey) *workload {
	w := g.workloads[k]
	if w == nil {
		w = &workload{key: k, egress: newRuleSet(), ingress: newRuleSet(), established: map[netip.AddrPort]bool{}}
		g.workloads[k] = w
	}
	return w
}

func (g *generator) run(ctx context.Context) (*Advice, error) {
	// The workloads of the selection, seen as sources or as destination pods.
	for _, f := range g.history.Flows {
		if f.Source.Kind == trail.SourcePod && f.Source.Pod != "" {
			if k := sourceWorkload(f.Source); g.selected(k, f.Source.Labels) {
				w := g.workload(k)
				w.labels.add(f.Source.Labels)
				w.hostNetwork = w.hostNetwork || f.Source.HostNetwork
			}
		}
		if f.Destination.Kind == trail.PeerPod && f.Destination.Name != "" {
			if k := destinationWorkload(f.Destination); g.selected(k, f.Destination.Labels) {
				g.workload(k).labels.add(f.Destination.Labels)
			}
		}
	}
	if err := g.serviceBackends(ctx); err != nil {
		return nil, err
	}
	if len(g.workloads) == 0 && !g.opts.AllowEmpty {
		return nil, fmt.Errorf("%w: namespace %q%s, %s to %s", ErrNoHistory, g.opts.Namespace, g.selectionText(),
			g.history.From.UTC().Format(time.RFC3339), g.history.To.UTC().Format(time.RFC3339))
	}
	if len(g.workloads) == 0 && g.opts.Workload != "" {
		// --allow-empty for a named workload: a policy from its name alone is
		// impossible without its labels.
		return nil, fmt.Errorf("%w for --workload %s; --allow-empty cannot know its pods' labels without history", ErrNoHistory, g.opts.Workload)
	}

	for _, f := range g.history.Flows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if f.Source.Kind == trail.SourcePod && f.Source.Pod != "" {
			if w := g.workloads[sourceWorkload(f.Source)]; w != nil {
				if err := g.addEgress(ctx, w, f); err != nil {
					return nil, err
				}
			}
		}
		if err := g.addIngress(ctx, f); err != nil {
			return nil, err
		}
	}

	advice := &Advice{}
	for _, gap := range g.history.Gaps {
		advice.Warnings = append(advice.Warnings, "the trail has a gap, so the advice may be incomplete: "+gap.String())
	}
	keys := slices.SortedFunc(maps.Keys(g.workloads), func(a, b workloadKey) int {
		return strings.Compare(a.kind+"/"+a.name, b.kind+"/"+b.name)
	})
	names := policyNames(keys)
	for _, k := range keys {
		w := g.workloads[k]
		if w.hostNetwork {
			advice.Warnings = append(advice.Warnings, fmt.Sprintf("%s in namespace %s uses the host network: NetworkPolicy does not apply to it, no policy written", k, k.namespace))
			continue
		}
		if len(w.labels.labels) == 0 {
			advice.Warnings = append(advice.Warnings, fmt.Sprintf("%s in namespace %s has no stable labels: no podSelector can select it alone, no policy written", k, k.namespace))
			continue
		}
		advice.Policies = append(advice.Policies, g.policy(w, names[k]))
	}
	if len(g.workloads) == 0 {
		advice.Policies = append(advice.Policies, g.emptyPolicy())
	}
	g.warnings = dedupe(g.warnings)
	advice.Warnings = append(advice.Warnings, g.warnings...)
	return advice, nil
}

// serviceBackends adds the workloads that the records reach only through a
// Service of the namespace: its pods as the cluster lists them now.
func (g *generator) serviceBackends(ctx context.Context) error {
	lister, ok := g.opts.Cluster.(PodLister)
	if !ok {
		return nil
	}
	done := map[string]bool{}
	for _, f := range g.history.Flows {
		d := f.Destination
		if d.Kind != trail.PeerService || d.Namespace != g.opts.Namespace || done[d.Name] {
			continue
		}
		done[d.Name] = true
		svc, err := g.service(ctx, d.Namespace, d.Name)
		if err != nil {
			return err
		}
		if svc == nil || len(svc.Selector) == 0 {
			continue
		}
		pods, err := lister.Pods(ctx, d.Namespace, svc.Selector)
		if err != nil {
			return fmt.Errorf("list the pods of Service %s/%s: %w", d.Namespace, d.Name, err)
		}
		for _, p := range pods {
			k := workloadKey{d.Namespace, p.WorkloadKind, p.WorkloadName}
			if p.WorkloadKind == "" {
				k = workloadKey{d.Namespace, "pod", p.Name}
			}
			if !g.selected(k, p.Labels) {
				continue
			}
			w := g.workload(k)
			w.labels.add(p.Labels)
			w.via = append(w.via, fmt.Sprintf("Its pod %s was found as a backend of Service %s/%s (%s).", p.Name, d.Namespace, d.Name, g.clusterSource()))
		}
	}
	return nil
}

func (g *generator) selectionText() string {
	var s []string
	if g.opts.Selector != nil && !g.opts.Selector.Empty() {
		s = append(s, "selector "+g.opts.Selector.String())
	}
	if g.opts.Workload != "" {
		s = append(s, "workload "+g.opts.Workload)
	}
	if len(s) == 0 {
		return ""
	}
	return " (" + strings.Join(s, ", ") + ")"
}

// policyNames are "<workload>-connaudit", with the kind added where two
// workloads of different kinds share a name.
func policyNames(keys []workloadKey) map[workloadKey]string {
	count := map[string]int{}
	for _, k := range keys {
		count[k.name]++
	}
	names := map[workloadKey]string{}
	for _, k := range keys {
		if count[k.name] > 1 {
			names[k] = k.name + "-" + k.kind + "-connaudit"
		} else {
			names[k] = k.name + "-connaudit"
		}
	}
	return names
}

func (g *generator) service(ctx context.Context, namespace, name string) (*Service, error) {
	if g.opts.Cluster == nil || name == "" {
		return nil, nil
	}
	key := namespace + "/" + name
	if s, ok := g.services[key]; ok {
		return s, nil
	}
	s, err := g.opts.Cluster.Service(ctx, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("look up Service %s: %w", key, err)
	}
	g.services[key] = s
	return s, nil
}

func (g *generator) clusterSource() string {
	if g.opts.Cluster == nil {
		return "no API server"
	}
	return g.opts.Cluster.Source()
}

// addEgress adds an established flow of w as an egress rule, and a failed
// one as evidence.
func (g *generator) addEgress(ctx context.Context, w *workload, f Flow) error {
	d := f.Destination
	if !f.Established() {
		w.failedEgress = append(w.failedEgress, f)
		return nil
	}
	w.established[netip.AddrPortFrom(d.Address, d.Port)] = true
	switch d.Kind {
	case trail.PeerLoopback:
		w.failed = append(w.failed, fmt.Sprintf("egress: loopback %s established %s: loopback never passes NetworkPolicy, no rule needed",
			netip.AddrPortFrom(d.Address, d.Port), times(f.Count)))
		return nil
	case trail.PeerPod:
		if len(StableLabels(d.Labels)) == 0 {
			g.ipRule(w.egress, d.Address, intPort(d.Port), f, fmt.Sprintf("pod %s/%s has no stable labels: an ipBlock of its address instead", d.Namespace, d.Name))
			return nil
		}
		k := destinationWorkload(d)
		r := w.egress.selectorRule("pod/"+k.namespace+"/"+k.String(), k.namespace != w.key.namespace, k.namespace)
		r.labels.add(d.Labels)
		r.note(fmt.Sprintf("to %s %s in namespace %s", k.kind, k.name, k.namespace))
		r.add(intPort(d.Port), f)
		return nil
	case trail.PeerService:
		svc, err := g.service(ctx, d.Namespace, d.Name)
		if err != nil {
			return err
		}
		g.serviceRule(w.egress, w.key.namespace, svc, f)
		return nil
	case trail.PeerNode:
		g.ipRule(w.egress, d.Address, intPort(d.Port), f, "node "+d.Name)
		return nil
	case trail.PeerExternal:
		g.ipRule(w.egress, d.Address, intPort(d.Port), f, "")
		return nil
	default:
		g.ipRule(w.egress, d.Address, intPort(d.Port), f, fmt.Sprintf("peer kind %q is not known to this advisor: an ipBlock of its address", d.Kind))
		return nil
	}
}

// serviceRule allows a Service's backends: its pods through its selector on
// the target port, or its endpoints' addresses when it has no selector.
func (g *generator) serviceRule(rs *ruleSet, ownNamespace string, svc *Service, f Flow) {
	d := f.Destination
	name := d.Namespace + "/" + d.Name
	if svc == nil {
		g.warnings = append(g.warnings, fmt.Sprintf("Service %s is not known (%s): allowed as an ipBlock of its address %s, which most NetworkPolicy implementations never match after Service translation", name, g.clusterSource(), d.Address))
		g.ipRule(rs, d.Address, intPort(d.Port), f, fmt.Sprintf("Service %s is not known (%s): an ipBlock of its address, likely ineffective after Service translation", name, g.clusterSource()))
		return
	}
	sp, target, ok := svc.Backend(d.Port)
	if !ok {
		g.ipRule(rs, d.Address, intPort(d.Port), f, fmt.Sprintf("Service %s has no port %d now (%s): an ipBlock of its address", name, d.Port, g.clusterSource()))
		return
	}
	if len(svc.Selector) == 0 {
		port := intPort(d.Port)
		if p, ok := svc.EndpointPorts[sp.Name]; ok {
			port = intstr.FromInt32(p)
		}
		note := fmt.Sprintf("Service %s has no selector: its endpoints as ipBlocks, port %d -> %s (%s)", name, d.Port, port.String(), g.clusterSource())
		if len(svc.Endpoints) == 0 {
			g.warnings = append(g.warnings, fmt.Sprintf("Service %s has no selector and no endpoints (%s): connections to it are not allowed", name, g.clusterSource()))
			return
		}
		for _, ep := range svc.Endpoints {
			g.ipRule(rs, ep, port, f, note)
		}
		return
	}
	r := rs.selectorRule("service/"+svc.Namespace+"/"+svc.Name, svc.Namespace != ownNamespace, svc.Namespace)
	r.fixed = svc.Selector
	r.note(fmt.Sprintf("to the pods of Service %s (selector %s): Service port %d -> target port %s, taken from %s",
		name, labels.SelectorFromSet(svc.Selector).String(), d.Port, target.String(), g.clusterSource()))
	r.add(target, f)
}

func (g *generator) ipRule(rs *ruleSet, a netip.Addr, port intstr.IntOrString, f Flow, note string) {
	if !a.IsValid() {
		g.warnings = append(g.warnings, fmt.Sprintf("%s %s has no address: no rule for it", f.Destination.Kind, f.Destination.Name))
		return
	}
	a = a.Unmap()
	bits := a.BitLen()
	if a.Is4() && g.opts.AggregateV4 > 0 {
		bits = g.opts.AggregateV4
	}
	if a.Is6() && g.opts.AggregateV6 > 0 {
		bits = g.opts.AggregateV6
	}
	prefix := netip.PrefixFrom(a, bits).Masked()
	r := rs.ipRule(prefix)
	if r.addrs[a] == nil {
		r.addrs[a] = map[string]struct{}{}
	}
	if n := f.Destination.DNSName; n != "" && f.Destination.Address.Unmap() == a {
		switch f.Destination.DNSFrom {
		case DNSFromCluster:
			n += " (cluster DNS)"
		case DNSFromOther:
			n += " (from resolver " + f.Destination.DNSResolver + ", not the cluster DNS)"
		}
		r.addrs[a][n] = struct{}{}
	}
	r.note(note)
	r.add(port, f)
}

// addIngress adds an established flow to a selected workload as an ingress
// rule of that workload.
func (g *generator) addIngress(ctx context.Context, f Flow) error {
	d := f.Destination
	var targets []*workload
	port := intPort(d.Port)
	via := ""
	switch d.Kind {
	case trail.PeerPod:
		if w := g.workloads[destinationWorkload(d)]; w != nil {
			targets = append(targets, w)
		}
	case trail.PeerService:
		if d.Namespace != g.opts.Namespace {
			return nil
		}
		svc, err := g.service(ctx, d.Namespace, d.Name)
		if err != nil || svc == nil || len(svc.Selector) == 0 {
			return err
		}
		_, target, ok := svc.Backend(d.Port)
		if !ok {
			return nil
		}
		port = target
		via = fmt.Sprintf(" through Service %s/%s port %d (target port %s, from %s)", d.Namespace, d.Name, d.Port, target.String(), g.clusterSource())
		for _, w := range g.workloads {
			if subsetOf(svc.Selector, w.labels.labels) {
				targets = append(targets, w)
			}
		}
	}
	if len(targets) == 0 {
		return nil
	}
	s := f.Source
	for _, w := range targets {
		if !f.Established() {
			w.failed = append(w.failed, fmt.Sprintf("ingress: %s %s from %s%s", f.Outcome, times(f.Count), describeSource(s), via))
			continue
		}
		if s.Kind == trail.SourcePod && !s.HostNetwork && s.Pod != "" && len(StableLabels(s.Labels)) > 0 {
			k := sourceWorkload(s)
			r := w.ingress.selectorRule("pod/"+k.namespace+"/"+k.String(), k.namespace != w.key.namespace, k.namespace)
			r.labels.add(s.Labels)
			r.note(fmt.Sprintf("from %s %s in namespace %s%s", k.kind, k.name, k.namespace, via))
			r.add(port, f)
			continue
		}
		addrs, note, err := g.sourceAddresses(ctx, s)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			g.ipRule(w.ingress, a, port, f, note+via)
		}
	}
	return nil
}

// sourceAddresses are the addresses a non-pod source connects from: its
// local address, else its node's addresses.
func (g *generator) sourceAddresses(ctx context.Context, s Source) ([]netip.Addr, string, error) {
	var what string
	switch {
	case s.Kind == trail.SourcePod && s.HostNetwork:
		what = fmt.Sprintf("hostNetwork pod %s/%s on node %s", s.Namespace, s.Pod, s.Node)
	case s.Kind == trail.SourcePod:
		what = fmt.Sprintf("pod %s/%s without stable labels", s.Namespace, s.Pod)
	case s.Kind == trail.SourceHost:
		what = "a host process on node " + s.Node
	default:
		what = fmt.Sprintf("a source of kind %q on node %s", s.Kind, s.Node)
	}
	if a := s.Address; a.IsValid() && !a.IsLoopback() && !a.IsUnspecified() {
		return []netip.Addr{a}, "from " + what + ", by its source address", nil
	}
	if g.opts.Cluster == nil || s.Node == "" {
		g.warnings = append(g.warnings, fmt.Sprintf("no address is known for %s: connections from it are not allowed", what))
		return nil, "", nil
	}
	addrs, err := g.opts.Cluster.NodeAddresses(ctx, s.Node)
	if err != nil {
		return nil, "", fmt.Errorf("look up node %s: %w", s.Node, err)
	}
	if len(addrs) == 0 {
		g.warnings = append(g.warnings, fmt.Sprintf("node %s has no address (%s): connections from %s are not allowed", s.Node, g.clusterSource(), what))
	}
	return addrs, fmt.Sprintf("from %s, by the node's addresses (%s)", what, g.clusterSource()), nil
}

func (g *generator) policyTypes() []networkingv1.PolicyType {
	if len(g.opts.PolicyTypes) == 0 {
		return []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	var out []networkingv1.PolicyType
	for _, t := range []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress} {
		if slices.Contains(g.opts.PolicyTypes, t) {
			out = append(out, t)
		}
	}
	return out
}

func (g *generator) meta(name string) metav1.ObjectMeta {
	h := g.history
	gaps := "none"
	if len(h.Gaps) > 0 {
		var parts []string
		for _, gap := range h.Gaps {
			parts = append(parts, gap.String())
		}
		gaps = fmt.Sprintf("%d: %s", len(h.Gaps), strings.Join(parts, "; "))
	}
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: g.opts.Namespace,
		Labels:    map[string]string{LabelManagedBy: managedBy},
		Annotations: map[string]string{
			AnnotationWindow:    h.From.UTC().Format(time.RFC3339) + "/" + h.To.UTC().Format(time.RFC3339),
			AnnotationQuery:     h.Query,
			AnnotationTrailGaps: gaps,
		},
	}
}

func (g *generator) policy(w *workload, name string) Policy {
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: g.meta(name),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: w.labels.labels},
			PolicyTypes: g.policyTypes(),
		},
	}
	p := Policy{NetworkPolicy: np}
	p.Header = append(p.Header,
		fmt.Sprintf("%s %s in namespace %s: connections observed from %s to %s.", w.key.kind, w.key.name, w.key.namespace,
			g.history.From.UTC().Format(time.RFC3339), g.history.To.UTC().Format(time.RFC3339)),
		"Only established connections are allowed; failed attempts are listed here as evidence.")
	slices.Sort(w.via)
	p.Header = append(p.Header, dedupe(w.via)...)
	if len(g.history.Gaps) > 0 {
		p.Header = append(p.Header, fmt.Sprintf("WARNING: the trail had %d gap(s) in the window: the advice may be incomplete.", len(g.history.Gaps)))
	}
	for _, f := range w.failedEgress {
		verdict := "not allowed"
		if w.allows(f.Destination) {
			verdict = "allowed by a rule below, since connections to it were also established"
		}
		w.failed = append(w.failed, fmt.Sprintf("egress: %s %s to %s, %s", f.Outcome, times(f.Count), describeDestination(f.Destination), verdict))
	}
	slices.Sort(w.failed)
	for _, line := range dedupe(w.failed) {
		p.Header = append(p.Header, line)
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeEgress:
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
			for _, r := range w.egress.sorted() {
				np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{r.peer()}, Ports: r.ports()})
				p.Egress = append(p.Egress, r.evidence())
			}
			if !g.opts.NoDNS {
				np.Spec.Egress = append(np.Spec.Egress, dnsRule())
				p.Egress = append(p.Egress, []string{"DNS: UDP is not observed, so egress to kube-dns is allowed by default (--no-dns leaves it out)."})
			}
			if len(np.Spec.Egress) == 0 {
				p.Header = append(p.Header, "No egress was observed: this policy denies all egress.")
			}
		case networkingv1.PolicyTypeIngress:
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
			for _, r := range w.ingress.sorted() {
				np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{r.peer()}, Ports: r.ports()})
				p.Ingress = append(p.Ingress, r.evidence())
			}
			if len(np.Spec.Ingress) == 0 {
				p.Header = append(p.Header, "No ingress was observed: this policy denies all ingress (--policy-types egress leaves ingress alone).")
			}
		}
	}
	if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		p.Header = append(p.Header, "Ingress is seen only from nodes that run the connaudit agent; clients outside them are never observed.")
	}
	return p
}

// allows reports whether w's egress rules admit d: the same address and
// port was established, or an ipBlock rule holds the address and the port.
func (w *workload) allows(d Destination) bool {
	if w.established[netip.AddrPortFrom(d.Address, d.Port)] {
		return true
	}
	for _, r := range w.egress.rules {
		if !r.selector && d.Address.IsValid() && r.prefix.Contains(d.Address.Unmap()) && r.portEvidence[intPort(d.Port)] != nil {
			return true
		}
	}
	return false
}

// emptyPolicy is the deny-all policy that --allow-empty writes when nothing
// of the selection was observed.
func (g *generator) emptyPolicy() Policy {
	sel := metav1.LabelSelector{}
	if g.opts.Selector != nil && !g.opts.Selector.Empty() {
		if set, err := labels.ConvertSelectorToLabelsMap(g.opts.Selector.String()); err == nil {
			sel.MatchLabels = set
		}
	}
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: g.meta("connaudit-no-history"),
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: g.policyTypes()},
	}
	p := Policy{NetworkPolicy: np, Header: []string{
		"Nothing of the selection was observed in the window (--allow-empty): this policy denies all it restricts.",
	}}
	if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) && !g.opts.NoDNS {
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{dnsRule()}
		p.Egress = [][]string{{"DNS: UDP is not observed, so egress to kube-dns is allowed by default (--no-dns leaves it out)."}}
	}
	return p
}

func dnsRule() networkingv1.NetworkPolicyEgressRule {
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	p53 := intstr.FromInt32(53)
	return networkingv1.NetworkPolicyEgressRule{
		To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{namespaceNameLabel: "kube-system"}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
		}},
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &p53}, {Protocol: &tcp, Port: &p53}},
	}
}

func intPort(p uint16) intstr.IntOrString { return intstr.FromInt32(int32(p)) }

func times(n int64) string {
	if n == 1 {
		return "1 time"
	}
	return fmt.Sprintf("%d times", n)
}

func describeDestination(d Destination) string {
	ap := netip.AddrPortFrom(d.Address, d.Port).String()
	switch d.Kind {
	case trail.PeerPod:
		return fmt.Sprintf("pod %s/%s (%s)", d.Namespace, d.Name, ap)
	case trail.PeerService:
		return fmt.Sprintf("Service %s/%s (%s)", d.Namespace, d.Name, ap)
	case trail.PeerNode:
		return fmt.Sprintf("node %s (%s)", d.Name, ap)
	}
	return ap
}

func describeSource(s Source) string {
	switch {
	case s.Kind == trail.SourcePod && s.HostNetwork:
		return fmt.Sprintf("hostNetwork pod %s/%s", s.Namespace, s.Pod)
	case s.Kind == trail.SourcePod:
		return fmt.Sprintf("pod %s/%s", s.Namespace, s.Pod)
	case s.Kind == trail.SourceHost:
		return fmt.Sprintf("a host process on node %s (%s)", s.Node, s.Address)
	}
	return fmt.Sprintf("%s on node %s (%s)", s.Kind, s.Node, s.Address)
}

// String says what the gap is, where and when.
func (g Gap) String() string {
	what := g.Reason
	if g.Count > 0 {
		what = fmt.Sprintf("%d records lost (%s)", g.Count, g.Reason)
	}
	where := "node " + g.Node
	if g.Node == "" {
		where = "an unknown node"
	}
	s := fmt.Sprintf("%s on %s", what, where)
	if !g.First.IsZero() {
		s += fmt.Sprintf(", %s to %s", g.First.UTC().Format(time.RFC3339), g.Last.UTC().Format(time.RFC3339))
	}
	return s
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// admittedButUnseen is how many addresses prefix admits that were not observed.
func admittedButUnseen(prefix netip.Prefix, observed int) *big.Int {
	n := new(big.Int).Lsh(big.NewInt(1), uint(prefix.Addr().BitLen()-prefix.Bits()))
	return n.Sub(n, big.NewInt(int64(observed)))
}
