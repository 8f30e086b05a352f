// Package archive is the in-memory reference backend.Backend: it reads an
// exported trail (`connaudit export`, JSON lines) and answers every question
// by applying backend.Match to each record, so that an auditor can run
// query, coverage, advise and verify offline, and so that the conformance
// suite (backend/backendtest) has an answer to hold other stores to.
//
// A line is one record: a JSON object whose keys are the field names
// VictoriaLogs stores (README.md, "Record schema": event_name, the resource
// and record attributes by their OTLP names), with the timestamp under
// "_time" and the body under "_msg" (as `connaudit export` writes them), or
// under "time" and "body" (as `connaudit query -o json` writes them).
// Values are text, or JSON numbers and booleans, kept as their text.
//
// Duplicates (the same service.instance.id and connaudit.seq) are kept as
// read, and removed in every answer, as the VictoriaLogs backend does.
package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail"
)

// Backend answers from the records of an archive, held in memory.
type Backend struct {
	recs []backend.Record // by time; equal times in the order read
}

var (
	_ backend.Backend        = (*Backend)(nil)
	_ backend.FlowAggregator = (*Backend)(nil)
	_ backend.TrailReader    = (*Backend)(nil)
)

// Open reads the archive files. A file that cannot be read, or a line that
// is not a record, is an error that names the file and the line.
func Open(paths ...string) (*Backend, error) {
	if len(paths) == 0 {
		return nil, errors.New("archive: no file given")
	}
	b := &Backend{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		err = b.read(p, f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	b.sort()
	return b, nil
}

// New returns the backend of records already in memory (their Fields are
// kept, not copied).
func New(recs []backend.Record) *Backend {
	b := &Backend{recs: slices.Clone(recs)}
	b.sort()
	return b
}

// Read returns the backend of one archive read from r; name is what errors
// call it.
func Read(name string, r io.Reader) (*Backend, error) {
	b := &Backend{}
	if err := b.read(name, r); err != nil {
		return nil, err
	}
	b.sort()
	return b, nil
}

func (b *Backend) sort() {
	slices.SortStableFunc(b.recs, func(x, y backend.Record) int { return x.Time.Compare(y.Time) })
}

// maxLine bounds one record's line: VictoriaLogs keeps at most 1,000 fields
// of up to 4 KiB each (README.md).
const maxLine = 64 << 20

func (b *Backend) read(name string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		rec, err := parseLine(text)
		if err != nil {
			return fmt.Errorf("archive %s, line %d: %w", name, line, err)
		}
		b.recs = append(b.recs, rec)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("archive %s, after line %d: %w", name, line, err)
	}
	return nil
}

// Time and body keys, as export (VictoriaLogs) and query -o json name them.
const (
	keyTime      = "_time"
	keyMsg       = "_msg"
	keyQueryTime = "time"
	keyQueryBody = "body"
)

func parseLine(text []byte) (backend.Record, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return backend.Record{}, fmt.Errorf("not a JSON object: %w", err)
	}
	if dec.More() {
		return backend.Record{}, errors.New("more than one JSON value")
	}
	if obj == nil {
		return backend.Record{}, errors.New("not a JSON object: null")
	}
	fields := make(map[string]string, len(obj))
	for k, v := range obj {
		switch x := v.(type) {
		case string:
			fields[k] = x
		case json.Number:
			fields[k] = x.String()
		case bool:
			fields[k] = fmt.Sprint(x)
		case nil:
		default:
			return backend.Record{}, fmt.Errorf("field %q: want text, a number or a boolean, not %T", k, v)
		}
	}
	r := backend.Record{Fields: fields}
	ts, timeKey, bodyKey := fields[keyTime], keyTime, keyMsg
	if ts == "" {
		ts, timeKey, bodyKey = fields[keyQueryTime], keyQueryTime, keyQueryBody
	}
	if ts == "" {
		return r, errors.New(`no "_time" (or "time") field`)
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return r, fmt.Errorf("field %q: %w", timeKey, err)
	}
	r.Time, r.Body = t, fields[bodyKey]
	delete(fields, timeKey)
	delete(fields, bodyKey)
	for _, k := range []string{"_stream", "_stream_id"} {
		delete(fields, k)
	}
	if fields[backend.FieldEventName] == "" {
		return r, fmt.Errorf("no %q field: every record of the trail names its event", backend.FieldEventName)
	}
	return r, nil
}

// Row is r as VictoriaLogs answers it and export writes it: every field,
// the timestamp as "_time" (RFC 3339, nanoseconds) and the body as "_msg".
func Row(r backend.Record) map[string]string {
	row := make(map[string]string, len(r.Fields)+2)
	for k, v := range r.Fields {
		if v != "" {
			row[k] = v
		}
	}
	row[keyTime] = r.Time.UTC().Format(time.RFC3339Nano)
	if r.Body != "" {
		row[keyMsg] = r.Body
	}
	return row
}

// Len is how many records the archive holds, duplicates included.
func (b *Backend) Len() int { return len(b.recs) }

// window returns the records of [from, to), by time.
// A zero from or to does not bound it.
func (b *Backend) window(from, to time.Time) []backend.Record {
	byTime := func(r backend.Record, t time.Time) int { return r.Time.Compare(t) }
	lo, hi := 0, len(b.recs)
	if !from.IsZero() {
		lo, _ = slices.BinarySearchFunc(b.recs, from, byTime)
	}
	if !to.IsZero() {
		hi, _ = slices.BinarySearchFunc(b.recs, to, byTime)
	}
	if hi < lo {
		return nil
	}
	return b.recs[lo:hi]
}

// inNodes reports whether r is of one of nodes (all when empty).
func inNodes(r backend.Record, nodes []string) bool {
	return len(nodes) == 0 || slices.Contains(nodes, r.Get(backend.FieldNode))
}

// dedup remembers the keys of records seen.
type dedup map[trail.RecordKey]struct{}

// seen reports whether a record with r's key was seen, and remembers it.
func (d dedup) seen(r backend.Record) bool {
	k, ok := r.Key()
	if !ok {
		return false
	}
	if _, dup := d[k]; dup {
		return true
	}
	d[k] = struct{}{}
	return false
}

// join is a canonical text of a list of values, for map keys.
func join(vs ...string) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "%d:%s;", len(v), v)
	}
	return b.String()
}

// Write writes every record that src holds in [from, to) on the given nodes
// (all when empty), of every event name and duplicates included, to w as
// the JSON lines that Open reads, and returns how many it wrote.
func Write(ctx context.Context, w io.Writer, src backend.TrailReader, from, to time.Time, nodes []string) (int, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw) // keys sorted: the same record, the same line
	enc.SetEscapeHTML(false)
	n := 0
	err := src.Export(ctx, from, to, nodes, func(row map[string]string) error {
		if err := enc.Encode(row); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}
