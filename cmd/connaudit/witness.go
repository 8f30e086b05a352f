package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/trail/witness"
	"github.com/connaudit/connaudit/verify"
)

// witnessFlags say where verify reads the nodes' witnesses: the Leases of
// the agents' namespace in the kubeconfig's cluster.
type witnessFlags struct {
	namespace string
	lag       time.Duration
}

func (w *witnessFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&w.namespace, "witness-namespace", "connaudit", "namespace of the nodes' witness Leases (connaudit-witness-NODE), read through the kubeconfig's cluster; empty: verify without witnesses (a weaker proof)")
	fs.DurationVar(&w.lag, "witness-lag", verify.DefaultWitnessLag, "how long after a witnessed checkpoint its records may still be on their way to the store; younger ones are not required yet")
}

// read returns the witnesses of nodes (all when empty), or why there are
// none: verify then proves what it can and says that the proof is weaker.
func (w *witnessFlags) read(ctx context.Context, b *backendFlags, nodes []string) *verify.Witnesses {
	ws := &verify.Witnesses{Lag: w.lag}
	if w.namespace == "" {
		ws.Missing = "--witness-namespace is empty"
		return ws
	}
	ctxName, ok, err := b.kubeContext()
	switch {
	case err != nil:
		ws.Missing = err.Error()
		return ws
	case !ok:
		ws.Missing = "no kubeconfig context, so no cluster to read the nodes' witnesses from"
		return ws
	}
	cfg, err := b.kube.ToRESTConfig()
	if err != nil {
		ws.Missing = fmt.Sprintf("load kubeconfig context %q: %v", ctxName, err)
		return ws
	}
	leases, err := k8s.NewLeases(cfg, w.namespace)
	if err != nil {
		ws.Missing = err.Error()
		return ws
	}
	ws.Source = fmt.Sprintf("Leases in namespace %s of kubeconfig context %q", w.namespace, ctxName)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws.List, err = witness.Read(rctx, leases, nodes)
	switch {
	case err != nil && len(ws.List) == 0:
		ws.Missing = fmt.Sprintf("cannot read the witnesses (%s): %v", ws.Source, err)
	case err != nil:
		// Some read: they count; the unreadable are named.
		ws.Missing = ""
		ws.Source += fmt.Sprintf(" (unreadable: %v)", err)
	case len(ws.List) == 0:
		ws.Missing = fmt.Sprintf("no witness Lease (%s*) in namespace %s of kubeconfig context %q", witness.NamePrefix, w.namespace, ctxName)
	}
	return ws
}
