#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from Go module source into OUTDIR,
# for tests that need a real control plane (internal/kubetest) and a kubectl
# within the supported version skew (k8s/deploy). A binary that is already
# there is kept, so only the first build is slow (~9 minutes for
# kube-apiserver, ~1 minute for etcd, ~3 minutes for kubectl on 2 cores).
#
# Each binary comes from a small module under hack/k8s-bins/ whose go.mod and
# go.sum are committed, so builds are reproducible and need only Go.
#
# Usage: hack/build-k8s-bins.sh OUTDIR
# shellcheck source=hack/build-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-lib.sh"

build etcd etcd . "-s -w"
build kube-apiserver kube-apiserver . "$k8s_ldflags"
build kubectl kubectl . "$k8s_ldflags"
