// Command connaudit records every TCP connect attempt on a node as an OTLP
// log record (connaudit agent), and answers questions about that audit trail
// (connaudit query, connaudit coverage). Installed as kubectl-connaudit it is
// also the `kubectl connaudit` plugin.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/connaudit/connaudit/query"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitGaps is the exit status of --strict when the trail has gaps.
const exitGaps = 3

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := newRootCommand(ctx, os.Args[0])
	err := root.Execute()
	stop()
	if err != nil {
		name := root.Name()
		if cmd, _, findErr := root.Find(os.Args[1:]); findErr == nil && cmd != root {
			name = cmd.CommandPath()
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		if errors.Is(err, query.ErrGaps) {
			os.Exit(exitGaps)
		}
		os.Exit(1)
	}
}
