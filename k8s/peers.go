package k8s

import (
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/connaudit/connaudit/trail"
	"go.opentelemetry.io/otel/attribute"
	corev1 "k8s.io/api/core/v1"
)

// Peer is what a destination address belongs to. Like Workload it is an
// immutable snapshot; nothing in it may be modified.
type Peer struct {
	Kind         trail.PeerKind
	Namespace    string             // of a pod or Service
	Name         string             // of the pod, Service or node
	WorkloadKind trail.WorkloadKind // of a pod: its Owner.Kind
	WorkloadName string
	Labels       map[string]string // of a pod

	// Attrs are the record attributes, sorted by key.
	Attrs []attribute.KeyValue

	rank uint8 // which kind wins when several hold an address: pod, then Service, then node
}

// The peers that carry no name are shared, so classifying them allocates
// nothing.
var (
	loopbackPeer = simplePeer(trail.PeerLoopback)
	externalPeer = simplePeer(trail.PeerExternal)
	unknownPeer  = simplePeer(trail.PeerUnknown)
)

func simplePeer(kind trail.PeerKind) *Peer {
	return &Peer{Kind: kind, Attrs: []attribute.KeyValue{trail.KeyPeerKind.String(string(kind))}}
}

func newPodPeer(pod *peerPod, owner Owner, keys *keyInterner) *Peer {
	p := &Peer{Kind: trail.PeerPod, Namespace: pod.Namespace, Name: pod.Name,
		WorkloadKind: owner.Kind, WorkloadName: owner.Name, Labels: pod.Labels, rank: 0}
	a := make([]attribute.KeyValue, 0, 6+min(len(pod.Labels), MaxLabels))
	a = append(a,
		trail.KeyPeerKind.String(string(trail.PeerPod)),
		trail.KeyPeerNamespace.String(pod.Namespace),
		trail.KeyPeerPod.String(pod.Name),
	)
	if owner.Kind != "" {
		a = append(a, trail.KeyPeerWorkloadKind.String(string(owner.Kind)), trail.KeyPeerWorkloadName.String(owner.Name))
	}
	a = appendLabels(a, trail.KeyPeerPodLabelPrefix, trail.KeyPeerPodLabelsDropped, pod.Labels, keys)
	sortAttrs(a)
	p.Attrs = a
	return p
}

func newServicePeer(svc *corev1.Service) *Peer {
	a := []attribute.KeyValue{
		trail.KeyPeerKind.String(string(trail.PeerService)),
		trail.KeyPeerNamespace.String(svc.Namespace),
		trail.KeyPeerService.String(svc.Name),
	}
	sortAttrs(a)
	return &Peer{Kind: trail.PeerService, Namespace: svc.Namespace, Name: svc.Name, Attrs: a, rank: 1}
}

func newNodePeer(node *corev1.Node) *Peer {
	a := []attribute.KeyValue{
		trail.KeyPeerKind.String(string(trail.PeerNode)),
		trail.KeyPeerNode.String(node.Name),
	}
	sortAttrs(a)
	return &Peer{Kind: trail.PeerNode, Name: node.Name, Attrs: a, rank: 2}
}

func (p *Peer) equal(o *Peer) bool {
	return p.Kind == o.Kind && p.Namespace == o.Namespace && p.Name == o.Name &&
		p.WorkloadKind == o.WorkloadKind && p.WorkloadName == o.WorkloadName && maps.Equal(p.Labels, o.Labels)
}

// peerIndex maps addresses to the pods, Services and nodes that held them,
// with when: an address that passes from one pod to another resolves to
// whoever held it at the event's time. Lookups take no lock; the informers'
// handlers write under mu.
type peerIndex struct {
	grace  int64 // how long released addresses still resolve, in nanoseconds
	owners owners

	mu      sync.Mutex
	keys    keyInterner
	objects map[string]*peerObject // by object UID: what each object holds now

	byIP *cowMap[netip.Addr, []ipHolder] // a short history per address
}

