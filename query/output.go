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

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/util/jsonpath"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/internal/termsafe"
	"github.com/connaudit/connaudit/trail"
)

// Formats are the values of -o, besides kubectl's jsonpath=TEMPLATE and
// custom-columns=SPEC.
var Formats = []string{"table", "wide", "json", "csv"}

// Prefixes of the -o values that take kubectl's printers.
const (
	jsonPathPrefix      = "jsonpath="
	customColumnsPrefix = "custom-columns="
)

// CheckFormat returns an error naming -o for an unknown format or a
// template that does not parse.
func CheckFormat(format string) error {
	if slices.Contains(Formats, format) {
		return nil
	}
	if isPrinterFormat(format) {
		_, err := newPrinter(format, false)
		return err
	}
	return fmt.Errorf("-o %q: unknown output format; want one of %s, jsonpath=TEMPLATE or custom-columns=SPEC",
		format, strings.Join(Formats, ", "))
}

func isPrinterFormat(format string) bool {
	return strings.HasPrefix(format, jsonPathPrefix) || strings.HasPrefix(format, customColumnsPrefix)
}

// newPrinter makes a printer for -o jsonpath=... (cli-runtime's) or
// custom-columns=... (kubectl's format: HEADER:.path,... with missing values
// shown as <none>).
func newPrinter(format string, noHeaders bool) (printers.ResourcePrinter, error) {
	if tmpl, ok := strings.CutPrefix(format, jsonPathPrefix); ok {
		p, err := printers.NewJSONPathPrinter(tmpl)
		if err != nil {
			return nil, fmt.Errorf("-o jsonpath: %w", err)
		}
		p.AllowMissingKeys(true)
		return p, nil
	}
	spec, _ := strings.CutPrefix(format, customColumnsPrefix)
	return newColumnsPrinter(spec, noHeaders)
}

// columnsPrinter prints one row per record, its cells found by jsonpath.
type columnsPrinter struct {
	headers   []string
	paths     []*jsonpath.JSONPath
	noHeaders bool
	tw        *tabwriter.Writer
}

func newColumnsPrinter(spec string, noHeaders bool) (*columnsPrinter, error) {
	p := &columnsPrinter{noHeaders: noHeaders}
	for _, col := range strings.Split(spec, ",") {
		header, path, ok := strings.Cut(col, ":")
		if !ok || header == "" || path == "" {
			return nil, fmt.Errorf("-o custom-columns: %q is not HEADER:.path (e.g. POD:.k8s\\.pod\\.name,PORT:.network\\.peer\\.port)", col)
		}
		jp := jsonpath.New(header).AllowMissingKeys(true)
		if !strings.HasPrefix(path, "{") {
			path = "{" + path + "}"
		}
		if err := jp.Parse(path); err != nil {
			return nil, fmt.Errorf("-o custom-columns: column %s: %w", header, err)
		}
		p.headers, p.paths = append(p.headers, header), append(p.paths, jp)
	}
	return p, nil
}

func (p *columnsPrinter) PrintObj(obj runtime.Object, w io.Writer) error {
	if p.tw == nil {
		p.tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		if !p.noHeaders {
			fmt.Fprintln(p.tw, strings.Join(p.headers, "\t"))
		}
	}
	data := obj.(*unstructured.Unstructured).Object
	cells := make([]string, len(p.paths))
	for i, jp := range p.paths {
		var b strings.Builder
		if err := jp.Execute(&b, data); err != nil {
			return fmt.Errorf("-o custom-columns: column %s: %w", p.headers[i], err)
		}
		cells[i] = b.String()
		if cells[i] == "" {
			cells[i] = "<none>"
		}
	}
	_, err := fmt.Fprintln(p.tw, tableLine(cells))
	return err
}

// flush writes the rows so far, aligned among themselves.
func (p *columnsPrinter) flush() error {
	if p.tw == nil {
		return nil
	}
	return p.tw.Flush()
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

func newRecordWriter(format string, noHeaders bool, zone *time.Location, w io.Writer) recordWriter {
	switch {
	case format == "json":
		return &jsonWriter{w: bufio.NewWriter(w)}
	case format == "csv":
		return &csvWriter{w: csv.NewWriter(w), header: noHeaders}
	case isPrinterFormat(format):
		p, _ := newPrinter(format, noHeaders) // CheckFormat has parsed it
		return &printerWriter{p: p, w: bufio.NewWriter(w)}
	default:
		return &tableWriter{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0), wide: format == "wide", header: noHeaders, zone: zone}
	}
}

var tableColumns = []string{"TIME", "NAMESPACE", "POD", "PID", "COMM", "IP", "SADDR", "DADDR", "DPORT", "OUTCOME", "LATENCY"}
var wideColumns = append(slices.Clone(tableColumns), "NODE", "CONTAINER", "WORKLOAD", "PEER", "NAME")

