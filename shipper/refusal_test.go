package shipper

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logpb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/connaudit/connaudit/shipper/otlp"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
)

// otlpSink is a small OTLP/HTTP and OTLP/gRPC logs server. It refuses for
// good (HTTP 400, gRPC InvalidArgument) any request holding a record with the
// attribute test.poison, or answers every request with a partial success.
type otlpSink struct {
	collogpb.UnimplementedLogsServiceServer
	partial bool

	mu       sync.Mutex
	requests int
	seqs     []int64
	losses   []*logpb.LogRecord
}

func (s *otlpSink) take(req *collogpb.ExportLogsServiceRequest) (refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []*logpb.LogRecord
	for _, rl := range req.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			for _, r := range sl.LogRecords {
				for _, kv := range r.Attributes {
					if kv.Key == "test.poison" {
						return true
					}
				}
				recs = append(recs, r)
			}
		}
	}
	s.requests++
	for _, r := range recs {
		for _, kv := range r.Attributes {
			if kv.Key == "connaudit.seq" {
				s.seqs = append(s.seqs, kv.Value.GetIntValue())
			}
		}
		if r.EventName == string(trail.EventLoss) {
			s.losses = append(s.losses, r)
		}
	}
	return false
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var req collogpb.ExportLogsServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil || s.take(&req) {
		http.Error(w, "invalid record", http.StatusBadRequest)
		return
	}
	var resp collogpb.ExportLogsServiceResponse
	if s.partial {
		resp.PartialSuccess = &collogpb.ExportLogsPartialSuccess{RejectedLogRecords: 2, ErrorMessage: "two records too old"}
	}
	out, _ := proto.Marshal(&resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (s *otlpSink) Export(_ context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	if s.take(req) {
		return nil, status.Error(codes.InvalidArgument, "invalid record")
	}
	var resp collogpb.ExportLogsServiceResponse
	if s.partial {
		resp.PartialSuccess = &collogpb.ExportLogsPartialSuccess{RejectedLogRecords: 2, ErrorMessage: "two records too old"}
	}
	return &resp, nil
}

func (s *otlpSink) snapshot() (requests int, seqs []int64, losses []*logpb.LogRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, slices.Clone(s.seqs), slices.Clone(s.losses)
}

func httpExporter(t *testing.T, sink *otlpSink) otlp.Sender {
	t.Helper()
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	return otlp.New(otlp.Config{URL: srv.URL + "/v1/logs", Gzip: true, Timeout: 10 * time.Second})
}

func grpcExporter(t *testing.T, sink *otlpSink) otlp.Sender {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collogpb.RegisterLogsServiceServer(srv, sink)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	exp, err := otlp.NewGRPC(otlp.Config{URL: "http://" + l.Addr().String(), Gzip: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return exp
}

// spoolWithPoison is a spool of n connect records whose record number poison
// (1-based seq) carries the attribute test.poison.
func spoolWithPoison(t *testing.T, n, poison int) (*spool.Spool, *Ledger) {
	t.Helper()
	sp, sh := spooledShipper(t, 0)
	ev := testEvent()
	var b ConnectBuilder
	var bad AttrList
	bad.Bool("test.poison", true)
	for i := 1; i <= n; i++ {
		src := &Source{}
		if i == poison {
			src.Attrs = bad.KeyValues()
		}
		sh.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), src))
	}
	return sp, sh
}

// runExporter runs an Exporter until done says so, for at most 30 seconds.
func runExporter(t *testing.T, sp *spool.Spool, sh *Ledger, exp otlp.Sender, cfg ExportConfig, done func() bool) *Exporter {
	t.Helper()
	cfg.MaxBackoff = max(cfg.MaxBackoff, time.Millisecond)
	x := NewExporter(cfg, sp, exp, sh, sh.metrics, sh.log)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { x.Run(ctx); close(stopped) }()
	for deadline := time.Now().Add(30 * time.Second); !done() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-stopped
	return x
}

