package deploy

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// What the agent is given in secret (OTLP headers with a token; the client
// key is checked in TestMTLSOverlay) never shows in its log or its /metrics, even at debug level, and a
// process's command line, which often carries secrets, is not captured.
func TestSecretsStayOut(t *testing.T) {
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartCollector(t, vl.URL())
	const token = "s3cr3t-t0ken-4f1c9e"
	a := teststack.StartAgent(t, col,
		"CONNAUDIT_LOG_LEVEL=debug",
		"OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20"+token+",x-api-key="+token,
	)

	listener := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	const argSecret = "--password=hunter2-7d3a"
	script := fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", listener.Port())
	if out, err := exec.Command("/bin/bash", "-c", script, "bash", argSecret).CombinedOutput(); err != nil {
		t.Fatalf("connect: %v: %s", err, out)
	}
	row := vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d`, listener.Port()), 1, time.Minute)[0]
	for k, v := range row {
		if strings.Contains(v, "hunter2") {
			t.Errorf("the record's %s carries the command line: %q", k, v)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if rows, err := vl.Query(ctx, `"hunter2-7d3a"`); err != nil || len(rows) != 0 {
		t.Errorf("a full-text search for the command-line secret found %d records (err %v)", len(rows), err)
	}

	// Something was exported with the headers, so they were in use.
	c, err := net.Dial("tcp4", listener.String())
	must(t, err, "connect")
	c.Close()
	metrics, err := a.Metrics()
	must(t, err, "metrics")
	a.Stop()
	for what, text := range map[string]string{"log": a.LogTail(1 << 20), "/metrics": metrics} {
		for _, secret := range []string{token} {
			if strings.Contains(text, secret) {
				t.Errorf("the agent's %s contains a secret (%s)", what, secret)
			}
		}
	}
}
