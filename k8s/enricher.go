package k8s

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// SourceStatus tells how Source resolved the connecting side.
type SourceStatus int

const (
	// SourceResolved: the pod (and usually the container) is known.
	SourceResolved SourceStatus = iota
	// SourceHost: the process is in no pod; it keeps the node's identity.
	SourceHost
	// SourcePending: the pod is not in the cache yet although the cache is
	// synced and the API server reachable; the informer is probably about to
	// deliver it, so the caller may hold the event up to HoldTimeout and ask
	// again.
	SourcePending
	// SourceUnavailable: the pod is not in the cache, and the cache cannot
	// tell more: it has never synced, or the API server is unreachable now
	// (or refuses the agent's requests).
	SourceUnavailable
	// SourceContainerPending: the pod is known but its status does not list
	// the container yet. The kubelet reports a container's id only after it
	// started, so a process that connects at once (a client, a Job) does so
	// before. The Workload is the pod with container.id set and no container
	// name or image; the caller may hold the event up to HoldTimeout and ask
	// again, and uses that Workload when the time is up.
	SourceContainerPending
)

func (s SourceStatus) String() string {
	switch s {
	case SourceResolved:
		return "resolved"
	case SourceHost:
		return "host"
	case SourcePending:
		return "pending"
	case SourceUnavailable:
		return "unavailable"
	case SourceContainerPending:
		return "container pending"
	}
	return "invalid"
}

// Enricher tells who is on each end of a connection from the API server's
// pods, Services, nodes, ReplicaSets and Jobs, which it watches through
// informers. Source and Peer are safe for concurrent use, take no lock and do
// not allocate; the one exception is a container that its pod's status does
// not list yet, whose snapshot Source makes once and then finds under a
// per-pod lock.
type Enricher struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	health *apiHealth
	inf    *informers

	src   *nodePods
	peers *peerIndex

	peersSynced atomic.Bool // pods, Services and nodes have synced
	allSynced   atomic.Bool
}

// NewEnricher makes an enricher that watches through api (see NewAPI).
// Nothing is contacted until Run. A nil logger means slog.Default().
func NewEnricher(cfg Config, api API, logger *slog.Logger) *Enricher {
	if logger == nil {
		logger = slog.Default()
	}
	e := &Enricher{cfg: cfg, log: logger, now: time.Now}
	e.health = newAPIHealth(logger, func() time.Time { return e.now() }, e.Synced)
	e.inf = newInformers(api, cfg.NodeName, e.health)
	o := owners{replicaSets: e.inf.replicaSets.informer.GetStore(), jobs: e.inf.jobs.informer.GetStore()}
	e.src = newNodePods(cfg.DeletedPodGrace, o)
	e.peers = newPeerIndex(cfg.DeletedPodGrace, o)
	e.addHandlers()
	return e
}

// Run runs the informers until ctx is done. It never fails: an API server
// that is unreachable, at start or later, is logged once per outage and
// retried in the background, while Source and Peer answer from what the
// caches hold. Call it once.
func (e *Enricher) Run(ctx context.Context) {
	if e.inf.nodePods == nil {
		e.log.Warn("CONNAUDIT_NODE_NAME is not set: the pods of connecting processes cannot be identified; peers still are")
	}
	var wg sync.WaitGroup
	for _, w := range e.inf.all() {
		wg.Go(func() { w.informer.RunWithContext(ctx) })
		wg.Go(func() { e.waitSynced(ctx, w) })
	}
	wg.Go(func() { e.purgeLoop(ctx) })
	wg.Wait()
}

// Synced reports whether every informer has delivered its initial list.
func (e *Enricher) Synced() bool { return e.allSynced.Load() }

// Source resolves the connecting side from what its cgroup path told: the pod
// UID (the static-pod hash for static pods) and the container id, either of
// which may be empty. at is the event's time: a deleted pod resolves for
// events up to DeletedPodGrace after its deletion. Labels are the current
// ones.
func (e *Enricher) Source(podUID, containerID string, at time.Time) (*Workload, SourceStatus) {
	if podUID == "" {
		return nil, SourceHost
	}
	if w, ok, waitContainer := e.src.lookup(podUID, containerID, at.UnixNano()); ok {
		if waitContainer && !e.health.down.Load() {
			return w, SourceContainerPending
		}
		return w, SourceResolved
	}
	if np := e.inf.nodePods; np != nil && np.synced.Load() && !e.health.down.Load() {
		return nil, SourcePending
	}
	return nil, SourceUnavailable
}

// Peer classifies a destination address as what held it at the event's time
// at: a pod, a Service, a node, loopback, or external. IPv4-mapped IPv6
// addresses count as IPv4. Before the caches of pods, Services and nodes have
// synced, an address that is not loopback is PeerUnknown.
func (e *Enricher) Peer(addr netip.Addr, at time.Time) *Peer {
	addr = addr.Unmap().WithZone("")
	if addr.IsLoopback() {
		return loopbackPeer
	}
	if p := e.peers.lookup(addr, at.UnixNano()); p != nil {
		return p
	}
	if !addr.IsValid() || !e.peersSynced.Load() {
		return unknownPeer
	}
	return externalPeer
}

