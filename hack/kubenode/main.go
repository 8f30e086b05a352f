// Command kubenode brings internal/kubenode's real single-node cluster up
// (and leaves it running) or down, for `make node-up` and `make node-down`.
//
//	kubenode up   [-dir DIR] -k8s-bin bin/k8s -node-bin bin/node -pause bin/images/pause.tar
//	kubenode down [-dir DIR]
package main

import (
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/connaudit/connaudit/internal/kubenode"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: kubenode up|down [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	opts := kubenode.Options{Logf: log.Printf}
	fs.StringVar(&opts.Dir, "dir", kubenode.DefaultDir, "state directory")
	fs.StringVar(&opts.K8sBinDir, "k8s-bin", "bin/k8s", "directory of etcd and kube-apiserver")
	fs.StringVar(&opts.NodeBinDir, "node-bin", "bin/node", "directory of the node binaries")
	fs.StringVar(&opts.PauseImage, "pause", "bin/images/pause.tar", "OCI archive of the sandbox image")
	_ = fs.Parse(os.Args[2:])

	if os.Args[1] == "down" {
		if err := kubenode.Down(opts.Dir); err != nil {
			log.Fatal(err)
		}
		return
	}
	n, err := kubenode.Up(opts)
	if err != nil {
		log.Print(err)
		log.Print("kubenode: tearing down what started; run `make node-down` if anything is left")
		if derr := kubenode.Down(opts.Dir); derr != nil {
			log.Print(derr)
		}
		os.Exit(1)
	}
	fmt.Printf("Node %s is up. Its API server: export KUBECONFIG=%s\n", kubenode.NodeName, n.Kubeconfig())
	fmt.Printf("Load images: %s/ctr --address %s -n k8s.io images import ARCHIVE\n", opts.NodeBinDir, n.ContainerdSocket())
	fmt.Printf("Outside test hosts: ")
	for _, o := range kubenode.Outsides {
		fmt.Printf("%s (%s, netns %s)  ", o.Name, o.Addr, o.Netns)
	}
	fmt.Println("\nStop it with `make node-down`.")
}
