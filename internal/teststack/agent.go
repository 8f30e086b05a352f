package teststack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
)

// Agent is a bin/connaudit-agent process exporting to a Collector over
// OTLP/HTTP, with its spool in a temporary directory and its health endpoints
// on a free port.
type Agent struct {
	t        testing.TB
	proc     *process
	addr     string
	SpoolDir string
	PinDir   string // pinned capture, removed when the test ends
}

var agentSeq atomic.Int32

// StartAgent starts the agent and waits until /readyz answers 200. env adds
// or overrides variables, e.g. "CONNAUDIT_SPOOL_MAX_BYTES=1048576".
func StartAgent(t testing.TB, col *Collector, env ...string) *Agent {
	t.Helper()
	return StartAgentBinary(t, col, Binary(t, "connaudit-agent"), env...)
}

// StartAgentBinary is StartAgent running path (another build, or a wrapper
// that execs bin/connaudit-agent) instead of bin/connaudit-agent.
func StartAgentBinary(t testing.TB, col *Collector, path string, env ...string) *Agent {
	t.Helper()
	a := &Agent{
		t:        t,
		addr:     fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		SpoolDir: t.TempDir(),
		PinDir:   fmt.Sprintf("/sys/fs/bpf/connaudit-test-%d-%d", os.Getpid(), agentSeq.Add(1)),
	}
	t.Cleanup(func() { os.RemoveAll(a.PinDir) })
	full := append(os.Environ(),
		"CONNAUDIT_SPOOL_DIR="+a.SpoolDir,
		"CONNAUDIT_BPF_PIN_DIR="+a.PinDir,
		"CONNAUDIT_LISTEN_ADDR="+a.addr,
		"CONNAUDIT_NODE_NAME=test-node",
		"CONNAUDIT_CLUSTER_NAME=test-cluster",
		"CONNAUDIT_SPOOL_FSYNC_INTERVAL=10ms",
		"CONNAUDIT_EXPORT_MAX_BACKOFF=500ms",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT="+col.HTTPEndpoint(),
	)
	if col.caFile != "" {
		full = append(full, "OTEL_EXPORTER_OTLP_CERTIFICATE="+col.caFile)
	}
	full = append(full, env...)
	a.proc = newProcess(t, "connaudit-agent", path, nil, full)
	t.Cleanup(a.proc.cleanup)
	a.Start()
	return a
}

// Start starts the agent again with the same spool and port, and waits for /readyz.
func (a *Agent) Start() {
	a.t.Helper()
	if err := a.proc.start(); err != nil {
		a.t.Fatalf("teststack: %v", err)
	}
	if err := a.proc.waitUntil(readyTimeout, func() error { _, err := a.get("/readyz"); return err }); err != nil {
		a.t.Fatalf("teststack: %v", err)
	}
}

// StartBinary starts another build of the agent with the same spool, pins
// and port, as an upgrade does, and waits for /readyz.
func (a *Agent) StartBinary(path string) {
	a.t.Helper()
	a.proc.path = path
	a.Start()
}

// Stop sends SIGTERM and waits for the agent to flush and exit.
func (a *Agent) Stop() {
	a.t.Helper()
	if err := a.proc.stop(); err != nil {
		a.t.Fatalf("teststack: %v", err)
	}
}

// Kill sends SIGKILL and waits.
func (a *Agent) Kill() { a.proc.kill() }

// Metrics returns the agent's Prometheus metrics text.
func (a *Agent) Metrics() (string, error) { return a.get("/metrics") }

// Ready reports whether /readyz answers 200.
func (a *Agent) Ready() bool { _, err := a.get("/readyz"); return err == nil }

func (a *Agent) get(path string) (string, error) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+a.addr+path, nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return string(body), nil
}
