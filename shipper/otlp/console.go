package otlp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Console is a Sender that writes each log record of a request on one line,
// as OTLP JSON (protojson): a ResourceLogs holding the record alone, with its
// resource and scope, so that every line says which pod it is about.
type Console struct {
	mu   sync.Mutex
	w    io.Writer
	line bytes.Buffer
}

// NewConsole returns a console sender writing to w.
func NewConsole(w io.Writer) *Console { return &Console{w: w} }

// Send writes the records of req.
func (c *Console) Send(_ context.Context, req []byte) error {
	var r collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(req, &r); err != nil {
		return &PermanentError{Err: fmt.Errorf("decode the request: %w", err)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rl := range r.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				one := &logspb.ResourceLogs{Resource: rl.Resource, SchemaUrl: rl.SchemaUrl, ScopeLogs: []*logspb.ScopeLogs{
					{Scope: sl.Scope, SchemaUrl: sl.SchemaUrl, LogRecords: []*logspb.LogRecord{lr}}}}
				b, err := protojson.Marshal(one)
				if err != nil {
					return err
				}
				// protojson varies its spacing on purpose; compact it so
				// that a line reads the same from one build to the next.
				c.line.Reset()
				if err := json.Compact(&c.line, b); err != nil {
					return err
				}
				c.line.WriteByte('\n')
				if _, err := c.w.Write(c.line.Bytes()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Shutdown does nothing: Send writes everything it is given.
func (*Console) Shutdown(context.Context) error { return nil }

var _ Sender = (*Console)(nil)
