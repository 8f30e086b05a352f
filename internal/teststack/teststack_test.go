package teststack

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/connaudit/connaudit/shipper/otlp"
)

// arriveTimeout covers the exporter's retry back-off (at most 10 s between
// tries) after VictoriaLogs comes back.
const arriveTimeout = 60 * time.Second

// failingExportsFor is how long the fault tests keep VictoriaLogs down after
// the collector queued their records: long enough for the first export (after
// the 200 ms batch timeout) to fail and at least one retry to fail too.
const failingExportsFor = 3 * time.Second

func TestLogsOverHTTPReachVictoriaLogs(t *testing.T) {
	vl := StartVictoriaLogs(t)
	col := StartCollector(t, vl.URL())
	sent := send(t, httpExporter(t, col), "http", 5)
	checkArrived(t, vl, sent)
	// Dotted field names need no quoting in LogsQL.
	vl.WaitFor(t, `k8s.pod.name:="pod-a" network.peer.port:=443 seq:=3`, 1, arriveTimeout)
}

func TestLogsOverGRPCReachVictoriaLogs(t *testing.T) {
	vl := StartVictoriaLogs(t)
	col := StartCollector(t, vl.URL())
	sent := send(t, grpcExporter(t, col), "grpc", 5)
	checkArrived(t, vl, sent)
}

// TestQueueSurvivesVictoriaLogsOutage: records accepted while VictoriaLogs is
// down wait in the persistent queue and arrive once it is back.
func TestQueueSurvivesVictoriaLogsOutage(t *testing.T) {
	vl := StartVictoriaLogs(t)
	col := StartCollector(t, vl.URL())
	exp := httpExporter(t, col)
	checkArrived(t, vl, send(t, exp, "before", 3))

	vl.Stop()
	sent := send(t, exp, "outage", 20)
	waitQueueSize(t, col, 20)
	time.Sleep(failingExportsFor) // let the exporter fail and back off
	vl.Start()

	checkArrived(t, vl, sent)
}

// TestQueueSurvivesCollectorKill: records in the persistent queue survive a
// kill -9 of the collector and are delivered after its restart.
func TestQueueSurvivesCollectorKill(t *testing.T) {
	vl := StartVictoriaLogs(t)
	col := StartCollector(t, vl.URL())

	vl.Stop()
	sent := send(t, grpcExporter(t, col), "killed", 20)
	waitQueueSize(t, col, 20)
	time.Sleep(failingExportsFor) // kill it while it retries the batch
	col.Kill()

	col.Start()
	waitQueueSize(t, col, 20)
	vl.Start()

	checkArrived(t, vl, sent)
}

// TestQueueSurvivesCollectorRestart: a graceful stop while the exporter
// retries keeps the queued records on disk.
func TestQueueSurvivesCollectorRestart(t *testing.T) {
	vl := StartVictoriaLogs(t)
	col := StartCollector(t, vl.URL())

	vl.Stop()
	sent := send(t, httpExporter(t, col), "restarted", 20)
	waitQueueSize(t, col, 20)
	time.Sleep(failingExportsFor)
	col.Stop()

	col.Start()
	vl.Start()

	checkArrived(t, vl, sent)
}

func httpExporter(t *testing.T, col *Collector) otlp.Sender {
	t.Helper()
	exp := otlp.New(otlp.Config{URL: col.HTTPEndpoint() + "/v1/logs", Gzip: true, Timeout: 10 * time.Second})
	t.Cleanup(func() { _ = exp.Shutdown(context.Background()) })
	return exp
}

func grpcExporter(t *testing.T, col *Collector) otlp.Sender {
	t.Helper()
	exp, err := otlp.NewGRPC(otlp.Config{URL: "http://" + col.GRPCEndpoint(), Gzip: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("new OTLP/gRPC exporter: %v", err)
	}
	t.Cleanup(func() { _ = exp.Shutdown(context.Background()) })
	return exp
}

// sentRecord is what a test expects to find in VictoriaLogs.
type sentRecord struct {
	run  string
	seq  int
	time time.Time
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func integer(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// send exports n records tagged run=<run> and seq=0..n-1 through exp in one
// request, and fails the test if the export fails.
func send(t *testing.T, exp otlp.Sender, run string, n int) []sentRecord {
	t.Helper()
	scope := &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: "teststack", Version: "v1.2.3"}}
	req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			str("service.name", "connaudit-teststack"), str("k8s.pod.name", "pod-a")}},
		ScopeLogs: []*logspb.ScopeLogs{scope},
	}}}
	start := time.Now().Truncate(time.Millisecond)
	sent := make([]sentRecord, n)
	for i := range n {
		sent[i] = sentRecord{run: run, seq: i, time: start.Add(time.Duration(i) * time.Millisecond)}
		scope.LogRecords = append(scope.LogRecords, &logspb.LogRecord{
			TimeUnixNano:   uint64(sent[i].time.UnixNano()),
			EventName:      "connaudit.tcp.connect",
			SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_INFO,
			SeverityText:   "INFO",
			Body:           &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: fmt.Sprintf("connect %s %d", run, i)}},
			Attributes: []*commonpb.KeyValue{
				str("run", run), integer("seq", int64(i)),
				str("network.peer.address", "198.51.100.7"), integer("network.peer.port", 443),
			},
		})
	}
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exp.Send(ctx, body); err != nil {
		t.Fatalf("export %d records of run %q: %v", n, run, err)
	}
	return sent
}

// checkArrived waits until every sent record is in VictoriaLogs, exactly once,
// with the fields the collector mapped from OTLP.
func checkArrived(t *testing.T, vl *VictoriaLogs, sent []sentRecord) {
	t.Helper()
	run := sent[0].run
	rows := vl.WaitFor(t, fmt.Sprintf("run:=%q", run), len(sent), arriveTimeout)
	if len(rows) != len(sent) {
		t.Errorf("run %q: %d rows in VictoriaLogs, want %d (duplicates?)", run, len(rows), len(sent))
	}
	bySeq := map[string]map[string]string{}
	for _, row := range rows {
		bySeq[row["seq"]] = row
	}
	for _, s := range sent {
		row, ok := bySeq[strconv.Itoa(s.seq)]
		if !ok {
			t.Errorf("run %q: record seq=%d missing", run, s.seq)
			continue
		}
		want := map[string]string{
			"_msg":                 fmt.Sprintf("connect %s %d", run, s.seq),
			"_time":                s.time.UTC().Format(time.RFC3339Nano),
			"_stream":              `{event_name="connaudit.tcp.connect",k8s.pod.name="pod-a",service.name="connaudit-teststack"}`,
			"service.name":         "connaudit-teststack",
			"k8s.pod.name":         "pod-a",
			"event_name":           "connaudit.tcp.connect",
			"severity_number":      "9",
			"severity_text":        "INFO",
			"scope.name":           "teststack",
			"scope.version":        "v1.2.3",
			"run":                  run,
			"network.peer.address": "198.51.100.7",
			"network.peer.port":    "443",
		}
		for field, value := range want {
			if row[field] != value {
				t.Errorf("run %q seq=%d: field %s = %q, want %q", run, s.seq, field, row[field], value)
			}
		}
	}
}

// waitQueueSize waits until the collector's sending queue holds at least n
// records.
func waitQueueSize(t *testing.T, col *Collector, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		size, err := col.QueueSize(ctx)
		cancel()
		if err == nil && size >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector queue size = %d (err %v), want at least %d", size, err, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
