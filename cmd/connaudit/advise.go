package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/connaudit/connaudit/advise"
	"github.com/connaudit/connaudit/advise/command"
	"github.com/connaudit/connaudit/advise/history"
	"github.com/connaudit/connaudit/advise/kube"
	"github.com/connaudit/connaudit/query"
)

// defaultAdviseSince is the window of advise without --since or --from:
// a policy wants more history than a glance at the last hour.
const defaultAdviseSince = 7 * 24 * time.Hour

const adviseExamples = `  # The walkthrough, from history: advise a policy for pod mypod from its last 7 days
  {{.}} advise networkpolicy -n default -l run=mypod > mypod-policy.yaml

  # Egress only, for one Deployment, widening external peers to /24 and /64
  {{.}} advise networkpolicy -n shop --workload deployment/web --policy-types egress --aggregate-cidr 24,64

  # What would these policies have denied in the last 7 days?
  {{.}} advise check -f mypod-policy.yaml`

func newAdviseCommand(kube *genericclioptions.ConfigFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "advise",
		Short:   "Advise NetworkPolicies from the trail, and check policies against it",
		Example: expand(adviseExamples),
		Args:    unknownSubcommand,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAdviseNetworkPolicyCommand(kube), newAdviseCheckCommand(kube))
	return cmd
}

// adviseNamespace is -n, else the kubeconfig context's namespace, else default.
func adviseNamespace(cmd *cobra.Command, kube *genericclioptions.ConfigFlags) string {
	if cmd.Flags().Changed("namespace") && *kube.Namespace != "" {
		return *kube.Namespace
	}
	ns, _, err := kube.ToRawKubeConfigLoader().Namespace()
	if err != nil || ns == "" {
		return "default"
	}
	return ns
}

// adviseCluster is the API server of the kubeconfig, for Services' selectors
// and target ports and nodes' addresses; nil, with a warning, when there is
// no kubeconfig.
func adviseCluster(kubeFlags *genericclioptions.ConfigFlags) advise.Cluster {
	c, err := clientset(kubeFlags)
	if err == nil {
		return kube.Cluster{Client: c}
	}
	slog.Warn("no Kubernetes API server: Services cannot be resolved to their pods and target ports", "error", err)
	return nil
}

