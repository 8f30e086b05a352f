package agent

import (
	"maps"

	"go.opentelemetry.io/otel/attribute"

	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/shipper"
)

// IdentityEncoder builds resources and peer attributes once per snapshot:
// the enricher replaces a snapshot whenever it changes, so its pointer is a
// sound cache key.
type IdentityEncoder struct {
	base      map[attribute.Key]attribute.Value // the agent's resource
	node      *shipper.Resource                 // base: host processes' resource
	workloads map[*k8s.Workload]*shipper.Resource
	peers     map[*k8s.Peer][]attribute.KeyValue
}

// maxCached bounds each cache; stale snapshots are dropped wholesale.
const maxCached = 16384

// NewIdentityEncoder encodes resources on top of the agent's own, base.
func NewIdentityEncoder(base map[attribute.Key]attribute.Value) *IdentityEncoder {
	return &IdentityEncoder{
		base:      base,
		node:      shipper.NewResource(base),
		workloads: make(map[*k8s.Workload]*shipper.Resource),
		peers:     make(map[*k8s.Peer][]attribute.KeyValue),
	}
}

// Node is the resource of host processes: the agent's own.
func (e *IdentityEncoder) Node() *shipper.Resource { return e.node }

// workload is the resource of a pod container: the agent's, plus the pod's.
func (e *IdentityEncoder) workload(w *k8s.Workload) *shipper.Resource {
	if b, ok := e.workloads[w]; ok {
		return b
	}
	attrs := maps.Clone(e.base)
	for _, kv := range w.Attrs {
		attrs[kv.Key] = kv.Value
	}
	b := shipper.NewResource(attrs)
	if len(e.workloads) >= maxCached {
		clear(e.workloads)
	}
	e.workloads[w] = b
	return b
}

func (e *IdentityEncoder) peer(p *k8s.Peer) []attribute.KeyValue {
	if b, ok := e.peers[p]; ok {
		return b
	}
	b := shipper.KeyValues(p.Attrs)
	if len(e.peers) >= maxCached {
		clear(e.peers)
	}
	e.peers[p] = b
	return b
}
