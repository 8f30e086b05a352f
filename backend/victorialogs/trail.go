package victorialogs

import (
	"context"
	"errors"
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

// InstanceTrail is Trail for the records of one instance, read in runs of
// ascending seqs (Config.TrailRunSeqs at a time), with endOfRun called
// after each: every record of a run has a larger seq than those of the
// runs before. A run that finds nothing doubles the next, so that a
// forged seq far beyond the others costs a few reads, not billions. Seqs
// above 2^53, which VictoriaLogs' range filter cannot tell apart, come in
// one last run; records whose seq is no number come after it.
func (b *Backend) InstanceTrail(ctx context.Context, from, to time.Time, nodes []string, instance string, each func(map[string]string) error, endOfRun func()) error {
	q := &query{}
	q.in(backend.FieldNode, nodes)
	q.add(timeRange(from, to))
	q.add(quote(backend.FieldServiceInstanceID) + ":=" + quote(instance))
	base := q.String()
	seq := quote(backend.FieldSeq)
	var lo, hi uint64
	var spanErr error
	found := false
	err := b.rows(ctx, base+" "+seq+":* | stats min("+seq+") as lo, max("+seq+") as hi, count() as n", func(row map[string]string) error {
		if row["n"] == "" || row["n"] == "0" {
			return nil
		}
		found = true
		var err1, err2 error
		lo, err1 = strconv.ParseUint(row["lo"], 10, 64)
		hi, err2 = strconv.ParseUint(row["hi"], 10, 64)
		spanErr = errors.Join(err1, err2)
		return nil
	})
	if err != nil || !found {
		return err
	}
	if spanErr != nil {
		// A seq that is no whole number: read the instance whole; verify
		// names the record.
		if err := b.rows(ctx, base+" "+seq+":*", each); err != nil {
			return err
		}
		endOfRun()
		return nil
	}
	run := func(filter string) (int, error) {
		n := 0
		err := b.rows(ctx, base+" "+filter, func(row map[string]string) error { n++; return each(row) })
		if err == nil {
			endOfRun()
		}
		return n, err
	}
	const exact = 1 << 53
	step := b.runSeqs
	for first := lo; first <= min(hi, exact-1); {
		last := min(hi, exact-1)
		if last-first >= step {
			last = first + step - 1
		}
		n, err := run(seqRange(int64(first), int64(last)))
		if err != nil {
			return err
		}
		if last == min(hi, exact-1) {
			break
		}
		first = last + 1
		if n == 0 {
			step = min(2*step, exact)
		} else {
			step = b.runSeqs
		}
	}
	if hi >= exact {
		if _, err := run(seq + ":>=" + strconv.FormatUint(exact, 10)); err != nil {
			return err
		}
	}
	_, err = run(seq + ":* -" + seq + ":range[-inf, +inf]")
	return err
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
