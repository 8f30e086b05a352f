package k8s

import (
	"strings"

	"github.com/connaudit/connaudit/trail"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// owners resolves the workload of a pod from the caches of ReplicaSets and
// Jobs. A ReplicaSet or Job that is not (yet) in its cache resolves to itself:
// the pod's record then names the ReplicaSet without its Deployment, until the
// ReplicaSet arrives and the pod is rebuilt (see ownerIndex).
type owners struct {
	replicaSets cache.Store
	jobs        cache.Store
}

// resolve returns the workload of the pod whose metadata is pod.
func (o owners) resolve(pod *metav1.ObjectMeta) Owner {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return Owner{}
	}
	switch ref.Kind {
	case "ReplicaSet":
		w := Owner{Kind: trail.WorkloadReplicaSet, Name: ref.Name, ReplicaSet: ref.Name}
		if top := controllerOf(o.replicaSets, pod.Namespace, ref.Name); top != nil && top.Kind == "Deployment" {
			w.Kind, w.Name = trail.WorkloadDeployment, top.Name
		}
		return w
	case "Job":
		w := Owner{Kind: trail.WorkloadJob, Name: ref.Name, Job: ref.Name}
		if top := controllerOf(o.jobs, pod.Namespace, ref.Name); top != nil && top.Kind == "CronJob" {
			w.Kind, w.Name = trail.WorkloadCronJob, top.Name
		}
		return w
	case "Node":
		return Owner{} // a static pod's mirror pod: no workload
	default:
		return Owner{Kind: trail.WorkloadKind(strings.ToLower(ref.Kind)), Name: ref.Name}
	}
}

// controllerOf returns the controller of the object namespace/name in store,
// or nil when the object or its controller is unknown.
func controllerOf(store cache.Store, namespace, name string) *metav1.OwnerReference {
	if store == nil {
		return nil
	}
	obj, ok, err := store.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil
	}
	return metav1.GetControllerOfNoCopy(m)
}

// ownerIndex names the pod informers' index of pods by the ReplicaSet or Job
// that controls them, so that a ReplicaSet or Job that arrives or changes
// rebuilds its pods.
const ownerIndex = "owner"

func ownerIndexFunc(obj any) ([]string, error) {
	var pod *metav1.ObjectMeta
	switch p := obj.(type) {
	case *corev1.Pod: // the node's pods
		pod = &p.ObjectMeta
	case *peerPod: // the cluster's
		pod = &p.ObjectMeta
	default:
		return nil, nil
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || (ref.Kind != "ReplicaSet" && ref.Kind != "Job") {
		return nil, nil
	}
	return []string{ownerKey(ref.Kind, pod.Namespace, ref.Name)}, nil
}

func ownerKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }
