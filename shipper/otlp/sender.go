package otlp

import "context"

// Sender sends one encoded ExportLogsServiceRequest (protobuf bytes,
// uncompressed). Its failures are typed as errors.go says; it does not retry.
type Sender interface {
	Send(ctx context.Context, req []byte) error
	Shutdown(ctx context.Context) error
}
