package k8s

import (
	"context"
	"fmt"
	"net/http"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
)

// API is what the enricher reads the API server through: a lister-watcher
// per resource, in all namespaces. NewAPI makes the real one; a test may make
// one from client-go's fake clientset.
type API struct {
	Pods, Services, Nodes, ReplicaSets, Jobs cache.ListerWatcher
}

// NewAPI makes the lister-watchers of the resources that the enricher
// watches, with one REST client per API group version (core/v1, apps/v1,
// batch/v1) over one shared HTTP client, as client-go's generated clientset
// does. It does not use that clientset: the clientset links and initialises
// every API group that Kubernetes has (about 5 MiB of resident code in the
// agent), where the enricher needs five types. Requests ask for protobuf,
// with JSON as fallback, unless cfg names a content type: that is what the
// clientset does for built-in types. Nothing is contacted here.
func NewAPI(cfg *rest.Config) (API, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		// One limit for all groups, as the clientset shares it. Without a QPS,
		// each REST client gets client-go's default limit, as in the clientset.
		if cfg.Burst <= 0 {
			return API{}, fmt.Errorf("Kubernetes client configuration: QPS %v needs a burst greater than 0", cfg.QPS)
		}
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return API{}, fmt.Errorf("Kubernetes HTTP client: %w", err)
	}
	core, err := restClient(cfg, httpClient, corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return API{}, err
	}
	apps, err := restClient(cfg, httpClient, appsv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return API{}, err
	}
	batch, err := restClient(cfg, httpClient, batchv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return API{}, err
	}
	return API{
		Pods:        listWatch(core, "pods", func() runtime.Object { return &corev1.PodList{} }),
		Services:    listWatch(core, "services", func() runtime.Object { return &corev1.ServiceList{} }),
		Nodes:       listWatch(core, "nodes", func() runtime.Object { return &corev1.NodeList{} }),
		ReplicaSets: listWatch(apps, "replicasets", func() runtime.Object { return &appsv1.ReplicaSetList{} }),
		Jobs:        listWatch(batch, "jobs", func() runtime.Object { return &batchv1.JobList{} }),
	}, nil
}

// codecs decode the watched types and nothing else: the API server's
// answers, watch events and Status errors.
var codecs = serializer.NewCodecFactory(newScheme())

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for gv, types := range map[schema.GroupVersion][]runtime.Object{
		corev1.SchemeGroupVersion:  {&corev1.Pod{}, &corev1.PodList{}, &corev1.Service{}, &corev1.ServiceList{}, &corev1.Node{}, &corev1.NodeList{}},
		appsv1.SchemeGroupVersion:  {&appsv1.ReplicaSet{}, &appsv1.ReplicaSetList{}},
		batchv1.SchemeGroupVersion: {&batchv1.Job{}, &batchv1.JobList{}},
		// The node's witness (leases.go).
		coordinationv1.SchemeGroupVersion: {&coordinationv1.Lease{}, &coordinationv1.LeaseList{}},
	} {
		s.AddKnownTypes(gv, types...)
		metav1.AddToGroupVersion(s, gv) // WatchEvent, list options, and the unversioned Status
	}
	return s
}

// restClient is the REST client of one API group version.
func restClient(cfg *rest.Config, httpClient *http.Client, gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
	c := *cfg
	c.GroupVersion = &gv
	c.APIPath = apiPath
	c.NegotiatedSerializer = codecs.WithoutConversion()
	rc, err := rest.RESTClientForConfigAndClient(&c, httpClient)
	if err != nil {
		return nil, fmt.Errorf("Kubernetes client for %s: %w", gv, err)
	}
	return rc, nil
}

// listWatch lists and watches resource in all namespaces, as a generated
// typed client does: protobuf by default, the options as query parameters,
// and their timeoutSeconds as the request's timeout too.
func listWatch(c rest.Interface, resource string, newList func() runtime.Object) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			list := newList()
			err := c.Get().UseProtobufAsDefault().Resource(resource).
				VersionedParams(&o, metav1.ParameterCodec).Timeout(timeoutOf(o)).
				Do(ctx).Into(list)
			if err != nil {
				return nil, err
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.Watch = true
			return c.Get().UseProtobufAsDefault().Resource(resource).
				VersionedParams(&o, metav1.ParameterCodec).Timeout(timeoutOf(o)).
				Watch(ctx)
		},
	}
}

func timeoutOf(o metav1.ListOptions) time.Duration {
	if o.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*o.TimeoutSeconds) * time.Second
}
