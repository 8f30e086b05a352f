// Command otelcol-connaudit is connaudit's OpenTelemetry Collector
// distribution: an OTLP receiver in front of an OTLP/HTTP exporter with a
// persistent (file_storage) sending queue, so that connect records survive a
// VictoriaLogs outage and a collector crash.
//
// It is hand-written in the shape the OpenTelemetry Collector Builder (ocb)
// generates: main.go holds the build info and the config providers,
// components.go the component factories.
//
// Run it with the default config:
//
//	bin/otelcol-connaudit --config otel-collector/config.yaml
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// version is the distribution's version; override it at build time with
// -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if err := otelcol.NewCommand(settings()).Execute(); err != nil {
		log.Fatalf("otelcol-connaudit: %v", err)
	}
}

// settings returns the collector settings of this distribution.
func settings() otelcol.CollectorSettings {
	return otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-connaudit",
			Description: "connaudit OpenTelemetry Collector: ships TCP connect audit records from OTLP to VictoriaLogs",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
				// ${VAR} without a scheme means ${env:VAR}.
				DefaultScheme: "env",
			},
		},
		ProviderModules: map[string]string{
			envprovider.NewFactory().Create(confmap.ProviderSettings{}).Scheme():  "go.opentelemetry.io/collector/confmap/provider/envprovider v1.67.0",
			fileprovider.NewFactory().Create(confmap.ProviderSettings{}).Scheme(): "go.opentelemetry.io/collector/confmap/provider/fileprovider v1.67.0",
			yamlprovider.NewFactory().Create(confmap.ProviderSettings{}).Scheme(): "go.opentelemetry.io/collector/confmap/provider/yamlprovider v1.67.0",
		},
	}
}
