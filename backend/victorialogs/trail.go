package victorialogs

import (
	"context"
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
