package shipper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connaudit/connaudit/shipper/otlp"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
)

// ExportConfig tunes the export loop.
type ExportConfig struct {
	BatchRecords int           // records per OTLP request, at most
	BatchBytes   int           // spooled bytes per OTLP request, at most
	MaxDelay     time.Duration // longest a spooled record waits for its batch to fill
	MaxBackoff   time.Duration // longest wait between retries of a failed export
	Version      string        // instrumentation scope version
}

// Exporter reads batches from the spool, exports them and acknowledges each
// only once the collector has accepted it: at-least-once delivery. A failed
// export is retried forever with backoff; the spool bounds what waits. A
// record the collector refuses for good is isolated by bisection and
// reported as a rejected loss, so it cannot stop the records behind it.
type Exporter struct {
	cfg         ExportConfig
	spool       *spool.Spool
	exp         otlp.Sender
	ledger      *Ledger
	metrics     *Metrics
	log         *slog.Logger
	framer      otlp.Framer
	records     []spooled // the batch being exported, as spooled
	undecodable []uint64  // seqs of this batch's records this version cannot read
	rejected    []uint64  // seqs of this batch's records the collector refused for good
	rejectedErr error
	v1          v1Converter
	failingNs   atomic.Int64 // unix ns of the first failure of the current failing streak, 0 when healthy
	running     atomic.Bool
	drain       chan struct{} // closed by Drain
	drainOnce   sync.Once
	corruptSeen int64
}

// spooled is one record of a batch: its resource and LogRecord, as the
// spool holds them.
type spooled struct {
	seq           uint64
	resource, rec []byte
}

// NewExporter wires the export loop. The ledger receives the losses the
// export finds: spool damage, undecodable records, records the collector rejected.
func NewExporter(cfg ExportConfig, sp *spool.Spool, exp otlp.Sender, ledger *Ledger, m *Metrics, logger *slog.Logger) *Exporter {
	return &Exporter{cfg: cfg, spool: sp, exp: exp, ledger: ledger, metrics: m, log: logger, drain: make(chan struct{}),
		framer: otlp.Framer{Scope: scopeName, Version: cfg.Version}}
}

