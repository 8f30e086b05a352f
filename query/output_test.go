package query

import (
	"testing"

	"github.com/connaudit/connaudit/backend"
)

// The wide NAME column gives the name the application asked for, and marks
// a name that a resolver other than the cluster DNS gave.
func TestWideNameMarksNamesNotFromTheClusterDNS(t *testing.T) {
	rec := func(fields map[string]string) backend.Record {
		f := map[string]string{backend.FieldPeerKind: "external", backend.FieldDstAddr: "203.0.113.80"}
		for k, v := range fields {
			f[k] = v
		}
		return backend.Record{Fields: f}
	}
	for _, tc := range []struct {
		fields map[string]string
		want   string
	}{
		{nil, ""},
		{map[string]string{backend.FieldDstName: "203.0.113.80"}, ""},
		{map[string]string{backend.FieldDstName: "api.example.com", backend.FieldDNSResolver: "10.96.0.10", backend.FieldDNSCluster: "true"}, "api.example.com"},
		{map[string]string{backend.FieldDstName: "api.example.com", backend.FieldDNSResolver: "127.0.0.53"}, "api.example.com"},
		{map[string]string{backend.FieldDstName: "api.github.com", backend.FieldDNSResolver: "198.51.100.53", backend.FieldDNSCluster: "false"},
			"api.github.com (from resolver 198.51.100.53, not the cluster DNS)"},
	} {
		if got := dnsName(rec(tc.fields)); got != tc.want {
			t.Errorf("dnsName(%v) = %q, want %q", tc.fields, got, tc.want)
		}
	}
}
