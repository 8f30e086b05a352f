package nodebindingprocessor

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type node string

func (n node) GetAttribute(name string) any {
	if name == "k8s.node.name" {
		return string(n)
	}
	return nil
}
func (n node) GetAttributeNames() []string { return []string{"k8s.node.name"} }

func logsNaming(nodes ...string) plog.Logs {
	ld := plog.NewLogs()
	for _, n := range nodes {
		rl := ld.ResourceLogs().AppendEmpty()
		if n != "" {
			rl.Resource().Attributes().PutStr("k8s.node.name", n)
		}
		rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("connect")
	}
	return ld
}

func TestOnlyTheSendersNode(t *testing.T) {
	b := &binding{cfg: createDefaultConfig()}
	as := func(n string) context.Context {
		return client.NewContext(context.Background(), client.Info{Auth: node(n)})
	}
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		logs  plog.Logs
		allow bool
	}{
		{"own node", as("a"), logsNaming("a", "a"), true},
		{"another node", as("a"), logsNaming("b"), false},
		{"one resource of another node", as("a"), logsNaming("a", "b"), false},
		{"no node attribute", as("a"), logsNaming(""), false},
		{"unauthenticated", context.Background(), logsNaming("a"), false},
		{"authenticated without a node", as(""), logsNaming(""), false},
	} {
		_, err := b.process(tc.ctx, tc.logs)
		if tc.allow != (err == nil) {
			t.Errorf("%s: error %v", tc.name, err)
		}
		if err != nil && status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied (HTTP 403, which agents retry)", tc.name, err)
		}
	}
}
