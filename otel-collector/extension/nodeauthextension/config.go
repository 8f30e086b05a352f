package nodeauthextension

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/connaudit/connaudit/otel-collector/internal/kubeapi"
)

// Config says which API server reviews the agents' tokens and whose tokens
// are accepted.
type Config struct {
	// The API server (api_server, ca_file, token_file); the gateway's token
	// needs create on tokenreviews (the system:auth-delegator ClusterRole).
	kubeapi.Config `mapstructure:",squash"`
	// Audience is what the agents' projected tokens are issued for, so that
	// a token meant for anything else is refused.
	Audience string `mapstructure:"audience"`
	// ServiceAccounts are the NAMESPACE/NAME of the agents.
	ServiceAccounts []string `mapstructure:"service_accounts"`
	// CacheTTL is how long a reviewed token is trusted before it is reviewed
	// again (at most until it expires).
	CacheTTL time.Duration `mapstructure:"cache_ttl"`
}

func createDefaultConfig() *Config {
	return &Config{
		Config:          kubeapi.DefaultConfig(),
		Audience:        "connaudit",
		ServiceAccounts: []string{"connaudit/connaudit-agent"},
		CacheTTL:        time.Minute,
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Audience == "" {
		return errors.New("audience: empty; the agents' tokens must be issued for an audience of their own")
	}
	if len(c.ServiceAccounts) == 0 {
		return errors.New("service_accounts: empty; name the agents' NAMESPACE/NAME")
	}
	for _, sa := range c.ServiceAccounts {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("service_accounts: %q is not NAMESPACE/NAME", sa)
		}
	}
	if c.CacheTTL < 0 {
		return fmt.Errorf("cache_ttl: %s is negative", c.CacheTTL)
	}
	return c.Config.Validate()
}
