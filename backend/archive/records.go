package archive

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/connaudit/connaudit/backend"
)

// ErrFollow is what Follow answers: an archive does not grow.
var ErrFollow = errors.New("an archive cannot be followed: it holds the records exported, and no new ones arrive (leave out -f)")

// Records implements backend.Backend: the records that backend.Match
// selects, each once, oldest first; with limit > 0 the newest limit of them.
func (b *Backend) Records(ctx context.Context, f backend.Filter, limit int) (backend.Records, error) {
	var out []backend.Record
	seen := dedup{}
	for _, r := range b.window(f.From, f.To) {
		if backend.Match(f, r) && !seen.seen(r) {
			out = append(out, r)
		}
	}
	cut := false
	if limit > 0 && len(out) > limit {
		out, cut = out[len(out)-limit:], true
	}
	return &backend.SliceRecords{Rows: out, Cut: cut}, ctx.Err()
}

// Follow implements backend.Backend with ErrFollow.
func (b *Backend) Follow(context.Context, backend.Filter) (backend.Records, error) {
	return nil, ErrFollow
}

// Summary implements backend.Backend: the groups of backend.Summarize,
// biggest first, then the earliest.
func (b *Backend) Summary(ctx context.Context, f backend.Filter) ([]backend.SummaryRow, error) {
	rs, err := b.Records(ctx, f, 0)
	if err != nil {
		return nil, err
	}
	groups := map[backend.SummaryRow]*backend.SummaryRow{}
	var out []*backend.SummaryRow
	for rs.Next() {
		r := rs.Record()
		key := backend.Summarize(r)
		g := groups[key]
		if g == nil {
			g = &backend.SummaryRow{Source: key.Source, Peer: key.Peer, Port: key.Port, Outcome: key.Outcome, First: r.Time}
			groups[key] = g
			out = append(out, g)
		}
		g.Count++
		g.Last = r.Time
	}
	rows := make([]backend.SummaryRow, len(out))
	for i, g := range out {
		rows[i] = *g
	}
	slices.SortStableFunc(rows, func(a, b backend.SummaryRow) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), a.First.Compare(b.First))
	})
	return rows, nil
}

// Flows implements backend.FlowAggregator: the records that Match selects,
// grouped by backend.FlowFields and the labels of both ends.
func (b *Backend) Flows(ctx context.Context, f backend.Filter) ([]backend.FlowRow, error) {
	rs, err := b.Records(ctx, f, 0)
	if err != nil {
		return nil, err
	}
	groups := map[string]int{}
	var out []backend.FlowRow
	for rs.Next() {
		r := rs.Record()
		fields := map[string]string{}
		for _, k := range backend.FlowFields {
			if v := r.Get(k); v != "" {
				fields[k] = v
			}
		}
		for k, v := range r.Fields {
			if v != "" && (strings.HasPrefix(k, backend.FieldPodLabelPrefix) || strings.HasPrefix(k, backend.FieldPeerPodLabelPrefix)) {
				fields[k] = v
			}
		}
		keys := make([]string, 0, 2*len(fields))
		for k, v := range fields {
			keys = append(keys, k+"\x00"+v)
		}
		slices.Sort(keys)
		key := join(keys...)
		i, ok := groups[key]
		if !ok {
			i = len(out)
			groups[key] = i
			out = append(out, backend.FlowRow{Record: backend.Record{Time: r.Time, Fields: fields}, First: r.Time})
		}
		out[i].Count++
		out[i].Last = r.Time
	}
	return out, nil
}
