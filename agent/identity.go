package agent

import (
	"maps"

	"go.opentelemetry.io/otel/attribute"

	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/shipper"
)

// IdentityEncoder encodes resources and peer attributes once per snapshot:
// the enricher replaces a snapshot whenever it changes, so its pointer is a
// sound cache key.
type IdentityEncoder struct {
	base      map[attribute.Key]attribute.Value // the agent's resource
	node      []byte                            // base, encoded: host processes' resource
	workloads map[*k8s.Workload][]byte
	peers     map[*k8s.Peer][]byte
}

// maxCached bounds each cache; stale snapshots are dropped wholesale.
const maxCached = 16384

// NewIdentityEncoder encodes resources on top of the agent's own, base.
func NewIdentityEncoder(base map[attribute.Key]attribute.Value) *IdentityEncoder {
	return &IdentityEncoder{
		base:      base,
		node:      shipper.EncodeAttrs(base),
		workloads: make(map[*k8s.Workload][]byte),
		peers:     make(map[*k8s.Peer][]byte),
	}
}

// Node is the encoded resource of host processes: the agent's own.
func (e *IdentityEncoder) Node() []byte { return e.node }

// workload is the resource of a pod container: the agent's, plus the pod's.
func (e *IdentityEncoder) workload(w *k8s.Workload) []byte {
	if b, ok := e.workloads[w]; ok {
		return b
	}
	attrs := maps.Clone(e.base)
	for _, kv := range w.Attrs {
		attrs[kv.Key] = kv.Value
	}
	b := shipper.EncodeAttrs(attrs)
	if len(e.workloads) >= maxCached {
		clear(e.workloads)
	}
	e.workloads[w] = b
	return b
}

func (e *IdentityEncoder) peer(p *k8s.Peer) []byte {
	if b, ok := e.peers[p]; ok {
		return b
	}
	b := shipper.EncodeKeyValues(p.Attrs)
	if len(e.peers) >= maxCached {
		clear(e.peers)
	}
	e.peers[p] = b
	return b
}
