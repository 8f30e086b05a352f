#!/usr/bin/env bash
# Builds what a real node runs besides the control plane of
# hack/build-k8s-bins.sh: kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy (k8s.io/kubernetes v1.37.2) and containerd, its runc shim and ctr
# (containerd v2.4.2) into OUTDIR, for internal/kubenode. runc and the CNI
# plugins come from Debian (see .ci/run). A binary that is already there is
# kept, so only the first build is slow (see README.md for measured times).
#
# Each binary comes from a small module under hack/k8s-bins/ whose go.mod and
# go.sum are committed.
#
# Usage: hack/build-node-bins.sh OUTDIR
set -euo pipefail

if [[ $# -ne 1 ]]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/k8s-bins"
mkdir -p "$1"
out="$(cd "$1" && pwd)"

export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false -trimpath"

k8s_version=v1.37.2
k8s_ldflags="-s -w \
	-X k8s.io/component-base/version.gitVersion=${k8s_version} \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=${k8s_version} \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=37"
containerd_version=v2.4.2
containerd_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=${containerd_version}"

# build NAME MODULEDIR PKG LDFLAGS [TAGS]: builds PKG (inside MODULEDIR's
# module) into OUTDIR/NAME unless present, through a temporary name so an
# interrupted build is never taken as cached.
build() {
	local name=$1 dir=$2 pkg=$3 ldflags=$4 tags=${5:-}
	if [[ -x "$out/$name" ]]; then
		echo "$name: cached at $out/$name"
		return
	fi
	echo "$name: building into $out/$name"
	local start=$SECONDS
	local tmp="$out/.$name.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	(cd "$src/$dir" && go build -tags "$tags" -ldflags "$ldflags" -o "$tmp" "$pkg")
	mv -f "$tmp" "$out/$name"
	trap - EXIT
	echo "$name: built in $((SECONDS - start))s"
}

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
