package shipper

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutlog"
	sdklog "go.opentelemetry.io/otel/sdk/log"
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
	if name, v := firstEnv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"); v != "" && v != "gzip" && v != "none" {
		return fmt.Errorf("%s=%q: use gzip or none", name, v)
	}
	if name, v := firstEnv("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"); v != "" {
		if ms, err := strconv.Atoi(v); err != nil || ms <= 0 {
			return fmt.Errorf("%s=%q: want a positive number of milliseconds", name, v)
		}
	}
	if name, v := firstEnv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" &&
		!strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
		return fmt.Errorf("%s=%q: want a URL such as http://127.0.0.1:4318", name, v)
	}
	for _, name := range []string{
		"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
		"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
		"OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
	} {
		if v := os.Getenv(name); v != "" {
			if _, err := os.Stat(v); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// NewSDKExporter builds the exporter for output. OTLP exporters read the
// standard OTEL_EXPORTER_OTLP_* variables; compression is gzip unless they say otherwise.
func NewSDKExporter(ctx context.Context, output string, console io.Writer) (sdklog.Exporter, error) {
	if output == OutputConsole {
		return stdoutlog.New(stdoutlog.WithWriter(console))
	}
	protocol, err := OTLPProtocol()
	if err != nil {
		return nil, err
	}
	_, compression := firstEnv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
	if protocol == ProtocolGRPC {
		var opts []otlploggrpc.Option
		if compression == "" {
			opts = append(opts, otlploggrpc.WithCompressor("gzip"))
		}
		return otlploggrpc.New(ctx, opts...)
	}
	var opts []otlploghttp.Option
	if compression == "" {
		opts = append(opts, otlploghttp.WithCompression(otlploghttp.GzipCompression))
	}
	return otlploghttp.New(ctx, opts...)
}

func firstEnv(names ...string) (string, string) {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return n, v
		}
	}
	return names[len(names)-1], ""
}
