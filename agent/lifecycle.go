package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/handoff"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
)

// Ledger is the part of *shipper.Ledger that records what happened to the
// agent itself. Losses given to it are its to write, however long the spool
// refuses them.
type Ledger interface {
	EmitAgentEvent(name trail.Event, body string, at time.Time, sev log.Severity, attrs func(*shipper.AttrList))
	Lose(shipper.Loss)
	Degrade(shipper.Degraded)
	Unreported()
	LastSeq() uint64
}

// Capture is what the agent's start record tells of capture (*bpf.Tracer).
type Capture interface {
	Resumed() bool
	Takeovers() []bpf.Takeover
}

// ReportSpoolDamage puts on record the unreadable bytes the spool held at start.
func ReportSpoolDamage(l Ledger, r spool.Recovery, logger *slog.Logger) {
	if len(r.Problems) > 0 {
		logger.Warn("spool repaired at start", "recovered_records", r.Records, "problems", r.Problems)
	}
	if r.CorruptBytes > 0 {
		logger.Error("spool held unreadable records; reported as loss", "bytes", r.CorruptBytes)
		l.Lose(shipper.Loss{Reason: trail.LossSpoolCorrupt, Bytes: r.CorruptBytes, Detail: "unreadable records in the spool at start"})
	}
}

// Lineage is what the start record tells of the instance's place on its
// node: the instance before it, and how often it promises a heartbeat.
type Lineage struct {
	Previous  *handoff.State // nil when no instance ran here before (or its state was lost)
	Heartbeat time.Duration  // 0: none promised
}

// RecordStart writes the agent's start record, timestamped when capture
// began, then what replacing other builds' pinned capture cost.
func RecordStart(l Ledger, c Capture, version, spoolDir string, lin Lineage, captureStart time.Time, logger *slog.Logger) {
	l.EmitAgentEvent(trail.EventAgentStart, "connaudit agent "+version+" started capturing", captureStart, log.SeverityInfo, func(a *shipper.AttrList) {
		a.String(trail.KeySpoolDir, spoolDir)
		a.Bool(trail.KeyCaptureResumed, c.Resumed())
		a.Int(trail.KeyCaptureTakenOver, int64(len(c.Takeovers())))
		if p := lin.Previous; p != nil {
			a.String(trail.KeyPreviousInstance, p.Instance)
			a.Int(trail.KeyPreviousSeq, int64(p.Seq))
			a.String(trail.KeyPreviousChain, p.Chain)
		}
		if lin.Heartbeat > 0 {
			a.Float(trail.KeyHeartbeat, lin.Heartbeat.Seconds())
		}
	})
	ReportTakeovers(l, c.Takeovers(), logger)
}

// ReportTakeovers puts on record what replacing other builds' pinned capture
// cost: losses they had not reported, and records of another layout that
// could not be read. Their kernel counters are gone with them, so the ledger
// keeps these reports until the spool takes them.
func ReportTakeovers(l Ledger, takeovers []bpf.Takeover, logger *slog.Logger) {
	for _, tk := range takeovers {
		logger.Info("took over the pinned capture of another build or size", "pinned", tk.Dir, "drained", tk.Drained, "unreadable", tk.Unreadable)
		if n := tk.Unreported.RingBufferLost; n > 0 {
			l.Lose(shipper.Loss{Reason: trail.LossRingBuffer, Count: n,
				Detail: "the replaced capture " + tk.Dir + " found its ring buffer full; its agents had not reported it"})
		}
		if n := tk.Unreported.HandshakeLost; n > 0 {
			l.Degrade(shipper.Degraded{Reason: trail.DegradedHandshakeMap, Count: n,
				Detail: "handshakes evicted in the replaced capture " + tk.Dir})
		}
		if tk.Unreadable > 0 {
			logger.Warn("replaced pinned capture of another event layout: its buffered attempts are lost", "pinned", tk.Dir, "count", tk.Unreadable)
			l.Lose(shipper.Loss{Reason: trail.LossCaptureReplaced, Count: tk.Unreadable,
				Detail: "the replaced capture " + tk.Dir + " has another event layout; its buffered attempts could not be read"})
		}
	}
}

// Exporter is the export loop (*shipper.Exporter).
type Exporter interface {
	Run(ctx context.Context)
	Drain()
}

// Spooled tells how many records wait in the spool (*spool.Spool).
type Spooled interface {
	Stats() spool.Stats
}

// Delivery runs the export loop beside capture and ends a run in order.
type Delivery struct {
	exporter Exporter
	spool    Spooled
	stop     context.CancelFunc
	done     chan struct{}
}

// StartDelivery runs x until Finish. Its lifetime is not the capture's: at
// shutdown it goes on until the spool is sent or the grace period is over.
func StartDelivery(x Exporter, sp Spooled) *Delivery {
	ctx, stop := context.WithCancel(context.Background())
	d := &Delivery{exporter: x, spool: sp, stop: stop, done: make(chan struct{})}
	go func() { x.Run(ctx); close(d.done) }()
	return d
}

// Finish ends a run whose capture has stopped: it writes the stop record,
// logs what the spool refused to the end, sends what is spooled at once,
// waits up to grace for the spool to empty, then stops the export loop. What
// is left waits in the spool for the next start. It reports whether the
// spool was emptied.
func (d *Delivery) Finish(l Ledger, grace time.Duration) bool {
	l.EmitAgentEvent(trail.EventAgentStop, "connaudit agent stopped capturing", time.Now(), log.SeverityInfo, nil)
	l.Unreported()
	d.exporter.Drain()
	flushed := d.waitForEmptySpool(grace)
	d.stop()
	<-d.done
	return flushed
}

func (d *Delivery) waitForEmptySpool(grace time.Duration) bool {
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if d.spool.Stats().Records == 0 {
			return true
		}
	}
	return d.spool.Stats().Records == 0
}

// ReportUnspooled puts on record the connect events and held DNS answers
// that the instance before this one had read from the kernel and not
// spooled when it ended
// without stopping (kill -9, a crash): the kernel handed them over, so no
// seq and no ring-buffer count will ever show them.
func ReportUnspooled(l Ledger, last handoff.Final, logger *slog.Logger) {
	if last.Unspooled == 0 {
		return
	}
	logger.Warn("the previous agent instance ended holding events it had not spooled", "instance", last.Instance, "count", last.Unspooled)
	l.Lose(shipper.Loss{Reason: trail.LossAgentKilled, Count: last.Unspooled, Last: last.ReadAt,
		Detail: fmt.Sprintf("agent instance %s ended (killed or crashed) holding %d connect attempts and DNS answers it had read from the kernel and not spooled", last.Instance, last.Unspooled)})
}
