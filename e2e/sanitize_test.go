package e2e

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
)

// OTEL_RESOURCE_ATTRIBUTES=team=%FF puts the byte 0xff into every record's
// resource, which protobuf refuses; and a spool left by an agent that did not
// sanitize holds such a record already. Both once stopped delivery for good.
// Now the left-over record and new ones arrive, with the value made valid.
func TestInvalidUTF8DoesNotStallDelivery(t *testing.T) {
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartCollector(t, vl.URL())

	spoolDir := t.TempDir()
	sp, _, err := spool.Open(spoolDir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sh := shipper.NewLedger(sp, nil, shipper.NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	var e shipper.Encoder
	badResource := []byte{4, 't', 'e', 'a', 'm', 1, 1, 0xff} // team="\xff", encoded as an unsanitizing agent did
	now := time.Now()
	e.Reset(trail.EventAgentStop, now, now, log.SeverityInfo, []byte("left over by an older agent"), badResource)
	sh.Emit(e.Bytes())
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
