package advise

import (
	"net/netip"
	"testing"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// The judge of the generated policies is cyclonus' matcher, not connaudit's
// code (advise check uses kube-network-policies).

// endpoint is one side of a connection as the data path sees it after
// Service translation: a pod (with its container ports, for named ports) or
// an address outside any pod.
type endpoint struct {
	namespace string
	labels    map[string]string
	ports     map[string]int32 // container port name -> number
	ip        netip.Addr
}

func (e endpoint) peer() *matcher.TrafficPeer {
	p := &matcher.TrafficPeer{IP: e.ip.String()}
	if e.namespace != "" {
		p.Internal = &matcher.InternalPeer{PodLabels: e.labels, Namespace: e.namespace,
			NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": e.namespace}}
	}
	return p
}

// allowed reports whether policies allow a TCP connection from src to dst
// port, in both directions.
func allowed(t *testing.T, policies []*networkingv1.NetworkPolicy, src, dst endpoint, port int) bool {
	t.Helper()
	tr := &matcher.Traffic{Source: src.peer(), Destination: dst.peer(), ResolvedPort: port, Protocol: corev1.ProtocolTCP}
	for name, n := range dst.ports {
		if int(n) == port {
			tr.ResolvedPortName = name
		}
	}
	return matcher.BuildNetworkPolicies(false, policies).IsTrafficAllowed(tr).IsAllowed()
}
