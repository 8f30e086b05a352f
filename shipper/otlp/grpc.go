package otlp

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// GRPCExporter is the SDK's OTLP/gRPC exporter with its failures typed as
// this package's HTTP exporter types them. The SDK reports a partial success
// as an error of an internal type, so the exporter reads the collector's
// answer itself, in a client interceptor.
type GRPCExporter struct {
	sdklog.Exporter
	mu   sync.Mutex // one Export at a time: last belongs to it
	last *grpcCall
}

// grpcCall is what the interceptor saw of the last attempt of an Export.
type grpcCall struct {
	err       error
	partial   *collogspb.ExportLogsPartialSuccess
	marshalEr error // the request could not be marshalled: its records are at fault
}

// NewGRPC returns the SDK's gRPC exporter, configured by opts and the
// standard OTEL_EXPORTER_OTLP_* variables, with typed failures.
func NewGRPC(ctx context.Context, opts ...otlploggrpc.Option) (*GRPCExporter, error) {
	x := &GRPCExporter{}
	opts = append(opts, otlploggrpc.WithDialOption(grpc.WithChainUnaryInterceptor(x.intercept)))
	inner, err := otlploggrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("create OTLP/gRPC exporter: %w", err)
	}
	x.Exporter = inner
	return x, nil
}

func (x *GRPCExporter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	call := &grpcCall{err: err}
	if r, ok := reply.(*collogspb.ExportLogsServiceResponse); ok && err == nil {
		call.partial = r.GetPartialSuccess()
	}
	if status.Code(err) == codes.Internal {
		// gRPC words a marshalling failure as an Internal status; marshal
		// again (only on this rare path) to learn whether that is what it was.
		if m, ok := req.(proto.Message); ok {
			if _, merr := proto.Marshal(m); merr != nil {
				call.marshalEr = merr
			}
		}
	}
	x.last = call
	return err
}

// Export sends recs; a failure is a PermanentError (InvalidArgument, or
// records that cannot be marshalled), a PartialSuccessError, or as the SDK
// reported it (transient).
func (x *GRPCExporter) Export(ctx context.Context, recs []sdklog.Record) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.last = nil
	err := x.Exporter.Export(ctx, recs)
	call := x.last
	if err == nil || call == nil {
		return err
	}
	switch {
	case call.marshalEr != nil:
		return &PermanentError{Err: fmt.Errorf("%w (%w)", err, call.marshalEr)}
	case call.err == nil && call.partial != nil:
		return &PartialSuccessError{Rejected: call.partial.GetRejectedLogRecords(), Message: call.partial.GetErrorMessage()}
	case status.Code(call.err) == codes.InvalidArgument:
		return &PermanentError{Err: err}
	}
	return err
}
