package main

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/connaudit/connaudit/query"
	"github.com/connaudit/connaudit/trail/checkpoint"
	"github.com/connaudit/connaudit/verify"
)

func newVerifyCommand(kube *genericclioptions.ConfigFlags) *cobra.Command {
	var (
		window  = query.Window{}
		req     verify.Request
		keyFile string
		backend = &backendFlags{kube: kube}
		wflags  witnessFlags
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove that the trail of the window was not changed, or name what was",
		Long: `For each node and agent instance in the window: every connaudit.seq is present
or named by a loss record, every record matches its instance's hash chain,
every checkpoint's signature verifies, no instance between two that name each
other is missing, and an instance that did not stop wrote its heartbeat up to
the window's end. The nodes' witnesses (the Leases connaudit-witness-NODE that
only each node's agent may write, read through the kubeconfig's cluster) add:
each witnessed instance's checkpoints are signed with the key its witness
holds, and the checkpoint the witness holds (the latest, or an earlier
instance's final one) is in the trail. Without a cluster or witness, verify
says so and proves what the trail alone shows. Exits 3 with the list of findings (node, instance, seq range,
and what is wrong: deleted, altered, inserted, reordered, unsigned, truncated)
when the trail does not verify.`,
		Example: expand(`  {{.}} verify --since 24h
  {{.}} verify --node worker-1 --from 2026-11-24T00:00:00Z --to 2026-11-25T00:00:00Z --public-key agents.pub -o json`),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if req.From, req.To, err = window.Parse(query.Now()); err != nil {
				return err
			}
			if keyFile != "" {
				k, err := checkpoint.LoadPublicKey(keyFile)
				if err != nil {
					return err
				}
				req.TrustedKey = checkpoint.EncodePublicKey(k)
			}
			b, err := backend.openTrail()
			if err != nil {
				return err
			}
			req.Witnesses = wflags.read(cmd.Context(), backend, req.Nodes)
			return verify.Run(cmd.Context(), b, req, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&req.Nodes, "node", nil, "node name (repeatable); default every node")
	window.AddFlags(fs, "1h")
	fs.StringVarP(&req.Format, "output", "o", "table", "output format: table or json")
	fs.StringVar(&keyFile, "public-key", "", "the agents' Ed25519 public key (PEM, or base64): checkpoints must be signed with it (CONNAUDIT_SIGNING_KEY_FILE's public half)")
	backend.addFlags(fs)
	wflags.addFlags(fs)
	kube.AddFlags(fs)
	completeValues(cmd, "output", []string{"table", "json"})
	return cmd
}
