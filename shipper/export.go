package shipper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/connaudit/connaudit/shipper/spool"
)

// ExportConfig tunes the export loop.
type ExportConfig struct {
	BatchRecords int           // records per OTLP request, at most
	BatchBytes   int           // spooled bytes per OTLP request, at most
	MaxBackoff   time.Duration // longest wait between retries of a failed export
	Version      string        // instrumentation scope version
}

// Exporter reads batches from the spool, exports them and acknowledges each
// only once the collector has accepted it: at-least-once delivery. A failed
// export is retried forever with backoff; the spool bounds what waits.
type Exporter struct {
	cfg         ExportConfig
	spool       *spool.Spool
	exp         sdklog.Exporter
	shipper     *Shipper
	metrics     *Metrics
	log         *slog.Logger
	providers   *providerCache
	out         []sdklog.Record
	rec         Record
	failingNs   atomic.Int64 // unix ns of the first failure of the current failing streak, 0 when healthy
	corruptSeen int64
}

// NewExporter wires the export loop. The shipper receives loss records about
// what the collector rejected.
func NewExporter(cfg ExportConfig, sp *spool.Spool, exp sdklog.Exporter, sh *Shipper, m *Metrics, logger *slog.Logger) *Exporter {
	x := &Exporter{cfg: cfg, spool: sp, exp: exp, shipper: sh, metrics: m, log: logger}
	x.providers = newProviderCache(1024, cfg.Version, &x.out)
	return x
}

// FailingSince is when the current streak of failed exports began, or zero.
func (x *Exporter) FailingSince() time.Time {
	if ns := x.failingNs.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Run exports until ctx is done. Records of an unacknowledged batch stay in the
// spool and are exported again by the next Run.
func (x *Exporter) Run(ctx context.Context) error {
	defer x.providers.shutdown()
	limit := x.cfg.BatchRecords
	for {
		batch, err := x.spool.Next(ctx, limit, x.cfg.BatchBytes)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read spool: %w", err)
		}
		x.reportCorruption()
		undecodable := x.convert(ctx, batch.Records)
		switch err := x.deliver(ctx); {
		case errors.Is(err, errShrink):
			// A batch the collector keeps refusing may be too big for it:
			// retry its first half, and grow back after successes.
			limit = max(1, len(batch.Records)/2)
			continue
		case err != nil:
			return nil // ctx done: the batch stays in the spool
		}
		limit = min(x.cfg.BatchRecords, limit*2)
		if err := x.spool.Ack(batch); err != nil {
			return fmt.Errorf("acknowledge exported batch: %w", err)
		}
		if undecodable > 0 { // reported once the batch is done with, not at each retry
			x.log.Error("skipped spooled records this agent cannot decode", "count", undecodable)
			x.metrics.Lost.WithLabelValues(LossUndecodable).Add(float64(undecodable))
			x.shipper.EmitLoss(Loss{Reason: LossUndecodable, Count: uint64(undecodable), Detail: "spooled by an incompatible version"})
		}
	}
}

// reportCorruption reports spool damage that reading found since the last batch.
func (x *Exporter) reportCorruption() {
	corrupt := x.spool.Stats().CorruptBytes
	if d := corrupt - x.corruptSeen; d > 0 {
		x.log.Error("spool data failed its checksum; reported as loss", "bytes", d)
		x.metrics.Lost.WithLabelValues(LossSpoolCorrupt).Inc()
		x.shipper.EmitLoss(Loss{Reason: LossSpoolCorrupt, Bytes: d, Detail: "spooled records failed their checksum"})
	}
	x.corruptSeen = corrupt
}

// convert turns spooled payloads into SDK records, in x.out, and counts
// those it cannot decode.
func (x *Exporter) convert(ctx context.Context, payloads [][]byte) (undecodable int) {
	x.out = x.out[:0]
	for _, p := range payloads {
		if err := Decode(p, &x.rec); err != nil {
			undecodable++
			continue
		}
		r := &x.rec
		var lr log.Record
		lr.SetEventName(r.EventName)
		lr.SetTimestamp(r.Timestamp)
		lr.SetObservedTimestamp(r.Observed)
		lr.SetSeverity(r.Severity)
		lr.SetSeverityText(severityText(r.Severity))
		lr.SetBody(attribute.StringValue(r.Body))
		r.Attrs = append(r.Attrs, attribute.Int64("connaudit.seq", int64(r.Seq)))
		lr.AddAttributes(r.Attrs...)
		x.providers.logger(r.Resource).Emit(ctx, lr)
	}
	return undecodable
}

