// Command kubectl builds the upstream kubectl from Go module source at the
// version of the API server that tests run (kube-apiserver v1.37.2), since the
// kubectl a machine may have installed can be outside the supported version
// skew. See hack/build-k8s-bins.sh.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // cloud auth plugins, as the upstream main does
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Pretty-print the error and exit with an error, as the upstream main does.
		util.CheckErr(err)
	}
}