// A collector that refuses one record for good costs exactly that record: it
// becomes a rejected loss record naming its seq, and every other record
// arrives, over HTTP (400) and gRPC (InvalidArgument) alike.
func TestPermanentlyRefusedRecordBecomesALossRecord(t *testing.T) {
	for name, newExporter := range map[string]func(*testing.T, *otlpSink) otlp.Sender{
		"http": httpExporter, "grpc": grpcExporter,
	} {
		t.Run(name, func(t *testing.T) {
			const n, poison = 100, 37
			sp, sh := spoolWithPoison(t, n, poison)
			sink := &otlpSink{}
			runExporter(t, sp, sh, newExporter(t, sink), ExportConfig{BatchRecords: 64}, func() bool {
				_, _, losses := sink.snapshot()
				return len(losses) > 0 && sp.Stats().Records == 0
			})
			_, seqs, losses := sink.snapshot()
			slices.Sort(seqs)
			seqs = slices.Compact(seqs)
			var want []int64
			for s := int64(1); s <= n+1; s++ { // n records and the loss record
				if s != poison {
					want = append(want, s)
				}
			}
			if !slices.Equal(seqs, want) {
				t.Fatalf("exported seqs %v\nwant every seq 1..%d but %d", seqs, n+1, poison)
			}
			if len(losses) != 1 {
				t.Fatalf("%d loss records, want 1", len(losses))
			}
			attrs := map[string]string{}
			for _, kv := range losses[0].Attributes {
				attrs[kv.Key] = kv.Value.String()
			}
			for k, v := range map[string]string{"connaudit.lost.reason": `string_value:"rejected"`,
				"connaudit.lost.count": "int_value:1", "connaudit.lost.seq.first": "int_value:37", "connaudit.lost.seq.last": "int_value:37"} {
				if attrs[k] != v {
					t.Errorf("loss record %s = %s, want %s", k, attrs[k], v)
				}
			}
		})
	}
}

// A real OTLP partial_success response is reported as a rejected loss with
// the count the collector gave, over HTTP and gRPC alike.
func TestPartialSuccessResponseIsReported(t *testing.T) {
	for name, newExporter := range map[string]func(*testing.T, *otlpSink) otlp.Sender{
		"http": httpExporter, "grpc": grpcExporter,
	} {
		t.Run(name, func(t *testing.T) {
			sp, sh := spooledShipper(t, 5)
			sink := &otlpSink{partial: true}
			runExporter(t, sp, sh, newExporter(t, sink), ExportConfig{BatchRecords: 64}, func() bool {
				_, _, losses := sink.snapshot()
				return len(losses) > 0
			})
			_, _, losses := sink.snapshot()
			if len(losses) == 0 {
				t.Fatal("no loss record for a partial success")
			}
			var count int64
			for _, kv := range losses[0].Attributes {
				if kv.Key == "connaudit.lost.count" {
					count = kv.Value.GetIntValue()
				}
			}
			if count != 2 {
				t.Fatalf("loss record counts %d rejected, want 2 (the collector's figure)", count)
			}
		})
	}
}

// At a low rate the exporter waits for a batch to fill, up to MaxDelay, and
// sends what waited in one request; Drain sends at once.
func TestExportBatchesUpToMaxDelay(t *testing.T) {
	sp, sh := spooledShipper(t, 10)
	sink := &otlpSink{}
	runExporter(t, sp, sh, httpExporter(t, sink), ExportConfig{BatchRecords: 1000, MaxDelay: 300 * time.Millisecond}, func() bool {
		return sp.Stats().Records == 0
	})
	if requests, seqs, _ := sink.snapshot(); requests != 1 || len(seqs) != 10 {
		t.Fatalf("%d requests for %d records, want the 10 waiting records in 1 request", requests, len(seqs))
	}

	sp, sh = spooledShipper(t, 3)
	sink = &otlpSink{}
	x := NewExporter(ExportConfig{BatchRecords: 1000, MaxDelay: time.Hour, MaxBackoff: time.Millisecond}, sp, httpExporter(t, sink), sh, sh.metrics, sh.log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go x.Run(ctx)
	x.Drain()
	for deadline := time.Now().Add(30 * time.Second); sp.Stats().Records > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if _, seqs, _ := sink.snapshot(); len(seqs) != 3 {
		t.Fatalf("after Drain %d of 3 records exported, want all without waiting an hour", len(seqs))
	}
}
