// Package nodebindingprocessor refuses logs whose resources name another
// node than the one the authenticated sender runs on, so that each node's
// agent writes only its own node's trail.
package nodebindingprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"
)

var typ = component.MustNewType("connaudit_node_binding")

// NewFactory returns the processor's factory.
func NewFactory() processor.Factory {
	return processor.NewFactory(typ,
		func() component.Config { return createDefaultConfig() },
		processor.WithLogs(createLogs, component.StabilityLevelBeta))
}

func createLogs(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Logs) (processor.Logs, error) {
	b := &binding{cfg: cfg.(*Config)}
	return processorhelper.NewLogs(ctx, set, cfg, next, b.process,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}))
}
