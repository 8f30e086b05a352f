package kubetest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	modulePath = "github.com/connaudit/connaudit"
	// BinDirEnv overrides where the kube-apiserver and etcd binaries are.
	BinDirEnv = "CONNAUDIT_K8S_BIN_DIR"
)

// binDir returns the directory that holds kube-apiserver and etcd, failing
// the test if either is missing.
func binDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(BinDirEnv)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatalf("kubetest: find kube-apiserver and etcd: %v (or set %s)", err, BinDirEnv)
		}
		dir = filepath.Join(root, "bin", "k8s")
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			t.Fatalf("kubetest: no executable %s in %s: run `make k8s-bins` in the repository root "+
				"(or set %s to a directory holding kube-apiserver and etcd)", name, dir, BinDirEnv)
		}
	}
	return dir
}

// repoRoot walks up from the working directory to the go.mod of this
// module. Nested modules (such as hack/k8s-bins/*) are passed over.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if isRootModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repository root: no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func isRootModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if mod, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(mod), `"`) == modulePath
		}
	}
	return false
}
