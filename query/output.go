package query

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/internal/termsafe"
	"github.com/connaudit/connaudit/trail"
)

// Formats are the values of -o.
var Formats = []string{"table", "wide", "json", "csv"}

// CheckFormat returns an error naming -o for an unknown format.
func CheckFormat(format string) error {
	if !slices.Contains(Formats, format) {
		return fmt.Errorf("-o %q: unknown output format; want one of %s", format, strings.Join(Formats, ", "))
	}
	return nil
}

// Timestamps: RFC 3339 in UTC with a fixed number of fractional digits, so
// that they sort as text.
const (
	tableTime = "2006-01-02T15:04:05.000000Z07:00"
	fullTime  = "2006-01-02T15:04:05.000000000Z07:00"
)

// host is what the table shows in place of a namespace for a host process.
const host = "<host>"

// recordWriter writes records in one format.
type recordWriter interface {
	write(r backend.Record) error
	// flush ends a batch; records written so far appear.
	flush() error
}

func newRecordWriter(format string, w io.Writer) recordWriter {
	switch format {
	case "json":
		return &jsonWriter{w: bufio.NewWriter(w)}
	case "csv":
		return &csvWriter{w: csv.NewWriter(w)}
	default:
		return &tableWriter{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0), wide: format == "wide"}
	}
}

var tableColumns = []string{"TIME", "NAMESPACE", "POD", "PID", "COMM", "IP", "SADDR", "DADDR", "DPORT", "OUTCOME", "LATENCY"}
var wideColumns = append(slices.Clone(tableColumns), "NODE", "CONTAINER", "WORKLOAD", "PEER")

type tableWriter struct {
	tw     *tabwriter.Writer
	wide   bool
	header bool
}

func (t *tableWriter) write(r backend.Record) error {
	if !t.header {
		t.header = true
		cols := tableColumns
		if t.wide {
			cols = wideColumns
		}
		fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
	}
	_, err := fmt.Fprintln(t.tw, tableLine(row(r, t.wide, tableTime)))
	return err
}

// tableLine joins a table's cells, escaped for the terminal: the trail's
// values are written by the workloads they describe.
func tableLine(cells []string) string {
	for i, c := range cells {
		cells[i] = termsafe.String(c)
	}
	return strings.Join(cells, "\t")
}

func (t *tableWriter) flush() error { return t.tw.Flush() }

// row returns the table columns of r (the wide ones with wide).
func row(r backend.Record, wide bool, timeLayout string) []string {
	ns, pod := r.Get(backend.FieldNamespace), r.Get(backend.FieldPod)
	if isHost(r) {
		ns, pod = host, "-"
	}
	ipv := "4"
	if r.Get(backend.FieldNetType) == "ipv6" {
		ipv = "6"
	}
	out := []string{
		r.Time.UTC().Format(timeLayout),
		dash(ns), dash(pod),
		dash(r.Get(backend.FieldPID)), dash(r.Get(backend.FieldComm)),
		ipv, dash(r.Get(backend.FieldSrcAddr)), dash(r.Get(backend.FieldDstAddr)), dash(r.Get(backend.FieldDstPort)),
		outcome(r), latency(r.Get(backend.FieldDuration)),
	}
	if wide {
		out = append(out, dash(r.Get(backend.FieldNode)), dash(r.Get(backend.FieldContainer)), dash(sourceWorkload(r)), dash(peer(r)))
	}
	return out
}

// isHost reports whether r was made by a process in no pod.
func isHost(r backend.Record) bool {
	if k := r.Get(backend.FieldSourceKind); k != "" {
		return k == string(trail.SourceHost)
	}
	return r.Get(backend.FieldPod) == "" && r.Get(backend.FieldPodUID) == "" && r.Get(backend.FieldContainerID) == ""
}

func outcome(r backend.Record) string {
	o := r.Get(backend.FieldOutcome)
	if e := r.Get(backend.FieldErrType); e != "" && o != string(trail.OutcomeEstablished) && !strings.EqualFold(e, o) {
		return o + " (" + e + ")"
	}
	return dash(o)
}

// latency formats connaudit.connect.duration (seconds) in milliseconds.
func latency(seconds string) string {
	s, err := strconv.ParseFloat(seconds, 64)
	if err != nil {
		return "-"
	}
	return strconv.FormatFloat(s*1000, 'f', 2, 64) + "ms"
}

// sourceWorkload names the record's owner the way kubectl does, kind/name.
func sourceWorkload(r backend.Record) string {
	if w, ok := r.SourceWorkload(); ok {
		return w.String()
	}
	return ""
}

// peer names the destination: its kind and namespace/name.
func peer(r backend.Record) string {
	kind := r.Get(backend.FieldPeerKind)
	name := r.PeerName()
	if name == "" {
		return kind
	}
	if ns := r.Get(backend.FieldPeerNamespace); ns != "" {
		name = ns + "/" + name
	}
	if w := r.Get(backend.FieldPeerWorkloadName); w != "" && kind == string(trail.PeerPod) {
		name += " (" + r.Get(backend.FieldPeerWorkloadKind) + "/" + w + ")"
	}
	return kind + " " + name
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jsonWriter writes one object per line: time, body and every field.
type jsonWriter struct{ w *bufio.Writer }

func (j *jsonWriter) write(r backend.Record) error {
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	j.w.WriteString(`{"time":`)
	writeJSONString(j.w, r.Time.UTC().Format(fullTime))
	j.w.WriteString(`,"body":`)
	writeJSONString(j.w, r.Body)
	for _, k := range keys {
		j.w.WriteByte(',')
		writeJSONString(j.w, k)
		j.w.WriteByte(':')
		writeJSONString(j.w, r.Fields[k])
	}
	_, err := j.w.WriteString("}\n")
	return err
}

func (j *jsonWriter) flush() error { return j.w.Flush() }

func writeJSONString(w *bufio.Writer, s string) {
	b, _ := json.Marshal(s)
	w.Write(b)
}

type csvWriter struct {
	w      *csv.Writer
	header bool
}

func (c *csvWriter) write(r backend.Record) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(csvHeader()); err != nil {
			return err
		}
	}
	return c.w.Write(row(r, true, fullTime))
}

func (c *csvWriter) flush() error {
	if !c.header {
		c.header = true
		c.w.Write(csvHeader())
	}
	c.w.Flush()
	return c.w.Error()
}

func csvHeader() []string {
	h := make([]string, len(wideColumns))
	for i, c := range wideColumns {
		h[i] = strings.ToLower(c)
	}
	return h
}

// formatTime is how summaries and reports show a time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(tableTime)
}
