package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every flag of every command is in README (kubectl's kubeconfig flags as a
// group), and every flag README's query table names exists.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme := readFile(t, "../../README.md")
	kubeFlags := pflag.NewFlagSet("kube", pflag.ContinueOnError)
	genericclioptions.NewConfigFlags(true).AddFlags(kubeFlags)
	if !strings.Contains(readme, "kubectl's kubeconfig flags") {
		t.Error("README does not say that the read commands take kubectl's kubeconfig flags")
	}
	root := newRootCommand(context.Background(), "connaudit")
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if kubeFlags.Lookup(f.Name) != nil && f.Name != "namespace" || f.Name == "help" {
				return
			}
			if !strings.Contains(readme, "`--"+f.Name) && !strings.Contains(readme, "/--"+f.Name) &&
				(f.Shorthand == "" || !strings.Contains(readme, "`-"+f.Shorthand)) {
				t.Errorf("%s: flag --%s is not in README", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)

	query, _, err := root.Find([]string{"query"})
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(readme, "| flag | selects |")
	if start < 0 {
		t.Fatal("README has no query flag table")
	}
	table := readme[start:]
	table = table[:strings.Index(table, "\n\n")]
	for _, m := range regexp.MustCompile("`(?:-[a-zA-Z]/)?--([a-z-]+)").FindAllStringSubmatch(table, -1) {
		if query.Flags().Lookup(m[1]) == nil {
			t.Errorf("README's query table names --%s, which query does not take", m[1])
		}
	}
}
