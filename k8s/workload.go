package k8s

import (
	"maps"
	"slices"
	"strings"

	"github.com/connaudit/connaudit/trail"
	"go.opentelemetry.io/otel/attribute"
)

// Owner is the workload that controls a pod, found through its controller
// owner reference and, for ReplicaSets and Jobs, their own owner.
type Owner struct {
	// Kind is the top-most controller's kind in lower case: "deployment",
	// "replicaset", "statefulset", "daemonset", "job", "cronjob",
	// "replicationcontroller", or any other controller kind lower-cased.
	// Empty for pods that no workload controls, and for static pods (owned
	// by their Node).
	Kind trail.WorkloadKind
	Name string
	// ReplicaSet is the pod's ReplicaSet, also when a Deployment owns it.
	ReplicaSet string
	// Job is the pod's Job, also when a CronJob owns it.
	Job string
}

// attrs appends the semantic-convention workload attributes of o.
func (o Owner) attrs(dst []attribute.KeyValue) []attribute.KeyValue {
	if o.ReplicaSet != "" {
		dst = append(dst, trail.KeyK8sReplicaSet.String(o.ReplicaSet))
	}
	if o.Job != "" {
		dst = append(dst, trail.KeyK8sJob.String(o.Job))
	}
	switch o.Kind {
	case trail.WorkloadDeployment, trail.WorkloadStatefulSet, trail.WorkloadDaemonSet, trail.WorkloadCronJob, trail.WorkloadReplicationController:
		dst = append(dst, o.Kind.ResourceKey().String(o.Name))
	}
	return dst
}

// Workload is what is known about the pod container a connecting process
// runs in. It is an immutable snapshot: any change, such as a label update,
// makes a new *Workload, so callers may cache what they derive from it keyed
// by the pointer. Nothing in it may be modified.
type Workload struct {
	Namespace      string
	PodName        string
	PodUID         string // as the API server shows it; for a static pod, its mirror pod's UID
	ContainerName  string // empty when the container is not (yet) in the pod's status
	ContainerID    string // the runtime's id without "containerd://" or the like; empty for the pod itself
	Image          string // the container's image reference from the pod spec, tag included
	ServiceAccount string
	HostNetwork    bool
	Labels         map[string]string // the pod's labels at the time of the snapshot
	Owner          Owner

	// Attrs are the OTLP resource attributes, sorted by key.
	Attrs []attribute.KeyValue
}

// podMeta is what a pod tells about all of its containers.
type podMeta struct {
	namespace, name, uid string
	serviceAccount       string
	hostNetwork          bool
	labels               map[string]string
	owner                Owner
}

// newWorkload builds the snapshot of one container of a pod; container name,
// id and image may be empty.
func newWorkload(p *podMeta, containerName, containerID, image string, keys *keyInterner) *Workload {
	w := &Workload{
		Namespace:      p.namespace,
		PodName:        p.name,
		PodUID:         p.uid,
		ContainerName:  containerName,
		ContainerID:    containerID,
		Image:          image,
		ServiceAccount: p.serviceAccount,
		HostNetwork:    p.hostNetwork,
		Labels:         p.labels,
		Owner:          p.owner,
	}
	a := make([]attribute.KeyValue, 0, 11+min(len(p.labels), MaxLabels))
	a = append(a,
		trail.KeyK8sNamespace.String(p.namespace),
		trail.KeyK8sPodName.String(p.name),
		trail.KeyK8sPodUID.String(p.uid),
	)
	if containerName != "" {
		a = append(a, trail.KeyK8sContainerName.String(containerName))
	}
	if containerID != "" {
		a = append(a, trail.KeyContainerID.String(containerID))
	}
	if name, tag := splitImage(image); name != "" {
		a = append(a, trail.KeyContainerImageName.String(name))
		if tag != "" {
			a = append(a, attribute.StringSlice(string(trail.KeyContainerImageTags), []string{tag}))
		}
	}
	a = appendLabels(a, trail.KeyK8sPodLabelPrefix, trail.KeyPodLabelsDropped, p.labels, keys)
	a = p.owner.attrs(a)
	if p.serviceAccount != "" {
		a = append(a, trail.KeyServiceAccount.String(p.serviceAccount))
	}
	if p.hostNetwork {
		a = append(a, trail.KeyHostNetwork.Bool(true))
	}
	sortAttrs(a)
	w.Attrs = a
	return w
}

// withContainerID returns a copy of pod-level snapshot w for a container that
// the pod's status does not list (yet).
func (w *Workload) withContainerID(id string) *Workload {
	c := *w
	c.ContainerID = id
	c.Attrs = append(make([]attribute.KeyValue, 0, len(w.Attrs)+1), w.Attrs...)
	c.Attrs = append(c.Attrs, trail.KeyContainerID.String(id))
	sortAttrs(c.Attrs)
	return &c
}

// equal tells whether w and o describe the same thing, so that an update
// that changed nothing we use keeps the old pointer.
func (w *Workload) equal(o *Workload) bool {
	return w.Namespace == o.Namespace && w.PodName == o.PodName && w.PodUID == o.PodUID &&
		w.ContainerName == o.ContainerName && w.ContainerID == o.ContainerID && w.Image == o.Image &&
		w.ServiceAccount == o.ServiceAccount && w.HostNetwork == o.HostNetwork &&
		w.Owner == o.Owner && maps.Equal(w.Labels, o.Labels)
}

// splitImage splits an image reference into the name, without tag or digest,
// and the tag: "registry:5000/app:1.2@sha256:..." gives "registry:5000/app"
// and "1.2".
func splitImage(ref string) (name, tag string) {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}

// MaxLabels bounds the labels of one pod that a record carries (the
// connecting pod's, and a peer pod's): VictoriaLogs drops a line of more than
// 1,000 fields while answering 200, and a pod may carry thousands of labels.
const MaxLabels = 64

// appendLabels adds labels under prefix: all of them, or the first MaxLabels
// in key order and the count of the others under dropped.
func appendLabels(a []attribute.KeyValue, prefix, dropped trail.Key, labels map[string]string, keys *keyInterner) []attribute.KeyValue {
	if len(labels) <= MaxLabels {
		for k, v := range labels {
			a = append(a, attribute.String(keys.key(string(prefix), k), v))
		}
		return a
	}
	for _, k := range slices.Sorted(maps.Keys(labels))[:MaxLabels] {
		a = append(a, attribute.String(keys.key(string(prefix), k), labels[k]))
	}
	return append(a, dropped.Int(len(labels)-MaxLabels))
}

func sortAttrs(a []attribute.KeyValue) {
	slices.SortFunc(a, func(x, y attribute.KeyValue) int { return strings.Compare(string(x.Key), string(y.Key)) })
}

// keyInterner shares the attribute keys made from label keys ("k8s.pod.label."
// + key) between objects, since most pods carry the same few label keys. It
// is bounded; beyond the bound keys are made anew. Not safe for concurrent use.
type keyInterner struct {
	keys map[internKey]string
}

type internKey struct{ prefix, key string }

const maxInternedKeys = 8192

func (in *keyInterner) key(prefix, k string) string {
	ik := internKey{prefix, k}
	if s, ok := in.keys[ik]; ok {
		return s
	}
	s := prefix + k
	if in.keys == nil {
		in.keys = make(map[internKey]string)
	}
	if len(in.keys) < maxInternedKeys {
		in.keys[ik] = s
	}
	return s
}