func newAdviseNetworkPolicyCommand(kubeFlags *genericclioptions.ConfigFlags) *cobra.Command {
	var (
		fl          query.Flags
		workload    string
		policyTypes []string
		aggregate   string
		opts        advise.Options
		backend     = &backendFlags{kube: kubeFlags}
	)
	cmd := &cobra.Command{
		Use:     "networkpolicy",
		Aliases: []string{"networkpolicies", "netpol"},
		Short:   "Print NetworkPolicies that allow exactly the connections of the window",
		Long: `Print one networking.k8s.io/v1 NetworkPolicy per workload of the namespace (or of
the selection) that allows exactly the connections established in the window:
egress to what its pods connected to, ingress from what connected to them.
Each rule carries its evidence (count, first and last seen) as a comment, and
failed attempts are listed as evidence of what stays denied. Service peers
become their pods (selector) on the target port, taken from the API server of
the kubeconfig; external and node peers become /32 or /128 ipBlocks.
Egress to kube-dns is added, since DNS over UDP is not observed (--no-dns).
With no connection of the selection in the window it fails, unless
--allow-empty.`,
		Example: expand(adviseExamples),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl.Namespace = adviseNamespace(cmd, kubeFlags)
			if workload != "" {
				fl.Workloads = []string{workload}
			}
			f, err := fl.Parse(query.Now())
			if err != nil {
				return err
			}
			opts.Namespace, opts.Selector, opts.Workload = fl.Namespace, f.Selector, workload
			for _, t := range policyTypes {
				switch strings.ToLower(t) {
				case "ingress":
					opts.PolicyTypes = append(opts.PolicyTypes, networkingv1.PolicyTypeIngress)
				case "egress":
					opts.PolicyTypes = append(opts.PolicyTypes, networkingv1.PolicyTypeEgress)
				default:
					return fmt.Errorf("--policy-types %q: want ingress, egress or both", t)
				}
			}
			if opts.AggregateV4, opts.AggregateV6, err = parseAggregate(aggregate); err != nil {
				return err
			}
			if err := opts.Validate(); err != nil {
				return err
			}
			b, err := backend.open()
			if err != nil {
				return err
			}
			opts.Cluster = adviseCluster(kubeFlags)
			req := command.NetworkPolicyRequest{
				Selection: history.Selection{From: f.From, To: f.To, Namespaces: f.Namespaces, Selector: f.Selector, Workloads: f.Workloads,
					ClusterNodes: clusterNodes(cmd.Context(), backend, cmd, f.To)},
				Options: opts,
				Query:   describe(fl, workload, f.From, f.To),
			}
			return command.NetworkPolicy(cmd.Context(), b, req, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&fl.Selector, "selector", "l", "", "only the workloads whose pods match this label selector, as kubectl's")
	fs.StringVar(&workload, "workload", "", "only this workload, KIND/NAME (deployment/web, statefulset/db, pod/mypod)")
	fs.StringSliceVar(&policyTypes, "policy-types", nil, "ingress, egress or both (comma-separated); default both")
	fs.StringVar(&aggregate, "aggregate-cidr", "", "widen IPv4 and IPv6 ipBlocks to these prefix lengths, V4,V6 (e.g. 24,64); the comment counts the addresses admitted but never observed")
	fs.BoolVar(&opts.NoDNS, "no-dns", false, "leave out the egress rule to kube-dns (UDP and TCP 53)")
	fs.BoolVar(&opts.AllowEmpty, "allow-empty", false, "with no connection of the selection in the window, print a deny-all policy instead of failing")
	fl.Window.Default = defaultAdviseSince
	fl.Window.AddFlags(fs, "7d")
	backend.addFlags(fs)
	kubeFlags.AddFlags(fs)
	completeFromCluster(cmd, kubeFlags)
	return cmd
}

func parseAggregate(s string) (v4, v6 int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(s, ",")
	if v4, err = strconv.Atoi(strings.TrimSpace(a)); err != nil || v4 < 1 || v4 > 32 {
		return 0, 0, fmt.Errorf("--aggregate-cidr %q: want V4,V6 prefix lengths, e.g. 24,64 (IPv4 from 1 to 32)", s)
	}
	v6 = 128
	if ok {
		if v6, err = strconv.Atoi(strings.TrimSpace(b)); err != nil || v6 < 1 || v6 > 128 {
			return 0, 0, fmt.Errorf("--aggregate-cidr %q: want V4,V6 prefix lengths, e.g. 24,64 (IPv6 from 1 to 128)", s)
		}
	}
	return v4, v6, nil
}

// describe is the selection as a command line, for the policies' annotation.
func describe(fl query.Flags, workload string, from, to time.Time) string {
	s := "connaudit advise networkpolicy -n " + fl.Namespace
	if fl.Selector != "" {
		s += " -l " + strconv.Quote(fl.Selector)
	}
	if workload != "" {
		s += " --workload " + workload
	}
	return s + " --from " + from.UTC().Format(time.RFC3339) + " --to " + to.UTC().Format(time.RFC3339)
}

func newAdviseCheckCommand(kubeFlags *genericclioptions.ConfigFlags) *cobra.Command {
	var (
		paths   []string
		fl      = query.Flags{Window: query.Window{Default: defaultAdviseSince}}
		backend = &backendFlags{kube: kubeFlags}
	)
	cmd := &cobra.Command{
		Use:   "check -f POLICY.yaml|DIR|-",
		Short: "Replay the trail against NetworkPolicies and print what they would have denied",
		Long: `Replay every connection of the window from and to the policies' namespaces
against the given NetworkPolicies, with kube-network-policies' evaluator, and
print what they would have denied, grouped by source, destination, port and
outcome. Connections to a Service are replayed to its pods as the API server
lists them now, on the target port. Exits non-zero when a connection that was
established would have been denied.`,
		Example: expand(adviseExamples),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := fl.Parse(query.Now())
			if err != nil {
				return err
			}
			b, err := backend.open()
			if err != nil {
				return err
			}
			req := command.CheckRequest{Paths: paths, Stdin: os.Stdin, Namespace: adviseNamespace(cmd, kubeFlags), From: f.From, To: f.To,
				ClusterNodes: clusterNodes(cmd.Context(), backend, cmd, f.To)}
			return command.Check(cmd.Context(), b, adviseCluster(kubeFlags), req, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringArrayVarP(&paths, "filename", "f", nil, "NetworkPolicy file, directory of them, or - for stdin (repeatable)")
	_ = cmd.MarkFlagRequired("filename")
	fl.Window.AddFlags(cmd.Flags(), "7d")
	backend.addFlags(cmd.Flags())
	kubeFlags.AddFlags(cmd.Flags())
	completeFromCluster(cmd, kubeFlags)
	return cmd
}
