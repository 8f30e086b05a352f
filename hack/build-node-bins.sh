#!/usr/bin/env bash
# Builds what a real node runs besides the control plane of
# hack/build-k8s-bins.sh: kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy (k8s.io/kubernetes v1.37.2) and containerd, its runc shim and ctr
# (containerd v2.4.2), CoreDNS and kube-router (its NetworkPolicy controller)
# into OUTDIR, for internal/kubenode. runc and the CNI
# plugins come from Debian (see .ci/run). A binary that is already there is
# kept, so only the first build is slow (see README.md for measured times).
#
# Each binary comes from a small module under hack/k8s-bins/ whose go.mod and
# go.sum are committed.
#
# Usage: hack/build-node-bins.sh OUTDIR
# shellcheck source=hack/build-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-lib.sh"

containerd_version=v2.4.2
containerd_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=${containerd_version}"

# Without cgo and the storage drivers that need C libraries; the node uses
# the overlayfs (or native) snapshotter.
ctags="no_btrfs no_devmapper no_zfs"
build containerd containerd github.com/containerd/containerd/v2/cmd/containerd "$containerd_ldflags" "$ctags"
build containerd-shim-runc-v2 containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 "$containerd_ldflags" "$ctags"
build ctr containerd github.com/containerd/containerd/v2/cmd/ctr "$containerd_ldflags" "$ctags"
build kubelet kubelet . "$k8s_ldflags"
build kube-controller-manager kube-controller-manager . "$k8s_ldflags"
build kube-scheduler kube-scheduler . "$k8s_ldflags"
build kube-proxy kube-proxy . "$k8s_ldflags"
build coredns coredns . "-s -w"
# kube-router runs as the node's NetworkPolicy controller only (iptables +
# ipset; the kernel here has no nfqueue for kube-network-policies).
build kube-router kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "-s -w"
