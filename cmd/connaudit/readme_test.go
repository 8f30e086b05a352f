package main

import (
	"os"
	"reflect"
	"regexp"
	"testing"
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
