// Command etcd builds the upstream etcd server from Go module source, so tests
// can run a real control plane without downloading release binaries. See
// hack/build-k8s-bins.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
