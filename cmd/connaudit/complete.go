package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/connaudit/connaudit/trail"
)

// clientset is the API server of the kubeconfig flags.
func clientset(kube *genericclioptions.ConfigFlags) (kubernetes.Interface, error) {
	cfg, err := kube.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// resource is one kind of object completion lists the names of.
type resource struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}

var (
	namespaces = resource{corev1.SchemeGroupVersion.WithResource("namespaces"), false}
	nodes      = resource{corev1.SchemeGroupVersion.WithResource("nodes"), false}
	pods       = resource{corev1.SchemeGroupVersion.WithResource("pods"), true}
	services   = resource{corev1.SchemeGroupVersion.WithResource("services"), true}
)

// workloadKinds are the KIND/ prefixes --workload completes, and the
// resource of each.
var workloadKinds = []struct {
	kind trail.WorkloadKind
	resource
}{
	{trail.WorkloadDeployment, resource{appsv1.SchemeGroupVersion.WithResource("deployments"), true}},
	{trail.WorkloadStatefulSet, resource{appsv1.SchemeGroupVersion.WithResource("statefulsets"), true}},
	{trail.WorkloadDaemonSet, resource{appsv1.SchemeGroupVersion.WithResource("daemonsets"), true}},
	{trail.WorkloadReplicaSet, resource{appsv1.SchemeGroupVersion.WithResource("replicasets"), true}},
	{trail.WorkloadJob, resource{batchv1.SchemeGroupVersion.WithResource("jobs"), true}},
	{trail.WorkloadCronJob, resource{batchv1.SchemeGroupVersion.WithResource("cronjobs"), true}},
	{trail.WorkloadPod, pods},
}

// completionTimeout bounds a completion's wait for the API server, so that a
// shell never hangs on an unreachable cluster.
const completionTimeout = 5 * time.Second

// completer completes names from the API server of the command's kubeconfig
// flags, as kubectl does; nothing, and no file names, when there is none.
type completer struct {
	kube *genericclioptions.ConfigFlags
}

// namespace is -n, else the kubeconfig context's namespace.
func (c completer) namespace(cmd *cobra.Command) string {
	if f := cmd.Flags().Lookup("namespace"); f != nil && f.Changed && *c.kube.Namespace != "" {
		return *c.kube.Namespace
	}
	ns, _, err := c.kube.ToRawKubeConfigLoader().Namespace()
	if err != nil || ns == "" {
		return "default"
	}
	return ns
}

// names lists the names of r's objects (only their metadata), each after
// prefix, that start with toComplete.
func (c completer) names(cmd *cobra.Command, r resource, prefix, toComplete string) []string {
	cfg, err := c.kube.ToRESTConfig()
	if err != nil {
		return nil
	}
	client, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	var list metadata.ResourceInterface = client.Resource(r.gvr)
	if r.namespaced {
		list = client.Resource(r.gvr).Namespace(c.namespace(cmd))
	}
	objects, err := list.List(ctx, metav1.ListOptions{})
	if err != nil {
		cobra.CompDebugln("connaudit: "+err.Error(), true)
		return nil
	}
	var out []string
	for _, o := range objects.Items {
		if name := prefix + o.Name; strings.HasPrefix(name, toComplete) {
			out = append(out, name)
		}
	}
	return out
}

// of completes the names of r's objects.
func (c completer) of(r resource) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return c.names(cmd, r, "", toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// workload completes KIND/ first, then KIND/NAME.
func (c completer) workload(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	kind, _, found := strings.Cut(toComplete, "/")
	if !found {
		var kinds []string
		for _, k := range workloadKinds {
			if strings.HasPrefix(string(k.kind), toComplete) {
				kinds = append(kinds, string(k.kind)+"/")
			}
		}
		return kinds, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
	parsed, _ := trail.ParseWorkloadKind(kind)
	for _, k := range workloadKinds {
		if k.kind == parsed {
			return c.names(cmd, k.resource, kind+"/", toComplete), cobra.ShellCompDirectiveNoFileComp
		}
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// source completes query's arguments, as kubectl logs does: pod names, and
// KIND/NAME of workloads.
func (c completer) source(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if strings.Contains(toComplete, "/") {
		return c.workload(cmd, args, toComplete)
	}
	out := c.names(cmd, pods, "", toComplete)
	kinds, _ := c.workload(cmd, args, toComplete)
	return append(out, kinds...), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// context completes the kubeconfig's context names.
func (c completer) context(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	cfg, err := c.kube.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for name := range cfg.Contexts {
		if strings.HasPrefix(name, toComplete) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeFromCluster registers the completions of the flags cmd has among
// -n, --pod, --node, --workload and the peer flags.
func completeFromCluster(cmd *cobra.Command, kube *genericclioptions.ConfigFlags) {
	c := completer{kube: kube}
	for flag, fn := range map[string]cobra.CompletionFunc{
		"context":        c.context,
		"namespace":      c.of(namespaces),
		"peer-namespace": c.of(namespaces),
		"pod":            c.of(pods),
		"peer-pod":       c.of(pods),
		"peer-service":   c.of(services),
		"node":           c.of(nodes),
		"workload":       c.workload,
		"peer-workload":  c.workload,
	} {
		if cmd.Flags().Lookup(flag) != nil {
			_ = cmd.RegisterFlagCompletionFunc(flag, fn)
		}
	}
}
