package victorialogs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail"
)

// dupSlack is how many rows beyond the limit are asked for, so that
// duplicates (which count against VictoriaLogs' limit) rarely make a result
// look cut.
const dupSlack = 64

// followMemory is how many recent (instance, seq) keys Follow remembers to
// drop duplicates.
const followMemory = 1 << 16

// Records implements backend.Backend.
func (b *Backend) Records(ctx context.Context, f backend.Filter, limit int) (backend.Records, error) {
	logsql := connectQuery(f) + " " + timeRange(f.From, f.To) + " | sort by (_time)"
	if limit <= 0 {
		body, err := b.get(ctx, "/select/logsql/query", url.Values{"query": {logsql}})
		if err != nil {
			return nil, err
		}
		return &records{body: body, dec: newLineDecoder(body), sel: f.Selector, dedup: &timeRunDedup{}}, nil
	}
	// The newest limit records, as kubectl logs --tail keeps them: asked for
	// newest first, then handed out oldest first.
	serverLimit := limit + 1 + dupSlack
	logsql += " desc limit " + strconv.Itoa(serverLimit)
	body, err := b.get(ctx, "/select/logsql/query", url.Values{"query": {logsql}})
	if err != nil {
		return nil, err
	}
	newest := &records{body: body, dec: newLineDecoder(body), sel: f.Selector, limit: limit, serverLimit: serverLimit,
		dedup: &timeRunDedup{}}
	defer newest.Close()
	var rs []backend.Record
	for newest.Next() {
		rs = append(rs, newest.Record())
	}
	if err := newest.Err(); err != nil {
		return nil, err
	}
	slices.Reverse(rs)
	return &backend.SliceRecords{Rows: rs, Cut: newest.Truncated()}, nil
}

// Follow implements backend.Backend.
func (b *Backend) Follow(ctx context.Context, f backend.Filter) (backend.Records, error) {
	body, err := b.get(ctx, "/select/logsql/tail", url.Values{"query": {connectQuery(f)}})
	if err != nil {
		return nil, err
	}
	return &records{body: body, dec: newLineDecoder(body), sel: f.Selector, dedup: newRecentDedup(followMemory)}, nil
}

type dedup interface {
	// seen reports whether the record was yielded before, and remembers it.
	seen(r backend.Record) bool
}

// records streams rows into Records. Rows come sorted by time; the selector
// is applied again here for what the query could not say (gt, lt).
type records struct {
	body        io.ReadCloser
	dec         *lineDecoder
	sel         labels.Selector
	limit       int
	serverLimit int
	dedup       dedup

	cur       backend.Record
	yielded   int
	rowsRead  int
	err       error
	done      bool
	truncated bool
}

func (rs *records) Next() bool {
	if rs.done {
		return false
	}
	for {
		row, err := rs.dec.next()
		if err != nil {
			rs.done = true
			if !errors.Is(err, io.EOF) {
				rs.err = err
			} else if rs.serverLimit > 0 && rs.rowsRead >= rs.serverLimit {
				rs.truncated = true // duplicates ate the slack: more may match
			}
			return false
		}
		rs.rowsRead++
		r, err := toRecord(row)
		if err != nil {
			rs.done, rs.err = true, err
			return false
		}
		if rs.sel != nil && !rs.sel.Empty() && !rs.sel.Matches(r.Labels()) {
			continue
		}
		if rs.dedup.seen(r) {
			continue
		}
		if rs.limit > 0 && rs.yielded == rs.limit {
			rs.done, rs.truncated = true, true
			return false
		}
		rs.yielded++
		rs.cur = r
		return true
	}
}

func (rs *records) Record() backend.Record { return rs.cur }
func (rs *records) Err() error             { return rs.err }
func (rs *records) Truncated() bool        { return rs.truncated }
func (rs *records) Close() error           { return rs.body.Close() }

// toRecord turns a row into a Record, leaving out VictoriaLogs' own fields.
func toRecord(row map[string]string) (backend.Record, error) {
	t, err := time.Parse(time.RFC3339Nano, row["_time"])
	if err != nil {
		return backend.Record{}, fmt.Errorf("VictoriaLogs row with a bad _time %q: %w", row["_time"], err)
	}
	r := backend.Record{Time: t, Body: row["_msg"], Fields: row}
	delete(row, "_time")
	delete(row, "_msg")
	delete(row, "_stream")
	delete(row, "_stream_id")
	return r, nil
}

// timeRunDedup drops duplicates from a time-sorted stream: a replayed record
// keeps its timestamp, so its copies are within one run of equal times, and
// only that run's keys are kept.
type timeRunDedup struct {
	at   time.Time
	keys map[trail.RecordKey]struct{}
}

func (d *timeRunDedup) seen(r backend.Record) bool {
	if !r.Time.Equal(d.at) || d.keys == nil {
		d.at = r.Time
		d.keys = map[trail.RecordKey]struct{}{}
	}
	k, ok := r.Key()
	if !ok {
		return false
	}
	if _, ok := d.keys[k]; ok {
		return true
	}
	d.keys[k] = struct{}{}
	return false
}

// recentDedup remembers the last n keys, for a live stream in arrival order.
type recentDedup struct {
	keys map[trail.RecordKey]struct{}
	ring []trail.RecordKey
	next int
}

func newRecentDedup(n int) *recentDedup {
	return &recentDedup{keys: make(map[trail.RecordKey]struct{}, n), ring: make([]trail.RecordKey, n)}
}

func (d *recentDedup) seen(r backend.Record) bool {
	k, ok := r.Key()
	if !ok {
		return false
	}
	if _, ok := d.keys[k]; ok {
		return true
	}
	delete(d.keys, d.ring[d.next])
	d.ring[d.next] = k
	d.next = (d.next + 1) % len(d.ring)
	d.keys[k] = struct{}{}
	return false
}
