package otlp

import (
	"context"
	"fmt"
	"net/url"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/gzip"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// GRPCUserAgent names connaudit's gRPC exporter to the collector (gRPC appends its own).
const GRPCUserAgent = "connaudit OTLP/gRPC logs exporter"

const exportMethod = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

// GRPCExporter is a Sender over OTLP/gRPC: each request is one unary
// LogsService/Export call carrying req as it is. It does not retry.
type GRPCExporter struct {
	cfg  Config
	conn *grpc.ClientConn
	md   metadata.MD
	call []grpc.CallOption
}

// NewGRPC returns an exporter for cfg, as GRPCConfigFromEnv reads it: TLS
// (cfg.TLS, or the system's roots when nil) for an https:// URL, plaintext
// for http://. It connects lazily, on the first Send.
func NewGRPC(cfg Config) (*GRPCExporter, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("OTLP/gRPC endpoint %q: want http:// or https://host:port", cfg.URL)
	}
	creds := insecure.NewCredentials()
	if u.Scheme == "https" {
		creds = credentials.NewTLS(cfg.TLS)
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = GRPCUserAgent
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithUserAgent(ua)}
	if cfg.Token != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{cfg.Token}))
	}
	conn, err := grpc.NewClient(u.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP/gRPC client for %s: %w", u.Host, err)
	}
	x := &GRPCExporter{cfg: cfg, conn: conn, md: metadata.MD{}, call: []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}}
	for k, v := range cfg.Headers {
		x.md.Append(k, v...)
	}
	if cfg.Gzip {
		x.call = append(x.call, grpc.UseCompressor(gzip.Name))
	}
	return x, nil
}

// Send makes one Export call with req.
func (x *GRPCExporter) Send(ctx context.Context, req []byte) error {
	if len(req) == 0 {
		return nil
	}
	if x.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, x.cfg.Timeout)
		defer cancel()
	}
	if len(x.md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, x.md)
	}
	var answer collogspb.ExportLogsServiceResponse
	if err := x.conn.Invoke(ctx, exportMethod, req, &answer, x.call...); err != nil {
		return classifyGRPC(fmt.Errorf("failed to send logs to %s: %w", x.conn.Target(), err))
	}
	if p := answer.GetPartialSuccess(); p != nil && (p.GetRejectedLogRecords() != 0 || p.GetErrorMessage() != "") {
		return &PartialSuccessError{Rejected: p.GetRejectedLogRecords(), Message: p.GetErrorMessage()}
	}
	return nil
}

// Shutdown closes the connection.
func (x *GRPCExporter) Shutdown(context.Context) error { return x.conn.Close() }

var _ Sender = (*GRPCExporter)(nil)

// classifyGRPC types a failed call as classifyStatus types an HTTP answer:
// InvalidArgument is permanent (the collector's word for records it cannot
// take); Unavailable throttles, and so does any status with RetryInfo,
// which sets the delay; anything else is transient. ResourceExhausted
// without RetryInfo stays transient and not busy, so that the export loop
// shrinks the batch: it is also how a server refuses a message too large.
func classifyGRPC(err error) error {
	s, _ := status.FromError(err)
	var delay time.Duration
	for _, d := range s.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	switch {
	case s.Code() == codes.InvalidArgument:
		return &PermanentError{Err: err}
	case s.Code() == codes.Unavailable || delay > 0:
		return &ThrottleError{Err: err, Delay: delay}
	}
	return err
}

// rawCodec sends a request's bytes as they are, already encoded, and decodes
// the answer as gRPC's proto codec does. Its name is proto's, so that the
// collector decodes the request as usual.
type rawCodec struct{}

var protoCodec = encoding.GetCodecV2(protocodec.Name)

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec cannot send a %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error { return protoCodec.Unmarshal(data, v) }

func (rawCodec) Name() string { return protocodec.Name }

// bearer sends the token file's token with every call.
type bearer struct{ token *TokenFile }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	t, err := b.token.Token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + t}, nil
}

// RequireTransportSecurity is false so that a gateway on loopback or behind
// a mesh works too; https:// in the endpoint turns TLS on.
func (bearer) RequireTransportSecurity() bool { return false }
