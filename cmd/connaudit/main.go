// Command connaudit records every TCP connect attempt on a node as an OTLP
// log record: an audit trail of who connected where, and how it ended.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: connaudit <command>

commands:
  agent     capture connect attempts on this node and export them (configured by environment, see README.md)
  unpin     stop capture that an agent left pinned in the kernel (CONNAUDIT_BPF_PIN_DIR)
  version   print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch os.Args[1] {
	case "agent":
		err = runAgent(ctx)
	case "unpin":
		err = runUnpin()
	case "version":
		fmt.Println(version)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "connaudit: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "connaudit %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
