package k8s

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The agent embeds Config in its own configuration, processed with the
// prefix "connaudit".
func TestConfigFromEnvironment(t *testing.T) {
	var agent struct{ Config }
	if err := envconfig.Process("connaudit", &agent); err != nil {
		t.Fatal(err)
	}
	want := Config{Mode: ModeAuto, HoldTimeout: 2 * time.Second, DeletedPodGrace: 5 * time.Minute}
	if agent.Config != want {
		t.Errorf("defaults %+v, want %+v", agent.Config, want)
	}

	t.Setenv("CONNAUDIT_KUBERNETES", "on")
	t.Setenv("CONNAUDIT_NODE_NAME", "node-a")
	t.Setenv("CONNAUDIT_K8S_HOLD_TIMEOUT", "500ms")
	t.Setenv("CONNAUDIT_K8S_DELETED_POD_GRACE", "1m")
	if err := envconfig.Process("connaudit", &agent); err != nil {
		t.Fatal(err)
	}
	want = Config{Mode: ModeOn, NodeName: "node-a", HoldTimeout: 500 * time.Millisecond, DeletedPodGrace: time.Minute}
	if agent.Config != want {
		t.Errorf("from the environment %+v, want %+v", agent.Config, want)
	}
	if err := agent.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Mode: ModeAuto, HoldTimeout: time.Second, DeletedPodGrace: time.Minute}
	for _, tc := range []struct {
		change  func(*Config)
		naming  string // the variable the error must name; "" for no error
		comment string
	}{
		{func(c *Config) {}, "", "defaults"},
		{func(c *Config) { c.Mode = ModeOff; c.DeletedPodGrace = time.Minute }, "", "off"},
		{func(c *Config) { c.Mode = "yes" }, "CONNAUDIT_KUBERNETES", "bad mode"},
		{func(c *Config) { c.Mode = ModeOn }, "CONNAUDIT_NODE_NAME", "on without node name"},
		{func(c *Config) { c.HoldTimeout = -time.Second }, "CONNAUDIT_K8S_HOLD_TIMEOUT", "negative hold"},
		{func(c *Config) { c.DeletedPodGrace = 0 }, "CONNAUDIT_K8S_DELETED_POD_GRACE", "no grace"},
	} {
		c := ok
		tc.change(&c)
		err := c.Validate()
		switch {
		case tc.naming == "" && err != nil:
			t.Errorf("%s: %v", tc.comment, err)
		case tc.naming != "" && (err == nil || !strings.Contains(err.Error(), tc.naming)):
			t.Errorf("%s: error %v does not name %s", tc.comment, err, tc.naming)
		}
	}
}

func TestLoadClientConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a pod
	t.Setenv("HOME", t.TempDir())           // no ~/.kube/config
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443"}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	kc.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "x"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}

	t.Setenv("KUBECONFIG", kubeconfig)
	for _, mode := range []string{ModeAuto, ModeOn} {
		cfg, ok, err := LoadClientConfig(mode)
		if err != nil || !ok || cfg.Host != "https://127.0.0.1:6443" {
			t.Errorf("%s with KUBECONFIG: %v, %v, %v", mode, cfg, ok, err)
		}
	}
	if cfg, ok, err := LoadClientConfig(ModeOff); cfg != nil || ok || err != nil {
		t.Errorf("off: %v, %v, %v", cfg, ok, err)
	}
	if _, _, err := LoadClientConfig("maybe"); err == nil || !strings.Contains(err.Error(), "CONNAUDIT_KUBERNETES") {
		t.Errorf("bad mode: %v", err)
	}

	t.Setenv("KUBECONFIG", filepath.Join(dir, "missing"))
	if cfg, ok, err := LoadClientConfig(ModeAuto); cfg != nil || ok || err != nil {
		t.Errorf("auto without configuration: %v, %v, %v; want enrichment off", cfg, ok, err)
	}
	_, ok, err := LoadClientConfig(ModeOn)
	if ok || err == nil || !strings.Contains(err.Error(), "no Kubernetes client configuration") {
		t.Errorf("on without configuration: %v, %v", ok, err)
	}

	broken := filepath.Join(dir, "broken")
	if err := os.WriteFile(broken, []byte("clusters: [this is not a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", broken)
	if _, ok, err := LoadClientConfig(ModeAuto); ok || err == nil {
		t.Errorf("auto with a broken kubeconfig: %v, %v; want an error", ok, err)
	}
}
