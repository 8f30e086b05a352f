package k8s

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// Leases reads and writes coordination.k8s.io/v1 Leases in one namespace,
// with a REST client of that group version made as NewAPI makes its own
// (no clientset): what a node's witness (package trail/witness) is kept in.
type Leases struct {
	c         rest.Interface
	namespace string
}

// NewLeases makes the Leases client of namespace. Nothing is contacted here.
func NewLeases(cfg *rest.Config, namespace string) (*Leases, error) {
	if namespace == "" {
		return nil, fmt.Errorf("Leases: no namespace")
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("Kubernetes HTTP client: %w", err)
	}
	c, err := restClient(cfg, httpClient, coordinationv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	return &Leases{c: c, namespace: namespace}, nil
}

// Namespace is where the Leases are.
func (l *Leases) Namespace() string { return l.namespace }

// Get reads one Lease.
func (l *Leases) Get(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := l.c.Get().UseProtobufAsDefault().Namespace(l.namespace).Resource("leases").Name(name).
		Timeout(30 * time.Second).Do(ctx).Into(out)
	return out, err
}

// List reads the Leases that match the label selector (empty: all).
func (l *Leases) List(ctx context.Context, selector string) (*coordinationv1.LeaseList, error) {
	out := &coordinationv1.LeaseList{}
	err := l.c.Get().UseProtobufAsDefault().Namespace(l.namespace).Resource("leases").
		VersionedParams(&metav1.ListOptions{LabelSelector: selector}, metav1.ParameterCodec).
		Timeout(30 * time.Second).Do(ctx).Into(out)
	return out, err
}

// Create creates a Lease.
func (l *Leases) Create(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := l.c.Post().UseProtobufAsDefault().Namespace(l.namespace).Resource("leases").
		Timeout(30 * time.Second).Body(lease).Do(ctx).Into(out)
	return out, err
}

// Update replaces a Lease; its resourceVersion must be the stored one.
func (l *Leases) Update(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := l.c.Put().UseProtobufAsDefault().Namespace(l.namespace).Resource("leases").Name(lease.Name).
		Timeout(30 * time.Second).Body(lease).Do(ctx).Into(out)
	return out, err
}
