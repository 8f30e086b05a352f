package servingcertextension

import (
	"errors"
	"fmt"
	"net"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/connaudit/connaudit/otel-collector/internal/kubeapi"
)

// Config says where the gateway's CA is kept and published, and what
// serving certificate it issues the pod.
type Config struct {
	// The API server (api_server, ca_file, token_file). The gateway's token
	// needs get/update on the Secret and ConfigMap below and create on
	// secrets and configmaps in Namespace (k8s/deploy/base/collector-rbac.yaml).
	kubeapi.Config `mapstructure:",squash"`
	// Namespace holds the CA's Secret and ConfigMap: the gateway's own.
	Namespace string `mapstructure:"namespace"`
	// CASecret is the Secret (tls.crt, tls.key) that keeps the CA. Every
	// replica and every restart signs with it, so the agents' trust stays.
	// Create it yourself, before the gateway, to sign with your own CA.
	CASecret string `mapstructure:"ca_secret"`
	// CAConfigMap publishes the CA certificate (ca.crt), never its key, for
	// the agents to mount.
	CAConfigMap string `mapstructure:"ca_configmap"`
	// CAValidity is the lifetime of a CA the gateway creates.
	CAValidity time.Duration `mapstructure:"ca_validity"`
	// Directory receives tls.pem, the serving certificate followed by its
	// key in one file, replaced in one rename, so that a receiver's
	// configtls (cert_file and key_file both tls.pem, reload_interval) never
	// reads a certificate with another's key.
	Directory string `mapstructure:"directory"`
	// DNSNames and IPAddresses are the names the agents dial.
	DNSNames    []string `mapstructure:"dns_names"`
	IPAddresses []string `mapstructure:"ip_addresses"`
	// Validity is the serving certificate's lifetime; a new one is issued
	// when two thirds of it have passed.
	Validity time.Duration `mapstructure:"validity"`
}

// CertFile is the name of the file in Directory.
const CertFile = "tls.pem"

func createDefaultConfig() *Config {
	return &Config{
		Config:      kubeapi.DefaultConfig(),
		Namespace:   "connaudit",
		CASecret:    "connaudit-gateway-ca",
		CAConfigMap: "connaudit-gateway-ca",
		CAValidity:  10 * 365 * 24 * time.Hour,
		Validity:    7 * 24 * time.Hour,
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	for _, n := range []struct{ key, v string }{{"namespace", c.Namespace}, {"ca_secret", c.CASecret}, {"ca_configmap", c.CAConfigMap}} {
		if errs := validation.IsDNS1123Subdomain(n.v); len(errs) > 0 {
			return fmt.Errorf("%s: %q: %s", n.key, n.v, errs[0])
		}
	}
	if c.Directory == "" {
		return errors.New("directory: empty; name where the receivers read the serving certificate (an emptyDir)")
	}
	if len(c.DNSNames) == 0 && len(c.IPAddresses) == 0 {
		return errors.New("dns_names: empty; name the Service the agents dial (connaudit-collector.connaudit.svc)")
	}
	for _, ip := range c.IPAddresses {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("ip_addresses: %q is not an IP address", ip)
		}
	}
	if c.Validity < 3*time.Second {
		return fmt.Errorf("validity: %s is too short; a certificate is renewed at two thirds of its life", c.Validity)
	}
	if c.CAValidity < 2*c.Validity {
		return fmt.Errorf("ca_validity: %s is shorter than twice validity (%s)", c.CAValidity, c.Validity)
	}
	return c.Config.Validate()
}
