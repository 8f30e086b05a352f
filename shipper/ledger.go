// Package shipper turns connect attempts into OTLP log records, appends them to
// a durable spool and exports them from there to an OpenTelemetry Collector.
package shipper

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/shipper/handoff"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
)

// Ledger is the one writer of the trail. It alone stamps connaudit.seq,
// counts the records the spool refuses, writes connaudit.loss and
// connaudit.degraded records, counts them in the metrics, and tries again a
// report the spool refused until it takes it. So connaudit.seq has no holes
// but those that a connaudit.loss record explains, and every loss is counted
// once, in the metrics and in the trail.
type Ledger struct {
	mu       sync.Mutex
	seq      uint64
	spool    *spool.Spool
	metrics  *Metrics
	log      *slog.Logger
	resource *Resource // the agent's own, for the records it writes about itself
	dropped  dropped
	owed     []notice // reports the spool refused, oldest first
	lastTry  time.Time
	spoolAt  int64 // spool size at the last refusal
	enc      Encoder
	body     []byte
	chain    chainer
	cp       *checkpoints  // nil: no checkpoints
	live     *handoff.Live // nil: none kept
}

// dropped describes the records the spool refused since it last accepted one.
type dropped struct {
	count               uint64
	firstSeq, lastSeq   uint64
	firstTime, lastTime time.Time
	reason              trail.LossReason
	cause               error
}

// retryInterval bounds how often a refused report is tried again while the
// spool has not shrunk (the disk may have gained room meanwhile).
const retryInterval = time.Second

// KeepLive makes the ledger record each spooled seq and chain value in live,
// for the next instance on the node to find even after a kill -9.
func (l *Ledger) KeepLive(live *handoff.Live) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.live = live
}

// NewLedger returns a Ledger that appends to sp. resource is the agent's.
func NewLedger(sp *spool.Spool, resource *Resource, m *Metrics, logger *slog.Logger) *Ledger {
	return &Ledger{spool: sp, resource: resource, metrics: m, log: logger}
}

// Emit stamps the next sequence number and its chain value into a finished
// record and appends it to the spool. A record the spool refuses is
// counted, and reported by a connaudit.loss record as soon as the spool
// accepts records again.
func (l *Ledger) Emit(r *Encoder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settleIfRoom()
	l.append(r)
}

// Loss describes records lost for one reason.
type Loss struct {
	Reason      trail.LossReason
	Count       uint64 // 0 when only Bytes is known
	Bytes       int64  // unreadable bytes, for spool damage
	First, Last time.Time
	// FirstSeq..LastSeq are the seqs of the lost records, when they had any.
	FirstSeq, LastSeq uint64
	Detail            string
}

// Degraded describes records that were shipped with less identity than they
// should have had, for one reason. They are in the trail; nothing is missing.
type Degraded struct {
	Reason      trail.DegradedReason
	Count       uint64
	First, Last time.Time
	Detail      string
}

// notice is a loss or degraded report.
type notice struct {
	loss     *Loss
	degraded *Degraded
}

// Lose counts a loss and writes its connaudit.loss record: now, or, when the
// spool refuses it, as soon as the spool takes records again. The ledger owns
// the report from here on.
func (l *Ledger) Lose(x Loss) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.countLoss(x)
	l.report(notice{loss: &x})
}

// Degrade counts records shipped with less identity and writes their
// connaudit.degraded record, now or as soon as the spool takes it.
func (l *Ledger) Degrade(x Degraded) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.metrics.Degraded.WithLabelValues(string(x.Reason)).Add(float64(x.Count))
	l.report(notice{degraded: &x})
}

// TryLose is Lose for a count whose source keeps it, such as a kernel loss
// counter: it writes the record only if the spool takes it now, counts it
// only then, and reports whether it did. The caller offers it again later.
func (l *Ledger) TryLose(x Loss) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settleIfRoom()
	if !l.write(notice{loss: &x}) {
		return false
	}
	l.countLoss(x)
	return true
}

// TryDegrade is Degrade with TryLose's contract.
func (l *Ledger) TryDegrade(x Degraded) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settleIfRoom()
	if !l.write(notice{degraded: &x}) {
		return false
	}
	l.metrics.Degraded.WithLabelValues(string(x.Reason)).Add(float64(x.Count))
	return true
}

