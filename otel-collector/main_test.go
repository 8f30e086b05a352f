package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/pipeline"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
)

const defaultConfig = "config.yaml"

func TestFactoriesHaveRequiredComponents(t *testing.T) {
	f, err := components()
	if err != nil {
		t.Fatalf("components: %v", err)
	}
	if f.Telemetry == nil {
		t.Error("Factories.Telemetry is nil; config loading would fail")
	}
	check := func(kind string, present func(component.Type) bool, names ...string) {
		for _, name := range names {
			if !present(component.MustNewType(name)) {
				t.Errorf("%s %q not registered", kind, name)
			}
		}
	}
	check("receiver", func(ty component.Type) bool { _, ok := f.Receivers[ty]; return ok }, "otlp")
	check("processor", func(ty component.Type) bool { _, ok := f.Processors[ty]; return ok }, "memory_limiter", "connaudit_node_binding")
	// otlphttp and otlp are the deprecated aliases of otlp_http and otlp_grpc.
	check("exporter", func(ty component.Type) bool { _, ok := f.Exporters[ty]; return ok },
		"otlp_http", "otlphttp", "otlp_grpc", "otlp", "file", "debug")
	check("extension", func(ty component.Type) bool { _, ok := f.Extensions[ty]; return ok }, "file_storage", "health_check", "connaudit_node_auth", "connaudit_serving_cert")
}

// TestValidateSubcommand runs `otelcol-connaudit validate --config config.yaml`
// in-process, exactly as an operator would.
func TestValidateSubcommand(t *testing.T) {
	t.Setenv("CONNAUDIT_COLLECTOR_STORAGE_DIR", t.TempDir())
	cmd := otelcol.NewCommand(settings())
	cmd.SetArgs([]string{"validate", "--config", defaultConfig})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("validate %s: %v", defaultConfig, err)
	}
}

func TestDefaultConfigWithoutEnvironment(t *testing.T) {
	for _, name := range []string{
		"CONNAUDIT_COLLECTOR_GRPC_ENDPOINT", "CONNAUDIT_COLLECTOR_HTTP_ENDPOINT",
		"CONNAUDIT_VICTORIALOGS_URL", "CONNAUDIT_COLLECTOR_STORAGE_DIR",
	} {
		t.Setenv(name, "") // registers restoration of the old value
		unsetenv(t, name)
	}
	cfg := loadConfig(t)

	grpc, http := receiverEndpoints(t, cfg)
	if grpc != "127.0.0.1:4317" || http != "127.0.0.1:4318" {
		t.Errorf("OTLP endpoints = %q, %q; want 127.0.0.1:4317, 127.0.0.1:4318", grpc, http)
	}
	if got, want := victoriaLogsExporter(t, cfg).LogsEndpoint, "http://127.0.0.1:9428/insert/opentelemetry/v1/logs"; got != want {
		t.Errorf("logs_endpoint = %q, want %q", got, want)
	}
	if got, want := queueStorage(t, cfg).Directory, "/var/lib/connaudit/collector"; got != want {
		t.Errorf("file_storage directory = %q, want %q", got, want)
	}
}

func TestDefaultConfigFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CONNAUDIT_COLLECTOR_GRPC_ENDPOINT", "127.0.0.1:14317")
	t.Setenv("CONNAUDIT_COLLECTOR_HTTP_ENDPOINT", "127.0.0.1:14318")
	t.Setenv("CONNAUDIT_VICTORIALOGS_URL", "http://127.0.0.1:19428")
	t.Setenv("CONNAUDIT_COLLECTOR_STORAGE_DIR", dir)
	cfg := loadConfig(t)

	grpc, http := receiverEndpoints(t, cfg)
	if grpc != "127.0.0.1:14317" || http != "127.0.0.1:14318" {
		t.Errorf("OTLP endpoints = %q, %q; want the values of the environment", grpc, http)
	}

	exp := victoriaLogsExporter(t, cfg)
	if got, want := exp.LogsEndpoint, "http://127.0.0.1:19428/insert/opentelemetry/v1/logs"; got != want {
		t.Errorf("logs_endpoint = %q, want %q", got, want)
	}
	if exp.Encoding != otlphttpexporter.EncodingProto {
		t.Errorf("encoding = %q, VictoriaLogs accepts only proto", exp.Encoding)
	}
	if !exp.RetryConfig.Enabled || exp.RetryConfig.MaxElapsedTime != 0 {
		t.Errorf("retry_on_failure = %+v, want enabled with max_elapsed_time 0", exp.RetryConfig)
	}
	if !exp.QueueConfig.HasValue() {
		t.Fatal("sending_queue is disabled")
	}
	queue := exp.QueueConfig.Get()
	if queue.StorageID == nil || *queue.StorageID != component.MustNewIDWithName("file_storage", "queue") {
		t.Errorf("sending_queue.storage = %v, want file_storage/queue", queue.StorageID)
	}
	if !queue.Batch.HasValue() {
		t.Error("sending_queue.batch is not set; batching must happen inside the persistent queue")
	}

	storage := queueStorage(t, cfg)
	if storage.Directory != dir || !storage.FSync || !storage.CreateDirectory {
		t.Errorf("file_storage/queue = %+v, want directory %q, fsync and create_directory", storage, dir)
	}

	logs, ok := cfg.Service.Pipelines[pipeline.NewID(pipeline.SignalLogs)]
	if !ok {
		t.Fatal("no logs pipeline")
	}
	for _, p := range logs.Processors {
		if p.Type().String() == "batch" {
			t.Errorf("logs pipeline has a batch processor %v; it can lose data in front of a persistent queue", p)
		}
	}
}

// loadConfig resolves config.yaml the way the collector does at start-up
// and validates it.
func loadConfig(t *testing.T) *otelcol.Config {
	t.Helper()
	set := settings().ConfigProviderSettings
	set.ResolverSettings.URIs = []string{"file:" + defaultConfig}
	provider, err := otelcol.NewConfigProvider(set)
	if err != nil {
		t.Fatalf("new config provider: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	factories, err := components()
	if err != nil {
		t.Fatalf("components: %v", err)
	}
	cfg, err := provider.Get(ctx, factories)
	if err != nil {
		t.Fatalf("load %s: %v", defaultConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate %s: %v", defaultConfig, err)
	}
	return cfg
}

func receiverEndpoints(t *testing.T, cfg *otelcol.Config) (grpc, http string) {
	t.Helper()
	rc, ok := cfg.Receivers[component.MustNewID("otlp")].(*otlpreceiver.Config)
	if !ok {
		t.Fatalf("receiver otlp missing or of type %T", cfg.Receivers[component.MustNewID("otlp")])
	}
	if !rc.Protocols.GRPC.HasValue() || !rc.Protocols.HTTP.HasValue() {
		t.Fatal("OTLP receiver must enable both grpc and http")
	}
	return rc.Protocols.GRPC.Get().NetAddr.Endpoint, rc.Protocols.HTTP.Get().ServerConfig.NetAddr.Endpoint
}

func victoriaLogsExporter(t *testing.T, cfg *otelcol.Config) *otlphttpexporter.Config {
	t.Helper()
	id := component.MustNewIDWithName("otlp_http", "victorialogs")
	ec, ok := cfg.Exporters[id].(*otlphttpexporter.Config)
	if !ok {
		t.Fatalf("exporter %v missing or of type %T", id, cfg.Exporters[id])
	}
	return ec
}

func queueStorage(t *testing.T, cfg *otelcol.Config) *filestorage.Config {
	t.Helper()
	id := component.MustNewIDWithName("file_storage", "queue")
	sc, ok := cfg.Extensions[id].(*filestorage.Config)
	if !ok {
		t.Fatalf("extension %v missing or of type %T", id, cfg.Extensions[id])
	}
	return sc
}

// unsetenv removes an environment variable for the rest of the test; call
// t.Setenv first so that the old value comes back afterwards. (Unlike a shell,
// ${env:NAME:-default} uses the default only for an unset variable, not for
// an empty one.)
func unsetenv(t *testing.T, name string) {
	t.Helper()
	if err := os.Unsetenv(name); err != nil {
		t.Fatalf("unsetenv %s: %v", name, err)
	}
}
