package teststack

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Collector is a bin/otelcol-connaudit process running the default
// otel-collector/config.yaml (or the file CONNAUDIT_TEST_COLLECTOR_CONFIG
// names, relative to the repository root, such as
// otel-collector/config-ack.yaml, so that the same tests and benchmarks
// run against either gateway mode), listening on free ports of 127.0.0.1, with its
// persistent queue in a temporary directory.
type Collector struct {
	t           testing.TB
	proc        *process
	grpcAddr    string
	httpAddr    string
	metricsPort int
	storageDir  string
	caFile      string // the published CA of a gateway that serves TLS
}

// StartCollector starts the collector exporting to the VictoriaLogs at
// victoriaLogsURL (base URL, e.g. VictoriaLogs.URL()), waits until its OTLP
// ports accept connections, and stops it when the test ends.
func StartCollector(t testing.TB, victoriaLogsURL string) *Collector {
	t.Helper()
	path := Binary(t, "otelcol-connaudit")
	config := repoFile(t, CollectorConfig())
	c := &Collector{
		t:           t,
		grpcAddr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		httpAddr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		metricsPort: freePort(t),
		storageDir:  t.TempDir(),
	}
	env := append(os.Environ(),
		"CONNAUDIT_COLLECTOR_GRPC_ENDPOINT="+c.grpcAddr,
		"CONNAUDIT_COLLECTOR_HTTP_ENDPOINT="+c.httpAddr,
		"CONNAUDIT_COLLECTOR_METRICS_PORT="+strconv.Itoa(c.metricsPort),
		"CONNAUDIT_COLLECTOR_STORAGE_DIR="+c.storageDir,
		"CONNAUDIT_VICTORIALOGS_URL="+victoriaLogsURL,
	)
	c.proc = newProcess(t, "otelcol-connaudit", path, []string{"--config", config}, env)
	t.Cleanup(c.proc.cleanup)
	c.Start()
	return c
}

// CollectorConfig is the collector configuration StartCollector runs,
// relative to the repository root: CONNAUDIT_TEST_COLLECTOR_CONFIG, or
// otel-collector/config.yaml when that is unset.
func CollectorConfig() string {
	if c := os.Getenv("CONNAUDIT_TEST_COLLECTOR_CONFIG"); c != "" {
		return c
	}
	return "otel-collector/config.yaml"
}

// GRPCEndpoint returns the OTLP/gRPC address, "127.0.0.1:port".
func (c *Collector) GRPCEndpoint() string { return c.grpcAddr }

// HTTPEndpoint returns the OTLP/HTTP base URL, "http://127.0.0.1:port", or
// https when the collector serves TLS (CAFile); logs go to
// HTTPEndpoint()+"/v1/logs".
func (c *Collector) HTTPEndpoint() string {
	if c.caFile != "" {
		return "https://" + c.httpAddr
	}
	return "http://" + c.httpAddr
}

// MetricsURL returns the URL of the collector's own Prometheus metrics.
func (c *Collector) MetricsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", c.metricsPort)
}

// Start starts the collector again with the same ports and the same storage
// directory, and waits until both OTLP ports accept connections (receivers
// start last, after the exporter and its queue). StartCollector already
// started it once.
func (c *Collector) Start() {
	c.t.Helper()
	if err := c.proc.start(); err != nil {
		c.t.Fatalf("teststack: %v", err)
	}
	err := c.proc.waitUntil(readyTimeout, func() error {
		for _, addr := range []string{c.grpcAddr, c.httpAddr} {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			conn.Close()
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("teststack: %v", err)
	}
}

// Stop stops the collector with SIGTERM and waits for it to exit.
func (c *Collector) Stop() {
	c.t.Helper()
	if err := c.proc.stop(); err != nil {
		c.t.Fatalf("teststack: %v", err)
	}
}

// Kill kills the collector with SIGKILL and waits for it to exit.
func (c *Collector) Kill() { c.proc.kill() }

// QueueSize returns the number of log records in the exporter's sending
// queue, from the collector's otelcol_exporter_queue_size metric.
func (c *Collector) QueueSize(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.MetricsURL(), nil)
	if err != nil {
		return 0, fmt.Errorf("read collector metrics: %w", err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read collector metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("read collector metrics: GET %s: %s", c.MetricsURL(), resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "otelcol_exporter_queue_size{") {
			continue
		}
		value := line[strings.LastIndexByte(line, ' ')+1:]
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, fmt.Errorf("parse metric line %q: %w", line, err)
		}
		return int(n), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read collector metrics: %w", err)
	}
	return 0, fmt.Errorf("collector metrics have no otelcol_exporter_queue_size")
}
