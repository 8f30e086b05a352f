//go:build tools

// Package tools pins containerd v2.4.2 so that hack/build-node-bins.sh can
// build its commands (containerd, containerd-shim-runc-v2, ctr) with
// `go build github.com/containerd/containerd/v2/cmd/...` from this module's
// committed go.sum.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
