package deploy

import (
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/connaudit/connaudit/internal/kubetest"
)

// applyAll applies the base to a real API server the way a user does, as
// kubectl v1.37 renders and sends it: a server-side dry run first (the
// Namespace alone, then, once it exists, everything), then for real, then
// once more to show nothing drifts. Every step must be free of warnings.
func applyAll(t *testing.T, c *kubetest.Cluster) {
	t.Helper()
	kc := c.Kubeconfig()
	r := render(t, "k8s/deploy")
	var ns *corev1.Namespace
	for _, o := range r.objects {
		if n, ok := o.(*corev1.Namespace); ok {
			ns = n
		}
	}
	if ns == nil {
		t.Fatal("no Namespace in k8s/deploy")
	}
	data, err := yaml.Marshal(ns)
	must(t, err, "marshal the Namespace")
	nsFile := writeFile(t, t.TempDir(), "namespace.yaml", string(data))

	noWarnings := func(step string, args ...string) string {
		t.Helper()
		out, errOut := kubectl(t, kc, args...)
		if strings.Contains(strings.ToLower(errOut), "warning") {
			t.Errorf("%s: kubectl warned:\n%s", step, errOut)
		}
		return out
	}
	noWarnings("dry run of the Namespace", "apply", "--dry-run=server", "-f", nsFile)
	noWarnings("the Namespace", "apply", "-f", nsFile)
	for _, dir := range overlays {
		noWarnings("server-side dry run of "+dir, "apply", "--dry-run=server", "-k", dir)
	}
	noWarnings("apply", "apply", "-k", "k8s/deploy")
	again := noWarnings("apply again", "apply", "-k", "k8s/deploy")
	for _, line := range strings.Split(strings.TrimSpace(again), "\n") {
		if !strings.HasSuffix(line, " unchanged") {
			t.Errorf("applying the same manifests again changed something: %s", line)
		}
	}
}

func TestApplyToAPIServer(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	applyAll(t, c)
	ctx := t.Context()
	client := c.Client()

	// The objects are there as rendered.
	r := render(t, "k8s/deploy")
	ds, err := client.AppsV1().DaemonSets(namespace).Get(ctx, "connaudit-agent", metav1.GetOptions{})
	must(t, err, "get the agent DaemonSet")
	if got, want := ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add,
		r.daemonSet(t, "connaudit-agent").Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add; len(got) != len(want) {
		t.Errorf("stored DaemonSet adds %v; rendered %v", got, want)
	}
	for _, name := range []string{"victorialogs", "connaudit-collector"} {
		_, err := client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		must(t, err, "get Service %s", name)
	}

	// Pod Security admission is in force: the agent's pod passes the
	// namespace's "privileged" level, and the same pod in a "baseline"
	// namespace is refused. (No controller runs, so the test submits the
	// DaemonSet's pod template as a pod itself, in a dry run.)
	podFromTemplate := func(ns string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "connaudit-agent-probe", Namespace: ns, Labels: ds.Spec.Template.Labels},
			Spec:       *ds.Spec.Template.Spec.DeepCopy(),
		}
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	warnings := &collectWarnings{}
	cfg := c.Config()
	cfg.WarningHandler = warnings
	warned, err := kubernetes.NewForConfig(cfg)
	must(t, err, "client")
	if _, err := warned.CoreV1().Pods(namespace).Create(ctx, podFromTemplate(namespace), dryRun); err != nil {
		t.Errorf("the agent's pod is refused in namespace connaudit: %v", err)
	}
	if len(warnings.got) > 0 {
		t.Errorf("creating the agent's pod warned: %q", warnings.got)
	}
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "baseline", Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}}}, metav1.CreateOptions{})
	must(t, err, "create a baseline namespace")
	_, err = client.CoreV1().Pods("baseline").Create(ctx, podFromTemplate("baseline"), dryRun)
	if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Errorf("the agent's pod in a baseline namespace: err = %v; want Pod Security admission to refuse it", err)
	}
}

