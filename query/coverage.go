package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/internal/termsafe"
	"github.com/connaudit/connaudit/trail/coverage"
)

// CoverageRequest is one `connaudit coverage`.
type CoverageRequest struct {
	Filter backend.Filter // From, To and Nodes are used
	Format string         // table or json
	Strict bool
	// ExtraNodes are nodes the cluster has (from its API server), reported
	// even when the trail never names them.
	ExtraNodes []string
	// Zone is where the table and the reports on stderr show times; nil is
	// UTC. JSON is always UTC.
	Zone *time.Location
}

var coverageColumns = []string{"NODE", "INSTANCE", "STARTED", "STOPPED", "LAST SEEN", "RECORDS", "SEQ", "LOSSES", "LOST", "HOLES"}

// Coverage writes, for each node and agent instance of the window, when it
// started and stopped (or was last heard from), how many records it sent,
// its loss records and its unexplained seq holes; then every gap.
func Coverage(ctx context.Context, b backend.Backend, r CoverageRequest, stdout, stderr io.Writer) error {
	if r.Format != "table" && r.Format != "json" {
		return fmt.Errorf("-o %q: coverage writes table or json", r.Format)
	}
	c, err := b.Coverage(ctx, r.Filter.From, r.Filter.To, r.Filter.Nodes)
	if err != nil {
		return fmt.Errorf("coverage: %w", err)
	}
	c.AddNodes(r.Filter.Nodes, r.ExtraNodes)
	gaps := coverage.Gaps(c)
	if r.Format == "json" {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(coverageJSON(c, gaps)); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	} else {
		writeCoverageTable(stdout, c, gaps, zoneOrUTC(r.Zone))
	}
	ReportGaps(stderr, gaps, zoneOrUTC(r.Zone))
	if len(gaps) > 0 && r.Strict {
		return fmt.Errorf("%w: %d in the window (--strict)", ErrGaps, len(gaps))
	}
	return nil
}

func writeCoverageTable(w io.Writer, c *coverage.Coverage, gaps []coverage.Gap, zone *time.Location) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(coverageColumns, "\t"))
	for _, node := range c.Nodes {
		ins := coverage.NodeInstances(c, node)
		if len(ins) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t0\t-\t0\t0\t0\n", termsafe.String(node))
			continue
		}
		for _, in := range ins {
			var lost int64
			for _, l := range in.Losses {
				lost += l.Count
			}
			holes := 0
			for _, g := range gaps {
				if g.Kind == coverage.GapSeqHole && g.Instance == in.ID {
					holes++
				}
			}
			seq := "-"
			if in.Records > 0 {
				seq = strconv.FormatInt(in.MinSeq, 10) + ".." + strconv.FormatInt(in.MaxSeq, 10)
			}
			started := formatTime(in.Started, zone)
			if in.Resumed {
				started += " (resumed)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\n", termsafe.String(node), termsafe.String(in.ID), started, formatTime(in.Stopped, zone),
				formatTime(in.LastSeen, zone), in.Records, seq, len(in.Losses), lost, holes)
		}
	}
	tw.Flush()
	if len(gaps) == 0 {
		fmt.Fprintf(w, "\nComplete: every node was watched from %s to %s, and every record is accounted for.\n", formatTime(c.From, zone), formatTime(c.To, zone))
	} else {
		fmt.Fprintf(w, "\n%d gap(s) from %s to %s:\n", len(gaps), formatTime(c.From, zone), formatTime(c.To, zone))
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tKIND\tFROM\tTO\tCOUNT\tINSTANCE\tREASON")
		for _, g := range gaps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", termsafe.String(g.Node), g.Kind, formatTime(g.From, zone), formatTime(g.To, zone), g.Count,
				termsafe.String(dash(g.Instance)), termsafe.String(g.Reason))
		}
		tw.Flush()
	}
}

type coverageObject struct {
	From      string           `json:"from"`
	To        string           `json:"to"`
	Nodes     []string         `json:"nodes"`
	Instances []instanceObject `json:"instances"`
	Gaps      []gapObject      `json:"gaps"`
}

type instanceObject struct {
	Node      string       `json:"node"`
	ID        string       `json:"instance"`
	Started   string       `json:"started,omitempty"`
	Resumed   bool         `json:"resumed,omitempty"`
	Heartbeat float64      `json:"heartbeat_seconds,omitempty"`
	Stopped   string       `json:"stopped,omitempty"`
	FirstSeen string       `json:"first_seen,omitempty"`
	LastSeen  string       `json:"last_seen,omitempty"`
	Records   int64        `json:"records"`
	MinSeq    int64        `json:"min_seq,omitempty"`
	MaxSeq    int64        `json:"max_seq,omitempty"`
	Losses    []lossObject `json:"losses,omitempty"`
}

type lossObject struct {
	Time     string `json:"time"`
	Count    int64  `json:"count"`
	Bytes    int64  `json:"bytes,omitempty"`
	Reason   string `json:"reason"`
	SeqFirst int64  `json:"seq_first,omitempty"`
	SeqLast  int64  `json:"seq_last,omitempty"`
}

type gapObject struct {
	Kind     string `json:"kind"`
	Node     string `json:"node"`
	Instance string `json:"instance,omitempty"`
	From     string `json:"from"`
	To       string `json:"to"`
	Count    int64  `json:"count"`
	Reason   string `json:"reason"`
}

func jsonTime(t interface{ IsZero() bool }, s string) string {
	if t.IsZero() {
		return ""
	}
	return s
}

func coverageJSON(c *coverage.Coverage, gaps []coverage.Gap) coverageObject {
	o := coverageObject{From: c.From.UTC().Format(fullTime), To: c.To.UTC().Format(fullTime), Nodes: c.Nodes,
		Instances: []instanceObject{}, Gaps: []gapObject{}}
	for _, in := range c.Instances {
		io := instanceObject{Node: in.Node, ID: in.ID, Resumed: in.Resumed, Heartbeat: in.Heartbeat.Seconds(), Records: in.Records, MinSeq: in.MinSeq, MaxSeq: in.MaxSeq,
			Started:   jsonTime(in.Started, in.Started.UTC().Format(fullTime)),
			Stopped:   jsonTime(in.Stopped, in.Stopped.UTC().Format(fullTime)),
			FirstSeen: jsonTime(in.FirstSeen, in.FirstSeen.UTC().Format(fullTime)),
			LastSeen:  jsonTime(in.LastSeen, in.LastSeen.UTC().Format(fullTime))}
		for _, l := range in.Losses {
			io.Losses = append(io.Losses, lossObject{Time: l.Time.UTC().Format(fullTime), Count: l.Count, Bytes: l.Bytes, Reason: l.Reason,
				SeqFirst: l.Seqs.First, SeqLast: l.Seqs.Last})
		}
		o.Instances = append(o.Instances, io)
	}
	for _, g := range gaps {
		o.Gaps = append(o.Gaps, gapObject{Kind: string(g.Kind), Node: g.Node, Instance: g.Instance,
			From: g.From.UTC().Format(fullTime), To: g.To.UTC().Format(fullTime), Count: g.Count, Reason: g.Reason})
	}
	return o
}
