package shipper

import (
	"context"
	"fmt"
	"sort"

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

// Encode merges OTEL_RESOURCE_ATTRIBUTES under connaudit's own attributes and
// returns the encoded list, sorted by key so equal resources encode equally.
func (r AgentResource) Encode(ctx context.Context) ([]byte, error) {
	fromEnv, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range fromEnv.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	set := func(k, v string) {
		if v != "" {
			attrs[attribute.Key(k)] = attribute.StringValue(v)
		}
	}
	set("service.name", "connaudit")
	set("service.version", r.Version)
	set("service.instance.id", r.InstanceID)
	set("host.name", r.HostName)
	set("k8s.node.name", r.NodeName)
	set("k8s.cluster.name", r.ClusterName)
	return EncodeAttrs(attrs), nil
}

// EncodeAttrs encodes a set of attributes in key order.
func EncodeAttrs(attrs map[attribute.Key]attribute.Value) []byte {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var l AttrList
	for _, k := range keys {
		v := attrs[attribute.Key(k)]
		switch v.Type() {
		case attribute.BOOL:
			l.Bool(k, v.AsBool())
		case attribute.INT64:
			l.Int(k, v.AsInt64())
		case attribute.FLOAT64:
			l.Float(k, v.AsFloat64())
		default:
			l.String(k, v.Emit())
		}
	}
	return l.Bytes()
}