type tableWriter struct {
	tw     *tabwriter.Writer
	wide   bool
	header bool // written, or not wanted
	zone   *time.Location
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
	_, err := fmt.Fprintln(t.tw, tableLine(row(r, t.wide, tableTime, t.zone)))
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

// row returns the table columns of r (the wide ones with wide), its time in
// zone.
func row(r backend.Record, wide bool, timeLayout string, zone *time.Location) []string {
	ns, pod := r.Get(backend.FieldNamespace), r.Get(backend.FieldPod)
	if isHost(r) {
		ns, pod = host, "-"
	}
	ipv := "4"
	if r.Get(backend.FieldNetType) == "ipv6" {
		ipv = "6"
	}
	out := []string{
		r.Time.In(zone).Format(timeLayout),
		dash(ns), dash(pod),
		dash(r.Get(backend.FieldPID)), dash(r.Get(backend.FieldComm)),
		ipv, dash(r.Get(backend.FieldSrcAddr)), dash(r.Get(backend.FieldDstAddr)), dash(r.Get(backend.FieldDstPort)),
		outcome(r), latency(r.Get(backend.FieldDuration)),
	}
	if wide {
		out = append(out, dash(r.Get(backend.FieldNode)), dash(r.Get(backend.FieldContainer)), dash(sourceWorkload(r)), dash(peer(r)), dash(dnsName(r)))
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

// dnsName is the name the application asked DNS for (server.address), if
// any, marked when a resolver other than the cluster DNS gave it: the pod
// or its node chose that resolver, and with it the name.
func dnsName(r backend.Record) string {
	n := r.Get(backend.FieldDstName)
	if n == "" || n == r.Get(backend.FieldDstAddr) {
		return ""
	}
	if r.Get(backend.FieldDNSCluster) == "false" {
		n += " (from resolver " + r.Get(backend.FieldDNSResolver) + ", not the cluster DNS)"
	}
	return n
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

// jsonWriter writes one object per line: time, body and every field, the
// schema's numbers and booleans as JSON numbers and booleans.
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
		if v := r.Fields[k]; isJSONLiteral(k, v) {
			j.w.WriteString(v)
		} else {
			writeJSONString(j.w, v)
		}
	}
	_, err := j.w.WriteString("}\n")
	return err
}

// fieldTypes are the schema's types of the fields that are not strings.
var fieldTypes = func() map[string]trail.Type {
	m := map[string]trail.Type{"severity_number": trail.TypeInt}
	for _, a := range trail.ConnectAttributes {
		if !a.Prefix && a.Type != trail.TypeString {
			m[string(a.Key)] = a.Type
		}
	}
	return m
}()

// isJSONLiteral tells whether field k's text v can be written as it is: a
// number of a numeric field, true or false of a boolean one. VictoriaLogs
// gives every value back as text.
func isJSONLiteral(k, v string) bool {
	switch fieldTypes[k] {
	case trail.TypeInt, trail.TypeDouble:
		_, err := strconv.ParseFloat(v, 64)
		return err == nil && json.Valid([]byte(v))
	case trail.TypeBool:
		return v == "true" || v == "false"
	}
	return false
}

// typed returns r as kubectl's printers take it: time, body and every field,
// with the schema's types.
func typed(r backend.Record) *unstructured.Unstructured {
	obj := make(map[string]any, len(r.Fields)+2)
	for k, v := range r.Fields {
		obj[k] = v
		if isJSONLiteral(k, v) {
			var lit any
			if json.Unmarshal([]byte(v), &lit) == nil {
				obj[k] = lit
			}
		}
	}
	obj["time"] = r.Time.UTC().Format(fullTime)
	obj["body"] = r.Body
	return &unstructured.Unstructured{Object: obj}
}

// printerWriter writes records with kubectl's jsonpath or custom-columns
// printer.
type printerWriter struct {
	p printers.ResourcePrinter
	w *bufio.Writer
}

func (pw *printerWriter) write(r backend.Record) error { return pw.p.PrintObj(typed(r), pw.w) }
func (pw *printerWriter) flush() error {
	if cp, ok := pw.p.(*columnsPrinter); ok {
		if err := cp.flush(); err != nil {
			return err
		}
	}
	return pw.w.Flush()
}

func (j *jsonWriter) flush() error { return j.w.Flush() }

func writeJSONString(w *bufio.Writer, s string) {
	b, _ := json.Marshal(s)
	w.Write(b)
}

type csvWriter struct {
	w      *csv.Writer
	header bool // written, or not wanted
}

func (c *csvWriter) write(r backend.Record) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(csvHeader()); err != nil {
			return err
		}
	}
	return c.w.Write(row(r, true, fullTime, time.UTC))
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

// formatTime is how tables and reports show a time: in zone.
func formatTime(t time.Time, zone *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(zone).Format(tableTime)
}
