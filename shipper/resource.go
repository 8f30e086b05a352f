package shipper

import (
	"context"
	"fmt"

	"github.com/connaudit/connaudit/trail"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
)

// AgentResource describes this agent instance; every record it writes about
// itself, and every record of a host process, carries it.
type AgentResource struct {
	Version     string
	InstanceID  string // new at each start: replays keep the original, so duplicates are identifiable
	HostName    string
	NodeName    string
	ClusterName string
}

// Attributes merges OTEL_RESOURCE_ATTRIBUTES under connaudit's own attributes.
func (r AgentResource) Attributes(ctx context.Context) (map[attribute.Key]attribute.Value, error) {
	fromEnv, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range fromEnv.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	set := func(k trail.Key, v string) {
		if v != "" {
			attrs[attribute.Key(k)] = attribute.StringValue(v)
		}
	}
	set(trail.KeyServiceName, "connaudit")
	set(trail.KeyServiceVersion, r.Version)
	set(trail.KeyServiceInstanceID, r.InstanceID)
	set(trail.KeyHostName, r.HostName)
	set(trail.KeyK8sNodeName, r.NodeName)
	set(trail.KeyK8sClusterName, r.ClusterName)
	return attrs, nil
}
