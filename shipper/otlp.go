package shipper

import (
	"context"
	"fmt"
	"io"
	"os"

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

// ValidateOTLPEnv checks the standard OTLP variables, which the exporters
// read when the agent starts.
func ValidateOTLPEnv() error {
	protocol, err := OTLPProtocol()
	if err != nil {
		return err
	}
	if protocol == ProtocolGRPC {
		_, err = otlp.GRPCConfigFromEnv()
	} else {
		_, err = otlp.ConfigFromEnv()
	}
	return err
}

// NewSender builds the sender for output. OTLP senders read the standard
// OTEL_EXPORTER_OTLP_* variables; compression is gzip unless they say
// otherwise. A tokenFile, when given, holds the bearer token sent with every
// export, read again whenever the file changes. The console sender writes
// each record as a JSON line on console.
// ctx is not kept: a sender connects lazily, on its first Send.
func NewSender(ctx context.Context, output, tokenFile string, console io.Writer) (otlp.Sender, error) {
	if output == OutputConsole {
		return otlp.NewConsole(console), nil
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
	if protocol == ProtocolGRPC {
		cfg, err := otlp.GRPCConfigFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.Token = token
		return otlp.NewGRPC(cfg)
	}
	cfg, err := otlp.ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	cfg.Token = token
	return otlp.New(cfg), nil
}

func firstEnv(names ...string) (string, string) {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return n, v
		}
	}
	return names[len(names)-1], ""
}
