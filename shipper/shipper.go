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

	"github.com/connaudit/connaudit/shipper/spool"
)

// Shipper numbers records and appends them to the spool. Every record the
// agent emits passes through Emit, so connaudit.seq has no holes but those
// that a connaudit.loss record explains.
type Shipper struct {
	mu       sync.Mutex
	seq      uint64
	spool    *spool.Spool
	metrics  *Metrics
	log      *slog.Logger
	resource []byte // the agent's own resource, for the records it writes about itself
	dropped  dropped
	enc      Encoder
	body     []byte
}

// dropped describes the records the spool refused since it last accepted one.
type dropped struct {
	count               uint64
	firstSeq, lastSeq   uint64
	firstTime, lastTime time.Time
	reason              string
	cause               error
	spoolBytes          int64     // spool size at the last refusal
	lastTry             time.Time // of reporting the drop
}

// retryInterval bounds how often a refused loss report is tried again while
// the spool has not shrunk (the disk may have gained room meanwhile).
const retryInterval = time.Second

// New returns a Shipper that appends to sp. resource is the agent's encoded resource.
func New(sp *spool.Spool, resource []byte, m *Metrics, logger *slog.Logger) *Shipper {
	return &Shipper{spool: sp, resource: resource, metrics: m, log: logger}
}

// Emit stamps the next sequence number into an encoded record and appends it
// to the spool. A record the spool refuses is counted, and reported by a
// connaudit.loss record as soon as the spool accepts records again.
func (s *Shipper) Emit(payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reportDroppedIfRoom()
	s.append(payload)
}

// reportDroppedIfRoom writes the pending loss record once the spool may take
// it: it shrank, or retryInterval passed. The caller holds mu.
func (s *Shipper) reportDroppedIfRoom() {
	d := &s.dropped
	if d.count == 0 || s.spool.Stats().Bytes >= d.spoolBytes && time.Since(d.lastTry) < retryInterval {
		return
	}
	s.reportDropped()
}

// append stamps and appends; the caller holds mu.
func (s *Shipper) append(payload []byte) bool {
	s.seq++
	stampSeq(payload, s.seq)
	err := s.spool.Append(payload)
	if err == nil {
		s.metrics.Spooled.Inc()
		return true
	}
	reason := LossSpoolError
	if errors.Is(err, spool.ErrFull) {
		reason = LossSpoolFull
	}
	d := &s.dropped
	ts := recordTime(payload)
	if d.count == 0 {
		d.firstSeq, d.firstTime, d.reason, d.cause, d.lastTry = s.seq, ts, reason, err, time.Now()
		s.log.Error("spool refused a record; counting every record lost until it accepts again", "reason", reason, "err", err)
	}
	d.count++
	d.lastSeq, d.lastTime = s.seq, ts
	d.spoolBytes = s.spool.Stats().Bytes
	s.metrics.Lost.WithLabelValues(reason).Inc()
	return false
}

// reportDropped appends the connaudit.loss record for the dropped range; the caller holds mu.
func (s *Shipper) reportDropped() {
	d := s.dropped
	s.buildLoss(d.reason, d.count, d.firstTime, d.lastTime, d.cause.Error())
	s.enc.Int("connaudit.lost.seq.first", int64(d.firstSeq))
	s.enc.Int("connaudit.lost.seq.last", int64(d.lastSeq))
	s.dropped = dropped{}
	if !s.append(s.enc.Bytes()) {
		// Still refused: the new drop (this loss record included) carries on the count.
		s.dropped.count += d.count
		s.dropped.firstSeq, s.dropped.firstTime = d.firstSeq, d.firstTime
		s.dropped.lastTry = time.Now()
		return
	}
	s.log.Warn("spool accepts records again", "lost", d.count, "first_seq", d.firstSeq, "last_seq", d.lastSeq)
}

