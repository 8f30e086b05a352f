// Package recordgen makes connaudit records of README.md's "Record schema" as
// OTLP and posts them, for the tests and benchmarks of the read side that
// need shapes the real agent cannot make on one machine: many pods and
// nodes, peers of every kind, hostile values, duplicates and holes.
//
//	a := recordgen.NewAgent("node-1", "instance-1")
//	recs := []recordgen.Record{a.Start(t0, false), a.Connect(t0.Add(time.Second), src, conn)}
//	err := recordgen.Post(ctx, collector.HTTPEndpoint()+"/v1/logs", recs)
package recordgen

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/connaudit/connaudit/trail"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// KV is one attribute; Value is a string, int, int64, float64 or bool.
type KV struct {
	Key   trail.Key
	Value any
}

// Record is one OTLP log record with its resource.
type Record struct {
	Time     time.Time
	Event    string
	Body     string
	Severity logspb.SeverityNumber
	Resource []KV
	Attrs    []KV
}

// Agent numbers the records of one agent instance on one node, as the real
// agent does (connaudit.seq from 1, +1 per record of any kind).
type Agent struct {
	Node, Instance string
	Seq            int64
}

// NewAgent returns an agent instance that has not sent a record yet.
func NewAgent(node, instance string) *Agent { return &Agent{Node: node, Instance: instance} }

func (a *Agent) resource(extra []KV) []KV {
	r := Attrs(trail.KeyServiceName, "connaudit", trail.KeyServiceVersion, "test", trail.KeyServiceInstanceID, a.Instance,
		trail.KeyHostName, a.Node, trail.KeyK8sNodeName, a.Node, trail.KeyK8sClusterName, "test-cluster")
	return append(r, extra...)
}

func (a *Agent) next() int64 { a.Seq++; return a.Seq }

// Start is the instance's connaudit.agent.start record.
func (a *Agent) Start(t time.Time, resumed bool) Record {
	return Record{Time: t, Event: string(trail.EventAgentStart), Body: "agent started", Severity: logspb.SeverityNumber_SEVERITY_NUMBER_INFO,
		Resource: a.resource(nil), Attrs: []KV{{trail.KeyCaptureResumed, resumed}, {trail.KeySpoolDir, "/var/lib/connaudit/spool"}, {trail.KeySeq, a.next()}}}
}

// Stop is the instance's connaudit.agent.stop record.
func (a *Agent) Stop(t time.Time) Record {
	return Record{Time: t, Event: string(trail.EventAgentStop), Body: "agent stopped", Severity: logspb.SeverityNumber_SEVERITY_NUMBER_INFO,
		Resource: a.resource(nil), Attrs: []KV{{trail.KeySeq, a.next()}}}
}

// Lose consumes n sequence numbers without a record, as records the spool
// refused, and returns their range.
func (a *Agent) Lose(n int64) (first, last int64) {
	first = a.Seq + 1
	a.Seq += n
	return first, a.Seq
}

// Loss is a connaudit.loss record for the seq range first..last (0, 0: none).
func (a *Agent) Loss(t time.Time, count int64, reason string, first, last int64, lostFrom, lostTo time.Time) Record {
	attrs := []KV{{trail.KeyLostCount, count}, {trail.KeyLostReason, reason},
		{trail.KeyLostTimeFirst, lostFrom.UTC().Format(time.RFC3339Nano)}, {trail.KeyLostTimeLast, lostTo.UTC().Format(time.RFC3339Nano)}}
	if first > 0 {
		attrs = append(attrs, KV{trail.KeyLostSeqFirst, first}, KV{trail.KeyLostSeqLast, last})
	}
	attrs = append(attrs, KV{trail.KeySeq, a.next()})
	return Record{Time: t, Event: string(trail.EventLoss), Body: fmt.Sprintf("%d records lost: %s", count, reason),
		Severity: logspb.SeverityNumber_SEVERITY_NUMBER_WARN, Resource: a.resource(nil), Attrs: attrs}
}

