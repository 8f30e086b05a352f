# Shared by hack/build-k8s-bins.sh and hack/build-node-bins.sh: each binary
# comes from a small module under hack/k8s-bins/ whose go.mod and go.sum are
# committed, so builds are reproducible and need only Go. Source it with
# OUTDIR as $1.
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
k8s_ldflags="-s -w \
	-X k8s.io/component-base/version.gitVersion=${k8s_version} \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=${k8s_version} \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=37"

# build NAME MODULEDIR PKG LDFLAGS [TAGS]: builds PKG (inside MODULEDIR's
# module) into OUTDIR/NAME unless present. It builds next to the target and
# renames, so an interrupted build never leaves a binary that later runs
# would take as cached; the temporary name is per process, in case two builds
# run at once (make -j).
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