// errShrink asks for a smaller batch after failedTriesBeforeShrink failures.
var errShrink = errors.New("batch refused repeatedly")

const failedTriesBeforeShrink = 3

// deliver exports x.out until the collector accepts it or ctx is done. A
// batch of more than one record that keeps failing yields errShrink.
func (x *Exporter) deliver(ctx context.Context) error {
	if len(x.out) == 0 {
		return nil
	}
	start := time.Now()
	backoff := 100 * time.Millisecond
	for try := 1; ; try++ {
		err := x.exp.Export(ctx, x.out)
		if err == nil || isPartialSuccess(err) {
			if err != nil {
				x.reportRejected(err)
			}
			x.metrics.Exported.Add(float64(len(x.out)))
			x.metrics.ExportDuration.Observe(time.Since(start).Seconds())
			if x.failingNs.Swap(0) != 0 {
				x.log.Info("export recovered", "after", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		x.metrics.ExportRetries.Inc()
		if x.failingNs.CompareAndSwap(0, time.Now().UnixNano()) {
			x.log.Warn("export failed; retrying until the collector accepts (records wait in the spool)", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, x.cfg.MaxBackoff)
		if try >= failedTriesBeforeShrink && len(x.out) > 1 {
			return errShrink
		}
	}
}

// The SDK exporters report OTLP partial success as an error of an internal type.
var partialSuccess = regexp.MustCompile(`OTLP partial success: .*\((\d+) logs rejected\)`)

func isPartialSuccess(err error) bool { return partialSuccess.MatchString(err.Error()) }

func (x *Exporter) reportRejected(err error) {
	m := partialSuccess.FindStringSubmatch(err.Error())
	n, _ := strconv.ParseUint(m[1], 10, 64)
	x.log.Error("the collector rejected records", "count", n, "err", err)
	if n > 0 {
		x.metrics.Lost.WithLabelValues(LossRejected).Add(float64(n))
		x.shipper.EmitLoss(Loss{Reason: LossRejected, Count: n, Detail: err.Error()})
	}
}

func severityText(s log.Severity) string {
	switch {
	case s >= log.SeverityError:
		return "ERROR"
	case s >= log.SeverityWarn:
		return "WARN"
	default:
		return "INFO"
	}
}

// providerCache keeps one LoggerProvider per resource: a record's OTLP
// resource is its provider's. The oldest providers are shut down past max.
type providerCache struct {
	max     int
	version string
	out     *[]sdklog.Record
	byRes   map[string]*providerEntry
	order   []string
}

type providerEntry struct {
	provider *sdklog.LoggerProvider
	logger   log.Logger
}

func newProviderCache(max int, version string, out *[]sdklog.Record) *providerCache {
	return &providerCache{max: max, version: version, out: out, byRes: make(map[string]*providerEntry)}
}

func (c *providerCache) logger(res []byte) log.Logger {
	if e, ok := c.byRes[string(res)]; ok {
		return e.logger
	}
	attrs, err := DecodeAttrs(res, nil)
	if err != nil {
		attrs = append(attrs, attribute.String("connaudit.resource.error", err.Error()))
	}
	p := sdklog.NewLoggerProvider(
		sdklog.WithResource(resource.NewSchemaless(attrs...)),
		sdklog.WithProcessor(captureProcessor{c.out}),
		sdklog.WithAttributeCountLimit(-1),
		// Records are built with unique keys; the SDK's dedup would build a map per record.
		sdklog.WithAllowKeyDuplication(),
	)
	e := &providerEntry{provider: p, logger: p.Logger("github.com/connaudit/connaudit", log.WithInstrumentationVersion(c.version))}
	key := string(res)
	c.byRes[key] = e
	c.order = append(c.order, key)
	if len(c.order) > c.max {
		old := c.order[0]
		c.order = c.order[1:]
		_ = c.byRes[old].provider.Shutdown(context.Background())
		delete(c.byRes, old)
	}
	return e.logger
}

func (c *providerCache) shutdown() {
	for _, e := range c.byRes {
		_ = e.provider.Shutdown(context.Background())
	}
}

// captureProcessor hands each emitted record to the export loop, which
// exports it itself: the SDK's BatchProcessor would drop records silently.
type captureProcessor struct{ out *[]sdklog.Record }

func (p captureProcessor) OnEmit(_ context.Context, r *sdklog.Record) error {
	*p.out = append(*p.out, r.Clone())
	return nil
}
func (captureProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (captureProcessor) Shutdown(context.Context) error                         { return nil }
func (captureProcessor) ForceFlush(context.Context) error                       { return nil }