type peerObject struct {
	peer *Peer
	ips  []netip.Addr
}

// ipHolder is one object's tenure of an address, [from, until) in unix
// nanoseconds. from is when the agent saw the object take the address (0 for
// objects found at start: held since before); until is 0 while held.
type ipHolder struct {
	peer        *Peer
	uid         string
	from, until int64
}

// maxReleasedHolders bounds, per address, the former holders kept for late
// events.
const maxReleasedHolders = 4

// ipLateness is how long after an event the agent may first see the address's
// holder and still attribute the event to it: the API server tells of a new
// pod's IP a little after the kubelet assigned it.
const ipLateness = int64(time.Second)

func newPeerIndex(grace time.Duration, o owners) *peerIndex {
	return &peerIndex{
		grace:   int64(grace),
		owners:  o,
		objects: make(map[string]*peerObject),
		byIP:    newCOWMap[netip.Addr, []ipHolder](hashAddr),
	}
}

// lookup returns who held addr at time at, or nil. Among simultaneous holders
// a pod wins over a Service (whose external IPs may be a node's), a Service
// over a node, and then the newest.
func (x *peerIndex) lookup(addr netip.Addr, at int64) *Peer {
	hs, ok := x.byIP.get(addr)
	if !ok {
		return nil
	}
	var best *ipHolder
	for i := range hs {
		h := &hs[i]
		if h.from <= at && (h.until == 0 || at < h.until) {
			if best == nil || h.peer.rank < best.peer.rank || (h.peer.rank == best.peer.rank && h.from > best.from) {
				best = h
			}
		}
	}
	if best != nil {
		return best.peer
	}
	// Nobody held it then, as far as the agent knows: take a holder that the
	// agent saw take it just after.
	for i := range hs {
		h := &hs[i]
		if h.from > at && h.from-at <= ipLateness && (best == nil || h.from < best.from) {
			best = h
		}
	}
	if best == nil {
		return nil
	}
	return best.peer
}

// upsertPod records the addresses of a pod.
func (x *peerIndex) upsertPod(pod *peerPod, initial bool, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.upsertPodLocked(pod, initial, now)
}

// refreshPod rebuilds a pod that holds addresses, after its ReplicaSet or Job
// changed.
func (x *peerIndex) refreshPod(pod *peerPod, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.objects[string(pod.UID)]; ok {
		x.upsertPodLocked(pod, false, now)
	}
}

// upsertPodLocked records the addresses of a pod. hostNetwork pods hold none
// (their address is the node's), nor do pods that have finished, whose
// addresses are free for others although their status still lists them.
func (x *peerIndex) upsertPodLocked(pod *peerPod, initial bool, now time.Time) {
	var ips []netip.Addr
	if !pod.HostNetwork && pod.Phase != corev1.PodSucceeded && pod.Phase != corev1.PodFailed {
		for _, ip := range pod.IPs {
			ips = appendAddr(ips, ip)
		}
	}
	peer := newPodPeer(pod, x.owners.resolve(&pod.ObjectMeta), &x.keys)
	x.setLocked(string(pod.UID), peer, ips, initial, now)
}

