package k8s

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Values of Config.Mode (CONNAUDIT_KUBERNETES).
const (
	ModeAuto = "auto" // enrich when a client configuration is found
	ModeOn   = "on"   // enrich; fail at start when no configuration is found
	ModeOff  = "off"  // never contact the API server
)

// Config configures Kubernetes enrichment. The envconfig tags assume that the
// agent's configuration embeds Config anonymously and is processed with the
// prefix "connaudit", so the variables are CONNAUDIT_KUBERNETES and so on.
type Config struct {
	Mode            string        `envconfig:"KUBERNETES" default:"auto" desc:"auto, on or off: enrich records with pod and peer identity from the Kubernetes API; auto enriches when a client configuration is found"`
	NodeName        string        `envconfig:"NODE_NAME" desc:"the node this agent runs on (spec.nodeName in a DaemonSet); needed to identify the pods of connecting processes"`
	HoldTimeout     time.Duration `envconfig:"K8S_HOLD_TIMEOUT" default:"2s" desc:"how long an event of a pod that the cache does not know yet may wait for it"`
	DeletedPodGrace time.Duration `envconfig:"K8S_DELETED_POD_GRACE" default:"5m" desc:"how long deleted pods, and addresses released by pods, Services and nodes, still resolve"`
}

// Validate checks c and names the variable at fault.
func (c Config) Validate() error {
	switch c.Mode {
	case ModeAuto, ModeOn, ModeOff:
	default:
		return fmt.Errorf("CONNAUDIT_KUBERNETES=%q: use auto, on or off", c.Mode)
	}
	if c.Mode == ModeOn && c.NodeName == "" {
		return errors.New("CONNAUDIT_KUBERNETES=on needs CONNAUDIT_NODE_NAME: set it from spec.nodeName through the downward API")
	}
	if c.HoldTimeout < 0 {
		return fmt.Errorf("CONNAUDIT_K8S_HOLD_TIMEOUT=%s: must not be negative", c.HoldTimeout)
	}
	if c.DeletedPodGrace <= 0 {
		return fmt.Errorf("CONNAUDIT_K8S_DELETED_POD_GRACE=%s: want a positive duration such as 5m", c.DeletedPodGrace)
	}
	return nil
}

// LoadClientConfig finds how to reach the API server: the in-cluster
// configuration when the agent runs in a pod, else the kubeconfig files named
// by $KUBECONFIG, else ~/.kube/config. It reports false when enrichment is
// off: mode "off", or mode "auto" with no configuration found. Mode "on" with
// no configuration found is an error, as is a configuration that is found but
// unusable. Reaching the API server is not checked: an API server that is
// down at start must not stop capture.
func LoadClientConfig(mode string) (*rest.Config, bool, error) {
	switch mode {
	case ModeOff:
		return nil, false, nil
	case ModeAuto, ModeOn:
	default:
		return nil, false, fmt.Errorf("CONNAUDIT_KUBERNETES=%q: use auto, on or off", mode)
	}

	cfg, err := rest.InClusterConfig()
	switch {
	case err == nil:
		return cfg, true, nil
	case !errors.Is(err, rest.ErrNotInCluster):
		return nil, false, fmt.Errorf("load in-cluster Kubernetes configuration: %w", err)
	}

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	switch {
	case err == nil:
		return cfg, true, nil
	case clientcmd.IsEmptyConfig(err) && mode == ModeAuto:
		return nil, false, nil
	case clientcmd.IsEmptyConfig(err):
		return nil, false, fmt.Errorf("CONNAUDIT_KUBERNETES=on, but no Kubernetes client configuration was found: "+
			"not running in a pod (KUBERNETES_SERVICE_HOST is unset) and no kubeconfig in %v; "+
			"set KUBECONFIG, or CONNAUDIT_KUBERNETES=auto or off", rules.Precedence)
	default:
		return nil, false, fmt.Errorf("load kubeconfig %v: %w", rules.Precedence, err)
	}
}
