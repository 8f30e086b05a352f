package shipper

import (
	"crypto/ed25519"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/shipper/otlp"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
	"github.com/connaudit/connaudit/trail/checkpoint"
)

// chainer keeps an instance's hash chain over the records that reach the
// spool, in seq order. A record the spool refuses does not advance it: its
// seq is named by a loss record instead.
type chainer struct {
	head    chain.Link
	headSeq uint64 // the seq whose chain value head is; 0 before the first
}

// link is the chain value, after the head, of a record whose seq is stamped.
func (c *chainer) link(e *Encoder) chain.Link {
	return chain.Next(c.head, e.canon.Leaf())
}

// appendChain appends the connaudit.chain attribute; it is the payload's last.
func appendChain(payload []byte, l chain.Link) []byte {
	var hex [2 * chain.Size]byte
	return otlp.AppendStringAttribute(payload, string(trail.KeyChain), l.AppendText(hex[:0]))
}

// Head is the seq and chain value of the last record that reached the
// spool; seq 0 before the first.
func (l *Ledger) Head() (uint64, chain.Link) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.chain.headSeq, l.chain.head
}

// CheckpointConfig makes a Ledger sign checkpoints.
type CheckpointConfig struct {
	Instance string // service.instance.id of the records
	Key      ed25519.PrivateKey
	Records  uint64 // a checkpoint after this many records at most
	// Witness, when set, is told of every checkpoint that reached the
	// spool, with its signature and time. It is called with the ledger
	// locked, on the capture path: it must return at once (a witness
	// writer keeps the latest and writes it elsewhere).
	Witness func(c checkpoint.Checkpoint, signature string, at time.Time)
}

// checkpoints is the state of the checkpoint since the last one.
type checkpoints struct {
	cfg     CheckpointConfig
	pubKey  string
	first   uint64 // first seq since the last checkpoint record
	count   uint64 // records since then that reached the spool
	writing bool
	enc     Encoder
	body    []byte
}

// EnableCheckpoints makes the ledger write a signed connaudit.checkpoint
// record every cfg.Records records and whenever Checkpoint is called, put
// the public key in the start record and a final checkpoint before the stop
// record. Call it before the first record.
func (l *Ledger) EnableCheckpoints(cfg CheckpointConfig) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cp = &checkpoints{cfg: cfg, first: l.seq + 1,
		pubKey: checkpoint.EncodePublicKey(cfg.Key.Public().(ed25519.PublicKey))}
}

// Checkpoint writes a signed checkpoint now, whether or not records were
// emitted since the last one: an idle agent's checkpoints are its heartbeat.
func (l *Ledger) Checkpoint() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cp == nil {
		return
	}
	l.settleIfRoom()
	l.writeCheckpoint()
}

// counted notes a record that reached the spool and writes a checkpoint when
// it is due; the caller holds mu.
func (l *Ledger) counted() {
	cp := l.cp
	if cp == nil || cp.writing {
		return
	}
	cp.count++
	if cp.cfg.Records > 0 && l.seq+1-cp.first >= cp.cfg.Records {
		l.writeCheckpoint()
	}
}

// writeCheckpoint appends a checkpoint of the seqs since the last one; the
// caller holds mu.
func (l *Ledger) writeCheckpoint() {
	cp := l.cp
	c := checkpoint.Checkpoint{Instance: cp.cfg.Instance, First: cp.first, Last: l.seq, Count: cp.count, Head: l.chain.head}
	cp.body = append(cp.body[:0], "checkpoint of seqs "...)
	cp.body = strconv.AppendUint(cp.body, c.First, 10)
	cp.body = append(cp.body, ".."...)
	cp.body = strconv.AppendUint(cp.body, c.Last, 10)
	now := time.Now()
	cp.enc.Reset(trail.EventCheckpoint, now, now, log.SeverityInfo, cp.body, l.resource)
	cp.enc.Int(trail.KeyCheckpointSeqFirst, int64(c.First))
	cp.enc.Int(trail.KeyCheckpointSeqLast, int64(c.Last))
	cp.enc.Int(trail.KeyCheckpointCount, int64(c.Count))
	cp.enc.String(trail.KeyCheckpointHead, c.Head.String())
	sig := checkpoint.Sign(cp.cfg.Key, c)
	cp.enc.String(trail.KeyCheckpointSignature, sig)
	cp.writing = true
	spooled := l.append(cp.enc.Finish())
	cp.writing = false
	if spooled && cp.cfg.Witness != nil {
		cp.cfg.Witness(c, sig, now)
	}
	cp.first, cp.count = l.seq+1, 0
}

// StoredFields renders a spooled record as VictoriaLogs gives it back: one
// flat map of strings (resource and record attributes, connaudit.seq,
// event_name, severity_number, _time, _msg), empty values dropped. It lets
// tests and tools verify a trail without a store.
func StoredFields(payload []byte) (map[string]string, error) {
	var r Record
	if err := Decode(payload, &r); err != nil {
		return nil, err
	}
	m := map[string]string{
		"_time":              r.Timestamp.UTC().Format(time.RFC3339Nano),
		"_msg":               r.Body,
		"event_name":         r.EventName,
		"severity_number":    strconv.Itoa(int(r.Severity)),
		string(trail.KeySeq): strconv.FormatUint(r.Seq, 10),
	}
	for _, kv := range append(r.Resource, r.Attrs...) {
		var v string
		switch kv.Value.Type() {
		case attribute.FLOAT64:
			v = strconv.FormatFloat(kv.Value.AsFloat64(), 'f', -1, 64)
		default:
			v = kv.Value.Emit()
		}
		if v != "" {
			m[string(kv.Key)] = v
		}
	}
	return m, nil
}