// Pod is a source pod container, the resource of its records.
type Pod struct {
	Namespace, Name, UID, Container string
	Labels                          map[string]string
	Owners                          []KV // e.g. {trail.KeyK8sDeployment, "web"}, {trail.KeyK8sReplicaSet, "web-5d4f"}
}

// Source is the connecting process: in Pod, or a host process when Pod is nil.
type Source struct {
	Pod            *Pod
	Comm           string
	PID, PPID, UID int
}

// Conn is one connect attempt.
type Conn struct {
	SrcAddr  string
	SrcPort  int
	DstAddr  string
	DstPort  int
	Outcome  string  // established, refused, ...
	ErrType  string  // for failures, e.g. ECONNREFUSED
	Duration float64 // seconds
	Peer     []KV    // connaudit.peer.* attributes
	Name     string  // the name the application asked DNS for (server.address); "": DstAddr
}

// Connect is a tcp.connect record.
func (a *Agent) Connect(t time.Time, src Source, c Conn) Record {
	var res []KV
	kind := "host"
	if p := src.Pod; p != nil {
		kind = "pod"
		res = append(res, KV{trail.KeyK8sNamespace, p.Namespace}, KV{trail.KeyK8sPodName, p.Name}, KV{trail.KeyK8sPodUID, p.UID},
			KV{trail.KeyK8sContainerName, p.Container}, KV{trail.KeyContainerID, "containerd-" + p.UID})
		keys := make([]string, 0, len(p.Labels))
		for k := range p.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			res = append(res, KV{trail.KeyK8sPodLabelPrefix + trail.Key(k), p.Labels[k]})
		}
		res = append(res, p.Owners...)
	}
	ipv := "ipv4"
	if strings.Contains(c.DstAddr, ":") {
		ipv = "ipv6"
	}
	attrs := []KV{{trail.KeyNetworkTransport, "tcp"}, {trail.KeyNetworkType, ipv},
		{trail.KeyLocalAddress, c.SrcAddr}, {trail.KeyLocalPort, c.SrcPort},
		{trail.KeyPeerAddress, c.DstAddr}, {trail.KeyPeerPort, c.DstPort},
		{trail.KeyServerAddress, cmp.Or(c.Name, c.DstAddr)}, {trail.KeyServerPort, c.DstPort},
		{trail.KeyOutcome, c.Outcome}, {trail.KeyConnectDuration, c.Duration},
		{trail.KeyProcessPID, src.PID}, {trail.KeyProcessParentPID, src.PPID}, {trail.KeyThreadID, src.PID},
		{trail.KeyProcessExecName, src.Comm}, {trail.KeyProcessUserID, src.UID}, {trail.KeyProcessGroupID, src.UID},
		{trail.KeySourceKind, kind}}
	if c.ErrType != "" {
		attrs = append(attrs, KV{trail.KeyErrorType, c.ErrType})
	}
	attrs = append(attrs, c.Peer...)
	attrs = append(attrs, KV{trail.KeySeq, a.next()})
	sev := logspb.SeverityNumber_SEVERITY_NUMBER_INFO
	result := c.Outcome + " in " + strconv.FormatFloat(c.Duration*1000, 'f', 2, 64) + " ms"
	if c.Outcome != "established" {
		sev = logspb.SeverityNumber_SEVERITY_NUMBER_WARN
		result = c.Outcome + " (" + c.ErrType + ") after " + strconv.FormatFloat(c.Duration*1000, 'f', 2, 64) + " ms"
	}
	body := fmt.Sprintf("%s (pid %d) -> %s %s", src.Comm, src.PID, net.JoinHostPort(c.DstAddr, strconv.Itoa(c.DstPort)), result)
	return Record{Time: t, Event: string(trail.EventConnect), Body: body, Severity: sev, Resource: a.resource(res), Attrs: attrs}
}