// FailingSince is when the current streak of failed exports began, or zero.
func (x *Exporter) FailingSince() time.Time {
	if ns := x.failingNs.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Running reports whether the export loop is running (not waiting to be
// restarted after an error).
func (x *Exporter) Running() bool { return x.running.Load() }

// Drain makes the exporter send what is spooled at once, without waiting for
// batches to fill: the agent is shutting down.
func (x *Exporter) Drain() { x.drainOnce.Do(func() { close(x.drain) }) }

// Run exports until ctx is done. An export loop that fails (the spool cannot
// be read) is logged, counted and restarted with backoff: capture must never
// go on with nobody exporting. Records of an unacknowledged batch stay in the
// spool and are exported again.
func (x *Exporter) Run(ctx context.Context) {
	restart := newBackoff(100*time.Millisecond, x.cfg.MaxBackoff)
	for {
		x.running.Store(true)
		started := time.Now()
		err := x.export(ctx)
		x.running.Store(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > x.cfg.MaxBackoff {
			restart.reset()
		}
		wait := restart.next()
		x.metrics.ExportRestarts.Inc()
		x.log.Error("export loop failed; restarting it (records wait in the spool)", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// export is one run of the export loop; it returns nil when ctx is done.
func (x *Exporter) export(ctx context.Context) error {
	limit := x.cfg.BatchRecords
	for {
		batch, err := x.spool.Next(ctx, limit, x.cfg.BatchBytes)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read spool: %w", err)
		}
		if x.waitForFullBatch(ctx, batch, limit) {
			continue // read the batch again, with what arrived meanwhile
		}
		x.reportCorruption()
		x.read(batch.Records)
		switch err := x.deliver(ctx, x.records); {
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
			if errors.Is(err, spool.ErrClosed) || errors.Is(err, spool.ErrStaleBatch) {
				return fmt.Errorf("acknowledge exported batch: %w", err)
			}
			// The acknowledgement took effect; only its cleanup or
			// persistence failed, and the next Ack tries that again.
			x.metrics.AckErrors.Inc()
			x.log.Warn("acknowledge exported batch: cleanup failed, will retry", "err", err)
		}
		// Reported once the batch is done with, not at each retry.
		x.reportSeqLoss(trail.LossUndecodable, x.undecodable, "spooled by an incompatible version", nil)
		x.reportSeqLoss(trail.LossRejected, x.rejected, "the collector refused them permanently", x.rejectedErr)
	}
}

// waitForFullBatch waits, when batch is not full and its oldest record has
// waited less than MaxDelay, until the spool holds a full batch, that
// record's time is up, the exporter drains or ctx is done. It reports
// whether it waited. Batching cuts the per-request cost (HTTP, gzip, the
// collector's own work) that dominates at ordinary rates.
func (x *Exporter) waitForFullBatch(ctx context.Context, batch spool.Batch, limit int) bool {
	if len(batch.Records) >= limit || x.cfg.MaxDelay <= 0 || payloadBytes(batch.Records) >= x.cfg.BatchBytes/2 {
		return false
	}
	deadline := recordObserved(batch.Records[0]).Add(x.cfg.MaxDelay)
	wait := time.Until(deadline)
	if wait <= 0 {
		return false
	}
	select {
	case <-x.drain:
		return false
	default:
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	check := time.NewTicker(min(max(x.cfg.MaxDelay/20, 5*time.Millisecond), 50*time.Millisecond))
	defer check.Stop()
	for x.spool.Stats().Records < int64(limit) {
		select {
		case <-timer.C:
			return true
		case <-x.drain:
			return true
		case <-ctx.Done():
			return true
		case <-check.C:
		}
	}
	return true
}

func payloadBytes(records [][]byte) int {
	n := 0
	for _, r := range records {
		n += len(r)
	}
	return n
}

// reportCorruption reports spool damage that reading found since the last batch.
func (x *Exporter) reportCorruption() {
	corrupt := x.spool.Stats().CorruptBytes
	if d := corrupt - x.corruptSeen; d > 0 {
		x.log.Error("spool data failed its checksum; reported as loss", "bytes", d)
		x.ledger.Lose(Loss{Reason: trail.LossSpoolCorrupt, Bytes: d, Detail: "spooled records failed their checksum"})
	}
	x.corruptSeen = corrupt
}

// read splits spooled payloads into x.records, converting those an older
// agent spooled, and notes the seqs of those it cannot read.
func (x *Exporter) read(payloads [][]byte) {
	x.records = x.records[:0]
	x.undecodable, x.rejected, x.rejectedErr = x.undecodable[:0], x.rejected[:0], nil
	for _, p := range payloads {
		seq := payloadSeq(p)
		if len(p) > 0 && p[0] == v1Version {
			var err error
			if p, err = x.v1.convert(p); err != nil {
				x.undecodable = append(x.undecodable, seq)
				continue
			}
		}
		res, rec, err := splitPayload(p)
		if err != nil {
			x.undecodable = append(x.undecodable, seq)
			continue
		}
		x.records = append(x.records, spooled{seq: seq, resource: res, rec: rec})
	}
}

// reportSeqLoss writes one loss record per run of consecutive seqs, so that
// every seq missing from the trail lies in a range a loss record names.
func (x *Exporter) reportSeqLoss(reason trail.LossReason, seqs []uint64, detail string, cause error) {
	if len(seqs) == 0 {
		return
	}
	if cause != nil {
		detail += ": " + cause.Error()
	}
	x.log.Error("records lost: "+detail, "reason", reason, "count", len(seqs), "first_seq", seqs[0], "last_seq", seqs[len(seqs)-1])
	for i := 0; i < len(seqs); {
		j := i + 1
		for j < len(seqs) && seqs[j] == seqs[j-1]+1 {
			j++
		}
		x.ledger.Lose(Loss{Reason: reason, Count: uint64(j - i), FirstSeq: seqs[i], LastSeq: seqs[j-1], Detail: detail})
		i = j
	}
}

// maxRetryAfter bounds the wait a collector's Retry-After can impose.
const maxRetryAfter = time.Minute

// errShrink asks for a smaller batch after failedTriesBeforeShrink failures.
var errShrink = errors.New("batch refused repeatedly")

const failedTriesBeforeShrink = 3

// deliver exports recs until the collector accepts them or ctx is done.
// Records the collector refuses for good are found by bisection and noted in
// x.rejected; the others are delivered. A batch of more than one record that
// keeps failing transiently yields errShrink.
func (x *Exporter) deliver(ctx context.Context, recs []spooled) error {
	err := x.send(ctx, recs)
	var refused *otlp.PermanentError
	if !errors.As(err, &refused) {
		return err
	}
	if len(recs) == 1 {
		x.rejected = append(x.rejected, recs[0].seq)
		x.rejectedErr = refused.Err
		return nil
	}
	half := len(recs) / 2
	if err := x.deliver(ctx, recs[:half]); err != nil {
		return err
	}
	return x.deliver(ctx, recs[half:])
}

// send exports recs, retrying transient failures with backoff.
func (x *Exporter) send(ctx context.Context, recs []spooled) error {
	if len(recs) == 0 {
		return nil
	}
	x.framer.Reset()
	for _, r := range recs {
		x.framer.Add(r.resource, r.rec)
	}
	req := x.framer.Bytes()
	start := time.Now()
	retry := newBackoff(100*time.Millisecond, x.cfg.MaxBackoff)
	for try := 1; ; try++ {
		err := x.exp.Send(ctx, req)
		partial, isPartial := otlp.AsPartialSuccess(err)
		if err == nil || isPartial {
			if isPartial {
				x.reportPartialSuccess(partial)
			}
			x.metrics.Exported.Add(float64(len(recs)))
			x.metrics.ExportDuration.Observe(time.Since(start).Seconds())
			if x.failingNs.Swap(0) != 0 {
				x.log.Info("export recovered", "after", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if otlp.IsPermanent(err) {
			x.log.Warn("the collector refused a batch for good; isolating the records at fault", "records", len(recs), "err", err)
			return err
		}
		x.metrics.ExportRetries.Inc()
		if x.failingNs.CompareAndSwap(0, time.Now().UnixNano()) {
			x.log.Warn("export failed; retrying until the collector accepts (records wait in the spool)", "err", err)
		}
		wait := max(retry.next(), min(otlp.RetryAfter(err), maxRetryAfter))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if try >= failedTriesBeforeShrink && len(recs) > 1 && !otlp.IsBusy(err) {
			return errShrink
		}
	}
}

// reportPartialSuccess reports records the collector accepted the request
// for but did not keep. OTLP does not say which ones, so the loss record
// carries their count and no seq range.
func (x *Exporter) reportPartialSuccess(err *otlp.PartialSuccessError) {
	n := uint64(max(err.Rejected, 0))
	x.log.Error("the collector rejected records", "count", n, "err", err)
	if n > 0 {
		x.ledger.Lose(Loss{Reason: trail.LossRejected, Count: n, Detail: err.Error()})
	}
}
