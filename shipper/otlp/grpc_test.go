package otlp

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// collector is an OTLP/gRPC stand-in that keeps what it is sent and answers
// every export with answer (an empty answer if nil) and err.
type collector struct {
	collogspb.UnimplementedLogsServiceServer
	answer *collogspb.ExportLogsServiceResponse
	err    error

	mu          sync.Mutex
	reqs        []*collogspb.ExportLogsServiceRequest
	md          []metadata.MD
	compression []string // of each request, "" for none
}

func (c *collector) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c.mu.Lock()
	c.reqs = append(c.reqs, req)
	c.md = append(c.md, md)
	c.mu.Unlock()
	if c.answer == nil && c.err == nil {
		return &collogspb.ExportLogsServiceResponse{}, nil
	}
	return c.answer, c.err
}

// The collector is its server's stats.Handler, to see each request's compression.

func (c *collector) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		c.mu.Lock()
		c.compression = append(c.compression, h.Compression)
		c.mu.Unlock()
	}
}
func (*collector) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (*collector) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (*collector) HandleConn(context.Context, stats.ConnStats)                       {}

// serve starts c on 127.0.0.1 and returns its address.
func (c *collector) serve(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(opts, grpc.StatsHandler(c))...)
	collogspb.RegisterLogsServiceServer(srv, c)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

// grpcFromEnv is the exporter the standard variables configure.
func grpcFromEnv(t *testing.T, token *TokenFile) *GRPCExporter {
	t.Helper()
	cfg, err := GRPCConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Token = token
	x, err := NewGRPC(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Shutdown(context.Background()) })
	return x
}

func grpcTo(t *testing.T, c *collector) *GRPCExporter {
	t.Helper()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+c.serve(t))
	return grpcFromEnv(t, nil)
}

// The collector receives the request as it was given, compressed unless
// compression is off, with the configured headers.
func TestGRPCSendsTheRequestAsItIs(t *testing.T) {
	want, req := testRequest(t)
	for _, compression := range []string{"gzip", "none"} {
		t.Run(compression, func(t *testing.T) {
			c := &collector{}
			// The path is no part of a gRPC endpoint.
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+c.serve(t)+"/ignored")
			t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant = shop ")
			t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
			x := grpcFromEnv(t, nil)
			if err := x.Send(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			if len(c.reqs) != 1 || !proto.Equal(c.reqs[0], want) {
				t.Fatalf("the collector received %d requests, the first\n%s", len(c.reqs), prototext.Format(c.reqs[0]))
			}
			wantCompression := map[string]string{"gzip": "gzip", "none": ""}[compression]
			if c.compression[0] != wantCompression {
				t.Errorf("compression %q, want %q", c.compression[0], wantCompression)
			}
			md := c.md[0]
			if got := md.Get("x-tenant"); len(got) != 1 || got[0] != "shop" {
				t.Errorf("x-tenant %q", got)
			}
			if ua := md.Get("user-agent"); len(ua) != 1 || !strings.HasPrefix(ua[0], GRPCUserAgent) {
				t.Errorf("user-agent %q", ua)
			}
		})
	}
}

