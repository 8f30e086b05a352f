package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connaudit/connaudit/advise/command"
	"github.com/connaudit/connaudit/query"
	"github.com/connaudit/connaudit/verify"
)

// run executes the command line in-process and returns its output and error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand(context.Background(), "connaudit")
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// A kubeconfig with one context, "here", whose cluster is nowhere: the
// commands below fail before they would reach it.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	const cfg = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: here, context: {cluster: c, user: u}}]
current-context: here
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// kubectl fails on a context or kubeconfig that names nothing; reading the
// trail from the default address instead would answer from the wrong place.
func TestUnknownContextOrKubeconfigFails(t *testing.T) {
	t.Setenv("CONNAUDIT_QUERY_URL", "")
	kc := writeKubeconfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"query", "--kubeconfig", kc, "--context", "nope"}, `--context "nope": no such context`},
		{[]string{"coverage", "--kubeconfig", kc, "--context", "nope"}, `--context "nope": no such context`},
		{[]string{"advise", "check", "-f", "-", "--kubeconfig", kc, "--context", "nope"}, `--context "nope": no such context`},
		{[]string{"query", "--kubeconfig", filepath.Join(t.TempDir(), "missing")}, "--kubeconfig: stat"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestHeaders(t *testing.T) {
	for _, tc := range []struct {
		in         string
		name, want string
	}{
		{"X-Tenant=a:b", "X-Tenant", "a:b"},
		{"Authorization: Bearer a=b", "Authorization", "Bearer a=b"},
		{"AccountID:12", "Accountid", "12"},
	} {
		h, err := (&backendFlags{headers: []string{tc.in}}).header()
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got := h.Get(tc.name); got != tc.want {
			t.Errorf("%q: %s is %q, want %q", tc.in, tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{"novalue", ": x", "bad name: x", "X=a\nb"} {
		if _, err := (&backendFlags{headers: []string{bad}}).header(); err == nil || !strings.Contains(err.Error(), "CONNAUDIT_QUERY_HEADERS") {
			t.Errorf("%q: error %v, want one naming --header and CONNAUDIT_QUERY_HEADERS", bad, err)
		}
	}
}

// A typo under advise is an error, with a suggestion, not help and status 0.
func TestAdviseUnknownSubcommand(t *testing.T) {
	_, err := run(t, "advise", "networkpolic")
	if err == nil || !strings.Contains(err.Error(), `unknown command "networkpolic"`) || !strings.Contains(err.Error(), "did you mean networkpolicy") {
		t.Errorf("advise networkpolic: %v", err)
	}
	if _, err := run(t, "advise", "foo"); err == nil {
		t.Error("advise foo: no error")
	}
	out, err := run(t, "advise", "netpol", "--help")
	if err != nil || !strings.Contains(out, "NetworkPolicy per workload") {
		t.Errorf("advise netpol (kubectl's short name) --help: %v\n%s", err, out)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{errors.New("backend unreachable"), exitError},
		{fmt.Errorf("%w: 2 in the window", query.ErrGaps), exitGaps},
		{fmt.Errorf("%w: 1 finding(s) in the window", verify.ErrFindings), exitGaps},
		{fmt.Errorf("check: %w", command.ErrDenied), exitWouldDeny},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestQueryArgumentsAreSources(t *testing.T) {
	var fl query.Flags
	addSources(&fl, []string{"mypod", "deploy/web", "pod/other"})
	if strings.Join(fl.Pods, ",") != "mypod" || strings.Join(fl.Workloads, ",") != "deploy/web,pod/other" {
		t.Errorf("pods %v, workloads %v", fl.Pods, fl.Workloads)
	}
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version", "--short")
	if err != nil || out != version+"\n" {
		t.Errorf("version --short: %q, %v", out, err)
	}
	out, err = run(t, "version")
	if err != nil || !strings.HasPrefix(out, "connaudit "+version+" (go") {
		t.Errorf("version: %q, %v", out, err)
	}
}

// The agent moved to its own binary; its old commands say where.
func TestAgentCommandsPointToTheAgentBinary(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent"}, "run `connaudit-agent`"},
		{[]string{"unpin"}, "run `connaudit-agent unpin`"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one saying %s", tc.args, err, tc.want)
		}
	}
	out, err := run(t, "--help")
	if err != nil || strings.Contains(out, "unpin") || strings.Contains(out, "\n  agent ") {
		t.Errorf("help lists the moved commands: %v\n%s", err, out)
	}
}