func (l *Ledger) countLoss(x Loss) {
	n := float64(x.Count)
	if x.Count == 0 {
		n = 1 // only bytes are known: count the event
	}
	l.metrics.Lost.WithLabelValues(string(x.Reason)).Add(n)
}

// report writes n after what is owed, or owes it too. The caller holds mu.
func (l *Ledger) report(n notice) {
	l.settleIfRoom()
	if len(l.owed) > 0 || !l.write(n) {
		l.owed = append(l.owed, n)
	}
}

// settleIfRoom writes what is owed (the drop, then refused reports) once the
// spool may take it: it shrank, or retryInterval passed. The caller holds mu.
func (l *Ledger) settleIfRoom() {
	if l.settled() || l.spool.Stats().Bytes >= l.spoolAt && time.Since(l.lastTry) < retryInterval {
		return
	}
	l.settle()
}

// settle tries to write everything owed, in order. The caller holds mu.
func (l *Ledger) settle() {
	l.lastTry = time.Now()
	if l.dropped.count > 0 && !l.reportDropped() {
		return
	}
	for len(l.owed) > 0 {
		if !l.write(l.owed[0]) {
			return
		}
		l.owed[0] = notice{}
		l.owed = l.owed[1:]
	}
	l.owed = nil
}

func (l *Ledger) settled() bool { return l.dropped.count == 0 && len(l.owed) == 0 }

// Settled reports whether every loss and degraded report is in the spool.
func (l *Ledger) Settled() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.settled()
}

// write appends the record of n; the caller holds mu.
func (l *Ledger) write(n notice) bool {
	if x := n.loss; x != nil {
		l.buildLoss(x.Reason, x.Count, x.First, x.Last, x.Detail)
		if x.Bytes > 0 {
			l.enc.Int(trail.KeyLostBytes, x.Bytes)
		}
		if x.FirstSeq > 0 {
			l.enc.Int(trail.KeyLostSeqFirst, int64(x.FirstSeq))
			l.enc.Int(trail.KeyLostSeqLast, int64(x.LastSeq))
		}
	} else {
		x := n.degraded
		l.buildNotice(trail.EventDegraded, "shipped with less identity: ", degradedKeys, string(x.Reason), x.Count, x.First, x.Last, x.Detail)
	}
	return l.append(l.enc.Finish())
}

// errNotEncoded is why a record with no payload is lost: the SDK did not
// hand it to spoolProcessor (a provider shut down, say).
var errNotEncoded = errors.New("the OpenTelemetry SDK did not hand the record to its processor")

// append stamps and appends; the caller holds mu.
func (l *Ledger) append(r *Encoder) bool {
	l.seq++
	err := errNotEncoded
	var link chain.Link
	if len(r.payload) >= headerSize {
		r.payload = appendSeq(r.payload, l.seq)
		r.canon.Int(string(trail.KeySeq), int64(l.seq))
		link = l.chain.link(r)
		r.payload = appendChain(r.payload, link)
		err = l.spool.Append(r.payload)
	}
	if err == nil {
		l.metrics.Spooled.Inc()
		l.chain.head, l.chain.headSeq = link, l.seq
		l.live.Spooled(l.seq, link)
		l.counted()
		return true
	}
	reason := trail.LossSpoolError
	if errors.Is(err, spool.ErrFull) {
		reason = trail.LossSpoolFull
	}
	d := &l.dropped
	ts := r.ts
	if d.count == 0 {
		d.firstSeq, d.firstTime, d.reason, d.cause = l.seq, ts, reason, err
		l.lastTry = time.Now()
		l.log.Error("spool refused a record; counting every record lost until it accepts again", "reason", reason, "err", err)
	}
	d.count++
	d.lastSeq, d.lastTime = l.seq, ts
	l.spoolAt = l.spool.Stats().Bytes
	l.metrics.Lost.WithLabelValues(string(reason)).Inc()
	return false
}

