// Command connaudit answers questions about the audit trail that
// connaudit-agent (cmd/connaudit-agent) keeps on each node: connaudit query,
// coverage, verify and advise. Installed as kubectl-connaudit it is also the
// `kubectl connaudit` plugin.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/connaudit/connaudit/advise/command"
	"github.com/connaudit/connaudit/query"
	"github.com/connaudit/connaudit/verify"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses, documented in README.md ("Exit status"): a script can tell
// a failed command from an answer that found something.
const (
	exitError     = 1 // the command failed: bad flags, unreachable backend, ...
	exitGaps      = 3 // --strict: the trail has a gap in the window
	exitWouldDeny = 4 // advise check: the policies would deny established connections
)

// exitCode is the exit status for the error a command returned.
func exitCode(err error) int {
	switch {
	case errors.Is(err, command.ErrDenied):
		return exitWouldDeny
	case errors.Is(err, query.ErrGaps), errors.Is(err, verify.ErrFindings):
		return exitGaps
	}
	return exitError
}

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
		os.Exit(exitCode(err))
	}
}