// addHandlers connects the informers to the indexes.
func (e *Enricher) addHandlers() {
	if np := e.inf.nodePods; np != nil {
		np.registration, _ = np.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { e.onNodePod(obj) },
			UpdateFunc: func(_, obj any) { e.onNodePod(obj) },
			DeleteFunc: func(obj any) {
				if m, err := meta.Accessor(objectOf(obj)); err == nil {
					e.src.remove(string(m.GetUID()), e.now())
				}
			},
		})
	}
	e.inf.pods.registration, _ = e.inf.pods.informer.AddEventHandler(e.peerHandler(func(obj any, initial bool) {
		if pod, ok := obj.(*peerPod); ok {
			e.peers.upsertPod(pod, initial, e.now())
		}
	}))
	e.inf.services.registration, _ = e.inf.services.informer.AddEventHandler(e.peerHandler(func(obj any, initial bool) {
		if svc, ok := obj.(*corev1.Service); ok {
			e.peers.upsertService(svc, initial, e.now())
		}
	}))
	e.inf.nodes.registration, _ = e.inf.nodes.informer.AddEventHandler(e.peerHandler(func(obj any, initial bool) {
		if node, ok := obj.(*corev1.Node); ok {
			e.peers.upsertNode(node, initial, e.now())
		}
	}))
	for kind, w := range map[string]*watched{"ReplicaSet": e.inf.replicaSets, "Job": e.inf.jobs} {
		w.registration, _ = w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { e.onOwner(kind, obj) },
			UpdateFunc: func(old, obj any) {
				// Only the owner's own controller matters to its pods.
				o, err1 := meta.Accessor(old)
				n, err2 := meta.Accessor(obj)
				if err1 == nil && err2 == nil && sameController(o, n) {
					return
				}
				e.onOwner(kind, obj)
			},
			DeleteFunc: func(obj any) { e.onOwner(kind, objectOf(obj)) },
		})
	}
}

func (e *Enricher) onNodePod(obj any) {
	if pod, ok := obj.(*corev1.Pod); ok {
		e.src.upsert(pod)
	}
}

// peerHandler routes the notifications of a cluster-wide informer: adds and
// updates to upsert, deletions to remove. initial tells an object found at
// start, which has held its addresses since before the agent looked.
func (e *Enricher) peerHandler(upsert func(obj any, initial bool)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    upsert,
		UpdateFunc: func(_, obj any) { upsert(obj, false) },
		DeleteFunc: func(obj any) {
			if m, err := meta.Accessor(objectOf(obj)); err == nil {
				e.peers.remove(string(m.GetUID()), e.now())
			}
		},
	}
}

// onOwner rebuilds the pods of a ReplicaSet or Job that arrived, changed its
// controller, or went away.
func (e *Enricher) onOwner(kind string, obj any) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	key := ownerKey(kind, m.GetNamespace(), m.GetName())
	if np := e.inf.nodePods; np != nil {
		pods, _ := np.informer.GetIndexer().ByIndex(ownerIndex, key)
		for _, obj := range pods {
			e.src.refresh(obj.(*corev1.Pod))
		}
	}
	pods, _ := e.inf.pods.informer.GetIndexer().ByIndex(ownerIndex, key)
	for _, obj := range pods {
		e.peers.refreshPod(obj.(*peerPod), e.now())
	}
}

func sameController(a, b metav1.Object) bool {
	ra, rb := metav1.GetControllerOfNoCopy(a), metav1.GetControllerOfNoCopy(b)
	if ra == nil || rb == nil {
		return ra == rb
	}
	return ra.Kind == rb.Kind && ra.Name == rb.Name
}

// waitSynced marks w synced once its handler has seen the initial list.
func (e *Enricher) waitSynced(ctx context.Context, w *watched) {
	if !cache.WaitForCacheSync(ctx.Done(), w.registration.HasSynced) {
		return
	}
	w.synced.Store(true)
	in := e.inf
	if in.pods.synced.Load() && in.services.synced.Load() && in.nodes.synced.Load() {
		e.peersSynced.Store(true)
	}
	for _, w := range in.all() {
		if !w.synced.Load() {
			return
		}
	}
	if !e.allSynced.Swap(true) {
		e.log.Info("Kubernetes caches synced",
			"pods", len(e.inf.pods.informer.GetStore().ListKeys()),
			"services", len(e.inf.services.informer.GetStore().ListKeys()),
			"nodes", len(e.inf.nodes.informer.GetStore().ListKeys()))
	}
}

// purgeLoop forgets deleted pods and released addresses after their grace.
func (e *Enricher) purgeLoop(ctx context.Context) {
	t := time.NewTicker(min(max(e.cfg.DeletedPodGrace/4, time.Second), time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := e.now()
			e.src.purge(now)
			e.peers.purge(now)
		}
	}
}
