package verify

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
)

// Fields a store adds to a record's attributes (VictoriaLogs' names): they
// are not attributes, so not part of the canonical form. The event name,
// time, severity and body enter it on their own.
const (
	fieldTime     = "_time"
	fieldMsg      = "_msg"
	fieldEvent    = "event_name"
	fieldSeverity = "severity_number"
)

var storeFields = map[string]bool{
	fieldTime: true, fieldMsg: true, "_stream": true, "_stream_id": true, fieldEvent: true,
	fieldSeverity: true, "severity_text": true, "scope.name": true, "scope.version": true,
	string(trail.KeyChain): true,
}

// missingMsg is what VictoriaLogs stores as _msg for a record without a body.
const missingMsgPrefix = "missing _msg field"

// entry is what the verifier keeps of one stored record: it holds one per
// record of the window, so it is kept small, and what only the records that
// matter to the proof carry is behind a pointer.
type entry struct {
	seq     uint64
	nanos   int64 // its time, in Unix nanoseconds
	leaf    chain.Link
	claimed chain.Link
	*special
	kind    uint8 // 1 + its index in trail.Events; 0: another event, named in special
	chained bool  // carries a well-formed connaudit.chain
}

// time is the record's time.
func (e *entry) time() time.Time { return timeOf(e.nanos) }

func timeOf(nanos int64) time.Time { return time.Unix(0, nanos) }

// event is the record's event name.
func (e *entry) event() string {
	if e.kind == 0 {
		return e.other
	}
	return string(trail.Events[e.kind-1])
}

// special is what the records that matter to the proof carry; every other
// record shares noSpecial, which is never written.
type special struct {
	other        string        // the event name of a record not of the agent's events
	key          string        // start: the instance's public key
	prev         *prevLink     // start: the instance before it on the node
	heartbeat    time.Duration // start: the promised heartbeat
	final        uint64        // stop: the final seq
	cp           *checkpointR  // checkpoint
	lossReason   string        // loss
	lossF, lossL uint64        // loss: seqs named, when any
}

var noSpecial = &special{}

// eventKind is kind for an event name; 0 for a name not of the agent's.
func eventKind(s string) uint8 {
	for i, ev := range trail.Events {
		if s == string(ev) {
			return uint8(i + 1)
		}
	}
	return 0
}

type checkpointR struct {
	first, last, count uint64
	head               chain.Link
	headOK             bool
	sig                string
}

// canonicalizer turns rows into entries, reusing its buffers.
type canonicalizer struct {
	canon chain.Canon
}

// entry reads one row: every value a string, as the backend gives it back.
func (c *canonicalizer) entry(row map[string]string) (entry, error) {
	var e entry
	seq, err := strconv.ParseUint(row[string(trail.KeySeq)], 10, 64)
	if err != nil || seq == 0 {
		return e, fmt.Errorf("record without a valid %s: %q", trail.KeySeq, row[string(trail.KeySeq)])
	}
	e.seq = seq
	t, err := time.Parse(time.RFC3339Nano, row[fieldTime])
	if err != nil {
		return e, fmt.Errorf("seq %d: bad %s %q", seq, fieldTime, row[fieldTime])
	}
	e.nanos = t.UnixNano()
	e.kind = eventKind(row[fieldEvent])
	e.special = noSpecial
	if e.kind == 0 {
		e.special = &special{other: row[fieldEvent]}
	}
	sev, _ := strconv.ParseInt(row[fieldSeverity], 10, 64)
	body := row[fieldMsg]
	if strings.HasPrefix(body, missingMsgPrefix) {
		body = ""
	}
	c.canon.Reset(e.event(), e.nanos, sev, body)
	for k, v := range row {
		if !storeFields[k] {
			c.canon.String(k, v)
		}
	}
	e.leaf = c.canon.Leaf()
	if s, ok := row[string(trail.KeyChain)]; ok {
		if l, err := chain.Parse(s); err == nil {
			e.claimed, e.chained = l, true
		}
	}
	u := func(k trail.Key) uint64 { n, _ := strconv.ParseUint(row[string(k)], 10, 64); return n }
	switch trail.Event(e.event()) {
	case trail.EventAgentStart, trail.EventAgentStop, trail.EventCheckpoint, trail.EventLoss:
		e.special = &special{}
	}
	switch trail.Event(e.event()) {
	case trail.EventAgentStart:
		e.key = row[string(trail.KeyAgentKey)]
		e.prev = parsePrev(row)
		if f, err := strconv.ParseFloat(row[string(trail.KeyHeartbeat)], 64); err == nil && f > 0 {
			e.heartbeat = time.Duration(f * float64(time.Second))
		}
	case trail.EventAgentStop:
		e.final = u(trail.KeySeqFinal)
	case trail.EventCheckpoint:
		cp := &checkpointR{first: u(trail.KeyCheckpointSeqFirst), last: u(trail.KeyCheckpointSeqLast),
			count: u(trail.KeyCheckpointCount), sig: row[string(trail.KeyCheckpointSignature)]}
		if h, err := chain.Parse(row[string(trail.KeyCheckpointHead)]); err == nil {
			cp.head, cp.headOK = h, true
		}
		e.cp = cp
	case trail.EventLoss:
		e.lossReason = row[string(trail.KeyLostReason)]
		e.lossF, e.lossL = u(trail.KeyLostSeqFirst), u(trail.KeyLostSeqLast)
	}
	return e, nil
}

// prevLink is what a start record says of the instance before it.
type prevLink struct {
	instance string
	seq      uint64
	chain    chain.Link
	chainOK  bool
}

func parsePrev(row map[string]string) *prevLink {
	id := row[string(trail.KeyPreviousInstance)]
	if id == "" {
		return nil
	}
	p := &prevLink{instance: id}
	p.seq, _ = strconv.ParseUint(row[string(trail.KeyPreviousSeq)], 10, 64)
	if l, err := chain.Parse(row[string(trail.KeyPreviousChain)]); err == nil {
		p.chain, p.chainOK = l, true
	}
	return p
}
