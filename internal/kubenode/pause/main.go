// Command pause is the sandbox ("pause") image of internal/kubenode's node,
// which cannot pull registry.k8s.io/pause: it holds a pod's namespaces and
// exits on SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
