package k8s

import (
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The informers' transforms keep only the fields that enrichment reads, so
// the caches stay small: a full Pod costs several KiB, a Pod struct 1,240 bytes
// however few of its fields are set, and the peerPod that the cluster-wide
// informer keeps of each pod 280 bytes (both before labels and strings). Each builds a new object from the old and is
// idempotent, as client-go asks. Objects of other types (tombstones are never
// passed) are returned unchanged.

// mirrorAnnotation holds, on the mirror pod of a static pod, the hash that the
// kubelet uses as the pod's UID in cgroup paths.
const mirrorAnnotation = "kubernetes.io/config.mirror"

// slimMeta keeps name, namespace, UID, resource version, labels (when
// withLabels) and the controller owner reference.
func slimMeta(m *metav1.ObjectMeta, withLabels bool) metav1.ObjectMeta {
	s := metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
	if withLabels {
		s.Labels = m.Labels
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		s.OwnerReferences = []metav1.OwnerReference{{Kind: ref.Kind, Name: ref.Name, Controller: ref.Controller}}
	}
	return s
}

// slimNodePod is the transform of the informer of this node's pods: what
// identifies each container of a connecting process.
func slimNodePod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	s := &corev1.Pod{ObjectMeta: slimMeta(&p.ObjectMeta, true)}
	if hash, ok := p.Annotations[mirrorAnnotation]; ok {
		s.Annotations = map[string]string{mirrorAnnotation: hash}
	}
	s.Spec = corev1.PodSpec{
		NodeName:           p.Spec.NodeName,
		ServiceAccountName: p.Spec.ServiceAccountName,
		HostNetwork:        p.Spec.HostNetwork,
		Containers:         slimContainers(p.Spec.Containers),
		InitContainers:     slimContainers(p.Spec.InitContainers),
	}
	for _, c := range p.Spec.EphemeralContainers {
		s.Spec.EphemeralContainers = append(s.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image},
		})
	}
	s.Status = corev1.PodStatus{
		Phase:                      p.Status.Phase,
		ContainerStatuses:          slimStatuses(p.Status.ContainerStatuses),
		InitContainerStatuses:      slimStatuses(p.Status.InitContainerStatuses),
		EphemeralContainerStatuses: slimStatuses(p.Status.EphemeralContainerStatuses),
	}
	return s, nil
}

func slimContainers(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image}
	}
	return out
}

// slimStatuses keeps each container's name, image, id, and the id of its
// previous instance, whose late events still resolve.
func slimStatuses(ss []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(ss) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(ss))
	for i, st := range ss {
		out[i] = corev1.ContainerStatus{Name: st.Name, Image: st.Image, ContainerID: st.ContainerID}
		if t := st.LastTerminationState.Terminated; t != nil && t.ContainerID != "" {
			out[i].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: t.ContainerID}
		}
	}
	return out
}

// slimClusterPod is the transform of the cluster-wide pod informer, which
// classifies peer addresses. It caches a peerPod, not a corev1.Pod: a Pod
// struct takes 1,240 bytes with every field but these empty, and this
// informer holds every pod of the cluster.
func slimClusterPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	s := &peerPod{ObjectMeta: slimMeta(&p.ObjectMeta, true), HostNetwork: p.Spec.HostNetwork, Phase: p.Status.Phase}
	if len(p.Status.PodIPs) > 0 {
		s.IPs = make([]string, len(p.Status.PodIPs))
		for i, ip := range p.Status.PodIPs {
			s.IPs[i] = ip.IP
		}
	}
	return s, nil
}

// peerPod is what the cluster-wide pod informer keeps of a pod: its metadata
// (name, namespace, UID, labels, controller) and what decides the addresses
// it holds: 280 bytes, against 1,240 for a slim corev1.Pod. It is a
// runtime.Object and a metav1.Object, as the informer's store and its
// key and index functions need.
type peerPod struct {
	metav1.ObjectMeta
	HostNetwork bool
	Phase       corev1.PodPhase
	IPs         []string // status.podIPs
}

func (p *peerPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (p *peerPod) DeepCopyObject() runtime.Object {
	c := &peerPod{HostNetwork: p.HostNetwork, Phase: p.Phase, IPs: slices.Clone(p.IPs)}
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return c
}

func slimService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	s := &corev1.Service{ObjectMeta: slimMeta(&svc.ObjectMeta, false)}
	s.Spec.ClusterIPs = svc.Spec.ClusterIPs
	if len(s.Spec.ClusterIPs) == 0 && svc.Spec.ClusterIP != "" {
		s.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	}
	s.Spec.ExternalIPs = svc.Spec.ExternalIPs
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: in.IP})
		}
	}
	return s, nil
}

func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	s := &corev1.Node{ObjectMeta: slimMeta(&n.ObjectMeta, false)}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			s.Status.Addresses = append(s.Status.Addresses, a)
		}
	}
	return s, nil
}

// slimOwned keeps what owner resolution needs of ReplicaSets and Jobs: their
// name and their own controller.
func slimOwned(obj any) (any, error) {
	switch o := obj.(type) {
	case *appsv1.ReplicaSet:
		return &appsv1.ReplicaSet{ObjectMeta: slimMeta(&o.ObjectMeta, false)}, nil
	case *batchv1.Job:
		return &batchv1.Job{ObjectMeta: slimMeta(&o.ObjectMeta, false)}, nil
	}
	return obj, nil
}
