package otlp

import (
	"context"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// collector answers every export with answer and err.
type collector struct {
	collogspb.UnimplementedLogsServiceServer
	answer *collogspb.ExportLogsServiceResponse
	err    error
}

func (c *collector) Export(context.Context, *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	return c.answer, c.err
}

func grpcTo(t *testing.T, c *collector) *GRPCExporter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collogspb.RegisterLogsServiceServer(srv, c)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	x, err := NewGRPC(t.Context(), otlploggrpc.WithEndpoint(l.Addr().String()), otlploggrpc.WithInsecure(),
		otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}), otlploggrpc.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Shutdown(context.Background()) })
	return x
}

func oneRecord(body string) []sdklog.Record {
	var r sdklog.Record
	r.SetBody(attribute.StringValue(body))
	return []sdklog.Record{r}
}

// The gRPC exporter's failures are typed from the collector's answer, never
// from the SDK's error text.
func TestGRPCFailuresAreTyped(t *testing.T) {
	t.Run("partial success", func(t *testing.T) {
		x := grpcTo(t, &collector{answer: &collogspb.ExportLogsServiceResponse{
			PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 3, ErrorMessage: "too old"}}})
		p, ok := AsPartialSuccess(x.Export(t.Context(), oneRecord("a")))
		if !ok || p.Rejected != 3 || p.Message != "too old" {
			t.Fatalf("got %v, want a partial success of 3", p)
		}
	})
	t.Run("invalid argument is permanent", func(t *testing.T) {
		x := grpcTo(t, &collector{err: status.Error(codes.InvalidArgument, "bad record")})
		if err := x.Export(t.Context(), oneRecord("a")); !IsPermanent(err) || IsBusy(err) {
			t.Fatalf("err %v: want permanent", err)
		}
	})
	t.Run("records that cannot be marshalled are permanent", func(t *testing.T) {
		x := grpcTo(t, &collector{answer: &collogspb.ExportLogsServiceResponse{}})
		if err := x.Export(t.Context(), oneRecord("bad \xff utf-8")); !IsPermanent(err) {
			t.Fatalf("err %v: want permanent", err)
		}
	})
	t.Run("unavailable is transient", func(t *testing.T) {
		x := grpcTo(t, &collector{err: status.Error(codes.Unavailable, "restarting")})
		err := x.Export(t.Context(), oneRecord("a"))
		if _, partial := AsPartialSuccess(err); err == nil || IsPermanent(err) || partial {
			t.Fatalf("err %v: want a transient failure", err)
		}
	})
	t.Run("accepted", func(t *testing.T) {
		x := grpcTo(t, &collector{answer: &collogspb.ExportLogsServiceResponse{}})
		if err := x.Export(t.Context(), oneRecord("a")); err != nil {
			t.Fatal(err)
		}
	})
}
