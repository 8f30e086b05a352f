// Package nodeauthextension authenticates connaudit agents by their
// projected ServiceAccount tokens, through the API server's TokenReview, and
// tells the pipeline which node each sender runs on.
package nodeauthextension

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
)

var typ = component.MustNewType("connaudit_node_auth")

// NewFactory returns the extension's factory.
func NewFactory() extension.Factory {
	return extension.NewFactory(typ,
		func() component.Config { return createDefaultConfig() },
		func(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
			return newAuthenticator(cfg.(*Config), set.Logger), nil
		},
		component.StabilityLevelBeta)
}
