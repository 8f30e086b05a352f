//go:build tools

// Package tools pins kube-router so that hack/build-node-bins.sh can build
// its command with `go build github.com/cloudnativelabs/kube-router/v2/cmd/kube-router`
// from this module's committed go.sum. The node runs only its NetworkPolicy
// controller (iptables + ipset); see internal/kubenode.
package tools

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
