package nodebindingprocessor

import (
	"context"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type binding struct{ cfg *Config }

// process passes ld on only when every resource names the sender's node.
// A refusal is PermissionDenied (HTTP 403): connaudit's agent keeps such
// records spooled and retries, so a misconfigured agent loses nothing.
func (b *binding) process(ctx context.Context, ld plog.Logs) (plog.Logs, error) {
	auth := client.FromContext(ctx).Auth
	if auth == nil {
		return ld, status.Error(codes.PermissionDenied, "unauthenticated sender: configure the receiver's auth before "+typ.String())
	}
	sender, _ := auth.GetAttribute(b.cfg.AuthAttribute).(string)
	if sender == "" {
		return ld, status.Errorf(codes.PermissionDenied, "the sender's authentication names no node (%s)", b.cfg.AuthAttribute)
	}
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		v, ok := rls.At(i).Resource().Attributes().Get(b.cfg.ResourceAttribute)
		if !ok || v.Str() != sender {
			got := "none"
			if ok {
				got = v.AsString()
			}
			return ld, status.Errorf(codes.PermissionDenied, "records name node %q (%s) but their sender is the agent of node %q: an agent writes only its own node's trail",
				got, b.cfg.ResourceAttribute, sender)
		}
	}
	return ld, nil
}