// The gRPC exporter's failures are typed from the collector's answer.
func TestGRPCFailuresAreTyped(t *testing.T) {
	_, req := testRequest(t)
	t.Run("partial success", func(t *testing.T) {
		x := grpcTo(t, &collector{answer: &collogspb.ExportLogsServiceResponse{
			PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 3, ErrorMessage: "too old"}}})
		p, ok := AsPartialSuccess(x.Send(t.Context(), req))
		if !ok || p.Rejected != 3 || p.Message != "too old" {
			t.Fatalf("got %v, want a partial success of 3", p)
		}
	})
	t.Run("invalid argument is permanent", func(t *testing.T) {
		x := grpcTo(t, &collector{err: status.Error(codes.InvalidArgument, "bad record")})
		if err := x.Send(t.Context(), req); !IsPermanent(err) || IsBusy(err) || !strings.Contains(err.Error(), "bad record") {
			t.Fatalf("err %v: want permanent", err)
		}
	})
	t.Run("unavailable is busy", func(t *testing.T) {
		x := grpcTo(t, &collector{err: status.Error(codes.Unavailable, "sending queue is full")})
		err := x.Send(t.Context(), req)
		if _, partial := AsPartialSuccess(err); !IsBusy(err) || IsPermanent(err) || partial || RetryAfter(err) != 0 {
			t.Fatalf("err %v: want a transient failure, busy", err)
		}
	})
	t.Run("RetryInfo sets the delay", func(t *testing.T) {
		s, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(2 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		x := grpcTo(t, &collector{err: s.Err()})
		if err := x.Send(t.Context(), req); !IsBusy(err) || IsPermanent(err) || RetryAfter(err) != 2*time.Second {
			t.Fatalf("err %v (retry after %v): want busy for 2s", err, RetryAfter(err))
		}
	})
	t.Run("resource exhausted without RetryInfo is transient", func(t *testing.T) {
		x := grpcTo(t, &collector{err: status.Error(codes.ResourceExhausted, "message larger than max")})
		if err := x.Send(t.Context(), req); err == nil || IsBusy(err) || IsPermanent(err) {
			t.Fatalf("err %v: want transient, not busy (the batch may shrink)", err)
		}
	})
	t.Run("accepted", func(t *testing.T) {
		x := grpcTo(t, &collector{})
		if err := x.Send(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	})
}

// A rotated token is sent from the next call on, as over HTTP.
func TestGRPCSendsTheCurrentToken(t *testing.T) {
	c := &collector{}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+c.serve(t))
	path := filepath.Join(t.TempDir(), "token")
	t0 := time.Now().Add(-time.Hour)
	rotate(t, path, "first\n", t0)
	token, err := NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x := grpcFromEnv(t, token)
	_, req := testRequest(t)
	if err := x.Send(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	rotate(t, path, "second", t0.Add(time.Minute))
	if err := x.Send(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, md := range c.md {
		got = append(got, strings.Join(md.Get("authorization"), ","))
	}
	if want := []string{"Bearer first", "Bearer second"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("authorization %q, want %q", got, want)
	}
}

// Over gRPC too the CA file is read when it changes, and may come late.
func TestGRPCServerCAIsReadWhenItChanges(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	c := &collector{}
	cert := ca.serverCert(t, "")
	addr := c.serve(t, grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://"+addr)
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", caFile)
	_, req := testRequest(t)
	send := func() error {
		x := grpcFromEnv(t, nil) // a new connection each time
		return x.Send(t.Context(), req)
	}
	if err := send(); err == nil || !strings.Contains(err.Error(), "has not published its CA at "+caFile) {
		t.Fatalf("send before the CA is published: %v", err)
	}
	t0 := time.Now().Add(-time.Hour)
	rotate(t, caFile, other.pem, t0)
	if err := send(); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("send to a server another CA signed: %v", err)
	}
	rotate(t, caFile, ca.pem, t0.Add(time.Minute))
	if err := send(); err != nil {
		t.Fatalf("send once the right CA is there: %v", err)
	}
	if len(c.reqs) != 1 {
		t.Fatalf("the collector received %d requests, want 1", len(c.reqs))
	}
}

func TestGRPCConfigFromEnv(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		url  string
		gzip bool
		err  string
	}{
		{env: nil, url: "https://localhost:4317", gzip: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"}, url: "http://localhost:4317", gzip: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_LOGS_INSECURE": "false"}, url: "https://localhost:4317", gzip: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4317/v1/logs"}, url: "http://col:4317", gzip: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://col:4317", "OTEL_EXPORTER_OTLP_INSECURE": "true"}, url: "https://col:4317", gzip: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://b:2"}, url: "https://b:2", gzip: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none"}, url: "http://a:1"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "col:4317"}, err: "OTEL_EXPORTER_OTLP_ENDPOINT=\"col:4317\": want a URL such as http://127.0.0.1:4317"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_LOGS_INSECURE": "maybe"}, err: "OTEL_EXPORTER_OTLP_LOGS_INSECURE"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, err: "milliseconds"},
	} {
		for _, name := range []string{"ENDPOINT", "INSECURE", "COMPRESSION", "TIMEOUT"} {
			t.Setenv("OTEL_EXPORTER_OTLP_"+name, "")
			t.Setenv("OTEL_EXPORTER_OTLP_LOGS_"+name, "")
		}
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		cfg, err := GRPCConfigFromEnv()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: err %v, want one naming %q", c.env, err, c.err)
			}
			continue
		}
		if err != nil || cfg.URL != c.url || cfg.Gzip != c.gzip || cfg.Timeout != 10*time.Second {
			t.Errorf("%v: %+v, %v; want %s gzip=%v", c.env, cfg, err, c.url, c.gzip)
		}
	}
}
