// Command connaudit-agent records every TCP connect attempt on a node as an
// OTLP log record: the DaemonSet's agent, configured by CONNAUDIT_* and OTEL_*
// variables. It is a binary of its own, apart from the connaudit CLI, so
// that a node does not map the CLI's kubectl, kustomize and cli-runtime
// code into the agent's memory (TestNoCLIDependencies).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/connaudit/connaudit/bpf"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Usage: connaudit-agent [unpin | version]

With no argument, capture every TCP connect attempt on this node with eBPF
and export each as an OTLP log record, until SIGTERM or SIGINT. Configured by
CONNAUDIT_* and OTEL_EXPORTER_OTLP_* variables (README.md, "Configuration").

  unpin     remove the capture an agent left pinned in the kernel (CONNAUDIT_BPF_PIN_DIR)
  version   print the version (also --version)
`

// Exit statuses.
const (
	exitError = 1 // the agent or unpin failed: bad configuration, no privileges, ...
	exitUsage = 2 // an argument the agent does not take
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches on the arguments and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	if len(args) > 1 {
		fmt.Fprintf(stderr, "connaudit-agent: unexpected argument %q\n\n%s", args[1], usage)
		return exitUsage
	}
	var err error
	switch cmd {
	// "agent": a manifest written for the image whose entrypoint was the
	// CLI (`connaudit agent`) still runs.
	case "", "agent":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = runAgent(ctx)
		stop()
	case "unpin":
		err = runUnpin(stdout)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "connaudit-agent %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "connaudit-agent: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	if err != nil {
		name := "connaudit-agent"
		if cmd == "unpin" {
			name += " unpin"
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitError
	}
	return 0
}

// runUnpin removes the capture pinned under CONNAUDIT_BPF_PIN_DIR, which
// otherwise goes on in the kernel after the agent is gone.
func runUnpin(stdout io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if cfg.BPFPinDir == "" {
		return fmt.Errorf("CONNAUDIT_BPF_PIN_DIR is empty: nothing is pinned")
	}
	n, err := bpf.Unpin(cfg.BPFPinDir)
	if err != nil {
		return fmt.Errorf("unpin %s: %w", cfg.BPFPinDir, err)
	}
	if n == 0 {
		fmt.Fprintln(stdout, "nothing pinned under", cfg.BPFPinDir)
		return nil
	}
	fmt.Fprintf(stdout, "removed %d pinned capture(s) under %s - capture stops once no agent holds it\n", n, cfg.BPFPinDir)
	return nil
}
