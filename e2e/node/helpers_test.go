package node

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// k8sBinDir is bin/k8s, or $CONNAUDIT_K8S_BIN_DIR as for internal/kubetest.
func k8sBinDir(root string) string {
	if d := os.Getenv("CONNAUDIT_K8S_BIN_DIR"); d != "" {
		return d
	}
	return filepath.Join(root, "bin", "k8s")
}

func runCmd(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func relPath(t *testing.T, from, to string) string {
	t.Helper()
	rel, err := filepath.Rel(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// kubectlCmd runs the v1.37 kubectl of bin/k8s against the node, with
// PATH holding the connaudit plugin once installPlugin ran.
type kubectlCmd struct {
	t          *testing.T
	path, kcfg string
	pluginDir  string
}

func kubectlRunner(t *testing.T, root, kubeconfig string) kubectlCmd {
	return kubectlCmd{t: t, path: filepath.Join(k8sBinDir(root), "kubectl"), kcfg: kubeconfig}
}

func (k kubectlCmd) withPlugin(dir string) kubectlCmd { k.pluginDir = dir; return k }

func (k kubectlCmd) must(args ...string) string {
	k.t.Helper()
	out, errOut, err := k.run("", args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// run runs kubectl with stdin, returning its stdout, stderr and error.
func (k kubectlCmd) run(stdin string, args ...string) (string, string, error) {
	k.t.Helper()
	cmd := exec.Command(k.path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	path := "/usr/bin:/bin:/usr/sbin:/sbin"
	if k.pluginDir != "" {
		path = k.pluginDir + ":" + path
	}
	cmd.Env = []string{"PATH=" + path, "HOME=" + k.t.TempDir(), "KUBECONFIG=" + k.kcfg}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// installPlugin runs `make install` into a temporary PREFIX, as README says
// a user installs `kubectl connaudit`, and returns its bin directory.
func installPlugin(t *testing.T, root string) string {
	t.Helper()
	prefix := t.TempDir()
	runCmd(t, root, nil, "make", "-C", root, "-o", "bin/connaudit", "-o", "bin/connaudit-agent", "install", "PREFIX="+prefix)
	return filepath.Join(prefix, "bin")
}

// poll calls check every interval until it returns true or limit passes.
func poll(limit, interval time.Duration, check func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if check() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// dumpLogs logs the tails of the node's component logs and its pods' logs.
func dumpLogs(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	pods, _ := filepath.Glob(filepath.Join(dir, "pod-logs", "*", "*", "*.log"))
	for _, f := range append(files, pods...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("--- %s (last %d lines)\n%s", f, len(lines), strings.Join(lines, "\n"))
	}
}
