package shipper

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutlog"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/connaudit/connaudit/shipper/otlp"
)

// Outputs the agent can export to.
const (
	OutputOTLP    = "otlp"
	OutputConsole = "console"
)

// Protocols of OTEL_EXPORTER_OTLP_PROTOCOL that connaudit speaks.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// OTLPProtocol is the protocol the standard variables select; the spec's default is http/protobuf.
func OTLPProtocol() (string, error) {
	name, v := firstEnv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	switch v {
	case "":
		return ProtocolHTTP, nil
	case ProtocolGRPC, ProtocolHTTP:
		return v, nil
	case "http/json":
		return "", fmt.Errorf("%s=http/json is not supported: use grpc or http/protobuf", name)
	}
	return "", fmt.Errorf("%s=%q is not a protocol: use grpc or http/protobuf", name, v)
}

// ValidateOTLPEnv checks the standard OTLP variables that the SDK would
// otherwise ignore quietly when malformed.
func ValidateOTLPEnv() error {
	if _, err := OTLPProtocol(); err != nil {
		return err
	}
	_, err := otlp.ConfigFromEnv()
	return err
}

// NewSDKExporter builds the exporter for output. OTLP exporters read the
// standard OTEL_EXPORTER_OTLP_* variables; compression is gzip unless they
// say otherwise. OTLP/HTTP goes through connaudit's own exporter (package
// otlp), which writes the wire format without the SDK's intermediate structs.
// A tokenFile, when given, holds the bearer token sent with every export,
// read again whenever the file changes.
func NewSDKExporter(ctx context.Context, output, tokenFile string, console io.Writer) (sdklog.Exporter, error) {
	if output == OutputConsole {
		return stdoutlog.New(stdoutlog.WithWriter(console))
	}
	protocol, err := OTLPProtocol()
	if err != nil {
		return nil, err
	}
	var token *otlp.TokenFile
	if tokenFile != "" {
		if token, err = otlp.NewTokenFile(tokenFile); err != nil {
			return nil, fmt.Errorf("CONNAUDIT_EXPORT_TOKEN_FILE: %w", err)
		}
	}
	cfg, err := otlp.ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	_, compression := firstEnv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
	if protocol == ProtocolGRPC {
		var opts []otlploggrpc.Option
		if cfg.TLS != nil && strings.HasPrefix(cfg.URL, "https://") {
			// The same TLS as OTLP/HTTP: the CA file and the client
			// certificate are read again when they change.
			opts = append(opts, otlploggrpc.WithTLSCredentials(credentials.NewTLS(cfg.TLS)))
		}
		if compression == "" {
			opts = append(opts, otlploggrpc.WithCompressor("gzip"))
		}
		if token != nil {
			opts = append(opts, otlploggrpc.WithDialOption(grpc.WithPerRPCCredentials(bearer{token})))
		}
		return otlp.NewGRPC(ctx, opts...)
	}
	cfg.Token = token
	return otlp.New(cfg), nil
}

// bearer sends the token file's token with every gRPC call.
type bearer struct{ token *otlp.TokenFile }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	t, err := b.token.Token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + t}, nil
}

// RequireTransportSecurity is false so that a gateway on loopback or behind
// a mesh works too; OTEL_EXPORTER_OTLP_CERTIFICATE turns TLS on.
func (bearer) RequireTransportSecurity() bool { return false }

func firstEnv(names ...string) (string, string) {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return n, v
		}
	}
	return names[len(names)-1], ""
}
