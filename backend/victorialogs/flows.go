package victorialogs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/connaudit/connaudit/backend"
)

// Computed fields of the flows query: the labels of each end packed into one
// JSON field, so that stats can group by label sets of any keys.
const (
	flowLabels     = "connaudit_flow_labels"
	flowPeerLabels = "connaudit_flow_peer_labels"
	flowCount      = "connaudit_flow_count"
	flowFirst      = "connaudit_flow_first"
	flowLast       = "connaudit_flow_last"
)

var _ backend.FlowAggregator = (*Backend)(nil)

func flowsQuery(f backend.Filter) string {
	// The label prefixes are constants of the record schema, written without
	// quotes because pack_json takes a prefix as a bare name ending in *.
	q := connectQuery(f) + " " + timeRange(f.From, f.To) +
		" | pack_json fields (" + backend.FieldPodLabelPrefix + "*) as " + quote(flowLabels) +
		" | pack_json fields (" + backend.FieldPeerPodLabelPrefix + "*) as " + quote(flowPeerLabels) +
		" | stats by (" + quoteAll(append(append([]string{}, backend.FlowFields...), flowLabels, flowPeerLabels)) + ")" +
		" count_uniq(" + quote(backend.FieldServiceInstanceID) + ", " + quote(backend.FieldSeq) + ") as " + flowCount +
		", min(_time) as " + flowFirst + ", max(_time) as " + flowLast
	return q
}

// Flows implements backend.FlowAggregator: the aggregation runs in
// VictoriaLogs, so the answer has one row per group, not per record.
func (b *Backend) Flows(ctx context.Context, f backend.Filter) ([]backend.FlowRow, error) {
	if err := serverSideSelector(f); err != nil {
		return nil, err
	}
	var out []backend.FlowRow
	err := b.rows(ctx, flowsQuery(f), func(row map[string]string) error {
		r, err := flowRow(row)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("aggregate flows: %w", err)
	}
	return out, nil
}

func flowRow(row map[string]string) (backend.FlowRow, error) {
	var r backend.FlowRow
	var err error
	if r.Count, err = strconv.ParseInt(row[flowCount], 10, 64); err != nil {
		return r, fmt.Errorf("flow row with a bad count: %v", row)
	}
	if r.First, err = time.Parse(time.RFC3339Nano, row[flowFirst]); err != nil {
		return r, fmt.Errorf("flow row with a bad first time: %v", row)
	}
	if r.Last, err = time.Parse(time.RFC3339Nano, row[flowLast]); err != nil {
		return r, fmt.Errorf("flow row with a bad last time: %v", row)
	}
	r.Time = r.First
	r.Fields = map[string]string{}
	for _, k := range backend.FlowFields {
		if v := row[k]; v != "" {
			r.Fields[k] = v
		}
	}
	for _, packed := range []string{flowLabels, flowPeerLabels} {
		if row[packed] == "" {
			continue
		}
		var labels map[string]string
		if err := json.Unmarshal([]byte(row[packed]), &labels); err != nil {
			return r, fmt.Errorf("flow row with bad labels %q: %w", row[packed], err)
		}
		for k, v := range labels {
			r.Fields[k] = v
		}
	}
	return r, nil
}
