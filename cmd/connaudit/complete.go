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
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

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

// lister lists the names of one kind of object: in namespace ns, when the
// kind is namespaced.
type lister func(ctx context.Context, c kubernetes.Interface, ns string) ([]string, error)

func names[T any](items []T, name func(*T) string) []string {
	out := make([]string, len(items))
	for i := range items {
		out[i] = name(&items[i])
	}
	return out
}

var (
	listNamespaces lister = func(ctx context.Context, c kubernetes.Interface, _ string) ([]string, error) {
		l, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *corev1.Namespace) string { return o.Name }), nil
	}
	listNodes lister = func(ctx context.Context, c kubernetes.Interface, _ string) ([]string, error) {
		l, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *corev1.Node) string { return o.Name }), nil
	}
	listPods lister = func(ctx context.Context, c kubernetes.Interface, ns string) ([]string, error) {
		l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *corev1.Pod) string { return o.Name }), nil
	}
	listServices lister = func(ctx context.Context, c kubernetes.Interface, ns string) ([]string, error) {
		l, err := c.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *corev1.Service) string { return o.Name }), nil
	}
)

// workloadKinds are the KIND/ prefixes --workload completes, and how to list
// each kind's names.
var workloadKinds = []struct {
	kind trail.WorkloadKind
	list lister
}{
	{trail.WorkloadDeployment, func(ctx context.Context, c kubernetes.Interface, ns string) ([]string, error) {
		l, err := c.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *appsv1.Deployment) string { return o.Name }), nil
	}},
	{trail.WorkloadStatefulSet, func(ctx context.Context, c kubernetes.Interface, ns string) ([]string, error) {
		l, err := c.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *appsv1.StatefulSet) string { return o.Name }), nil
	}},
	{trail.WorkloadDaemonSet, func(ctx context.Context, c kubernetes.Interface, ns string) ([]string, error) {
		l, err := c.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *appsv1.DaemonSet) string { return o.Name }), nil
	}},
	{trail.WorkloadReplicaSet, func(ctx context.Context, c kubernetes.Interface, ns string) ([]string, error) {
		l, err := c.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *appsv1.ReplicaSet) string { return o.Name }), nil
	}},
	{trail.WorkloadJob, func(ctx context.Context, c kubernetes.Interface, ns string) ([]string, error) {
		l, err := c.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *batchv1.Job) string { return o.Name }), nil
	}},
	{trail.WorkloadCronJob, func(ctx context.Context, c kubernetes.Interface, ns string) ([]string, error) {
		l, err := c.BatchV1().CronJobs(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return names(l.Items, func(o *batchv1.CronJob) string { return o.Name }), nil
	}},
	{trail.WorkloadPod, listPods},
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

func (c completer) names(cmd *cobra.Command, list lister, prefix, toComplete string) []string {
	client, err := clientset(c.kube)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	all, err := list(ctx, client, c.namespace(cmd))
	if err != nil {
		cobra.CompDebugln("connaudit: "+err.Error(), true)
		return nil
	}
	var out []string
	for _, n := range all {
		if strings.HasPrefix(prefix+n, toComplete) {
			out = append(out, prefix+n)
		}
	}
	return out
}

// of completes the names list gives.
func (c completer) of(list lister) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return c.names(cmd, list, "", toComplete), cobra.ShellCompDirectiveNoFileComp
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
			return c.names(cmd, k.list, kind+"/", toComplete), cobra.ShellCompDirectiveNoFileComp
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
	out := c.names(cmd, listPods, "", toComplete)
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
		"namespace":      c.of(listNamespaces),
		"peer-namespace": c.of(listNamespaces),
		"pod":            c.of(listPods),
		"peer-pod":       c.of(listPods),
		"peer-service":   c.of(listServices),
		"node":           c.of(listNodes),
		"workload":       c.workload,
		"peer-workload":  c.workload,
	} {
		if cmd.Flags().Lookup(flag) != nil {
			_ = cmd.RegisterFlagCompletionFunc(flag, fn)
		}
	}
}
