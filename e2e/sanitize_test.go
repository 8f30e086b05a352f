package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
)

// OTEL_RESOURCE_ATTRIBUTES=team=%FF puts the byte 0xff into every record's
// resource, which protobuf refuses; and a spool left by an agent that did not
// sanitize holds such a record already, in the spool's version 1 format.
// Both once stopped delivery for good. Now the left-over record and new ones
// arrive, with the value made valid.
func TestInvalidUTF8DoesNotStallDelivery(t *testing.T) {
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartCollector(t, vl.URL())

	spoolDir := t.TempDir()
	sp, _, err := spool.Open(spoolDir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	badResource := []byte{4, 't', 'e', 'a', 'm', 1, 1, 0xff} // team="\xff", encoded as an unsanitizing agent did
	if err := sp.Append(v1Payload(1, time.Now(), trail.EventAgentStop, "left over by an older agent", badResource)); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	teststack.StartAgent(t, col, "OTEL_RESOURCE_ATTRIBUTES=team=%FF", "CONNAUDIT_SPOOL_DIR="+spoolDir)
	target := listen(t, "tcp4", "127.0.0.1:0")
	conn, err := net.Dial("tcp4", target.String())
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).Port
	conn.Close()

	rec := vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.local.port:=%d network.peer.port:=%d`, local, target.Port), 1, time.Minute)[0]
	if rec["team"] != "\uFFFD" {
		t.Errorf("new record: team = %q, want U+FFFD", rec["team"])
	}
	left := vl.WaitFor(t, `_msg:="left over by an older agent"`, 1, time.Minute)[0]
	if left["team"] != "\uFFFD" {
		t.Errorf("left-over record: team = %q, want U+FFFD", left["team"])
	}
}

// v1Payload is a record as agents before encode-once spooled it (spool
// payload version 1): header, event, body, resource (an attribute list),
// no attributes.
func v1Payload(seq uint64, at time.Time, event trail.Event, body string, resource []byte) []byte {
	le := binary.LittleEndian
	p := []byte{1}
	p = le.AppendUint64(p, seq)
	p = le.AppendUint64(p, uint64(at.UnixNano()))
	p = le.AppendUint64(p, uint64(at.UnixNano()))
	p = append(p, byte(log.SeverityInfo))
	for _, s := range [][]byte{[]byte(event), []byte(body), resource} {
		p = binary.AppendUvarint(p, uint64(len(s)))
		p = append(p, s...)
	}
	return p
}
