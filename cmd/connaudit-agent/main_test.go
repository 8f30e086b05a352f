package main

import (
	"os/exec"
	"strings"
	"testing"
)

func TestArguments(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"version"}, 0, "connaudit-agent " + version + " (go", ""},
		{[]string{"--version"}, 0, "connaudit-agent " + version + " (go", ""},
		{[]string{"--help"}, 0, "Usage: connaudit-agent", ""},
		{[]string{"query"}, exitUsage, "", `unknown command "query"`},
		{[]string{"--spool-dir=/tmp"}, exitUsage, "", `unknown command "--spool-dir=/tmp"`},
		{[]string{"unpin", "now"}, exitUsage, "", `unexpected argument "now"`},
	} {
		var out, errOut strings.Builder
		code := run(tc.args, &out, &errOut)
		if code != tc.code || !strings.HasPrefix(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.err) {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want %d, stdout starting %q, stderr containing %q",
				tc.args, code, out.String(), errOut.String(), tc.code, tc.out, tc.err)
		}
	}
}

func TestUnpinWithoutAPinDirectory(t *testing.T) {
	t.Setenv("CONNAUDIT_BPF_PIN_DIR", "")
	var out, errOut strings.Builder
	if code := run([]string{"unpin"}, &out, &errOut); code != exitError || !strings.Contains(errOut.String(), "connaudit-agent unpin: CONNAUDIT_BPF_PIN_DIR is empty") {
		t.Errorf("unpin: status %d, stderr %q", code, errOut.String())
	}
}

// The agent binary links none of the CLI's kubectl, kustomize, cli-runtime
// or cobra code (about 62 MiB of the agent's RSS in binary pages when it
// shared the CLI's binary), nor the read side's packages, nor client-go's
// generated clientset and informers, which initialise every API group of
// Kubernetes (about 5 MiB of resident code) where the enricher reads five
// types (see k8s.NewAPI).
func TestNoCLIDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"k8s.io/kubectl", "sigs.k8s.io/kustomize", "k8s.io/cli-runtime", "github.com/spf13/cobra",
			"github.com/connaudit/connaudit/query", "github.com/connaudit/connaudit/advise", "github.com/connaudit/connaudit/verify",
			"github.com/connaudit/connaudit/backend", "k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/client-go/listers"} {
			if pkg == banned || strings.HasPrefix(pkg, banned+"/") {
				t.Errorf("the agent imports %s", pkg)
			}
		}
	}
}
