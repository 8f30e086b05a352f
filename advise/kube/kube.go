// Package kube answers the advisor's questions about Services and nodes from
// the API server, for what the records do not carry.
package kube

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/connaudit/connaudit/advise"
)

// Cluster is an advise.Cluster over a client.
type Cluster struct{ Client kubernetes.Interface }

var (
	_ advise.Cluster   = Cluster{}
	_ advise.PodLister = Cluster{}
)

// Source implements advise.Cluster.
func (Cluster) Source() string { return "the API server at advice time" }

// Service implements advise.Cluster.
func (c Cluster) Service(ctx context.Context, namespace, name string) (*advise.Service, error) {
	svc, err := c.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := &advise.Service{Namespace: namespace, Name: name, Selector: svc.Spec.Selector}
	for _, p := range svc.Spec.Ports {
		out.Ports = append(out.Ports, advise.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort})
	}
	if len(svc.Spec.Selector) > 0 {
		return out, nil
	}
	eps, err := c.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + name,
	})
	if err != nil {
		return nil, fmt.Errorf("list the EndpointSlices of Service %s/%s: %w", namespace, name, err)
	}
	out.EndpointPorts = map[string]int32{}
	for _, s := range eps.Items {
		for _, p := range s.Ports {
			if p.Port != nil && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
				name := ""
				if p.Name != nil {
					name = *p.Name
				}
				out.EndpointPorts[name] = *p.Port
			}
		}
		for _, ep := range s.Endpoints {
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out.Endpoints = append(out.Endpoints, ip)
				}
			}
		}
	}
	sortAddrs(out.Endpoints)
	return out, nil
}

// NodeAddresses implements advise.Cluster: a node's internal IPs, which
// its host processes connect from.
func (c Cluster) NodeAddresses(ctx context.Context, node string) ([]netip.Addr, error) {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip)
		}
	}
	sortAddrs(out)
	return out, nil
}

func sortAddrs(a []netip.Addr) {
	slices.SortFunc(a, netip.Addr.Compare)
}

// Pods implements advise.PodLister: the running pods of namespace that
// selector selects.
func (c Cluster) Pods(ctx context.Context, namespace string, selector map[string]string) ([]advise.Pod, error) {
	list, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(selector).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list the pods of selector %v in %s: %w", selector, namespace, err)
	}
	var out []advise.Pod
	for _, p := range list.Items {
		if p.Status.Phase != corev1.PodRunning || p.Spec.HostNetwork {
			continue
		}
		pod := advise.Pod{Name: p.Name, Labels: p.Labels, Ports: map[string]int32{}}
		if pod.WorkloadKind, pod.WorkloadName, err = c.workload(ctx, &p); err != nil {
			return nil, err
		}
		if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			pod.IP = ip
		}
		for _, ctr := range p.Spec.Containers {
			for _, port := range ctr.Ports {
				if port.Name != "" && (port.Protocol == "" || port.Protocol == corev1.ProtocolTCP) {
					pod.Ports[port.Name] = port.ContainerPort
				}
			}
		}
		out = append(out, pod)
	}
	return out, nil
}

// workload names a pod's owner as the agent's records do: a ReplicaSet's
// Deployment, a Job's CronJob, else the controller itself.
func (c Cluster) workload(ctx context.Context, p *corev1.Pod) (kind, name string, err error) {
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind == "Node" {
		return "", "", nil
	}
	var top *metav1.OwnerReference
	switch ref.Kind {
	case "ReplicaSet":
		rs, err := c.Client.AppsV1().ReplicaSets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return "", "", fmt.Errorf("get the ReplicaSet of pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		if err == nil {
			top = metav1.GetControllerOf(rs)
		}
	case "Job":
		job, err := c.Client.BatchV1().Jobs(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return "", "", fmt.Errorf("get the Job of pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		if err == nil {
			top = metav1.GetControllerOf(job)
		}
	}
	if top != nil && (top.Kind == "Deployment" || top.Kind == "CronJob") {
		return strings.ToLower(top.Kind), top.Name, nil
	}
	return strings.ToLower(ref.Kind), ref.Name, nil
}