// Request groups records by resource into one OTLP export request.
func Request(recs []Record) *collogspb.ExportLogsServiceRequest {
	req := &collogspb.ExportLogsServiceRequest{}
	byResource := map[string]*logspb.ScopeLogs{}
	for _, r := range recs {
		key := resourceKey(r.Resource)
		sl := byResource[key]
		if sl == nil {
			sl = &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: "github.com/connaudit/connaudit"}}
			req.ResourceLogs = append(req.ResourceLogs, &logspb.ResourceLogs{
				Resource: &resourcepb.Resource{Attributes: attributes(r.Resource)}, ScopeLogs: []*logspb.ScopeLogs{sl}})
			byResource[key] = sl
		}
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{
			TimeUnixNano:         uint64(r.Time.UnixNano()),
			ObservedTimeUnixNano: uint64(r.Time.UnixNano()),
			SeverityNumber:       r.Severity,
			SeverityText:         severityText(r.Severity),
			EventName:            r.Event,
			Body:                 &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: r.Body}},
			Attributes:           attributes(r.Attrs),
		})
	}
	return req
}

func severityText(s logspb.SeverityNumber) string {
	if s == logspb.SeverityNumber_SEVERITY_NUMBER_WARN {
		return "WARN"
	}
	return "INFO"
}

func resourceKey(kvs []KV) string {
	var b strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%q=%v;", kv.Key, kv.Value)
	}
	return b.String()
}

func attributes(kvs []KV) []*commonpb.KeyValue {
	out := make([]*commonpb.KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		v := &commonpb.AnyValue{}
		switch x := kv.Value.(type) {
		case string:
			v.Value = &commonpb.AnyValue_StringValue{StringValue: x}
		case int:
			v.Value = &commonpb.AnyValue_IntValue{IntValue: int64(x)}
		case int64:
			v.Value = &commonpb.AnyValue_IntValue{IntValue: x}
		case float64:
			v.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: x}
		case bool:
			v.Value = &commonpb.AnyValue_BoolValue{BoolValue: x}
		default:
			panic(fmt.Sprintf("recordgen: attribute %s has unsupported type %T", kv.Key, kv.Value))
		}
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: v})
	}
	return out
}

var client = &http.Client{Timeout: 60 * time.Second}

// Post sends the records as one OTLP/HTTP protobuf request to url: a
// collector's …/v1/logs, or VictoriaLogs' /insert/opentelemetry/v1/logs.
func Post(ctx context.Context, url string, recs []Record) error {
	return PostWith(ctx, client, url, "", recs)
}

// PostWith is Post through c, such as a client that trusts the shipped
// gateway's CA (teststack.Collector.HTTPClient), with a bearer token, as an
// agent presents its own to the shipped gateway; no token when it is empty.
func PostWith(ctx context.Context, c *http.Client, url, token string, recs []Record) error {
	body, err := proto.Marshal(Request(recs))
	if err != nil {
		return fmt.Errorf("encode %d records: %w", len(recs), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post records: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("post %d records to %s: %w", len(recs), url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post %d records to %s: %s: %s", len(recs), url, resp.Status, msg)
	}
	return nil
}

// Node is the k8s.node.name of r's resource.
func Node(r Record) string {
	for _, kv := range r.Resource {
		if kv.Key == trail.KeyK8sNodeName {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// Attrs makes attributes from key, value pairs.
func Attrs(kv ...any) []KV {
	if len(kv)%2 != 0 {
		panic("recordgen.Attrs: odd number of arguments")
	}
	out := make([]KV, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		var key trail.Key
		switch k := kv[i].(type) {
		case trail.Key:
			key = k
		case string:
			key = trail.Key(k)
		default:
			panic(fmt.Sprintf("recordgen.Attrs: key %v is a %T", k, k))
		}
		out = append(out, KV{Key: key, Value: kv[i+1]})
	}
	return out
}
