package shipper

import (
	"context"
	"fmt"
	"sort"

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

// EncodeKeyValues encodes attributes in the order given.
func EncodeKeyValues(kvs []attribute.KeyValue) []byte {
	var l AttrList
	for _, kv := range kvs {
		l.Value(trail.Key(kv.Key), kv.Value)
	}
	return l.Bytes()
}

// EncodeAttrs encodes a set of attributes in key order, so equal sets encode equally.
func EncodeAttrs(attrs map[attribute.Key]attribute.Value) []byte {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var l AttrList
	for _, k := range keys {
		l.Value(trail.Key(k), attrs[attribute.Key(k)])
	}
	return l.Bytes()
}

// Value appends an attribute of any type; slices are written as their JSON-like text.
func (e *AttrList) Value(key trail.Key, v attribute.Value) {
	switch v.Type() {
	case attribute.BOOL:
		e.Bool(key, v.AsBool())
	case attribute.INT64:
		e.Int(key, v.AsInt64())
	case attribute.FLOAT64:
		e.Float(key, v.AsFloat64())
	default:
		e.String(key, v.Emit())
	}
}
