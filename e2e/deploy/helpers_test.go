// Package deploy tests k8s/deploy and the Dockerfile: the manifests rendered
// by a real kubectl (kustomize) and applied to a real kube-apiserver, the
// agent run the way the DaemonSet runs it (its capabilities, its mounts, its
// ServiceAccount), mTLS between agent and gateway, and VictoriaLogs cluster
// mode behind the gateway's configuration.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/teststack"
)

const (
	namespace = "connaudit"
)

// kubectlPath is the kubectl v1.37 that `make k8s-bins` builds next to
// kube-apiserver (bin/k8s, or $CONNAUDIT_K8S_BIN_DIR).
func kubectlPath(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CONNAUDIT_K8S_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(teststack.RepoRoot(t), "bin", "k8s")
	}
	path := filepath.Join(dir, "kubectl")
	if fi, err := os.Stat(path); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("no executable kubectl at %s: run `make k8s-bins` (it builds kubectl v1.37 from source; the one on PATH may be outside the API server's version skew)", path)
	}
	return path
}

// kubectl runs kubectl and returns its stdout and stderr; a non-zero exit
// fails the test.
func kubectl(t testing.TB, kubeconfig string, args ...string) (stdout, stderr string) {
	t.Helper()
	out, errOut, err := runKubectl(t, kubeconfig, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out, errOut
}

func runKubectl(t testing.TB, kubeconfig string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	if kubeconfig != "" {
		args = append([]string{"--kubeconfig=" + kubeconfig}, args...)
	}
	cmd := exec.CommandContext(t.Context(), kubectlPath(t), args...)
	cmd.Dir = teststack.RepoRoot(t)
	cmd.Env = append(os.Environ(), "KUBECTL_KUBERC=false")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// rendered is the output of `kubectl kustomize DIR`, decoded.
type rendered struct {
	yaml    string
	objects []runtime.Object
}

// render runs the real kustomize (kubectl's) on a directory of the repository.
func render(t testing.TB, dir string) rendered {
	t.Helper()
	out, _ := kubectl(t, "", "kustomize", dir)
	r := rendered{yaml: out}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read kustomize output of %s: %v", dir, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode an object of %s: %v\n%s", dir, err, doc)
		}
		r.objects = append(r.objects, obj)
	}
	return r
}

func (r rendered) daemonSet(t testing.TB, name string) *appsv1.DaemonSet {
	t.Helper()
	for _, o := range r.objects {
		if ds, ok := o.(*appsv1.DaemonSet); ok && ds.Name == name {
			return ds
		}
	}
	t.Fatalf("no DaemonSet %s in the manifests", name)
	return nil
}

func (r rendered) statefulSet(t testing.TB, name string) *appsv1.StatefulSet {
	t.Helper()
	for _, o := range r.objects {
		if s, ok := o.(*appsv1.StatefulSet); ok && s.Name == name {
			return s
		}
	}
	t.Fatalf("no StatefulSet %s in the manifests", name)
	return nil
}

func (r rendered) service(t testing.TB, name string) *corev1.Service {
	t.Helper()
	for _, o := range r.objects {
		if s, ok := o.(*corev1.Service); ok && s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s in the manifests", name)
	return nil
}

// configMapData returns a key of the ConfigMap whose name (before
// kustomize's hash suffix) is prefix.
func (r rendered) configMapData(t testing.TB, prefix, key string) string {
	t.Helper()
	for _, o := range r.objects {
		if cm, ok := o.(*corev1.ConfigMap); ok && strings.HasPrefix(cm.Name, prefix+"-") {
			if v, ok := cm.Data[key]; ok {
				return v
			}
			t.Fatalf("ConfigMap %s has no key %s", cm.Name, key)
		}
	}
	t.Fatalf("no ConfigMap %s-<hash> in the manifests", prefix)
	return ""
}

// podSpecs returns every pod template of the manifests, by workload name.
func (r rendered) podSpecs() map[string]corev1.PodSpec {
	specs := map[string]corev1.PodSpec{}
	for _, o := range r.objects {
		switch w := o.(type) {
		case *appsv1.DaemonSet:
			specs["DaemonSet/"+w.Name] = w.Spec.Template.Spec
		case *appsv1.StatefulSet:
			specs["StatefulSet/"+w.Name] = w.Spec.Template.Spec
		case *appsv1.Deployment:
			specs["Deployment/"+w.Name] = w.Spec.Template.Spec
		}
	}
	return specs
}

func envOf(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// writeFile writes data to dir/name and returns the path.
func writeFile(t testing.TB, dir, name, data string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// overlays are the kustomizations a user may apply.
var overlays = []string{"k8s/deploy", "k8s/deploy/overlays/victorialogs-cluster", "k8s/deploy/overlays/mtls", "k8s/deploy/overlays/persistent-queue"}

func must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// startGateway runs the gateway with the given rendered configuration files
// and a real API server that reviews the agents' tokens, as the shipped
// configuration requires. agentEnv is what an agent of node test-node (the
// node teststack.StartAgent names) needs to be accepted.
func startGateway(t testing.TB, victoriaLogsURL string, configs []string, env ...string) (col *teststack.Collector, agentEnv []string) {
	t.Helper()
	auth := teststack.NewGatewayAuth(t, kubetest.Start(t, kubetest.Options{}))
	col = teststack.StartGateway(t, victoriaLogsURL, configs, append(auth.Env, env...)...)
	return col, []string{"CONNAUDIT_EXPORT_TOKEN_FILE=" + auth.AgentToken("test-node")}
}
