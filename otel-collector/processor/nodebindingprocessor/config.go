package nodebindingprocessor

import "errors"

// Config names the attributes that must agree.
type Config struct {
	// ResourceAttribute is the resource attribute naming a record's node.
	ResourceAttribute string `mapstructure:"resource_attribute"`
	// AuthAttribute is the authenticator's attribute naming the sender's node.
	AuthAttribute string `mapstructure:"auth_attribute"`
}

func createDefaultConfig() *Config {
	return &Config{ResourceAttribute: "k8s.node.name", AuthAttribute: "k8s.node.name"}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.ResourceAttribute == "" || c.AuthAttribute == "" {
		return errors.New("resource_attribute and auth_attribute: give both")
	}
	return nil
}
