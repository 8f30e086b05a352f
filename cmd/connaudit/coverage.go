package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/connaudit/connaudit/query"
)

func newCoverageCommand(kube *genericclioptions.ConfigFlags) *cobra.Command {
	var (
		fl      query.Flags
		req     query.CoverageRequest
		backend = &backendFlags{kube: kube}
	)
	cmd := &cobra.Command{
		Use:   "coverage",
		Short: "Show which agent watched which node when, and every gap of the trail",
		Long: `For each node and agent instance in the window: when it started and stopped
(or was last heard from), how many records it sent, the loss records it wrote
and any connaudit.seq holes no loss record explains; then every gap. A node
no agent watched for part of the window is a gap too. With a kubeconfig
context, the cluster's nodes are listed from its API server, so a node that
never ran an agent shows up.`,
		Example: expand(`  {{.}} coverage --since 24h
  {{.}} coverage --node worker-1 --from 2026-11-24T00:00:00Z --to 2026-11-25T00:00:00Z --strict`),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := fl.Parse(query.Now())
			if err != nil {
				return err
			}
			req.Filter = f
			b, err := backend.open()
			if err != nil {
				return err
			}
			if len(fl.Nodes) == 0 {
				req.ExtraNodes = clusterNodes(cmd.Context(), backend, cmd, f.To)
			}
			return query.Coverage(cmd.Context(), b, req, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&fl.Nodes, "node", nil, "node name (repeatable); default every node")
	fl.Window.AddFlags(fs, "1h")
	fs.StringVarP(&req.Format, "output", "o", "table", "output format: table or json")
	fs.BoolVar(&req.Strict, "strict", false, "exit with status 3 when the trail has a gap in the window")
	addLocalTimeFlag(fs, &req.Zone)
	backend.addFlags(fs)
	kube.AddFlags(fs)
	completeFromCluster(cmd, kube)
	completeValues(cmd, "output", []string{"table", "json"})
	return cmd
}

// addLocalTimeFlag adds --local-time: tables and reports show times in the
// local time zone (TZ) instead of UTC.
func addLocalTimeFlag(fs *pflag.FlagSet, zone **time.Location) {
	fs.Func("local-time", "show the times of tables and reports in the local time zone (TZ), with its offset, instead of UTC; JSON and CSV stay UTC", func(s string) error {
		on, err := strconv.ParseBool(s)
		if on {
			*zone = time.Local
		}
		return err
	})
	fs.Lookup("local-time").NoOptDefVal = "true"
}

// clusterNodes lists the nodes of the kubeconfig context's cluster that
// it created before the window's end (a node that joined later has no
// gap in it), or none (with a note on stderr) when there is no context or
// it cannot list; none when the trail is read from an archive, which a
// cluster of today does not describe.
func clusterNodes(ctx context.Context, b *backendFlags, cmd *cobra.Command, before time.Time) []string {
	if b.offline() {
		return nil
	}
	if _, ok, err := b.kubeContext(); err != nil || !ok {
		return nil
	}
	client, err := clientset(b.kube)
	if err == nil {
		var nodes *corev1.NodeList
		if nodes, err = client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
			var names []string
			for _, n := range nodes.Items {
				if n.CreationTimestamp.Time.Before(before) {
					names = append(names, n.Name)
				}
			}
			return names
		}
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "connaudit: cannot list the cluster's nodes (%v); the gap check covers only the nodes the trail names\n", err)
	return nil
}

// expand marks help text whose {{.}} setExamples replaces with the command's
// name (connaudit, or kubectl connaudit).
func expand(text string) string { return text }

// setExamples renders every command's Example with the root's name.
func setExamples(root *cobra.Command) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if strings.Contains(c.Example, "{{.}}") {
			var b strings.Builder
			if err := template.Must(template.New("").Parse(c.Example)).Execute(&b, root.DisplayName()); err == nil {
				c.Example = b.String()
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
