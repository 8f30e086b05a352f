// Package servingcertextension gives the gateway a TLS serving certificate
// with no cert-manager: it keeps a long-lived CA in a Secret of its
// namespace (created by the first replica, reused by every other and by
// every restart), publishes the CA's certificate in a ConfigMap for the
// agents, and writes the pod a short-lived certificate, renewed while it
// runs, where the OTLP receivers' configtls reads and reloads it.
package servingcertextension

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
)

var typ = component.MustNewType("connaudit_serving_cert")

// NewFactory returns the extension's factory.
func NewFactory() extension.Factory {
	return extension.NewFactory(typ,
		func() component.Config { return createDefaultConfig() },
		func(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
			return newIssuer(cfg.(*Config), set.Logger), nil
		},
		component.StabilityLevelBeta)
}
