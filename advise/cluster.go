package advise

import (
	"context"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Cluster answers what the records do not carry: a Service's selector and
// target ports, the endpoints of a Service without a selector, and a node's
// addresses.
type Cluster interface {
	// Service returns nil and no error when the Service does not exist.
	Service(ctx context.Context, namespace, name string) (*Service, error)
	NodeAddresses(ctx context.Context, node string) ([]netip.Addr, error)
	// Source says where the answers come from, for the policies' comments,
	// e.g. "the API server at advice time".
	Source() string
}

// Service is what a policy needs to know of a Service.
type Service struct {
	Namespace, Name string
	Selector        map[string]string
	Ports           []ServicePort
	// Endpoints are the addresses of a Service without a selector, and
	// EndpointPorts their ports by Service port name.
	Endpoints     []netip.Addr
	EndpointPorts map[string]int32
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name       string
	Protocol   corev1.Protocol
	Port       int32
	TargetPort intstr.IntOrString // as in the Service; zero means the same as Port
}

// Backend returns the port of the Service's pods that receives connections
// to port, and whether the Service has that port at all.
func (s *Service) Backend(port uint16) (ServicePort, intstr.IntOrString, bool) {
	for _, p := range s.Ports {
		if p.Port == int32(port) && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 && target.StrVal == "" {
				target = intstr.FromInt32(p.Port)
			}
			return p, target, true
		}
	}
	return ServicePort{}, intstr.IntOrString{}, false
}

// Pod is a Service's backend as check replays a connection to it.
type Pod struct {
	Name         string
	WorkloadKind string // as the records name it: "deployment", "statefulset", ...; empty for a bare pod
	WorkloadName string
	Labels       map[string]string
	IP           netip.Addr
	Ports        map[string]int32 // container port name -> number, TCP
}

// PodLister is a Cluster that can also list the pods a Service selects.
type PodLister interface {
	Pods(ctx context.Context, namespace string, selector map[string]string) ([]Pod, error)
}
