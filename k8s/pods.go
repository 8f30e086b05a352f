package k8s

import (
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// nodePods indexes the pods of this node for Source lookups: by pod UID, by
// the static-pod hash of mirror pods, and by container id. Lookups take no
// lock; the informer's handlers write under mu.
type nodePods struct {
	grace  int64 // DeletedPodGrace in nanoseconds
	owners owners

	mu      sync.Mutex
	keys    keyInterner
	entries map[string]*podEntry // by API UID, deleted pods included

	byUID       *cowMap[string, *podEntry]    // API UID and mirror hash → pod
	byContainer *cowMap[string, containerRef] // container id → container
}

// maxDeletedPods bounds the deleted pods that are kept for their grace
// period; beyond it the oldest go first.
const maxDeletedPods = 1024

// maxUnknownContainers bounds, per pod, the snapshots made for container ids
// that the pod's status does not list.
const maxUnknownContainers = 16

// podEntry is one pod as lookups see it. It is replaced, never modified,
// except for its cache of unknown containers.
type podEntry struct {
	uid        string               // API UID
	keys       []string             // its keys in byUID
	pod        *Workload            // the pod without a container
	containers map[string]*Workload // by container id
	deletedAt  int64                // unix nanoseconds; 0 while the pod exists

	mu      sync.Mutex
	unknown map[string]*Workload // by container id, made on demand
}

type containerRef struct {
	entry *podEntry
	w     *Workload
}

func newNodePods(grace time.Duration, o owners) *nodePods {
	return &nodePods{
		grace:       int64(grace),
		owners:      o,
		entries:     make(map[string]*podEntry),
		byUID:       newCOWMap[string, *podEntry](hashString),
		byContainer: newCOWMap[string, containerRef](hashString),
	}
}

// lookup finds the container, or the pod when containerID is empty or not in
// the pod's status. waitContainer is true when containerID is not in the
// status of a pod that is not deleted, which may still list it. A deleted pod
// resolves for events up to its grace period after the deletion.
func (n *nodePods) lookup(podUID, containerID string, at int64) (w *Workload, ok, waitContainer bool) {
	if containerID != "" {
		if ref, ok := n.byContainer.get(containerID); ok && ref.entry.live(at, n.grace) {
			return ref.w, true, false
		}
	}
	pe, ok := n.byUID.get(podUID)
	if !ok || !pe.live(at, n.grace) {
		return nil, false, false
	}
	if containerID == "" {
		return pe.pod, true, false
	}
	return pe.unknownContainer(containerID), true, pe.deletedAt == 0
}

func (pe *podEntry) live(at, grace int64) bool {
	return pe.deletedAt == 0 || at < pe.deletedAt+grace
}

// unknownContainer returns the pod's snapshot with container.id set, for a
// container that the pod's status does not list yet. This path allocates the
// first time per container, and takes a lock.
func (pe *podEntry) unknownContainer(id string) *Workload {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if w, ok := pe.unknown[id]; ok {
		return w
	}
	if pe.unknown == nil || len(pe.unknown) >= maxUnknownContainers {
		pe.unknown = make(map[string]*Workload)
	}
	w := pe.pod.withContainerID(id)
	pe.unknown[id] = w
	return w
}

// upsert adds or updates a pod from the informer.
func (n *nodePods) upsert(pod *corev1.Pod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.upsertLocked(pod)
}

// refresh rebuilds a pod that is known and not deleted, after its ReplicaSet
// or Job changed.
func (n *nodePods) refresh(pod *corev1.Pod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pe, ok := n.entries[string(pod.UID)]; ok && pe.deletedAt == 0 {
		n.upsertLocked(pod)
	}
}

func (n *nodePods) upsertLocked(pod *corev1.Pod) {
	old := n.entries[string(pod.UID)]
	pe := n.build(pod, old)
	if old != nil && old.deletedAt == 0 && pe.same(old) {
		return // nothing that lookups see has changed: keep the pointers
	}
	n.publish(old, pe)
}

// remove marks a pod deleted at now; it resolves for its grace period.
func (n *nodePods) remove(uid string, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.entries[uid]
	if old == nil || old.deletedAt != 0 {
		return
	}
	pe := &podEntry{uid: old.uid, keys: old.keys, pod: old.pod, containers: old.containers, deletedAt: now.UnixNano()}
	n.publish(old, pe)
	n.boundDeleted()
}

// purge forgets the pods deleted more than the grace period before now.
func (n *nodePods) purge(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, pe := range n.entries {
		if pe.deletedAt != 0 && now.UnixNano() >= pe.deletedAt+n.grace {
			n.forget(pe)
		}
	}
}

func (n *nodePods) boundDeleted() {
	for {
		var oldest *podEntry
		deleted := 0
		for _, pe := range n.entries {
			if pe.deletedAt != 0 {
				deleted++
				if oldest == nil || pe.deletedAt < oldest.deletedAt {
					oldest = pe
				}
			}
		}
		if deleted <= maxDeletedPods {
			return
		}
		n.forget(oldest)
	}
}

// build makes the entry of pod, reusing the snapshots of old that did not
// change.
func (n *nodePods) build(pod *corev1.Pod, old *podEntry) *podEntry {
	meta := &podMeta{
		namespace:      pod.Namespace,
		name:           pod.Name,
		uid:            string(pod.UID),
		serviceAccount: pod.Spec.ServiceAccountName,
		hostNetwork:    pod.Spec.HostNetwork,
		labels:         pod.Labels,
		owner:          n.owners.resolve(&pod.ObjectMeta),
	}
	pe := &podEntry{uid: string(pod.UID), keys: []string{string(pod.UID)}, containers: make(map[string]*Workload)}
	if hash := pod.Annotations[mirrorAnnotation]; hash != "" && hash != string(pod.UID) {
		pe.keys = append(pe.keys, hash)
	}
	reuse := func(w *Workload, prev *Workload) *Workload {
		if prev != nil && prev.equal(w) {
			return prev
		}
		return w
	}
	var prevPod *Workload
	if old != nil {
		prevPod = old.pod
	}
	pe.pod = reuse(newWorkload(meta, "", "", "", &n.keys), prevPod)

	add := func(name, rawID, image string) {
		id := trimRuntime(rawID)
		if id == "" {
			return
		}
		if _, dup := pe.containers[id]; dup {
			return
		}
		var prev *Workload
		if old != nil {
			prev = old.containers[id]
		}
		pe.containers[id] = reuse(newWorkload(meta, name, id, image, &n.keys), prev)
	}
	images := specImages(pod)
	for _, statuses := range [][]corev1.ContainerStatus{
		pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses,
	} {
		for _, st := range statuses {
			image := images[st.Name]
			if image == "" {
				image = st.Image
			}
			add(st.Name, st.ContainerID, image)
			// The previous instance of a restarted container: its last
			// events may still be on the way.
			if t := st.LastTerminationState.Terminated; t != nil {
				add(st.Name, t.ContainerID, image)
			}
		}
	}
	return pe
}

// same tells whether pe and old hold the same keys and snapshots.
func (pe *podEntry) same(old *podEntry) bool {
	if pe.pod != old.pod || len(pe.keys) != len(old.keys) || len(pe.containers) != len(old.containers) {
		return false
	}
	for i := range pe.keys {
		if pe.keys[i] != old.keys[i] {
			return false
		}
	}
	for id, w := range pe.containers {
		if old.containers[id] != w {
			return false
		}
	}
	return true
}

// publish replaces old (which may be nil) by pe in the indexes.
func (n *nodePods) publish(old, pe *podEntry) {
	if old != nil {
		for _, k := range old.keys {
			if cur, ok := n.byUID.get(k); ok && cur == old && !containsString(pe.keys, k) {
				n.byUID.delete(k)
			}
		}
		for id := range old.containers {
			if ref, ok := n.byContainer.get(id); ok && ref.entry == old && pe.containers[id] == nil {
				n.byContainer.delete(id)
			}
		}
	}
	for _, k := range pe.keys {
		n.byUID.set(k, pe)
	}
	for id, w := range pe.containers {
		n.byContainer.set(id, containerRef{entry: pe, w: w})
	}
	n.entries[pe.uid] = pe
}

// forget removes pe from the indexes, leaving keys that another pod took
// over (a static pod's hash outlives its mirror pod).
func (n *nodePods) forget(pe *podEntry) {
	for _, k := range pe.keys {
		if cur, ok := n.byUID.get(k); ok && cur == pe {
			n.byUID.delete(k)
		}
	}
	for id := range pe.containers {
		if ref, ok := n.byContainer.get(id); ok && ref.entry == pe {
			n.byContainer.delete(id)
		}
	}
	if n.entries[pe.uid] == pe {
		delete(n.entries, pe.uid)
	}
}

// specImages maps container names to the images the pod spec asks for.
func specImages(pod *corev1.Pod) map[string]string {
	m := make(map[string]string, len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
	for _, c := range pod.Spec.InitContainers {
		m[c.Name] = c.Image
	}
	for _, c := range pod.Spec.Containers {
		m[c.Name] = c.Image
	}
	for _, c := range pod.Spec.EphemeralContainers {
		m[c.Name] = c.Image
	}
	return m
}

// trimRuntime strips the runtime from a status container id:
// "containerd://<id>", "cri-o://<id>" and "docker://<id>" give "<id>".
func trimRuntime(id string) string {
	if _, after, ok := strings.Cut(id, "://"); ok {
		return after
	}
	return id
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
