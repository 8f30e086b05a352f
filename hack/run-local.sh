#!/usr/bin/env bash
# Runs the local stack in the foreground: VictoriaLogs, our collector and the
# agent, with their data under ./data so history survives the next run.
# Ctrl-C stops the agent first (it flushes its spool), then the collector
# (its persistent queue keeps anything VictoriaLogs has not taken), then VictoriaLogs.
# Each runs in its own session (setsid), so that Ctrl-C reaches only this script
# and the order holds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/bin
data=$root/data

if [ "$(id -u)" != 0 ]; then
	echo "make run needs root: the agent loads eBPF programs" >&2
	exit 1
fi
mkdir -p "$data/victorialogs" "$data/collector" "$data/spool" "$data/logs"

pids=()
stop_all() {
	trap - INT TERM EXIT
	echo
	echo "stopping: agent, collector, VictoriaLogs"
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	[ -z "${tailer:-}" ] || kill "$tailer" 2>/dev/null || true
}
trap stop_all INT TERM EXIT

wait_http() { # url what
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "$2 did not become ready at $1; see $data/logs" >&2
	exit 1
}

setsid "$bin/victoria-logs" -storageDataPath "$data/victorialogs" -httpListenAddr 127.0.0.1:9428 \
	-retentionPeriod 100y >"$data/logs/victorialogs.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:9428/health VictoriaLogs

CONNAUDIT_COLLECTOR_STORAGE_DIR="$data/collector" CONNAUDIT_VICTORIALOGS_URL=http://127.0.0.1:9428 \
	setsid "$bin/otelcol-connaudit" --config "$root/otel-collector/config.yaml" >"$data/logs/collector.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:8888/metrics collector

CONNAUDIT_SPOOL_DIR="$data/spool" CONNAUDIT_BPF_PIN_DIR= CONNAUDIT_NODE_NAME="${CONNAUDIT_NODE_NAME:-$(hostname)}" \
	OTEL_EXPORTER_OTLP_ENDPOINT="${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:4318}" \
	setsid "$bin/connaudit-agent" 2>>"$data/logs/agent.log" &
pids+=($!)
tail -n 0 -f "$data/logs/agent.log" >&2 &
tailer=$!
wait_http http://127.0.0.1:9464/readyz agent

cat <<MSG

connaudit is recording every TCP connect attempt on this host.
  VictoriaLogs  http://127.0.0.1:9428   (data in $data/victorialogs)
  collector     OTLP on 127.0.0.1:4317 and :4318
  agent         http://127.0.0.1:9464/metrics, /healthz, /readyz

Query what it stored, e.g. the last hour's connects to port 443, and who watched:
  $bin/connaudit query --server http://127.0.0.1:9428 --dport 443
  $bin/connaudit coverage --server http://127.0.0.1:9428

Ctrl-C stops all three; nothing accepted is lost.
MSG
wait "${pids[2]}"
