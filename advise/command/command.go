// Package command runs `connaudit advise networkpolicy` and `connaudit
// advise check`: it reads the history from a backend, hands it to the
// advisor or the checker, and writes their answer.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/connaudit/connaudit/advise"
	"github.com/connaudit/connaudit/advise/check"
	"github.com/connaudit/connaudit/advise/history"
	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/internal/termsafe"
	"github.com/connaudit/connaudit/trail"
)

// NetworkPolicyRequest is what `advise networkpolicy` was asked.
type NetworkPolicyRequest struct {
	Selection history.Selection // one namespace
	Options   advise.Options
	// Query describes the selection for the policies' annotations, e.g.
	// "connaudit advise networkpolicy -n shop -l app=web".
	Query string
}

// NetworkPolicy writes the advised policies to stdout and warnings to stderr.
func NetworkPolicy(ctx context.Context, b backend.Backend, r NetworkPolicyRequest, stdout, stderr io.Writer) error {
	h, err := history.Load(ctx, b, r.Selection)
	if err != nil {
		return err
	}
	h.Query = r.Query
	advice, err := advise.Generate(ctx, h, r.Options)
	if errors.Is(err, advise.ErrNoHistory) {
		return fmt.Errorf("%w; widen the window (--since, --from) or the selection, or pass --allow-empty for a deny-all policy", err)
	}
	if err != nil {
		return err
	}
	for _, w := range advice.Warnings {
		fmt.Fprintln(stderr, "connaudit: warning:", w)
	}
	return advise.Render(stdout, advice.Policies)
}

// CheckRequest is what `advise check` was asked.
type CheckRequest struct {
	Paths     []string // files, directories, "-"
	Stdin     io.Reader
	Namespace string // of policies that name none
	From, To  time.Time
	// ClusterNodes are the nodes the cluster has, whose gaps count too.
	ClusterNodes []string
}

// ErrDenied is returned when the policies would have denied connections
// that were established.
var ErrDenied = errors.New("the policies would have denied established connections")

// Check replays the window's connections from and to the policies'
// namespaces, writes what the policies would have denied, and returns
// ErrDenied when any of it had been established.
func Check(ctx context.Context, b backend.Backend, cluster advise.Cluster, r CheckRequest, stdout, stderr io.Writer) error {
	policies, skipped, err := check.Load(r.Paths, r.Stdin, r.Namespace)
	for _, s := range skipped {
		fmt.Fprintln(stderr, "connaudit: skipped", s)
	}
	if err != nil {
		return err
	}
	var namespaces []string
	for _, p := range policies {
		if !slices.Contains(namespaces, p.Namespace) {
			namespaces = append(namespaces, p.Namespace)
		}
	}
	slices.Sort(namespaces)
	h, err := history.Load(ctx, b, history.Selection{From: r.From, To: r.To, Namespaces: namespaces, ClusterNodes: r.ClusterNodes})
	if err != nil {
		return err
	}
	for _, g := range h.Gaps {
		fmt.Fprintln(stderr, "connaudit: warning: the trail has a gap, so the check may be incomplete:", g)
	}
	res, err := check.Check(ctx, policies, sortFlows(h.Flows), cluster)
	if err != nil {
		return err
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, "connaudit: note:", n)
	}
	writeDenials(stdout, res.Denied)
	est := res.DeniedEstablished()
	fmt.Fprintf(stdout, "%d of %d flows from or to namespace %s, %s to %s, would have been denied; %d of them had been established.\n",
		len(res.Denied), res.Flows, strings.Join(namespaces, ", "), formatTime(r.From), formatTime(r.To), est)
	if est > 0 {
		return fmt.Errorf("%w: %d", ErrDenied, est)
	}
	return nil
}

// sortFlows orders flows by count, biggest first, as query --summary does.
func sortFlows(flows []advise.Flow) []advise.Flow {
	slices.SortStableFunc(flows, func(a, b advise.Flow) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		if c := strings.Compare(sourceName(a.Source), sourceName(b.Source)); c != 0 {
			return c
		}
		if c := strings.Compare(destinationName(a.Destination), destinationName(b.Destination)); c != 0 {
			return c
		}
		return a.First.Compare(b.First)
	})
	return flows
}

func writeDenials(w io.Writer, denied []check.Denial) {
	if len(denied) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tPORT\tOUTCOME\tCOUNT\tFIRST\tLAST\tDENIED BY")
	for _, d := range denied {
		f := d.Flow
		by := strings.Join(d.Directions, "+") + " of " + strings.Join(d.Policies, ", ")
		if d.Via != "" {
			by += " (" + d.Via + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", termsafe.String(sourceName(f.Source)), termsafe.String(destinationName(f.Destination)),
			f.Destination.Port, termsafe.String(f.Outcome), f.Count, formatTime(f.First), formatTime(f.Last), termsafe.String(by))
	}
	tw.Flush()
}

func sourceName(s advise.Source) string {
	switch {
	case s.Kind == trail.SourcePod && s.WorkloadKind != "":
		return s.Namespace + "/" + s.WorkloadKind + "/" + s.WorkloadName
	case s.Kind == trail.SourcePod:
		return s.Namespace + "/pod/" + s.Pod
	case s.Kind == trail.SourceHost:
		return "host " + s.Node + " " + s.Address.String()
	}
	return string(s.Kind) + " " + s.Node + " " + s.Address.String()
}

func destinationName(d advise.Destination) string {
	switch d.Kind {
	case trail.PeerPod:
		if d.WorkloadKind != "" {
			return d.Namespace + "/" + d.WorkloadKind + "/" + d.WorkloadName
		}
		return d.Namespace + "/pod/" + d.Name
	case trail.PeerService:
		return d.Namespace + "/service/" + d.Name
	case trail.PeerNode:
		return "node/" + d.Name + " " + d.Address.String()
	}
	return d.Address.String()
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
