package teststack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/connaudit/connaudit/internal/kubetest"
)

// The identities of k8s/deploy: the agents write the trail, the gateway
// reviews their tokens.
const (
	Namespace      = "connaudit"
	AgentAccount   = "connaudit-agent"
	GatewayAccount = "connaudit-collector"
	// GatewayAudience is the audience of the agents' projected tokens.
	GatewayAudience = "connaudit"
)

// GatewayAuth is what the shipped gateway configuration needs to accept an
// agent's records: a real API server that reviews the agents' tokens, the
// ServiceAccounts of k8s/deploy, and a pod per node whose bound token the
// agent of that node presents.
type GatewayAuth struct {
	t       testing.TB
	cluster *kubetest.Cluster
	dir     string
	// Env points the gateway (StartGateway's env) at the API server, with a
	// token of its own ServiceAccount.
	Env []string
}

// NewGatewayAuth creates, unless k8s/deploy was applied already, the
// connaudit namespace, the agent's ServiceAccount, and everything
// k8s/deploy/base/collector-rbac.yaml defines for the gateway, read from
// that file: its ServiceAccount, its system:auth-delegator binding, and the
// Role its serving certificate needs.
func NewGatewayAuth(t testing.TB, c *kubetest.Cluster) *GatewayAuth {
	t.Helper()
	g := &GatewayAuth{t: t, cluster: c, dir: t.TempDir()}
	ctx := t.Context()
	client := c.Client()
	create := func(what string, err error) {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("teststack: create %s: %v", what, err)
		}
	}
	_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{})
	create("namespace", err)
	_, err = client.CoreV1().ServiceAccounts(Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: AgentAccount}}, metav1.CreateOptions{})
	create("ServiceAccount "+AgentAccount, err)
	applyGatewayRBAC(t, c)

	tr, err := client.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, GatewayAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("teststack: token of %s: %v", GatewayAccount, err)
	}
	cfg := c.Config()
	g.Env = []string{
		"CONNAUDIT_COLLECTOR_API_SERVER=" + cfg.Host,
		"CONNAUDIT_COLLECTOR_API_CA_FILE=" + cfg.CAFile,
		"CONNAUDIT_COLLECTOR_API_TOKEN_FILE=" + g.write("gateway-token", tr.Status.Token),
	}
	return g
}

// Token returns a file holding a token of ServiceAccount namespace/account
// for audience, bound to pod namespace/pod on node, all created if needed:
// what kubelet projects into such a pod.
func (g *GatewayAuth) Token(namespace, account, pod, node, audience string) string {
	g.t.Helper()
	ctx := g.t.Context()
	client := g.cluster.Client()
	create := func(what string, err error) {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			g.t.Fatalf("teststack: create %s: %v", what, err)
		}
	}
	_, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{})
	create("node "+node, err)
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	create("namespace "+namespace, err)
	_, err = client.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: account}}, metav1.CreateOptions{})
	create("ServiceAccount "+account, err)
	_, err = client.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: account,
			Containers: []corev1.Container{{Name: "c", Image: "registry.example/c:1"}}},
	}, metav1.CreateOptions{})
	create("pod "+pod, err)
	p, err := client.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		g.t.Fatalf("teststack: get pod %s: %v", pod, err)
	}
	tr, err := client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, account, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{audience},
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod, UID: p.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		g.t.Fatalf("teststack: token of %s/%s bound to pod %s: %v", namespace, account, pod, err)
	}
	return g.write(namespace+"-"+account+"-"+pod+"-"+audience, tr.Status.Token)
}

// AgentToken is the token of the agent's pod on node.
func (g *GatewayAuth) AgentToken(node string) string {
	g.t.Helper()
	return g.Token(Namespace, AgentAccount, "connaudit-agent-"+node, node, GatewayAudience)
}

func (g *GatewayAuth) write(name, content string) string {
	g.t.Helper()
	path := filepath.Join(g.dir, strings.Map(func(r rune) rune {
		if r == '/' || r == ':' {
			return '_'
		}
		return r
	}, name))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		g.t.Fatalf("teststack: %v", err)
	}
	return path
}

// applyGatewayRBAC creates the objects of k8s/deploy/base/collector-rbac.yaml.
func applyGatewayRBAC(t testing.TB, c *kubetest.Cluster) {
	t.Helper()
	path := repoFile(t, "k8s/deploy/base/collector-rbac.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("teststack: %v", err)
	}
	ctx, client := t.Context(), c.Client()
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("teststack: %s: %v", path, err)
		}
		var err error
		switch meta.Kind {
		case "ServiceAccount":
			err = createFrom(ctx, doc, client.CoreV1().ServiceAccounts(Namespace).Create)
		case "ClusterRoleBinding":
			err = createFrom(ctx, doc, client.RbacV1().ClusterRoleBindings().Create)
		case "Role":
			err = createFrom(ctx, doc, client.RbacV1().Roles(Namespace).Create)
		case "RoleBinding":
			err = createFrom(ctx, doc, client.RbacV1().RoleBindings(Namespace).Create)
		default:
			t.Fatalf("teststack: %s: a %q; teach applyGatewayRBAC to create it", path, meta.Kind)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("teststack: create %s of %s: %v", meta.Kind, path, err)
		}
	}
}

// createFrom decodes one YAML document (strictly) and creates it.
func createFrom[T any](ctx context.Context, doc string, create func(context.Context, *T, metav1.CreateOptions) (*T, error)) error {
	var o T
	if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
		return err
	}
	_, err := create(ctx, &o, metav1.CreateOptions{})
	return err
}
