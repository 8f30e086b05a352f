package victorialogs

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/connaudit/connaudit/backend"
)

// Trail calls each with every record of [from, to) that carries a
// connaudit.seq, every field included, as stored; duplicates too, since
// verify keeps the copy that matches the chain, not the first one.
func (b *Backend) Trail(ctx context.Context, from, to time.Time, nodes []string, each func(map[string]string) error) error {
	q := &query{}
	q.in(backend.FieldNode, nodes)
	q.add(timeRange(from, to))
	q.add(quote(backend.FieldSeq) + ":*")
	return b.rows(ctx, q.String(), each)
}

// Instances lists the service.instance.id of every instance with a record
// of [from, to) that carries a connaudit.seq, in name order.
func (b *Backend) Instances(ctx context.Context, from, to time.Time, nodes []string) ([]string, error) {
	q := &query{}
	q.in(backend.FieldNode, nodes)
	q.add(timeRange(from, to))
	q.add(quote(backend.FieldSeq) + ":*")
	var ids []string
	err := b.rows(ctx, q.String()+" | stats by ("+quote(backend.FieldServiceInstanceID)+") count() as n", func(row map[string]string) error {
		if id := row[backend.FieldServiceInstanceID]; id != "" {
			ids = append(ids, id)
		}
		return nil
	})
	slices.Sort(ids)
	return ids, err
}

// InstanceTrail is Trail for the records of one instance.
func (b *Backend) InstanceTrail(ctx context.Context, from, to time.Time, nodes []string, instance string, each func(map[string]string) error) error {
	q := &query{}
	q.in(backend.FieldNode, nodes)
	q.add(timeRange(from, to))
	q.add(quote(backend.FieldServiceInstanceID) + ":=" + quote(instance))
	q.add(quote(backend.FieldSeq) + ":*")
	return b.rows(ctx, q.String(), each)
}

// InstanceRecords calls each with the start record of one instance (start),
// or its records at seq, stored at any time before to.
func (b *Backend) InstanceRecords(ctx context.Context, instance string, start bool, seq uint64, to time.Time, each func(map[string]string) error) error {
	q := &query{}
	q.add(timeRange(time.Unix(0, 0), to))
	q.add(quote(backend.FieldServiceInstanceID) + ":=" + quote(instance))
	if start {
		q.add(quote(backend.FieldEventName) + ":=" + quote(backend.EventAgentStart))
	} else {
		q.add(quote(backend.FieldSeq) + ":=" + quote(strconv.FormatUint(seq, 10)))
	}
	return b.rows(ctx, q.String(), each)
}

var _ backend.TrailReader = (*Backend)(nil)

// Export calls each with every record of [from, to) on the given nodes, of
// every event name, duplicates included, without VictoriaLogs' own stream
// fields (which depend on how the collector ingested them).
func (b *Backend) Export(ctx context.Context, from, to time.Time, nodes []string, each func(map[string]string) error) error {
	q := &query{}
	q.in(backend.FieldNode, nodes)
	q.add(timeRange(from, to))
	return b.rows(ctx, q.String(), func(row map[string]string) error {
		delete(row, "_stream")
		delete(row, "_stream_id")
		return each(row)
	})
}