// On an API server that admits the system priority classes only where a
// ResourceQuota covers them (GKE's admission configuration), the agent's
// pod (priorityClassName system-node-critical) is admitted in namespace
// connaudit, through the base's ResourceQuota, and refused in a namespace
// without one.
func TestSystemNodeCriticalAdmitted(t *testing.T) {
	admission := writeFile(t, t.TempDir(), "admission.yaml", `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: ResourceQuota
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: ResourceQuotaConfiguration
      limitedResources:
        - resource: pods
          matchScopes:
            - scopeName: PriorityClass
              operator: In
              values: [system-node-critical, system-cluster-critical]
`)
	c := kubetest.Start(t, kubetest.Options{APIServerArgs: []string{"--admission-control-config-file=" + admission}})
	applyAll(t, c)
	ctx := t.Context()
	client := c.Client()
	// What the quota controller (not running here) would write.
	quotas, err := client.CoreV1().ResourceQuotas(namespace).List(ctx, metav1.ListOptions{})
	must(t, err, "list the ResourceQuotas")
	if len(quotas.Items) != 1 {
		t.Fatalf("%d ResourceQuotas in namespace %s; want the base's one", len(quotas.Items), namespace)
	}
	q := quotas.Items[0]
	q.Status = corev1.ResourceQuotaStatus{Hard: q.Spec.Hard, Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}
	_, err = client.CoreV1().ResourceQuotas(namespace).UpdateStatus(ctx, &q, metav1.UpdateOptions{})
	must(t, err, "write the quota's status")

	ds, err := client.AppsV1().DaemonSets(namespace).Get(ctx, "connaudit-agent", metav1.GetOptions{})
	must(t, err, "get the agent DaemonSet")
	if ds.Spec.Template.Spec.PriorityClassName != "system-node-critical" {
		t.Fatalf("the agent's priorityClassName is %q", ds.Spec.Template.Spec.PriorityClassName)
	}
	pod := func(ns string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "connaudit-agent-probe", Namespace: ns, Labels: ds.Spec.Template.Labels},
			Spec: *ds.Spec.Template.Spec.DeepCopy()}
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if _, err := client.CoreV1().Pods(namespace).Create(ctx, pod(namespace), dryRun); err != nil {
		t.Errorf("the agent's pod is refused in namespace %s: %v", namespace, err)
	}
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "no-quota", Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}}}, metav1.CreateOptions{})
	must(t, err, "create a namespace without a quota")
	if _, err := client.CoreV1().Pods("no-quota").Create(ctx, pod("no-quota"), dryRun); err == nil || !strings.Contains(err.Error(), "insufficient quota to match these scopes") {
		t.Errorf("the agent's pod in a namespace without the quota: err = %v; want refused for want of a quota", err)
	}
}

// The agent's ServiceAccount may list and watch what enrichment caches, and
// write its node's witness Lease, and nothing else: no get of anything else,
// no other writes, no Secrets or ConfigMaps.
func TestAgentRBAC(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	applyAll(t, c)
	sa := "system:serviceaccount:connaudit:connaudit-agent"

	type access struct{ group, resource, verb, namespace string }
	var allowed, denied []access
	for _, r := range []struct{ group, resource string }{{"", "pods"}, {"", "services"}, {"", "nodes"}, {"apps", "replicasets"}, {"batch", "jobs"}} {
		for _, verb := range []string{"list", "watch"} {
			allowed = append(allowed, access{r.group, r.resource, verb, ""}, access{r.group, r.resource, verb, "kube-system"})
		}
		for _, verb := range []string{"get", "create", "update", "patch", "delete", "deletecollection"} {
			denied = append(denied, access{r.group, r.resource, verb, "kube-system"})
		}
	}
	for _, r := range []struct{ group, resource string }{{"", "secrets"}, {"", "configmaps"}, {"", "pods/exec"}, {"", "pods/log"},
		{"", "serviceaccounts/token"}, {"", "events"}, {"apps", "deployments"}, {"apps", "daemonsets"}, {"rbac.authorization.k8s.io", "clusterroles"}} {
		for _, verb := range []string{"get", "list", "watch", "create"} {
			denied = append(denied, access{r.group, r.resource, verb, ""}, access{r.group, r.resource, verb, namespace})
		}
	}
	denied = append(denied, access{"", "pods/status", "update", "kube-system"}, access{"", "nodes", "proxy", ""})
	// The node's witness: get, create and update Leases in its own
	// namespace (witness-policy.yaml narrows that to its node's Lease), and
	// no more: no list, watch, patch or delete, nowhere else.
	for _, verb := range []string{"get", "create", "update"} {
		allowed = append(allowed, access{"coordination.k8s.io", "leases", verb, namespace})
		denied = append(denied, access{"coordination.k8s.io", "leases", verb, "kube-system"}, access{"coordination.k8s.io", "leases", verb, ""})
	}
	for _, verb := range []string{"list", "watch", "patch", "delete", "deletecollection"} {
		denied = append(denied, access{"coordination.k8s.io", "leases", verb, namespace})
	}

	review := func(a access) (bool, string) {
		t.Helper()
		res := strings.SplitN(a.resource, "/", 2)
		attrs := &authorizationv1.ResourceAttributes{Group: a.group, Resource: res[0], Verb: a.verb, Namespace: a.namespace}
		if len(res) == 2 {
			attrs.Subresource = res[1]
		}
		return accessReview(t, c, sa, attrs)
	}
	for _, a := range allowed {
		if ok, reason := review(a); !ok {
			t.Errorf("%s may not %s %s/%s in %q (%s); enrichment needs it", sa, a.verb, a.group, a.resource, a.namespace, reason)
		}
	}
	for _, a := range denied {
		if ok, reason := review(a); ok {
			t.Errorf("%s may %s %s/%s in %q (%s); want denied", sa, a.verb, a.group, a.resource, a.namespace, reason)
		}
	}

	// The same through kubectl auth can-i, as a user would check it.
	if out, _, _ := runKubectl(t, c.Kubeconfig(), "auth", "can-i", "watch", "pods", "--all-namespaces", "--as="+sa); strings.TrimSpace(out) != "yes" {
		t.Errorf("kubectl auth can-i watch pods --as=%s: %q; want yes", sa, out)
	}
	if out, _, _ := runKubectl(t, c.Kubeconfig(), "auth", "can-i", "get", "secrets", "-n", namespace, "--as="+sa); strings.TrimSpace(out) != "no" {
		t.Errorf("kubectl auth can-i get secrets --as=%s: %q; want no", sa, out)
	}
}

