package teststack

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// StartGateway starts otelcol-connaudit with the given configuration files
// (merged in order, as repeated --config flags), such as the gateway
// configuration of k8s/deploy, exporting to victoriaLogsURL. It sets the
// listen addresses of k8s/deploy/base/collector-config.yaml to free ports of
// 127.0.0.1; env adds variables (e.g. CONNAUDIT_COLLECTOR_TLS_DIR).
func StartGateway(t testing.TB, victoriaLogsURL string, configs []string, env ...string) *Collector {
	t.Helper()
	c := &Collector{
		t:           t,
		grpcAddr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		httpAddr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		metricsPort: freePort(t),
		storageDir:  t.TempDir(),
	}
	full := append(os.Environ(),
		"CONNAUDIT_COLLECTOR_GRPC_ENDPOINT="+c.grpcAddr,
		"CONNAUDIT_COLLECTOR_HTTP_ENDPOINT="+c.httpAddr,
		fmt.Sprintf("CONNAUDIT_COLLECTOR_HEALTH_ENDPOINT=127.0.0.1:%d", freePort(t)),
		"CONNAUDIT_COLLECTOR_METRICS_HOST=127.0.0.1",
		"CONNAUDIT_COLLECTOR_METRICS_PORT="+strconv.Itoa(c.metricsPort),
		"CONNAUDIT_COLLECTOR_STORAGE_DIR="+c.storageDir,
		"CONNAUDIT_VICTORIALOGS_URL="+victoriaLogsURL,
	)
	var args []string
	for _, cfg := range configs {
		args = append(args, "--config="+cfg)
	}
	c.proc = newProcess(t, "otelcol-connaudit", Binary(t, "otelcol-connaudit"), args, append(full, env...))
	t.Cleanup(c.proc.cleanup)
	c.Start()
	return c
}

// HTTPAddr returns the OTLP/HTTP listen address, "127.0.0.1:port".
func (c *Collector) HTTPAddr() string { return c.httpAddr }

// LogTail returns the last n bytes of the agent's output (its JSON log).
func (a *Agent) LogTail(n int64) string { return a.proc.logTail(n) }

// VictoriaLogsCluster is VictoriaLogs in cluster mode: storage nodes behind
// an insert and a select front end, all the victoria-logs binary.
type VictoriaLogsCluster struct {
	t         testing.TB
	storage   []*VictoriaLogs
	insertURL string
	selectVL  *VictoriaLogs // the select front end; Query flushes the storage nodes first
}

// StartVictoriaLogsCluster starts len(storageArgs) storage nodes, each with
// its arguments plus a data directory and listen address, and insert and
// select front ends with their arguments plus -storageNode and a listen
// address. Arguments that those replace (-storageDataPath, -httpListenAddr,
// -storageNode) are dropped.
func StartVictoriaLogsCluster(t testing.TB, storageArgs [][]string, insertArgs, selectArgs []string) *VictoriaLogsCluster {
	t.Helper()
	path := Binary(t, "victoria-logs")
	vc := &VictoriaLogsCluster{t: t}
	var nodes []string
	start := func(name string, args []string, extra ...string) *VictoriaLogs {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args = append(dropFlags(args, "-storageDataPath", "-httpListenAddr", "-storageNode"), "-httpListenAddr="+addr, "-loggerLevel=WARN")
		args = append(args, extra...)
		v := &VictoriaLogs{t: t, proc: newProcess(t, name, path, args, nil), url: "http://" + addr}
		t.Cleanup(v.proc.cleanup)
		v.Start()
		return v
	}
	for i, args := range storageArgs {
		v := start(fmt.Sprintf("vlstorage-%d", i), args, "-storageDataPath="+t.TempDir())
		vc.storage = append(vc.storage, v)
		nodes = append(nodes, strings.TrimPrefix(v.url, "http://"))
	}
	storageNode := "-storageNode=" + strings.Join(nodes, ",")
	vc.insertURL = start("vlinsert", insertArgs, storageNode).url
	vc.selectVL = start("vlselect", selectArgs, storageNode)
	return vc
}

// InsertURL is the base URL of the insert front end.
func (vc *VictoriaLogsCluster) InsertURL() string { return vc.insertURL }

// SelectURL is the base URL of the select front end.
func (vc *VictoriaLogsCluster) SelectURL() string { return vc.selectVL.url }

// Storage returns the storage nodes, for queries of one node alone.
func (vc *VictoriaLogsCluster) Storage() []*VictoriaLogs { return vc.storage }

// Query flushes every storage node, then runs a LogsQL query through the
// select front end over HTTP.
func (vc *VictoriaLogsCluster) Query(ctx context.Context, logsql string) ([]map[string]string, error) {
	for _, s := range vc.storage {
		if err := s.post(ctx, "/internal/force_flush", nil); err != nil {
			return nil, err
		}
	}
	return vc.selectVL.queryNoFlush(ctx, logsql)
}

func dropFlags(args []string, flags ...string) []string {
	var kept []string
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		drop := false
		for _, f := range flags {
			drop = drop || name == f
		}
		if !drop {
			kept = append(kept, a)
		}
	}
	return kept
}

// LogTail returns the last n bytes of the collector's output.
func (c *Collector) LogTail(n int64) string { return c.proc.logTail(n) }
