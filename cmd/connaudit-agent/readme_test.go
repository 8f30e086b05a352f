package main

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/connaudit/connaudit/caps"
)

// README's configuration table lists every CONNAUDIT_* variable with the
// default the code applies, and nothing else.
func TestREADMEConfigurationTableMatchesTheCode(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	row := regexp.MustCompile("(?m)^\\| `(CONNAUDIT_[A-Z0-9_]+)` \\| (?:`([^`]*)`)? *\\|")
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = m[2]
	}
	inCode := map[string]string{}
	collectEnv(reflect.TypeOf(agentConfig{}), inCode)
	for name, def := range inCode {
		doc, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("%s (default %q) is missing from README's configuration table", name, def)
		case doc != def:
			t.Errorf("%s: README says default %q, the code %q", name, doc, def)
		}
	}
	for name := range documented {
		if _, ok := inCode[name]; !ok {
			t.Errorf("README documents %s, which the agent does not read", name)
		}
	}
}

func collectEnv(t reflect.Type, out map[string]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			collectEnv(f.Type, out)
			continue
		}
		if name := f.Tag.Get("envconfig"); name != "" {
			out["CONNAUDIT_"+name] = f.Tag.Get("default")
		}
	}
}

// README, the DaemonSet and the agent's own start check name the same
// capabilities, and README and the DaemonSet's header count them right.
func TestREADMECapabilitiesMatchTheDaemonSetAndTheCode(t *testing.T) {
	readme := readFile(t, "../../README.md")
	manifest := readFile(t, "../../k8s/deploy/base/agent-daemonset.yaml")
	namespace := readFile(t, "../../k8s/deploy/base/namespace.yaml")
	var ds appsv1.DaemonSet
	if err := yaml.Unmarshal([]byte(manifest), &ds); err != nil {
		t.Fatal(err)
	}
	var added []string
	for _, c := range ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add {
		added = append(added, string(c))
	}
	var checked []string
	for _, n := range append(slices.Clone(caps.Agent), caps.DNS) {
		checked = append(checked, strings.TrimPrefix(n.Name, "CAP_"))
	}
	// README's table, but for rows of capabilities only some hosts need.
	start := strings.Index(readme, "| capability | why | without it |")
	if start < 0 {
		t.Fatal("README has no capability table")
	}
	table := readme[start:]
	table = table[:strings.Index(table, "\n\n")]
	var documented []string
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| .* \\| (.*) \\|$")
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		if m[2] != "add it there" {
			documented = append(documented, m[1])
		}
	}
	slices.Sort(added)
	slices.Sort(checked)
	slices.Sort(documented)
	if !slices.Equal(added, checked) || !slices.Equal(added, documented) {
		t.Errorf("capabilities: the DaemonSet adds %q, the agent checks %q, README's table lists %q", added, checked, documented)
	}
	for _, c := range added {
		if !strings.Contains(namespace, c) {
			t.Errorf("namespace.yaml's Pod Security comment does not name %s", c)
		}
	}
	numbers := []string{"zero", "one", "two", "three", "four", "five", "six", "seven"}
	count := regexp.MustCompile(`\b(zero|one|two|three|four|five|six|seven) (capabilities|added|this design needs)\b`)
	for name, text := range map[string]string{"README.md": readme, "agent-daemonset.yaml": manifest} {
		for _, m := range count.FindAllStringSubmatch(text, -1) {
			if m[1] != numbers[len(added)] {
				t.Errorf("%s says %q; the DaemonSet adds %d", name, m[0], len(added))
			}
		}
	}
}

// README's command table names what the agent binary does besides running.
func TestREADMEDocumentsTheAgentCommands(t *testing.T) {
	readme := readFile(t, "../../README.md")
	for _, c := range []string{"`connaudit-agent`", "`connaudit-agent unpin`", "`connaudit-agent version`"} {
		if !strings.Contains(readme, "| "+c+" |") {
			t.Errorf("README's command table has no row for %s", c)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
