package k8s

import (
	"context"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// informers are the enricher's watches on the API server. nodePods is nil
// when the node name is not configured.
type informers struct {
	nodePods    *watched // pods of this node: who connects
	pods        *watched // all pods: peer addresses
	services    *watched
	nodes       *watched
	replicaSets *watched // owners of pods, for their Deployment
	jobs        *watched // owners of pods, for their CronJob
}

func (in *informers) all() []*watched {
	all := []*watched{in.pods, in.services, in.nodes, in.replicaSets, in.jobs}
	if in.nodePods != nil {
		all = append(all, in.nodePods)
	}
	return all
}

// watched is one informer, with whether its handler has seen the initial
// list and whether its last call to the API server failed.
type watched struct {
	name         string
	informer     cache.SharedIndexInformer
	registration cache.ResourceEventHandlerRegistration
	synced       atomic.Bool
	failing      atomic.Bool
}

// newInformers makes the informers, with their transforms and indexes; the
// enricher adds the handlers.
func newInformers(api API, nodeName string, health *apiHealth) *informers {
	byOwner := cache.Indexers{ownerIndex: ownerIndexFunc}
	in := &informers{
		pods:        newWatched(api.Pods, health, "pods", &corev1.Pod{}, slimClusterPod, byOwner, nil),
		services:    newWatched(api.Services, health, "services", &corev1.Service{}, slimService, nil, nil),
		nodes:       newWatched(api.Nodes, health, "nodes", &corev1.Node{}, slimNode, nil, nil),
		replicaSets: newWatched(api.ReplicaSets, health, "replicasets", &appsv1.ReplicaSet{}, slimOwned, nil, nil),
		jobs:        newWatched(api.Jobs, health, "jobs", &batchv1.Job{}, slimOwned, nil, nil),
	}
	if nodeName != "" {
		onNode := fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
		in.nodePods = newWatched(api.Pods, health, "pods of node "+nodeName, &corev1.Pod{}, slimNodePod, byOwner,
			func(o *metav1.ListOptions) { o.FieldSelector = onNode })
	}
	return in
}

// newWatched makes a shared informer like client-go's generated ones, on
// source, whose list and watch calls also report to health. tweak, if not
// nil, adjusts the options of every call. The default watch error handler,
// which logs every failed retry, is replaced: health logs once per outage.
func newWatched(
	source cache.ListerWatcher, health *apiHealth, name string, example runtime.Object,
	transform cache.TransformFunc, indexers cache.Indexers, tweak func(*metav1.ListOptions),
) *watched {
	w := &watched{name: name}
	c := cache.ToListerWatcherWithContext(source)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			if tweak != nil {
				tweak(&o)
			}
			list, err := c.ListWithContext(ctx, o)
			health.report(ctx, w, err)
			if err != nil {
				return nil, err // not list: a typed nil would not be a nil interface
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if tweak != nil {
				tweak(&o)
			}
			wi, err := c.WatchWithContext(ctx, o)
			health.report(ctx, w, err)
			return wi, err
		},
	}
	if indexers == nil {
		indexers = cache.Indexers{}
	}
	// A source that cannot stream the initial list in a watch (client-go's
	// fake clientset) says so, and the informer lists instead.
	w.informer = cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, source), example,
		cache.SharedIndexInformerOptions{Indexers: indexers, ObjectDescription: name})
	// Both only fail on a started informer.
	_ = w.informer.SetTransform(transform)
	_ = w.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		health.log.Debug("Kubernetes watch ended", "resource", name, "err", err)
	})
	return w
}

// objectOf unwraps the tombstone that a delete notification may carry.
func objectOf(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}
