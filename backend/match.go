package backend

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/connaudit/connaudit/trail"
)

// Match is the reference statement of what a Filter means: it reports
// whether the stored record r is a tcp.connect record that f selects. Every
// Backend answers as if it applied Match to each stored record (the
// conformance suite, backend/backendtest, holds them to it); the archive
// backend (backend/archive) does exactly that.
//
// A field's value is its stored text, "" when absent; a store keeps no
// empty values, so an empty value is taken as absent everywhere.
//
//   - The event is tcp.connect (event_name), and r.Time is in [From, To);
//     a zero From or To does not bound the window.
//   - Namespaces, Pods, Containers, Nodes, Comms, PIDs, UIDs, DstPorts,
//     PeerNamespaces, PeerPods, PeerServices, PeerKinds: the field's text
//     equals one of the values exactly (numbers in decimal).
//   - Workloads: kind pod names k8s.pod.name; any other kind names the
//     source's owner attribute of that kind (k8s.deployment.name, ...),
//     whatever the other owners are (replicaset/web-5d4f8 selects the pods
//     of that ReplicaSet even though deployment/web names their workload).
//   - PeerWorkloads: kind pod names connaudit.peer.k8s.pod.name; another kind
//     is connaudit.peer.k8s.workload.kind and .name both.
//   - Selector: Kubernetes' label selector semantics over the source pod's
//     labels (k8s.pod.label.<key>), a label with an empty value being
//     absent: `key!=v` and `key notin (...)` match a record without the
//     label, `key=` matches nothing.
//   - HostOnly: connaudit.source.kind is host, or the record names no source
//     kind, no pod uid and no container (an agent without enrichment).
//   - Dst: network.peer.address is an IP address within one of the prefixes;
//     an IPv4-mapped IPv6 prefix of /96 or longer is the IPv4 prefix it
//     maps (records store such peers as IPv4), and an IPv6 prefix never
//     contains an IPv4 address.
//   - DstNames: server.address equals the name, or for "*.example.com" ends
//     in ".example.com" (example.com itself is not below it); the names in
//     lower case without a final dot (NormalizeName), as the agent stores
//     server.address, which is compared as stored.
//   - Outcomes: connaudit.outcome is one of them; OutcomeFailed stands for
//     every value but established.
func Match(f Filter, r Record) bool {
	get := r.Get
	if get(FieldEventName) != EventConnect {
		return false
	}
	if !f.From.IsZero() && r.Time.Before(f.From) || !f.To.IsZero() && !r.Time.Before(f.To) {
		return false
	}
	if !in(get(FieldNamespace), f.Namespaces) || !in(get(FieldPod), f.Pods) || !in(get(FieldContainer), f.Containers) ||
		!in(get(FieldNode), f.Nodes) || !in(get(FieldComm), f.Comms) || !inInts(get(FieldPID), f.PIDs) ||
		!inInts(get(FieldUID), f.UIDs) || !inInts(get(FieldDstPort), f.DstPorts) ||
		!in(get(FieldPeerNamespace), f.PeerNamespaces) || !in(get(FieldPeerPod), f.PeerPods) ||
		!in(get(FieldPeerService), f.PeerServices) || !in(get(FieldPeerKind), f.PeerKinds) {
		return false
	}
	if len(f.Workloads) > 0 && !slices.ContainsFunc(f.Workloads, func(w Workload) bool { return sourceIs(r, w) }) {
		return false
	}
	if len(f.PeerWorkloads) > 0 && !slices.ContainsFunc(f.PeerWorkloads, func(w Workload) bool { return peerIs(r, w) }) {
		return false
	}
	if f.Selector != nil && !f.Selector.Empty() && !f.Selector.Matches(r.Labels()) {
		return false
	}
	if f.HostOnly && !IsHost(r) {
		return false
	}
	if len(f.Dst) > 0 && !dstIn(get(FieldDstAddr), f.Dst) {
		return false
	}
	if len(f.DstNames) > 0 && !slices.ContainsFunc(f.DstNames, func(n string) bool { return NameMatches(n, get(FieldDstName)) }) {
		return false
	}
	if len(f.Outcomes) > 0 && !outcomeIn(get(FieldOutcome), f.Outcomes) {
		return false
	}
	return true
}

func in(v string, values []string) bool { return len(values) == 0 || slices.Contains(values, v) }

func inInts(v string, values []int) bool {
	return len(values) == 0 || slices.ContainsFunc(values, func(n int) bool { return strconv.Itoa(n) == v })
}

func sourceIs(r Record, w Workload) bool {
	if w.Kind == "pod" {
		return r.Get(FieldPod) == w.Name
	}
	key, ok := WorkloadKinds[w.Kind]
	return ok && r.Get(key) == w.Name
}

func peerIs(r Record, w Workload) bool {
	if w.Kind == "pod" {
		return r.Get(FieldPeerPod) == w.Name
	}
	return r.Get(FieldPeerWorkloadKind) == w.Kind && r.Get(FieldPeerWorkloadName) == w.Name
}

// IsHost reports whether r was made by a host process, in no pod: its
// agent says so, or (without Kubernetes enrichment) it names no pod and no
// container.
func IsHost(r Record) bool {
	if k := r.Get(FieldSourceKind); k != "" {
		return k == string(trail.SourceHost)
	}
	return r.Get(FieldPodUID) == "" && r.Get(FieldContainerID) == ""
}

// DstPrefix is p as Filter.Dst means it: masked, and an IPv4-mapped prefix
// of /96 or longer as the IPv4 prefix it maps.
func DstPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

func dstIn(addr string, prefixes []netip.Prefix) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, p := range prefixes {
		if DstPrefix(p).Contains(a) {
			return true
		}
	}
	return false
}

// NormalizeName is a name of Filter.DstNames as it is compared: lower case,
// without a final dot, as the agent stores server.address.
func NormalizeName(n string) string { return strings.TrimSuffix(strings.ToLower(n), ".") }

// NameMatches reports whether name, a record's server.address as stored,
// matches pattern: a name, or "*." and a name for any name below it.
func NameMatches(pattern, name string) bool {
	pattern = NormalizeName(pattern)
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(name, suffix)
	}
	return name == pattern
}

func outcomeIn(o string, outcomes []string) bool {
	for _, want := range outcomes {
		if want == o || want == OutcomeFailed && o != string(trail.OutcomeEstablished) {
			return true
		}
	}
	return false
}

// Key is the dedup key of a record (trail.RecordKeyOf): its
// service.instance.id and connaudit.seq. A replayed copy has the same key; a
// record without either has none (ok false) and is never a duplicate.
func (r Record) Key() (trail.RecordKey, bool) {
	return trail.RecordKeyOf(r.Attr)
}
