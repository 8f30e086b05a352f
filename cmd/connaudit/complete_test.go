package main

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connaudit/connaudit/internal/kubetest"
)

// complete runs cobra's hidden __complete command, as a shell's completion
// script does, and returns the candidates and the directive line.
func complete(t *testing.T, args ...string) (candidates []string, directive string) {
	t.Helper()
	out, err := run(t, append([]string{"__complete"}, args...)...)
	if err != nil {
		t.Fatalf("__complete %q: %v\n%s", args, err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			directive = l
		case strings.HasPrefix(l, "Completion ended"):
		default:
			candidates = append(candidates, strings.SplitN(l, "\t", 2)[0])
		}
	}
	return candidates, directive
}

// -n, --pod, --node, --workload, the peer flags and query's arguments
// complete names from the kubeconfig's API server, as kubectl's do, and never
// file names.
func TestCompletionFromTheAPIServer(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	ctx, c := t.Context(), cluster.Client()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}))
	must(c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}}, metav1.CreateOptions{}))
	for _, p := range []string{"web-1", "web-2", "db-0"} {
		must(c.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/c:1"}}}}, metav1.CreateOptions{}))
	}
	labels := map[string]string{"app": "web"}
	must(c.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/c:1"}}}}}}, metav1.CreateOptions{}))
	must(c.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}))

	kc := "--kubeconfig=" + cluster.Kubeconfig()
	const noFiles = ":4"        // cobra.ShellCompDirectiveNoFileComp
	const noFilesNoSpace = ":6" // … | ShellCompDirectiveNoSpace
	for _, tc := range []struct {
		args      []string
		want      []string
		directive string
	}{
		{[]string{"query", kc, "-n", ""}, []string{"default", "kube-node-lease", "kube-public", "kube-system", "shop"}, noFiles},
		{[]string{"query", kc, "-n", "sh"}, []string{"shop"}, noFiles},
		{[]string{"query", kc, "-n", "shop", "--pod", "web"}, []string{"web-1", "web-2"}, noFiles},
		{[]string{"query", kc, "--pod", ""}, nil, noFiles}, // the context's namespace, default, has none
		{[]string{"query", kc, "-n", "shop", "--workload", "dep"}, []string{"deployment/"}, noFilesNoSpace},
		{[]string{"query", kc, "-n", "shop", "--workload", "deployment/"}, []string{"deployment/web"}, noFiles},
		{[]string{"query", kc, "-n", "shop", "--peer-service", ""}, []string{"api"}, noFiles},
		{[]string{"query", kc, "--node", ""}, []string{"worker-1"}, noFiles},
		{[]string{"coverage", kc, "--node", "w"}, []string{"worker-1"}, noFiles},
		{[]string{"query", kc, "-n", "shop", "d"}, []string{"daemonset/", "db-0", "deployment/"}, noFilesNoSpace},
		{[]string{"query", kc, "-n", "shop", "deploy/"}, []string{"deploy/web"}, noFiles},
		{[]string{"advise", "networkpolicy", kc, "-n", "s"}, []string{"shop"}, noFiles},
		{[]string{"advise", "check", kc, "-n", "s"}, []string{"shop"}, noFiles},
		{[]string{"query", kc, "--context", ""}, nil, noFiles}, // kubetest's kubeconfig names its context
	} {
		got, directive := complete(t, tc.args...)
		if tc.args[len(tc.args)-2] == "--context" {
			if len(got) != 1 || directive != noFiles {
				t.Errorf("%q: %q %s, want the kubeconfig's one context", tc.args, got, directive)
			}
			continue
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) || directive != tc.directive {
			t.Errorf("%q: %q %s, want %q %s", tc.args, got, directive, tc.want, tc.directive)
		}
	}

	// With no API server to ask, no names and still no file names.
	got, directive := complete(t, "query", "--kubeconfig", writeKubeconfig(t), "-n", "")
	if len(got) != 0 || directive != noFiles {
		t.Errorf("-n with an unreachable API server: %q %s, want nothing and %s", got, directive, noFiles)
	}
}
