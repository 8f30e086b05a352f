package query

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/connaudit/connaudit/backend"
)

var summaryColumns = []string{"COUNT", "SOURCE", "DESTINATION", "PORT", "OUTCOME", "FIRST", "LAST"}

func summary(ctx context.Context, b backend.Backend, r Request, stdout, stderr io.Writer) error {
	rows, err := b.Summary(ctx, r.Filter)
	if err != nil {
		return err
	}
	switch r.Format {
	case "json":
		w := bufio.NewWriter(stdout)
		for _, row := range rows {
			b, _ := json.Marshal(summaryJSON(row))
			w.Write(b)
			w.WriteByte('\n')
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	case "csv":
		w := csv.NewWriter(stdout)
		h := make([]string, len(summaryColumns))
		for i, c := range summaryColumns {
			h[i] = strings.ToLower(c)
		}
		if !r.NoHeaders {
			w.Write(h)
		}
		for _, row := range rows {
			w.Write(summaryRow(row, fullTime, time.UTC))
		}
		w.Flush()
		if err := w.Error(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	default:
		if len(rows) == 0 {
			noneFound(stderr, r.Filter, zoneOrUTC(r.Zone))
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		if !r.NoHeaders {
			fmt.Fprintln(tw, strings.Join(summaryColumns, "\t"))
		}
		for _, row := range rows {
			fmt.Fprintln(tw, tableLine(summaryRow(row, tableTime, zoneOrUTC(r.Zone))))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	return nil
}

// SourceName is how a summary names a source: namespace/kind/name, or
// host/node/comm for a host process.
func SourceName(s backend.Source) string {
	if s.Host {
		return "host/" + dash(s.Node) + "/" + dash(s.Workload.Name)
	}
	return dash(s.Namespace) + "/" + s.Workload.String()
}

// PeerName is how a summary names a destination.
func PeerName(p backend.Peer) string {
	switch {
	case p.Address != "":
		return dash(p.Kind) + " " + p.Address
	case p.Namespace != "":
		return p.Namespace + "/" + p.Name
	default:
		return p.Name
	}
}

func summaryRow(r backend.SummaryRow, layout string, zone *time.Location) []string {
	return []string{
		strconv.FormatInt(r.Count, 10), SourceName(r.Source), PeerName(r.Peer), strconv.Itoa(r.Port), dash(r.Outcome),
		r.First.In(zone).Format(layout), r.Last.In(zone).Format(layout),
	}
}

type summaryObject struct {
	Count  int64 `json:"count"`
	Source struct {
		Namespace string `json:"namespace,omitempty"`
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		Host      bool   `json:"host,omitempty"`
		Node      string `json:"node,omitempty"`
	} `json:"source"`
	Destination struct {
		Kind      string `json:"kind"`
		Namespace string `json:"namespace,omitempty"`
		Name      string `json:"name,omitempty"`
		Address   string `json:"address,omitempty"`
	} `json:"destination"`
	Port    int    `json:"port"`
	Outcome string `json:"outcome"`
	First   string `json:"first"`
	Last    string `json:"last"`
}

func summaryJSON(r backend.SummaryRow) summaryObject {
	var o summaryObject
	o.Count = r.Count
	o.Source.Namespace, o.Source.Kind, o.Source.Name = r.Source.Namespace, r.Source.Workload.Kind, r.Source.Workload.Name
	o.Source.Host, o.Source.Node = r.Source.Host, r.Source.Node
	o.Destination.Kind, o.Destination.Namespace, o.Destination.Name, o.Destination.Address = r.Peer.Kind, r.Peer.Namespace, r.Peer.Name, r.Peer.Address
	o.Port, o.Outcome = r.Port, r.Outcome
	o.First, o.Last = r.First.UTC().Format(fullTime), r.Last.UTC().Format(fullTime)
	return o
}
