package main

import (
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"

	"github.com/connaudit/connaudit/otel-collector/extension/nodeauthextension"
	"github.com/connaudit/connaudit/otel-collector/extension/servingcertextension"
	"github.com/connaudit/connaudit/otel-collector/processor/nodebindingprocessor"
)

// Versions of the component modules, reported by `otelcol-connaudit components`.
// Keep them in step with go.mod.
const (
	coreVersion    = "v0.161.0"
	contribVersion = "v0.161.0"
	// connaudit's own components live in this module.
	ownModule = "github.com/connaudit/connaudit/otel-collector"
)

// components returns the factories of every component this distribution
// ships. Type names registered at v0.161.0:
//
//	receivers:  otlp
//	processors: memory_limiter, connaudit_node_binding
//	exporters:  otlp_http (alias otlphttp), otlp_grpc (alias otlp), file, debug
//	extensions: file_storage, health_check, connaudit_node_auth, connaudit_serving_cert
func components() (otelcol.Factories, error) {
	var err error
	factories := otelcol.Factories{
		// Without a telemetry factory the service cannot load its config.
		Telemetry: otelconftelemetry.NewFactory(),
	}

	factories.Extensions, err = otelcol.MakeFactoryMap[extension.Factory](
		filestorage.NewFactory(),
		healthcheckextension.NewFactory(),
		nodeauthextension.NewFactory(),
		servingcertextension.NewFactory(),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}
	factories.ExtensionModules = map[component.Type]string{
		filestorage.NewFactory().Type():          "github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage " + contribVersion,
		healthcheckextension.NewFactory().Type(): "github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension " + contribVersion,
		nodeauthextension.NewFactory().Type():    ownModule + "/extension/nodeauthextension",
		servingcertextension.NewFactory().Type(): ownModule + "/extension/servingcertextension",
	}

	factories.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](
		otlpreceiver.NewFactory(),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}
	factories.ReceiverModules = map[component.Type]string{
		otlpreceiver.NewFactory().Type(): "go.opentelemetry.io/collector/receiver/otlpreceiver " + coreVersion,
	}

	factories.Processors, err = otelcol.MakeFactoryMap[processor.Factory](
		memorylimiterprocessor.NewFactory(),
		nodebindingprocessor.NewFactory(),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}
	factories.ProcessorModules = map[component.Type]string{
		memorylimiterprocessor.NewFactory().Type(): "go.opentelemetry.io/collector/processor/memorylimiterprocessor " + coreVersion,
		nodebindingprocessor.NewFactory().Type():   ownModule + "/processor/nodebindingprocessor",
	}

	factories.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](
		otlphttpexporter.NewFactory(),
		otlpexporter.NewFactory(),
		fileexporter.NewFactory(),
		debugexporter.NewFactory(),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}
	factories.ExporterModules = map[component.Type]string{
		otlphttpexporter.NewFactory().Type(): "go.opentelemetry.io/collector/exporter/otlphttpexporter " + coreVersion,
		otlpexporter.NewFactory().Type():     "go.opentelemetry.io/collector/exporter/otlpexporter " + coreVersion,
		fileexporter.NewFactory().Type():     "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter " + contribVersion,
		debugexporter.NewFactory().Type():    "go.opentelemetry.io/collector/exporter/debugexporter " + coreVersion,
	}

	factories.Connectors, err = otelcol.MakeFactoryMap[connector.Factory]()
	if err != nil {
		return otelcol.Factories{}, err
	}
	factories.ConnectorModules = map[component.Type]string{}

	return factories, nil
}
