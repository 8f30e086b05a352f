// Package teststack runs the real downstream components of connaudit for
// other packages' tests: a VictoriaLogs server and our collector distribution
// (otelcol-connaudit with otel-collector/config.yaml), each as a child
// process on free ports of 127.0.0.1, with its data in t.TempDir().
//
//	vl := teststack.StartVictoriaLogs(t)
//	col := teststack.StartCollector(t, vl.URL())
//	// ... export OTLP logs to col.GRPCEndpoint() or col.HTTPEndpoint()+"/v1/logs" ...
//	rows := vl.WaitFor(t, `k8s.pod.name:="pod-a"`, 3, time.Minute)
//
// The binaries come from <repo root>/bin (or $CONNAUDIT_BIN_DIR) and are built
// by `make build`; a missing binary fails the test, it never skips. Both
// processes are stopped when the test ends, and when the test has failed the
// tail of each one's stdout and stderr is logged. Stop/Start and Kill let
// fault tests take a component down and bring it back on the same port and
// data directory. The methods fail the test passed to StartVictoriaLogs or
// StartCollector, so call them from that test's goroutine.
//
// # How VictoriaLogs names OTLP log fields
//
// Observed with VictoriaLogs v1.52.1 behind otelcol-connaudit (the collector
// passes OTLP through unchanged). Query results give every value as a string.
//
//	OTLP                          VictoriaLogs field
//	----------------------------  ---------------------------------------------
//	resource attribute k          k, as is (e.g. service.name, k8s.pod.name),
//	                              and a stream field: part of _stream
//	log record attribute k        k, as is (e.g. network.peer.address)
//	string body                   _msg
//	map body {k: v}               top-level fields k (no _msg then)
//	no body                       _msg = "missing _msg field; see https://docs.victoriametrics.com/..."
//	attribute named _msg          _msg (it wins over a map body)
//	time_unix_nano                _time, RFC 3339 with nanoseconds, UTC
//	  (0: observed time instead)
//	event_name                    event_name, and a stream field too
//	severity_number               severity_number ("9"; "0" if unset)
//	severity_text                 severity_text ("INFO"; "Unspecified" if unset)
//	scope name / version          scope.name / scope.version ("unknown" if empty)
//	scope attribute k             scope.attributes.k
//	trace_id / span_id            trace_id / span_id, lowercase hex
//	int / bool / double values    decimal text: "443", "true", "1.5"
//	array value                   JSON text: ["a","b"]
//	map value {inner: x}          flattened with dots: k.inner
//	empty string value            dropped: the field is absent
//
// _stream lists the stream fields in name order, for example
// {event_name="connaudit.tcp.connect",k8s.pod.name="pod-a",service.name="x"}.
// Each distinct combination of stream fields is a new stream, so keep
// high-cardinality values (addresses, ports, ids) out of resource attributes
// and out of event_name.
//
// LogsQL needs no quoting for dotted names: k8s.pod.name:="pod-a" matches
// exactly, seq:=3 matches the string "3".
package teststack
