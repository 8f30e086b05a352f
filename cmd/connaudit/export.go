package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/connaudit/connaudit/backend/archive"
	"github.com/connaudit/connaudit/query"
)

func newExportCommand(kube *genericclioptions.ConfigFlags) *cobra.Command {
	var (
		window  = query.Window{}
		nodes   []string
		out     string
		backend = &backendFlags{kube: kube}
	)
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write every record of the window as JSON lines: an archive to read offline with --archive",
		Long: `Write every record of the trail in the window, of every event name (connects,
agent starts and stops, loss, degraded, DNS and checkpoint records) and
duplicates included, as one JSON object per line with the field names
VictoriaLogs stores ("_time", "_msg", "event_name" and every attribute), to
stdout or to -f FILE. query, coverage, verify and advise read such files with
--archive FILE instead of a server, so an auditor can check the trail offline.`,
		Example: expand(`  {{.}} export --from 2026-11-24T00:00:00Z --to 2026-11-25T00:00:00Z -f trail-2026-11-24.jsonl
  {{.}} coverage --archive trail-2026-11-24.jsonl --from 2026-11-24T00:00:00Z --to 2026-11-25T00:00:00Z`),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, to, err := window.Parse(query.Now())
			if err != nil {
				return err
			}
			src, err := backend.openTrail()
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := archive.Write(cmd.Context(), cmd.OutOrStdout(), src, from, to, nodes)
				return err
			}
			// Written beside FILE and renamed at the end: a failed export
			// leaves no file that looks like a whole archive.
			tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
			if err != nil {
				return fmt.Errorf("-f %s: %w", out, err)
			}
			defer os.Remove(tmp.Name())
			n, err := archive.Write(cmd.Context(), tmp, src, from, to, nodes)
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Rename(tmp.Name(), out)
			}
			if err != nil {
				return fmt.Errorf("export to %s: %w", out, err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "connaudit: exported %d records of %s to %s into %s\n", n,
				from.UTC().Format("2006-01-02T15:04:05Z07:00"), to.UTC().Format("2006-01-02T15:04:05Z07:00"), out)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&nodes, "node", nil, "node name (repeatable); default every node")
	window.AddFlags(fs, "1h")
	fs.StringVarP(&out, "filename", "f", "", "write to this file instead of stdout (- is stdout)")
	backend.addFlags(fs)
	kube.AddFlags(fs)
	completeFromCluster(cmd, kube)
	return cmd
}