// Loss describes records (or identities) lost for one reason.
type Loss struct {
	Reason      string
	Count       uint64 // 0 when only Bytes is known
	Bytes       int64  // unreadable bytes, for spool damage
	First, Last time.Time
	// FirstSeq..LastSeq are the seqs of the lost records, when they had any.
	FirstSeq, LastSeq uint64
	Detail            string
}

// EmitLoss writes a connaudit.loss record. It reports whether the spool took
// it; when it did not, the record's own seq is counted in the spool's drop.
func (s *Shipper) EmitLoss(l Loss) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reportDroppedIfRoom()
	s.buildLoss(l.Reason, l.Count, l.First, l.Last, l.Detail)
	if l.Bytes > 0 {
		s.enc.Int("connaudit.lost.bytes", l.Bytes)
	}
	if l.FirstSeq > 0 {
		s.enc.Int("connaudit.lost.seq.first", int64(l.FirstSeq))
		s.enc.Int("connaudit.lost.seq.last", int64(l.LastSeq))
	}
	return s.append(s.enc.Bytes())
}

func (s *Shipper) buildLoss(reason string, count uint64, first, last time.Time, detail string) {
	s.buildNotice(EventLoss, "lost ", "connaudit.lost.", reason, count, first, last, detail)
}

// Degraded describes records that were shipped with less identity than they
// should have had, for one reason. They are in the trail; nothing is missing.
type Degraded struct {
	Reason      string
	Count       uint64
	First, Last time.Time
	Detail      string
}

// EmitDegraded writes a connaudit.degraded record; it reports whether the
// spool took it.
func (s *Shipper) EmitDegraded(d Degraded) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reportDroppedIfRoom()
	s.buildNotice(EventDegraded, "shipped with less identity: ", "connaudit.degraded.", d.Reason, d.Count, d.First, d.Last, d.Detail)
	return s.append(s.enc.Bytes())
}

// buildNotice starts a loss or degraded record: prefix+count, reason and
// time range under the attribute prefix attr.
func (s *Shipper) buildNotice(event, body, attr, reason string, count uint64, first, last time.Time, detail string) {
	s.body = append(s.body[:0], body...)
	s.body = strconv.AppendUint(s.body, count, 10)
	s.body = append(s.body, " record(s): "...)
	s.body = append(s.body, reason...)
	if detail != "" {
		s.body = append(s.body, ": "...)
		s.body = append(s.body, detail...)
	}
	now := time.Now()
	s.enc.Reset(event, now, now, log.SeverityError, s.body, s.resource)
	s.enc.Int(attr+"count", int64(count))
	s.enc.String(attr+"reason", reason)
	if !first.IsZero() {
		s.enc.String(attr+"time.first", first.UTC().Format(time.RFC3339Nano))
	}
	if !last.IsZero() {
		s.enc.String(attr+"time.last", last.UTC().Format(time.RFC3339Nano))
	}
}

// EmitAgentEvent writes one of the agent's own records (start, stop),
// timestamped at: the start record takes the moment capture began, so that
// no record after it in connaudit.seq is older than it.
func (s *Shipper) EmitAgentEvent(name, body string, at time.Time, sev log.Severity, attrs func(*AttrList)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped.count > 0 {
		s.reportDropped() // agent events are rare: always try, so a drop at shutdown is reported
	}
	s.body = append(s.body[:0], body...)
	s.enc.Reset(name, at, time.Now(), sev, s.body, s.resource)
	if attrs != nil {
		attrs(&s.enc.AttrList)
	}
	s.append(s.enc.Bytes())
}

// Unreported logs a drop that no loss record could describe yet; call it last.
func (s *Shipper) Unreported() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.dropped; d.count > 0 {
		s.log.Error("records lost without a loss record: the spool refused them to the end", "count", d.count,
			"first_seq", d.firstSeq, "last_seq", d.lastSeq, "reason", d.reason, "err", d.cause)
	}
}

// LastSeq is the sequence number of the last record emitted.
func (s *Shipper) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}