// reportDropped appends the connaudit.loss record for the dropped range and
// reports whether the spool took it; the caller holds mu.
func (l *Ledger) reportDropped() bool {
	d := l.dropped
	l.buildLoss(d.reason, d.count, d.firstTime, d.lastTime, d.cause.Error())
	l.enc.Int(trail.KeyLostSeqFirst, int64(d.firstSeq))
	l.enc.Int(trail.KeyLostSeqLast, int64(d.lastSeq))
	l.dropped = dropped{}
	if !l.append(l.enc.Finish()) {
		// Still refused: the new drop (this loss record included) carries on the count.
		l.dropped.count += d.count
		l.dropped.firstSeq, l.dropped.firstTime = d.firstSeq, d.firstTime
		return false
	}
	l.log.Warn("spool accepts records again", "lost", d.count, "first_seq", d.firstSeq, "last_seq", d.lastSeq)
	return true
}

// noticeKeys are the attributes of a loss or degraded record.
type noticeKeys struct{ count, reason, first, last trail.Key }

var (
	lossKeys     = noticeKeys{trail.KeyLostCount, trail.KeyLostReason, trail.KeyLostTimeFirst, trail.KeyLostTimeLast}
	degradedKeys = noticeKeys{trail.KeyDegradedCount, trail.KeyDegradedReason, trail.KeyDegradedTimeFirst, trail.KeyDegradedTimeLast}
)

func (l *Ledger) buildLoss(reason trail.LossReason, count uint64, first, last time.Time, detail string) {
	l.buildNotice(trail.EventLoss, "lost ", lossKeys, string(reason), count, first, last, detail)
}

// buildNotice starts a loss or degraded record: body+count, reason and time range.
func (l *Ledger) buildNotice(event trail.Event, body string, keys noticeKeys, reason string, count uint64, first, last time.Time, detail string) {
	l.body = append(l.body[:0], body...)
	l.body = strconv.AppendUint(l.body, count, 10)
	l.body = append(l.body, " record(s): "...)
	l.body = append(l.body, reason...)
	if detail != "" {
		l.body = append(l.body, ": "...)
		l.body = append(l.body, detail...)
	}
	now := time.Now()
	l.enc.Reset(event, now, now, log.SeverityError, l.body, l.resource)
	l.enc.Int(keys.count, int64(count))
	l.enc.String(keys.reason, reason)
	if !first.IsZero() {
		l.enc.String(keys.first, first.UTC().Format(time.RFC3339Nano))
	}
	if !last.IsZero() {
		l.enc.String(keys.last, last.UTC().Format(time.RFC3339Nano))
	}
}

// EmitAgentEvent writes one of the agent's own records (start, stop),
// timestamped at: the start record takes the moment capture began, so that
// no record after it in connaudit.seq is older than it.
//
// With checkpoints enabled, the start record carries the instance's public
// key, and the stop record follows a last checkpoint and states its own seq,
// the instance's final one.
func (l *Ledger) EmitAgentEvent(name trail.Event, body string, at time.Time, sev log.Severity, attrs func(*AttrList)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settle() // agent events are rare: always try, so that what is owed at shutdown is written
	if name == trail.EventAgentStop && l.cp != nil {
		l.writeCheckpoint()
	}
	l.body = append(l.body[:0], body...)
	l.enc.Reset(name, at, time.Now(), sev, l.body, l.resource)
	if attrs != nil {
		attrs(&l.enc.AttrList)
	}
	if l.cp != nil {
		switch name {
		case trail.EventAgentStart:
			l.enc.String(trail.KeyAgentKey, l.cp.pubKey)
		case trail.EventAgentStop:
			l.enc.Int(trail.KeySeqFinal, int64(l.seq+1))
		}
	}
	l.append(l.enc.Finish())
}

// Unreported logs what no record could describe yet; call it last.
func (l *Ledger) Unreported() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settle()
	if d := l.dropped; d.count > 0 {
		l.log.Error("records lost without a loss record: the spool refused them to the end", "count", d.count,
			"first_seq", d.firstSeq, "last_seq", d.lastSeq, "reason", d.reason, "err", d.cause)
	}
	for _, n := range l.owed {
		if x := n.loss; x != nil {
			l.log.Error("a loss the spool refused to the end is in the metrics only", "reason", x.Reason, "count", x.Count, "detail", x.Detail)
		} else {
			x := n.degraded
			l.log.Error("a degraded report the spool refused to the end is in the metrics only", "reason", x.Reason, "count", x.Count, "detail", x.Detail)
		}
	}
}

// LastSeq is the sequence number of the last record emitted.
func (l *Ledger) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}
