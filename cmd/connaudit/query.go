package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	backendpkg "github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/query"
)

const queryExamples = `  # What did pod mypod (in the current namespace) connect to in the last hour?
  {{.}} query mypod

  # ... and the pods of Deployment web, from yesterday noon to 14:00 UTC
  {{.}} query deploy/web --since 2026-12-06T12:00:00Z --until 2026-12-06T14:00:00Z

  # Who connected to 1.0.0.1 in the last 7 days, in every namespace?
  {{.}} query -A --dst 1.0.0.1 --since 7d

  # Failed connects of the web Deployment in shop to port 5432, as JSON lines
  {{.}} query -n shop --workload deployment/web --dport 5432 --outcome failed -o json

  # Every destination of namespace shop since the incident, grouped
  {{.}} query -n shop --summary --from 2026-11-24T14:00:00Z

  # Connects of pods labelled tier=frontend and not app=legacy, as they happen
  {{.}} query -A -l 'tier=frontend,app notin (legacy)' -f`

func newQueryCommand(kube *genericclioptions.ConfigFlags) *cobra.Command {
	var (
		fl      query.Flags
		req     query.Request
		backend = &backendFlags{kube: kube}
	)
	cmd := &cobra.Command{
		Use:   "query [POD | KIND/NAME ...]",
		Short: "List the connect attempts of the trail that match the filters",
		Long: `List the TCP connect attempts of the audit trail that match the filters, oldest
first. Source filters select the connecting side, destination filters the
peer; all filters must match, repeated values of one filter are alternatives.
Without -n or -A, --pod, --workload and --container look in the current
namespace of the kubeconfig context; other queries span all namespaces and
host processes.

Every answer is checked for gaps in the window asked for: a connaudit.loss
record, a connaudit.seq hole, or a node no agent watched is reported on
stderr; --strict makes such a gap exit with status 3.`,
		Example: expand(queryExamples),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			addSources(&fl, args)
			if err := resolveNamespace(cmd, kube, &fl); err != nil {
				return err
			}
			if req.Filter, err = fl.Parse(query.Now()); err != nil {
				return err
			}
			if err := query.CheckFormat(req.Format); err != nil {
				return err
			}
			if req.Limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (no limit) or more", req.Limit)
			}
			b, err := backend.open()
			if err != nil {
				return err
			}
			if len(fl.Nodes) == 0 && !req.Follow {
				req.ExtraNodes = clusterNodes(cmd.Context(), backend, cmd, req.Filter.To)
			}
			return query.Run(cmd.Context(), b, req, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.SetNormalizeFunc(aliases(map[string]string{"podname": "pod"}))
	fs.BoolVarP(&fl.AllNamespaces, "all-namespaces", "A", false, "connects from every namespace (and host processes)")
	fs.StringArrayVar(&fl.Pods, "pod", nil, "source pod name (repeatable); alias --podname")
	fs.StringVarP(&fl.Selector, "selector", "l", "", "source pod label selector, as kubectl's: =, ==, !=, in, notin, key, !key")
	fs.StringArrayVar(&fl.Workloads, "workload", nil, "source workload KIND/NAME, e.g. deployment/web, statefulset/db (repeatable)")
	fs.StringArrayVarP(&fl.Containers, "container", "c", nil, "source container name (repeatable)")
	fs.StringArrayVar(&fl.Nodes, "node", nil, "node name (repeatable)")
	fs.BoolVar(&fl.Host, "host", false, "host processes only (in no pod)")
	fs.StringArrayVar(&fl.Comms, "comm", nil, "process executable name, as the kernel's comm (repeatable)")
	fs.IntSliceVar(&fl.PIDs, "pid", nil, "process id (repeatable, comma-separated)")
	fs.IntSliceVar(&fl.UIDs, "uid", nil, "process user id (repeatable, comma-separated)")
	fs.StringSliceVar(&fl.Dst, "dst", nil, "destination IP or CIDR, IPv4 or IPv6 (repeatable, comma-separated)")
	fs.IntSliceVar(&fl.DstPorts, "dport", nil, "destination port (repeatable, comma-separated)")
	fs.StringSliceVar(&fl.DstNames, "dst-name", nil, "name the application asked DNS for (server.address): api.example.com, or *.example.com for any name below it (repeatable, comma-separated)")
	fs.StringArrayVar(&fl.PeerNamespaces, "peer-namespace", nil, "namespace of the destination pod or Service (repeatable)")
	fs.StringArrayVar(&fl.PeerPods, "peer-pod", nil, "destination pod name (repeatable)")
	fs.StringArrayVar(&fl.PeerServices, "peer-service", nil, "destination Service name (repeatable)")
	fs.StringArrayVar(&fl.PeerWorkloads, "peer-workload", nil, "destination pod's workload KIND/NAME (repeatable)")
	fs.StringSliceVar(&fl.PeerKinds, "peer-kind", nil, "destination kind: pod, service, node, loopback, external, unknown (repeatable)")
	fs.StringSliceVar(&fl.Outcomes, "outcome", nil, "established, failed (all but established), refused, timeout, unreachable, reset, aborted, error (repeatable)")
	fl.Window.AddFlags(fs, "1h")
	fs.IntVar(&req.Limit, "limit", 1000, "at most this many connects, the newest (shown oldest first; 0: no limit); stderr says when older ones were left out")
	fs.StringVarP(&req.Format, "output", "o", "table", "output format: table, wide, json (one object per line), csv, jsonpath=TEMPLATE or custom-columns=SPEC (as kubectl's, over each record; escape the dots of field names: {.k8s\\.pod\\.name})")
	fs.BoolVar(&req.NoHeaders, "no-headers", false, "leave out the header row (table, wide, csv, custom-columns)")
	fs.BoolVar(&req.Summary, "summary", false, "group by source workload, destination, port and outcome, with count, first and last seen")
	fs.BoolVarP(&req.Follow, "follow", "f", false, "stream new connects as they arrive (Ctrl-C ends)")
	fs.BoolVar(&req.Strict, "strict", false, "exit with status 3 when the trail has a gap in the window")
	addLocalTimeFlag(fs, &req.Zone)
	backend.addFlags(fs)
	kube.AddFlags(fs)
	completeFromCluster(cmd, kube)
	cmd.ValidArgsFunction = completer{kube: kube}.source
	cmd.MarkFlagsMutuallyExclusive("summary", "follow")
	completeValues(cmd, "output", query.Formats)
	completeValues(cmd, "outcome", append([]string{backendpkg.OutcomeFailed}, backendpkg.Outcomes...))
	completeValues(cmd, "peer-kind", backendpkg.PeerKinds)
	return cmd
}

// addSources adds query's arguments, as kubectl logs takes them: a pod name,
// or KIND/NAME of a workload (deploy/web, sts/db, pod/mypod).
func addSources(fl *query.Flags, args []string) {
	for _, a := range args {
		if strings.Contains(a, "/") {
			fl.Workloads = append(fl.Workloads, a)
		} else {
			fl.Pods = append(fl.Pods, a)
		}
	}
}

// resolveNamespace applies kubectl's namespace rules: -n wins, -A means all,
// and a namespaced name (pod, workload, container) without either is looked
// for in the kubeconfig context's namespace.
func resolveNamespace(cmd *cobra.Command, kube *genericclioptions.ConfigFlags, fl *query.Flags) error {
	explicit := cmd.Flags().Changed("namespace")
	if fl.AllNamespaces {
		if explicit {
			return fmt.Errorf("-n and -A: give one of them")
		}
		return nil
	}
	if explicit {
		fl.Namespace = *kube.Namespace
		return nil
	}
	if len(fl.Pods) == 0 && len(fl.Workloads) == 0 && len(fl.Containers) == 0 {
		return nil
	}
	ns, _, err := kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		ns = "default"
	}
	fl.Namespace = ns
	return nil
}

// completeValues makes shell completion offer values for a flag.
func completeValues(cmd *cobra.Command, flag string, values []string) {
	_ = cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}
