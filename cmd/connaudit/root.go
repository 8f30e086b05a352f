package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// pluginName is the name kubectl finds on the PATH for `kubectl connaudit`.
const pluginName = "kubectl-connaudit"

// newRootCommand builds the command tree. argv0 is the name the binary was
// invoked as: as the kubectl plugin, help and completion say
// `kubectl connaudit`.
func newRootCommand(ctx context.Context, argv0 string) *cobra.Command {
	display := "connaudit"
	if strings.TrimSuffix(filepath.Base(argv0), ".exe") == pluginName {
		display = "kubectl connaudit"
	}
	root := &cobra.Command{
		Use:         "connaudit",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: display},
		Short:       "An audit trail of every TCP connect attempt on Kubernetes nodes",
		Long: `connaudit answers questions about the audit trail of every TCP connect attempt
that connaudit-agent keeps on each node, days later (query, coverage).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetContext(ctx)
	// The kubeconfig flags of kubectl, for the commands that read the trail
	// (connaudit-agent reads its configuration from the environment). --server
	// names the trail's backend here, not the API server.
	kube := genericclioptions.NewConfigFlags(true)
	kube.APIServer = nil

	root.AddCommand(
		newMovedCommand("agent", "connaudit-agent"),
		newMovedCommand("unpin", "connaudit-agent unpin"),
		newVersionCommand(),
		newQueryCommand(kube),
		newCoverageCommand(kube),
		newVerifyCommand(kube),
		newExportCommand(kube),
		newAdviseCommand(kube),
	)
	setExamples(root)
	return root
}

// newMovedCommand answers a command that moved to the agent binary with an
// error that says where it went, rather than "unknown command". Hidden: help
// lists what this binary does.
func newMovedCommand(use, instead string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("moved to the agent's own binary: run `%s` (bin/connaudit-agent after make build; the agent image's entrypoint)", instead)
		},
	}
}

func newVersionCommand() *cobra.Command {
	var short bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			if short {
				fmt.Fprintln(cmd.OutOrStdout(), version)
				return
			}
			fmt.Fprintf(cmd.OutOrStdout(), "connaudit %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
	cmd.Flags().BoolVar(&short, "short", false, "print only the version")
	return cmd
}

// aliases maps alternative flag names to the flag they stand for.
func aliases(names map[string]string) func(*pflag.FlagSet, string) pflag.NormalizedName {
	return func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if to, ok := names[name]; ok {
			name = to
		}
		return pflag.NormalizedName(name)
	}
}

// unknownSubcommand refuses arguments to a command that only groups others,
// which cobra would answer with help and status 0.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return errors.New(msg + " (see --help)")
}