// upsertService records a Service's cluster IPs, external IPs and load
// balancer ingress IPs.
func (x *peerIndex) upsertService(svc *corev1.Service, initial bool, now time.Time) {
	var ips []netip.Addr
	for _, ip := range svc.Spec.ClusterIPs {
		ips = appendAddr(ips, ip) // "None" of headless Services does not parse
	}
	for _, ip := range svc.Spec.ExternalIPs {
		ips = appendAddr(ips, ip)
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ips = appendAddr(ips, in.IP)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.setLocked(string(svc.UID), newServicePeer(svc), ips, initial, now)
}

// upsertNode records a node's internal and external addresses.
func (x *peerIndex) upsertNode(node *corev1.Node, initial bool, now time.Time) {
	var ips []netip.Addr
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			ips = appendAddr(ips, a.Address)
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.setLocked(string(node.UID), newNodePeer(node), ips, initial, now)
}

// remove releases every address of a deleted object at now.
func (x *peerIndex) remove(uid string, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.setLocked(uid, nil, nil, false, now)
}

// setLocked makes the object uid, described by peer, hold exactly ips: it
// releases the addresses it no longer holds, takes the new ones, and updates
// the snapshot of those it keeps.
func (x *peerIndex) setLocked(uid string, peer *Peer, ips []netip.Addr, initial bool, now time.Time) {
	t := now.UnixNano()
	from := t
	if initial {
		from = 0
	}
	old := x.objects[uid]
	if old != nil && peer != nil && old.peer.equal(peer) {
		peer = old.peer // unchanged: keep the pointer
	}
	if old != nil {
		for _, ip := range old.ips {
			if !containsAddr(ips, ip) {
				x.release(ip, uid, t)
			}
		}
	}
	for _, ip := range ips {
		if old == nil || old.peer != peer || !containsAddr(old.ips, ip) {
			x.hold(ip, uid, peer, from)
		}
	}
	if len(ips) == 0 {
		delete(x.objects, uid)
		return
	}
	x.objects[uid] = &peerObject{peer: peer, ips: ips}
}

// hold makes uid a current holder of ip, or updates its snapshot.
func (x *peerIndex) hold(ip netip.Addr, uid string, peer *Peer, from int64) {
	hs, _ := x.byIP.get(ip)
	next := make([]ipHolder, 0, len(hs)+1)
	found := false
	for _, h := range hs {
		if h.uid == uid && h.until == 0 {
			h.peer = peer
			found = true
		}
		next = append(next, h)
	}
	if !found {
		next = append(next, ipHolder{peer: peer, uid: uid, from: from})
	}
	x.byIP.set(ip, trimReleased(next))
}

// release ends uid's tenure of ip at t.
func (x *peerIndex) release(ip netip.Addr, uid string, t int64) {
	hs, _ := x.byIP.get(ip)
	next := make([]ipHolder, 0, len(hs))
	for _, h := range hs {
		if h.uid == uid && h.until == 0 {
			h.until = max(t, h.from+1)
		}
		next = append(next, h)
	}
	x.byIP.set(ip, trimReleased(next))
}

// trimReleased drops the earliest released holders beyond maxReleasedHolders.
func trimReleased(hs []ipHolder) []ipHolder {
	for {
		released, oldest := 0, -1
		for i, h := range hs {
			if h.until != 0 {
				released++
				if oldest < 0 || h.until < hs[oldest].until {
					oldest = i
				}
			}
		}
		if released <= maxReleasedHolders {
			return hs
		}
		hs = append(hs[:oldest], hs[oldest+1:]...)
	}
}

// purge forgets the holders that released their address more than the grace
// period before now.
func (x *peerIndex) purge(now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	cutoff := now.UnixNano() - x.grace
	type change struct {
		ip netip.Addr
		hs []ipHolder
	}
	var changes []change
	x.byIP.all(func(ip netip.Addr, hs []ipHolder) {
		keep := 0
		for _, h := range hs {
			if h.until == 0 || h.until > cutoff {
				keep++
			}
		}
		if keep == len(hs) {
			return
		}
		next := make([]ipHolder, 0, keep)
		for _, h := range hs {
			if h.until == 0 || h.until > cutoff {
				next = append(next, h)
			}
		}
		changes = append(changes, change{ip, next})
	})
	for _, c := range changes {
		if len(c.hs) == 0 {
			x.byIP.delete(c.ip)
		} else {
			x.byIP.set(c.ip, c.hs)
		}
	}
}

// appendAddr parses s and appends it unless invalid or already present.
func appendAddr(ips []netip.Addr, s string) []netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ips
	}
	a = a.Unmap()
	if containsAddr(ips, a) {
		return ips
	}
	return append(ips, a)
}

func containsAddr(ips []netip.Addr, a netip.Addr) bool {
	for _, x := range ips {
		if x == a {
			return true
		}
	}
	return false
}