type collectWarnings struct{ got []string }

func (w *collectWarnings) HandleWarningHeader(_ int, _ string, text string) {
	w.got = append(w.got, text)
}

// The gateway's ServiceAccount may read and update the CA's Secret and
// ConfigMap by name, and create Secrets and ConfigMaps in its namespace (RBAC
// cannot narrow create by name), and no more: it reads no other Secret,
// lists none, deletes nothing, and has nothing outside its namespace.
func TestGatewayRBAC(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	applyAll(t, c)
	sa := "system:serviceaccount:connaudit:connaudit-collector"
	type access struct{ resource, verb, namespace, name string }
	var allowed, denied []access
	for _, r := range []string{"secrets", "configmaps"} {
		for _, verb := range []string{"get", "update"} {
			allowed = append(allowed, access{r, verb, namespace, "connaudit-gateway-ca"})
			denied = append(denied, access{r, verb, namespace, "another"}, access{r, verb, "kube-system", "connaudit-gateway-ca"})
		}
		allowed = append(allowed, access{r, "create", namespace, ""})
		denied = append(denied, access{r, "create", "kube-system", ""})
		for _, verb := range []string{"list", "watch", "patch", "delete", "deletecollection"} {
			denied = append(denied, access{r, verb, namespace, ""}, access{r, verb, namespace, "connaudit-gateway-ca"})
		}
	}
	review := func(a access) bool {
		t.Helper()
		ok, _ := accessReview(t, c, sa, &authorizationv1.ResourceAttributes{Resource: a.resource, Verb: a.verb, Namespace: a.namespace, Name: a.name})
		return ok
	}
	for _, a := range allowed {
		if !review(a) {
			t.Errorf("%s may not %s %s %q in %s; connaudit_serving_cert needs it", sa, a.verb, a.resource, a.name, a.namespace)
		}
	}
	for _, a := range denied {
		if review(a) {
			t.Errorf("%s may %s %s %q in %s; want denied", sa, a.verb, a.resource, a.name, a.namespace)
		}
	}
}

// accessReview asks the API server whether ServiceAccount user (in
// namespace connaudit) may do attrs, and why.
func accessReview(t *testing.T, c *kubetest.Cluster, user string, attrs *authorizationv1.ResourceAttributes) (bool, string) {
	t.Helper()
	sar, err := c.Client().AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               user,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:connaudit", "system:authenticated"},
			ResourceAttributes: attrs,
		},
	}, metav1.CreateOptions{})
	must(t, err, "SubjectAccessReview")
	return sar.Status.Allowed, sar.Status.Reason
}
