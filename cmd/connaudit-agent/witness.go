package main

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connaudit/connaudit/agent/witnesswriter"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/trail/checkpoint"
	"github.com/connaudit/connaudit/trail/witness"
)

// newWitness makes the writer of this node's witness Lease, or nil when
// there is no Kubernetes (CONNAUDIT_KUBERNETES, no configuration found) or
// CONNAUDIT_WITNESS_NAMESPACE is empty. Without it the trail's only anchor
// is its own start records and, with CONNAUDIT_SIGNING_KEY_FILE, the key.
func newWitness(cfg agentConfig, instanceID string, key ed25519.PrivateKey, reg prometheus.Registerer, logger *slog.Logger) (*witnesswriter.Writer, error) {
	if cfg.WitnessNamespace == "" {
		logger.Info("no witness: CONNAUDIT_WITNESS_NAMESPACE is empty")
		return nil, nil
	}
	rest, ok, err := k8s.LoadClientConfig(cfg.Mode)
	if err != nil || !ok {
		return nil, err // logged by startEnricher when off
	}
	if cfg.NodeName == "" {
		return nil, fmt.Errorf("the node's witness needs CONNAUDIT_NODE_NAME (spec.nodeName through the downward API), or set CONNAUDIT_WITNESS_NAMESPACE= (empty) or CONNAUDIT_KUBERNETES=off")
	}
	leases, err := k8s.NewLeases(rest, cfg.WitnessNamespace)
	if err != nil {
		return nil, fmt.Errorf("CONNAUDIT_WITNESS_NAMESPACE=%s: %w", cfg.WitnessNamespace, err)
	}
	return witnesswriter.New(witnesswriter.Config{
		Node: cfg.NodeName,
		Instance: witness.Instance{ID: instanceID, Key: checkpoint.EncodePublicKey(key.Public().(ed25519.PublicKey)),
			Started: time.Now().UTC(), Heartbeat: cfg.HeartbeatInterval},
		MinInterval: cfg.HeartbeatInterval,
		MaxBackoff:  max(cfg.HeartbeatInterval, 5*time.Second),
	}, leases, witnesswriter.NewMetrics(reg), logger)
}
