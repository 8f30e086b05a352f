package teststack

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/connaudit/connaudit/internal/ports"
)

const modulePath = "github.com/connaudit/connaudit"

// repoRoot walks up from the working directory to the directory whose go.mod
// declares module github.com/connaudit/connaudit.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declaresModule(data, modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// RepoRoot is the repository's root directory (the one with this module's
// go.mod), for tests that read its files or run its make targets.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := repoRoot()
	if err != nil {
		t.Fatal("teststack: ", err)
	}
	return dir
}

func declaresModule(gomod []byte, module string) bool {
	for line := range bytes.Lines(gomod) {
		fields := bytes.Fields(line)
		if len(fields) == 2 && string(fields[0]) == "module" && string(fields[1]) == module {
			return true
		}
	}
	return false
}

// repoFile returns the path of a file of the repository, failing the test if
// the repository root cannot be found.
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("teststack: %v", err)
	}
	return filepath.Join(root, rel)
}

// binary returns the path of a binary built by `make build`: from
// $CONNAUDIT_BIN_DIR if set, else from <repo root>/bin. A missing binary
// fails the test; CI must never skip these tests silently.
// Binary is the path of a built program in bin/ (or $CONNAUDIT_BIN_DIR); a
// missing one fails the test.
func Binary(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("CONNAUDIT_BIN_DIR")
	if dir == "" {
		dir = repoFile(t, "bin")
	}
	path := filepath.Join(dir, name)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("teststack: binary %s: %v; run `make build` first (or set CONNAUDIT_BIN_DIR)", name, err)
	}
	if info.IsDir() || info.Mode()&0o111 == 0 {
		t.Fatalf("teststack: %s is not an executable file; run `make build`", path)
	}
	return path
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago, out
// of the ephemeral range, so that a component restarted in a fault test
// gets its port back.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := ports.Free()
	if err != nil {
		t.Fatalf("teststack: pick a free port: %v", err)
	}
	return port
}
