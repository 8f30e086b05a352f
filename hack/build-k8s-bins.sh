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
set -euo pipefail

if [[ $# -ne 1 ]]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/k8s-bins"
mkdir -p "$1"
out="$(cd "$1" && pwd)"

# Static binaries, no C toolchain needed; the committed go.sum must be complete.
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false -trimpath"

k8s_version=v1.37.2

# build NAME LDFLAGS: builds hack/k8s-bins/NAME into OUTDIR/NAME unless present.
build() {
	local name=$1 ldflags=$2
	if [[ -x "$out/$name" ]]; then
		echo "$name: cached at $out/$name"
		return
	fi
	echo "$name: building into $out/$name"
	local start=$SECONDS
	# Build next to the target and rename, so an interrupted build never
	# leaves a binary that later runs would take as cached. The temporary name
	# is per process, in case two builds run at once (make -j).
	local tmp="$out/.$name.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	(cd "$src/$name" && go build -ldflags "$ldflags" -o "$tmp" .)
	mv -f "$tmp" "$out/$name"
	trap - EXIT
	echo "$name: built in $((SECONDS - start))s"
}

build etcd "-s -w"
build kube-apiserver "-s -w \
	-X k8s.io/component-base/version.gitVersion=${k8s_version} \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=${k8s_version} \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=37"
build kubectl "-s -w \
	-X k8s.io/component-base/version.gitVersion=${k8s_version} \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=${k8s_version} \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=37"
